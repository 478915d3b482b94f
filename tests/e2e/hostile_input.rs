//! Hostile input (issue #5, "Bad input corpus"): the message corpus of `tests/corpus` through a
//! running sink, hostile identifiers in the configuration, and COPY escaping round trips through
//! PostgreSQL.
//!
//! The corpus (`tests/corpus/manifest.json`) says for every message what must happen: a row
//! with which values, or a dead letter with which reason. The same manifest drives the
//! path-parser's native test (`plugins/path-parser/tests/hostile.rs`), so a case that passes
//! there and fails here points at the host (transport, COPY, dead letters), not the converter.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rdkafka::config::ClientConfig;

use crate::harness::*;

#[path = "../corpus/copy_text.rs"]
mod copy_text;
#[path = "../corpus/corpus.rs"]
mod corpus;

use corpus::{preview, Case, Expect};

/// Bound on each wait of these tests: the whole corpus (about 17 MB) is loaded in a few
/// seconds; this only keeps a hung sink from hanging the test run.
const BOUND: Duration = Duration::from_secs(60);

fn load_corpus() -> corpus::Corpus {
    corpus::load(&corpus::dir_from(env!("CARGO_MANIFEST_DIR"), ".."))
}

/// A message to produce: partition, key, value (None: null).
type Outgoing<'a> = (i32, Option<&'a [u8]>, Option<&'a [u8]>);

/// Produces `messages` (partition, key, value) and returns where each landed, in order; the
/// corpus has a 10 MB message, beyond librdkafka's default limit.
fn produce(broker: &Broker, topic: &str, messages: &[Outgoing<'_>]) -> Vec<Delivered> {
    let mut producer = broker.producer_spec(false).large_messages().create();
    for (partition, key, value) in messages {
        producer.send(topic, Some(*partition), *key, *value);
    }
    producer.flush()
}

/// Every row of `table`, each column read as text, sorted.
fn rows_as_text(pg: &Pg, table: &Table) -> Vec<Vec<Option<String>>> {
    let select: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{}::text", ident(c)))
        .collect();
    let mut rows: Vec<Vec<Option<String>>> = pg
        .query(
            &format!("SELECT {} FROM {}", select.join(", "), table.qualified()),
            &[],
        )
        .iter()
        .map(|r| (0..table.columns.len()).map(|i| r.get(i)).collect())
        .collect();
    rows.sort();
    rows
}

fn describe_row(columns: &[String], row: &[Option<String>]) -> String {
    let fields: Vec<String> = columns
        .iter()
        .zip(row)
        .filter(|(_, v)| v.is_some())
        .map(|(c, v)| format!("{c}={}", preview(v.as_deref())))
        .collect();
    if fields.is_empty() {
        "(all NULL)".into()
    } else {
        fields.join(" ")
    }
}

/// Messages larger than this get a partition of their own (see [`corpus_messages`]).
const BIG: usize = 512 << 10;

/// The cases' messages, in corpus order: the small ones alternate between partitions 0 and
/// 1, and each big one has a partition of its own, from 2 up. librdkafka's mock cluster keeps
/// at most 5 MiB per partition: past that it drops the oldest message sets, as retention
/// would, and a consumer from the beginning silently starts after them. Returns the messages
/// and the number of partitions they need.
fn corpus_messages(cases: &[Case]) -> (Vec<Outgoing<'_>>, i32) {
    let mut small = 0;
    let mut partitions = 2;
    let messages = cases
        .iter()
        .map(|c| {
            let partition = if c.value.as_ref().is_some_and(|v| v.len() > BIG) {
                partitions += 1;
                partitions - 1
            } else {
                small += 1;
                (small - 1) % 2
            };
            (partition, c.key.as_deref(), c.value.as_deref())
        })
        .collect();
    (messages, partitions)
}

/// Fails unless the broker still holds every message of `topic` from offset 0: what the sink
/// cannot read, it cannot account for.
fn assert_log_starts_at_zero(broker: &Broker, topic: &str, partitions: i32) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("watermark client");
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, BOUND)
            .unwrap_or_else(|e| panic!("watermarks of {topic}[{p}]: {e}"));
        assert_eq!(
            low, 0,
            "{topic}[{p}] starts at offset {low} (end {high}): the broker dropped messages before \
             the sink could read them"
        );
    }
}

