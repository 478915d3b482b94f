//! The bundled converter beyond the seed: key and metadata columns, casts, Debezium and Kafka
//! Connect envelopes, tombstone policies. The Debezium events are the PostgreSQL connector
//! documentation's own (`fixtures/debezium/README.md`).

use path_parser::PathParser;
use pgsink_guest::testing::{TestRow, TestSink};
use pgsink_guest::{Header, Message, Operation};

const CUSTOMERS: &[&str] = &["id", "first_name", "last_name", "email"];
const ROW_PATHS: &str = "/@id, /@first_name, /@last_name, /@email";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/debezium/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn sink(settings: &[(&str, &str)], columns: &[&str]) -> TestSink<PathParser> {
    TestSink::configure(settings, columns).unwrap_or_else(|e| panic!("{e}"))
}

fn debezium(paths: &str) -> TestSink<PathParser> {
    let mut columns = CUSTOMERS.to_vec();
    columns.truncate(paths.split(',').count());
    sink(
        &[("db.json.parse", paths), ("db.json.envelope", "debezium")],
        &columns,
    )
}

fn message<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> Message<'a> {
    Message {
        key,
        value,
        ..Message::from_value(b"")
    }
}

fn row(operation: Operation, fields: &[Option<&str>]) -> TestRow {
    TestRow {
        table: 0,
        operation,
        fields: fields.iter().map(|f| f.map(str::to_string)).collect(),
    }
}

const ANNE: [Option<&str>; 4] = [
    Some("1"),
    Some("Anne"),
    Some("Kretchmar"),
    Some("annek@noanswer.org"),
];

/// Create, snapshot read, update and delete, with and without `schemas.enable`: the same rows
/// come out, upserts of `after` and a delete keyed by `before`; the tombstone after the delete
/// is skipped.
#[test]
fn debezium_change_events_become_upserts_and_deletes() {
    let mut sink = debezium(ROW_PATHS);
    for form in ["", ".payload"] {
        let value = fixture(&format!("create{form}.json"));
        assert_eq!(
            sink.rows(&message(None, Some(&value))),
            Ok(vec![row(Operation::Upsert, &ANNE)]),
            "create{form}"
        );
        let value = fixture(&format!("update{form}.json"));
        assert_eq!(
            sink.rows(&message(None, Some(&value))),
            Ok(vec![row(
                Operation::Upsert,
                &[
                    Some("1"),
                    Some("Anne Marie"),
                    Some("Kretchmar"),
                    Some("annek@noanswer.org")
                ]
            )]),
            "update{form}"
        );
        let value = fixture(&format!("delete{form}.json"));
        assert_eq!(
            sink.rows(&message(None, Some(&value))),
            Ok(vec![row(Operation::Delete, &[Some("1"), None, None, None])]),
            "delete{form}: keyed by the before image (REPLICA IDENTITY DEFAULT: the key only)"
        );
    }
    let read = fixture("read.payload.json");
    assert_eq!(
        sink.rows(&message(None, Some(&read))),
        Ok(vec![row(Operation::Upsert, &ANNE)])
    );
    let key = fixture("key.json");
    assert_eq!(
        sink.rows(&message(Some(&key), None)),
        Ok(vec![]),
        "tombstone skipped"
    );
}

/// A delete keyed by the message key (the `before` image may be null), the key unwrapped from
/// Kafka Connect's `{schema, payload}` when it is wrapped, and envelope fields as columns.
#[test]
fn debezium_keys_and_envelope_fields() {
    let mut sink = sink(
        &[
            (
                "db.json.parse",
                "#key/@id, /@email, #envelope/@op, #envelope/@source/@lsn",
            ),
            ("db.json.envelope", "debezium"),
        ],
        &["id", "email", "op", "lsn"],
    );
    let delete = fixture("delete.json");
    for key in ["key.jsonconverter.json", "key.jsonconverter.payload.json"] {
        let key = fixture(key);
        assert_eq!(
            sink.rows(&message(Some(&key), Some(&delete))),
            Ok(vec![row(
                Operation::Delete,
                &[Some("1"), None, Some("d"), Some("46523128")]
            )])
        );
    }
    let create = fixture("create.payload.json");
    let key = fixture("key.json");
    assert_eq!(
        sink.rows(&message(Some(&key), Some(&create))),
        Ok(vec![row(
            Operation::Upsert,
            &[
                Some("1"),
                Some("annek@noanswer.org"),
                Some("c"),
                Some("24023128")
            ]
        )]),
        "the documentation's key has the id as a string"
    );
}

