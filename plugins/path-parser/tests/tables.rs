//! One converter, several tables: each table its own parse paths and casts (falling back to
//! `db.json.parse` and `db.json.cast`), filled by the messages of its topics.

use path_parser::PathParser;
use pgsink_guest::testing::{TestRow, TestSink};
use pgsink_guest::{Message, Operation, Outcome, Table};

fn table(name: &str, columns: &[&str]) -> Table {
    Table {
        name: name.to_string(),
        ..Table::named(columns)
    }
}

fn message<'a>(topic: &'a str, value: &'a [u8]) -> Message<'a> {
    Message {
        topic,
        ..Message::from_value(value)
    }
}

fn row(table: usize, fields: &[Option<&str>]) -> TestRow {
    TestRow {
        table,
        operation: Operation::Insert,
        fields: fields.iter().map(|f| f.map(str::to_string)).collect(),
    }
}

#[test]
fn a_message_fills_every_table_that_takes_its_topic_in_table_order() {
    let mut sink = TestSink::<PathParser>::configure_tables(
        &[
            ("db.json.parse", "/@id, /@total"),
            ("table.audit.json.parse", "/@id, /@at"),
            ("table.audit.json.cast", "at:epoch-s"),
            ("table.refunds.json.parse", "/@order"),
            ("table.refunds.topics", "refunds"),
        ],
        vec![
            table("orders", &["id", "total"]),
            table("audit", &["id", "at"]),
            table("refunds", &["order"]),
        ],
    )
    .unwrap();
    let order = br#"{"id": 7, "total": 9.5, "at": 0}"#;
    assert_eq!(
        sink.rows(&message("orders", order)).unwrap(),
        [
            row(0, &[Some("7"), Some("9.5")]),
            row(1, &[Some("7"), Some("1970-01-01 00:00:00+00")]),
        ],
        "orders falls back to db.json.parse, audit has its own paths and casts"
    );
    let refund = br#"{"order": 7}"#;
    assert_eq!(
        sink.rows(&message("refunds", refund)).unwrap(),
        [
            row(0, &[None, None]),
            row(1, &[None, None]),
            row(2, &[Some("7")]),
        ],
        "tables without topics take every topic"
    );
}

#[test]
fn a_table_per_topic_takes_only_its_own() {
    let mut sink = TestSink::<PathParser>::configure_tables(
        &[
            ("db.json.parse", "/@id"),
            ("table.raw_a.topics", "a"),
            ("table.raw_b.topics", "b"),
        ],
        vec![table("raw_a", &["id"]), table("raw_b", &["id"])],
    )
    .unwrap();
    assert_eq!(
        sink.rows(&message("b", br#"{"id": 1}"#)).unwrap(),
        [row(1, &[Some("1")])]
    );
    assert_eq!(sink.rows(&message("c", br#"{"id": 1}"#)).unwrap(), []);
}

#[test]
fn a_bad_message_fails_whole_and_a_table_names_its_bad_settings() {
    let mut sink = TestSink::<PathParser>::configure_tables(
        &[
            ("table.a.json.parse", "/@id"),
            ("table.b.json.parse", "/@id"),
        ],
        vec![table("a", &["id"]), table("b", &["id"])],
    )
    .unwrap();
    let error = sink.rows(&message("t", b"{")).unwrap_err();
    assert!(error.contains("invalid JSON"), "{error}");
    // The first table's row is written, the second's fails: the message fails whole.
    let mut sink = TestSink::<PathParser>::configure_tables(
        &[
            ("table.a.json.parse", "/@id"),
            ("table.b.json.parse", "/@note"),
        ],
        vec![table("a", &["id"]), table("b", &["note"])],
    )
    .unwrap();
    let out = sink.convert(&[
        message("t", br#"{"id": 1, "note": "a\u0000b"}"#),
        message("t", br#"{"id": 2, "note": "fine"}"#),
    ]);
    assert!(
        matches!(out.outcomes[0], Outcome::Failed(_)),
        "{:?}",
        out.outcomes
    );
    assert_eq!(
        String::from_utf8(out.copy_text).unwrap(),
        "2\nfine\n",
        "nothing of the failed message's first table"
    );
    let error = TestSink::<PathParser>::configure_tables(
        &[
            ("table.a.json.parse", "/@id"),
            ("table.b.json.parse", "/@id, /@x"),
        ],
        vec![table("a", &["id"]), table("b", &["id"])],
    )
    .err()
    .unwrap();
    assert!(error.starts_with("table b: "), "{error}");
}