// ------------------------------------------------------------------------------------------
// The corpus through a running sink
// ------------------------------------------------------------------------------------------

/// Every message of the corpus (files and generated: a 10 MB string, 100 000-deep nesting, a
/// 1 MB key, invalid UTF-8, NUL, lone surrogates, numbers beyond every column type, ...)
/// through a synchronized sink with `errors.tolerance = "all"` into a table of text, bigint,
/// numeric, double precision, jsonb and boolean columns. Proves: every produced offset is
/// accounted for exactly once, as a row with exactly the manifest's values (read back as text)
/// or as a dead letter with the manifest's reason holding the message's key and value byte for
/// byte; the stored offsets reach the end; the sink keeps running (a message produced after
/// the corpus is loaded too) and stops cleanly.
#[test]
fn hostile_corpus_synchronized_mock() {
    let ctx = Ctx::new("hostile_corpus_synchronized_mock");
    let corpus = load_corpus();
    let broker = Broker::mock();
    let pg = Pg::connect();
    let columns: Vec<(String, String)> = corpus
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.sql_type.clone()))
        .collect();
    let table = pg.table_in("public", &ctx.table_name(), &columns);
    let topic = ctx.unique("t");
    let (messages, partitions) = corpus_messages(&corpus.cases);
    broker.create_topic(&topic, partitions);

    let t0 = Instant::now();
    let delivered = produce(&broker, &topic, &messages);
    let bytes: usize = corpus
        .cases
        .iter()
        .map(|c| c.value.as_ref().map_or(0, Vec::len))
        .sum();
    ctx.note(format!(
        "produced {} corpus messages ({:.1} MB) in {:.1} s",
        corpus.cases.len(),
        bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    ));
    let ends = end_offsets(&delivered);
    assert_log_starts_at_zero(&broker, &topic, partitions);

    let cfg = SinkToml {
        parse: corpus.parse_paths(),
        ..SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
    }
    .delivery("synchronized")
    .flush_ms(200)
    .line("errors.tolerance = \"all\"");
    let mut sink = ctx.sink("sink").toml(&cfg.render()).start();
    let took = wait_for(
        BOUND,
        "the stored offsets to reach the end of the corpus",
        || {
            sink.assert_running("loading the corpus");
            pg.stored_offsets(&table) == ends
        },
    );
    ctx.note(format!(
        "corpus loaded {:.1} s after the sink started",
        took.as_secs_f64()
    ));

    // Dead letters: exactly the messages the manifest sends there, each once, intact.
    let dead_letters = pg.dead_letters(&table);
    let mut problems = Vec::new();
    let mut by_position: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for dl in &dead_letters {
        assert_eq!(dl.topic, topic);
        *by_position.entry((dl.partition, dl.offset)).or_default() += 1;
    }
    for (case, d) in corpus.cases.iter().zip(&delivered) {
        let found: Vec<_> = dead_letters
            .iter()
            .filter(|dl| dl.partition == d.partition && dl.offset == d.offset)
            .collect();
        let expected = match &case.expect {
            Expect::ConverterFails(reason) => Some((false, reason)),
            Expect::Row {
                db_rejects: Some(reason),
                ..
            } => Some((true, reason)),
            Expect::Row { .. } => None,
        };
        match (expected, found.as_slice()) {
            (None, []) => {}
            (None, dls) => problems.push(format!(
                "{}: expected a row, got dead letter(s) {:?}",
                case.name,
                dls.iter().map(|dl| &dl.reason).collect::<Vec<_>>()
            )),
            (Some(_), []) => problems.push(format!("{}: no dead letter", case.name)),
            (Some((by_db, reason)), [dl]) => {
                let from_db = dl.reason.starts_with("PostgreSQL rejected the row");
                if from_db != by_db || !dl.reason.contains(reason.as_str()) {
                    problems.push(format!(
                        "{}: dead letter reason {:?}, expected {} containing {reason:?}",
                        case.name,
                        dl.reason,
                        if by_db {
                            "a PostgreSQL rejection"
                        } else {
                            "the converter's reason"
                        }
                    ));
                }
                if dl.value != case.value {
                    problems.push(format!(
                        "{}: the dead letter's value ({:?} bytes) differs from the message's ({:?} bytes)",
                        case.name,
                        dl.value.as_ref().map(Vec::len),
                        case.value.as_ref().map(Vec::len)
                    ));
                }
                if dl.key != case.key {
                    problems.push(format!(
                        "{}: the dead letter's key {:?} differs from the message's {:?}",
                        case.name, dl.key, case.key
                    ));
                }
            }
            (Some(_), dls) => problems.push(format!(
                "{}: {} dead letters for one message",
                case.name,
                dls.len()
            )),
        }
    }
    let produced: BTreeSet<(i32, i64)> =
        delivered.iter().map(|d| (d.partition, d.offset)).collect();
    for (position, n) in &by_position {
        if !produced.contains(position) {
            problems.push(format!(
                "a dead letter for an offset never produced: {position:?}"
            ));
        } else if *n > 1 {
            problems.push(format!("{n} dead letters for offset {position:?}"));
        }
    }

    // Rows: exactly the manifest's rows (order-free: rows carry no offset), as PostgreSQL
    // reads them back.
    let mut expected: Vec<(Vec<Option<String>>, &str)> = corpus
        .cases
        .iter()
        .filter_map(|c| match &c.expect {
            Expect::Row {
                db,
                db_rejects: None,
                ..
            } => Some((db.clone(), c.name.as_str())),
            _ => None,
        })
        .collect();
    expected.sort();
    let actual = rows_as_text(&pg, &table);
    let names = &table.columns;
    let mut unexpected: BTreeMap<&Vec<Option<String>>, usize> = BTreeMap::new();
    for row in &actual {
        *unexpected.entry(row).or_default() += 1;
    }
    for (row, case) in &expected {
        match unexpected.get_mut(row) {
            Some(n) if *n > 0 => *n -= 1,
            _ => problems.push(format!("{case}: no row {}", describe_row(names, row))),
        }
    }
    for (row, n) in unexpected {
        for _ in 0..n {
            problems.push(format!(
                "a row no case expects: {}",
                describe_row(names, row)
            ));
        }
    }
    let dead = corpus.cases.iter().filter(|c| !c.expect.is_row()).count();
    assert!(
        problems.is_empty(),
        "{} problem(s) with the corpus ({} cases: {} rows expected, {} dead letters expected; \
         got {} rows, {} dead letters):\n{}",
        problems.len(),
        corpus.cases.len(),
        expected.len(),
        dead,
        actual.len(),
        dead_letters.len(),
        problems.join("\n")
    );
    assert_eq!(
        actual.len() + dead_letters.len(),
        delivered.len(),
        "every message is a row or a dead letter"
    );
    assert_offsets_at_end(&pg, &table, &ends);
    ctx.note(format!(
        "{} rows and {} dead letters checked",
        actual.len(),
        dead_letters.len()
    ));

    // Still running: a message after the corpus is loaded too.
    let last = br#"{"t":"after the corpus","i":1}"#;
    let after = produce(&broker, &topic, &[(0, Some(b"after"), Some(last))]);
    let mut ends_after = ends.clone();
    ends_after.insert((topic.clone(), 0), after[0].offset + 1);
    wait_for(BOUND, "the message produced after the corpus", || {
        sink.assert_running("loading the message after the corpus");
        pg.stored_offsets(&table) == ends_after
    });
    let n: i64 = pg.query(
        &format!(
            "SELECT count(*) FROM {} WHERE t = 'after the corpus' AND i = 1",
            table.qualified()
        ),
        &[],
    )[0]
    .get(0);
    assert_eq!(n, 1, "the message after the corpus is loaded once");
    sink.stop_ok();
    ctx.note(format!("done in {:.1} s", t0.elapsed().as_secs_f64()));
}