/// Events that carry no row, and values that are not Debezium events, fail with a reason.
#[test]
fn debezium_escaped_ops_are_read() {
    let mut sink = debezium("/@id");
    let value = br#"{"op":"\u0063","after":{"id":3}}"#;
    assert_eq!(
        sink.rows(&message(None, Some(value))),
        Ok(vec![row(Operation::Upsert, &[Some("3")])])
    );
}

#[test]
fn debezium_events_without_a_row_fail() {
    let mut sink = debezium(ROW_PATHS);
    for (value, reason) in [
        (
            r#"{"op":"t","before":null,"after":null}"#,
            "truncate (op t)",
        ),
        (r#"{"op":"m","message":{}}"#, "logical decoding message"),
        (r#"{"op":"x","after":{}}"#, "op is not one of c, r, u, d"),
        (r#"{"op":"cc","after":{}}"#, "op is not one of c, r, u, d"),
        (r#"{"op":"","after":{}}"#, "op is not one of c, r, u, d"),
        (r#"{"op":1,"after":{}}"#, "it has no op"),
        (r#"{"id":1}"#, "it has no op (is db.json.envelope right?)"),
        (r#"{"op":"c","after":null}"#, "has no after image"),
        (r#"{"op":"c","after":[1]}"#, "has no after image"),
        ("[1", "invalid JSON at byte 2"),
    ] {
        let error = sink
            .rows(&message(None, Some(value.as_bytes())))
            .unwrap_err();
        assert!(error.contains(reason), "{value}: {error}");
    }
}

#[test]
fn connect_envelopes_unwrap_the_payload() {
    let mut sink = sink(
        &[
            ("db.json.parse", "/@id, /@name"),
            ("db.json.envelope", "connect"),
        ],
        &["id", "name"],
    );
    let value = br#"{"schema":{"type":"struct","fields":[]},"payload":{"id":7,"name":"x"}}"#;
    assert_eq!(sink.convert_value(value), Ok("7\tx\n".into()));
    let error = sink.convert_value(br#"{"id":7}"#).unwrap_err();
    assert!(error.contains("not a Kafka Connect"), "{error}");
    let error = sink.rows(&message(None, None)).unwrap_err();
    assert!(
        error.contains("tombstone"),
        "a tombstone fails by default: {error}"
    );
}

#[test]
fn tombstones_follow_their_policy() {
    let settings = |policy| {
        [
            ("db.json.parse", "#key/@id, /@v"),
            ("db.json.tombstone", policy),
        ]
    };
    let tombstone = message(Some(br#"{"id":5}"#), None);
    let mut delete = sink(&settings("delete"), &["id", "v"]);
    assert_eq!(
        delete.rows(&tombstone),
        Ok(vec![row(Operation::Delete, &[Some("5"), None])])
    );
    assert_eq!(
        delete.rows(&message(Some(br#"{"id":5}"#), Some(br#"{"v":"w"}"#))),
        Ok(vec![row(Operation::Upsert, &[Some("5"), Some("w")])]),
        "deleting by key on tombstones mirrors the topic by key: values are upserts"
    );
    assert_eq!(
        sink(&settings("skip"), &["id", "v"]).rows(&tombstone),
        Ok(vec![])
    );
    let error = sink(&settings("fail"), &["id", "v"])
        .rows(&tombstone)
        .unwrap_err();
    assert!(error.contains("tombstone"), "{error}");
    let error = TestSink::<PathParser>::configure(
        &[("db.json.parse", "/@id"), ("db.json.tombstone", "delete")],
        &["id"],
    )
    .err()
    .unwrap();
    assert!(error.contains("give the key columns #key paths"), "{error}");
}

/// Key columns (JSON or plain text keys) and every metadata column.
#[test]
fn keys_and_metadata_fill_columns() {
    let mut sink = sink(
        &[(
            "db.json.parse",
            "#key, #key/@id, #topic, #partition, #offset, #timestamp, #header:trace, #header:none, /@v",
        )],
        &["key", "id", "topic", "partition", "offset", "at", "trace", "none", "v"],
    );
    let headers = [
        Header {
            key: b"trace",
            value: Some(b"t-1"),
        },
        Header {
            key: b"none",
            value: None,
        },
    ];
    let m = Message {
        topic: "orders",
        partition: 3,
        offset: 42,
        timestamp: Some(1_700_000_000_123),
        key: Some(br#"{"id": "k\t1"}"#),
        value: Some(br#"{"v":1}"#),
        headers: &headers,
    };
    assert_eq!(
        sink.convert_message(&m),
        Ok(
            "{\"id\":\"k\\\\t1\"}\tk\\t1\torders\t3\t42\t2023-11-14 22:13:20.123+00\tt-1\t\\N\t1\n"
                .into()
        )
    );
    let error = sink
        .convert_message(&Message {
            key: Some(b"plain"),
            ..m.clone()
        })
        .unwrap_err();
    assert!(error.contains("the message key is not JSON"), "{error}");

    let mut whole = self::sink(&[("db.json.parse", "#key, /@v")], &["key", "v"]);
    let text_key = Message {
        key: Some(b"user-17"),
        ..Message::from_value(br#"{"v":1}"#)
    };
    assert_eq!(
        whole.convert_message(&text_key),
        Ok("user-17\t1\n".into()),
        "a text key"
    );
    let no_key = Message::from_value(br#"{"v":1}"#);
    assert_eq!(whole.convert_message(&no_key), Ok("\\N\t1\n".into()));

    let mut cast = self::sink(
        &[
            ("db.json.parse", "#key, /@v"),
            ("db.json.cast", "key:base64"),
        ],
        &["key", "v"],
    );
    for key in [&b"AAEC"[..], br#""AAEC""#] {
        let m = Message {
            key: Some(key),
            ..Message::from_value(br#"{"v":1}"#)
        };
        assert_eq!(
            cast.convert_message(&m),
            Ok("\\\\x000102\t1\n".into()),
            "a text key is cast as a JSON string key is"
        );
    }
}

/// Casts run on what the path selected, and a value they cannot cast fails the message.
#[test]
fn casts_apply_per_column() {
    let mut sink = sink(
        &[
            ("db.json.parse", "/@at, /@tags, /@blob, /@n, #key/@ms"),
            (
                "db.json.cast",
                "at:epoch-s, tags:array, blob:base64, n:numeric, ms:epoch-ms",
            ),
        ],
        &["at", "tags", "blob", "n", "ms"],
    );
    let m = message(
        Some(br#"{"ms":0}"#),
        Some(br#"{"at":1700000000,"tags":["a,b",null,"q\"t"],"blob":"AAEC","n":"12.50"}"#),
    );
    assert_eq!(
        sink.rows(&m),
        Ok(vec![row(
            Operation::Insert,
            &[
                Some("2023-11-14 22:13:20+00"),
                Some(r#"{"a,b",NULL,"q\"t"}"#),
                Some("\\x000102"),
                Some("12.50"),
                Some("1970-01-01 00:00:00+00"),
            ]
        )])
    );
    let error = sink
        .rows(&message(None, Some(br#"{"at":true}"#)))
        .unwrap_err();
    assert!(
        error.contains("cast epoch-s needs a number or a string, found true"),
        "{error}"
    );
}

#[test]
fn settings_are_checked_when_the_sink_starts() {
    for (settings, expected) in [
        (
            vec![("db.json.parse", "#envelope/@op")],
            "set db.json.envelope = \"debezium\"",
        ),
        (
            vec![("db.json.parse", "/@a"), ("db.json.envelope", "avro")],
            "must be none, debezium or connect",
        ),
        (
            vec![("db.json.parse", "/@a"), ("db.json.tombstone", "keep")],
            "must be skip, delete or fail",
        ),
    ] {
        let error = TestSink::<PathParser>::configure(&settings, &["a"])
            .err()
            .unwrap();
        assert!(error.contains(expected), "{settings:?}: {error}");
    }
}