// ------------------------------------------------------------------------------------------
// Hostile identifiers
// ------------------------------------------------------------------------------------------

/// A schema, a table and columns named with SQL injection attempts (`'; DROP TABLE …; --` in
/// single and double quotes), double quotes, a comma, a newline and a tab, backslashes, `\N`,
/// `$1`, `%s`, non-ASCII text and capitals; the default consumer group (`pgsink-<schema>.<table>`)
/// is built from them. Proves: the rows land in that table with the right values, a message
/// the converter rejects and one PostgreSQL rejects (a value for a bigint column, which makes
/// the writer isolate it with savepoints) become dead letters filed under the exact names, the
/// stored offsets reach the end, two canary tables the injections name survive untouched, and
/// `pgsink check`, `pgsink dlq list` and `pgsink dlq redrive` (after the column is fixed) work
/// on the same names.
#[test]
fn hostile_identifiers_synchronized_mock() {
    let ctx = Ctx::new("hostile_identifiers_synchronized_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let canary = "e2e_hostile_canary";
    let schema = format!("Hostile \"Sch\"; '; DROP TABLE {canary}; --");
    let name = format!("x'); DROP TABLE {canary}; -- \"Ü\" \\ $1 %s");
    let columns: Vec<(String, String)> = [
        ("Id", "bigint"),
        ("'; DROP TABLE e2e_hostile_canary; --", "bigint"),
        ("\"; DROP TABLE e2e_hostile_canary; --", "text"),
        ("a,b", "text"),
        ("new\nline\ttab", "text"),
        ("Ünïcødé 日本 🚀", "text"),
        ("back\\slash \\N $1 %s {}", "jsonb"),
        ("\"", "text"),
        ("select", "numeric"),
    ]
    .iter()
    .map(|(c, t)| (c.to_string(), t.to_string()))
    .collect();
    for (c, _) in &columns {
        assert!(
            c.len() < 64,
            "{c:?}: PostgreSQL truncates names past 63 bytes"
        );
    }
    assert!(schema.len() < 64 && name.len() < 64);
    let table = pg.table_in(&schema, &name, &columns);
    for canary_schema in ["public", schema.as_str()] {
        pg.batch(&format!(
            "DROP TABLE IF EXISTS {s}.{c}; CREATE TABLE {s}.{c} (x int); INSERT INTO {s}.{c} VALUES (42)",
            s = ident(canary_schema),
            c = ident(canary)
        ));
    }
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 2);

    let row_message = |id: u64| {
        format!(
            r#"{{"id":{id},"a":{id},"b":"'; DROP TABLE {canary}; -- {id}","c":"a,b\t{id}","d":"line\nbreak","e":"日本 {id}","f":{{"k\"":"\\N","id":{id}}},"g":"\"","h":{id}.50}}"#
        )
    };
    let ids: Vec<u64> = (1..=200).collect();
    let mut messages: Vec<(i32, Vec<u8>, Vec<u8>)> = ids
        .iter()
        .map(|id| {
            (
                (*id % 2) as i32,
                id.to_string().into_bytes(),
                row_message(*id).into_bytes(),
            )
        })
        .collect();
    let bad_json = br#"{"id":1000,"a":"#.to_vec();
    let bad_bigint =
        br#"{"id":1001,"a":"'; DROP TABLE e2e_hostile_canary; --","b":"kept"}"#.to_vec();
    messages.insert(50, (0, b"bad-json".to_vec(), bad_json.clone()));
    messages.insert(120, (1, b"bad-bigint".to_vec(), bad_bigint.clone()));
    let refs: Vec<Outgoing<'_>> = messages
        .iter()
        .map(|(p, k, v)| (*p, Some(&k[..]), Some(&v[..])))
        .collect();
    let delivered = produce(&broker, &topic, &refs);
    let ends = end_offsets(&delivered);

    let mut cfg = SinkToml {
        parse: "/@id,/@a,/@b,/@c,/@d,/@e,/@f,/@g,/@h".into(),
        ..SinkToml::new(&table, &[&topic], &broker, "unused")
    }
    .delivery("synchronized")
    .flush_ms(200)
    .line("errors.tolerance = \"all\"");
    // The default group, pgsink-<schema>.<table>, carries the hostile names too.
    cfg.kafka.retain(|(k, _)| k != "group.id");
    let config = ctx.write("hostile.toml", cfg.render());
    let config = config.to_str().expect("UTF-8 path");

    let check = ctx.run_pgsink(&["check", "--config", config], b"", BOUND);
    let check_out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "pgsink check failed ({}):\n{check_out}\n{}",
        check.status,
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        check_out.contains(&table.qualified()),
        "pgsink check should name the table {}:\n{check_out}",
        table.qualified()
    );

    let mut sink = ctx.sink("sink").file(std::path::Path::new(config)).start();
    wait_for(BOUND, "the stored offsets to reach the end", || {
        sink.assert_running("loading the messages");
        pg.stored_offsets(&table) == ends
    });
    sink.stop_ok();

    let canaries = |when: &str| {
        for canary_schema in ["public", schema.as_str()] {
            let rows = pg.query(
                &format!("SELECT x FROM {}.{}", ident(canary_schema), ident(canary)),
                &[],
            );
            let values: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
            assert_eq!(values, [42], "the canary in {canary_schema:?} {when}");
        }
    };
    canaries("after the sink ran");

    let got = rows_as_text(&pg, &table);
    let mut want: Vec<Vec<Option<String>>> = ids
        .iter()
        .map(|id| {
            [
                id.to_string(),
                id.to_string(),
                format!("'; DROP TABLE {canary}; -- {id}"),
                format!("a,b\t{id}"),
                "line\nbreak".to_string(),
                format!("日本 {id}"),
                // jsonb orders keys by length, then bytes.
                format!(r#"{{"id": {id}, "k\"": "\\N"}}"#),
                "\"".to_string(),
                format!("{id}.50"),
            ]
            .into_iter()
            .map(Some)
            .collect()
        })
        .collect();
    want.sort();
    assert_eq!(got.len(), want.len(), "one row per good message");
    assert!(
        got == want,
        "rows differ, e.g. got {:?}, want {:?}",
        got.first(),
        want.first()
    );

    let dls = pg.dead_letters(&table);
    assert_eq!(dls.len(), 2, "two dead letters: {dls:#?}");
    let json = dls
        .iter()
        .find(|dl| dl.key.as_deref() == Some(&b"bad-json"[..]))
        .expect("the invalid JSON is a dead letter");
    assert_eq!(json.value.as_deref(), Some(&bad_json[..]));
    assert!(json.reason.contains("invalid JSON"), "{}", json.reason);
    let rejected = dls
        .iter()
        .find(|dl| dl.key.as_deref() == Some(&b"bad-bigint"[..]))
        .expect("the value PostgreSQL rejects is a dead letter");
    assert_eq!(rejected.value.as_deref(), Some(&bad_bigint[..]));
    assert!(
        rejected.reason.contains("PostgreSQL rejected the row")
            && rejected
                .reason
                .contains("invalid input syntax for type bigint"),
        "{}",
        rejected.reason
    );
    assert_offsets_at_end(&pg, &table, &ends);

    let list = ctx.run_pgsink(&["dlq", "list", "--config", config], b"", BOUND);
    let list_out = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success() && list_out.contains("2 dead letter(s) shown"),
        "pgsink dlq list ({}):\n{list_out}\n{}",
        list.status,
        String::from_utf8_lossy(&list.stderr)
    );

    // Fix the column the rejected value was meant for, then re-drive: that one loads.
    pg.batch(&format!(
        "ALTER TABLE {} ALTER COLUMN {} TYPE text",
        table.qualified(),
        ident(&columns[1].0)
    ));
    let redrive = ctx.run_pgsink(&["dlq", "redrive", "--config", config], b"", BOUND);
    let redrive_out = String::from_utf8_lossy(&redrive.stdout);
    assert!(
        redrive.status.success()
            && redrive_out.contains("2 dead letter(s) read: 1 loaded as 1 row(s), 1 still failing"),
        "pgsink dlq redrive ({}):\n{redrive_out}\n{}",
        redrive.status,
        String::from_utf8_lossy(&redrive.stderr)
    );
    let redriven: i64 = pg.query(
        &format!(
            "SELECT count(*) FROM {} WHERE {} = 1001 AND {} = $1 AND {} = 'kept'",
            table.qualified(),
            ident(&columns[0].0),
            ident(&columns[1].0),
            ident(&columns[2].0)
        ),
        &[&"'; DROP TABLE e2e_hostile_canary; --"],
    )[0]
    .get(0);
    assert_eq!(redriven, 1, "the re-driven row is in the table");
    assert_eq!(pg.dead_letters(&table).len(), 1, "the invalid JSON stays");
    canaries("after dlq redrive");
}

// ------------------------------------------------------------------------------------------
// COPY escaping through PostgreSQL
// ------------------------------------------------------------------------------------------

/// Field text: COPY's specials and escape letters, controls, `\N`-like text, non-characters
/// and any other character but NUL (which PostgreSQL text cannot hold).
fn pg_text() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        3 => prop::sample::select(vec![
            '\\', '\t', '\n', '\r', 'N', '.', '0', 'x', 'b', 'v', '\u{8}', '\u{b}', '\u{c}',
            '\u{1f}', '\u{7f}', '\u{85}', '\u{fffe}', '\u{ffff}', '\u{10ffff}', 'é', '😀',
        ]),
        2 => any::<char>().prop_filter("no NUL", |c| *c != '\0'),
    ];
    prop::collection::vec(c, 0..20).prop_map(String::from_iter)
}

/// Random text and NULLs escaped by the guest SDK's `RowWriter`, COPY'd into a temporary table
/// and read back: PostgreSQL returns exactly what was written (NULL stays NULL, the text `\N`
/// stays text), and the reference decoder reads the COPY text the same way PostgreSQL does.
#[test]
fn hostile_copy_roundtrip_postgres() {
    let pg = Pg::connect();
    pg.batch("CREATE TEMPORARY TABLE hostile_roundtrip (i int, a text, b text)");
    let t0 = Instant::now();
    proptest!(
        ProptestConfig {
            cases: 200,
            ..ProptestConfig::default()
        },
        |(rows in prop::collection::vec(
            (prop::option::weighted(0.9, pg_text()), prop::option::weighted(0.9, pg_text())),
            1..40,
        ))| {
            let mut text = Vec::new();
            let mut writer = pgsink_guest::RowWriter::new(&mut text, 3);
            for (i, (a, b)) in rows.iter().enumerate() {
                writer.row().push_display(i).push_opt(a.as_deref()).push_opt(b.as_deref());
            }
            prop_assert_eq!(writer.take_outcome(), Ok(rows.len() as u32));
            let decoded = copy_text::decode(&text).map_err(TestCaseError::fail)?;
            let mut expected = Vec::new();
            for (i, (a, b)) in rows.iter().enumerate() {
                expected.push(vec![Some(i.to_string()), a.clone(), b.clone()]);
            }
            prop_assert_eq!(decoded, expected);

            pg.batch("TRUNCATE hostile_roundtrip");
            let copied = pg.copy_in("COPY hostile_roundtrip (i, a, b) FROM STDIN", text);
            prop_assert_eq!(copied, rows.len() as u64);
            let back: Vec<(Option<String>, Option<String>)> = pg
                .query("SELECT a, b FROM hostile_roundtrip ORDER BY i", &[])
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            prop_assert_eq!(back, rows);
        }
    );
    eprintln!(
        "hostile_copy_roundtrip_postgres: 200 cases in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
