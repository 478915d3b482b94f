//! Keyed writes (`db.write.mode = upsert | ignore`): a flush through a staging table.
//!
//! COPY can only append, and `INSERT … ON CONFLICT` row by row is what makes other sinks slow.
//! So a keyed flush COPYs its rows, each tagged with whether it deletes and its place in the
//! flush, into a temporary table of the connection (no WAL, emptied by every commit), and then
//! applies them with two set statements, in the same transaction as the dead letters and the
//! offsets:
//!
//! 1. every key that has a delete in the flush is deleted from the table;
//! 2. per key, the row that wins — upsert: the last; ignore: the first after the key's last
//!    delete — is inserted `ON CONFLICT (key) DO UPDATE` (upsert) or `DO NOTHING` (ignore).
//!
//! In that order the result equals applying the rows one by one in offset order: a key whose
//! last row is a delete ends absent; a key deleted and then written again ends as a fresh row
//! (the columns the sink does not fill take their defaults, as after a real delete and insert);
//! a key without deletes keeps the columns the sink does not fill. Collapsing each key to one
//! row first is required, not an optimisation: `ON CONFLICT DO UPDATE` refuses to change one row
//! twice in a statement. The order within a flush is the host's tag, not the table's physical
//! order, which PostgreSQL does not promise.
//!
//! Everything here builds SQL text and staged rows; nothing talks to the database, so it is
//! tested without one.

use memchr::memchr_iter;

use super::quote_ident;
use super::target::Target;
use crate::config::WriteMode;
use crate::converter::{Operation, RowRun};

/// The staging table of a sink's first table; the others' are numbered (`pgsink_stage_1`, …).
const STAGE: &str = "pgsink_stage";
/// The staging table's column that marks a delete (`Target::resolve` refuses a sink column
/// of this name, or the next).
const DELETE: &str = "\"pgsink delete\"";
/// The staging table's column that orders the rows of a flush.
const SEQ: &str = "\"pgsink seq\"";

/// The statements of a keyed flush, built once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// Gives the connection the memory to hold a flush's staged rows (`temp_buffers`: else
    /// they spill to a file) and to sort them (`work_mem`); sent before the staging table is
    /// first used, as PostgreSQL requires for `temp_buffers`.
    pub session: String,
    /// Creates the staging table: the sink's columns with the table's types (domains resolved
    /// to their base types), without its constraints (a delete's non-key columns are NULL),
    /// plus the two tags.
    pub create: String,
    /// COPY of tagged rows into the staging table.
    pub copy: String,
    /// Deletes from the table every key that has a delete among the staged rows.
    pub delete: String,
    /// Inserts the winning row of each key that does not end deleted.
    pub apply: String,
    /// Empties the staging table inside a transaction (between isolated row ranges).
    pub empty: String,
}

impl Merge {
    /// The statements for `target`, the sink's table number `index`, written in `mode` (a keyed
    /// one: `target.key` is not empty), for flushes of about `buffer_size` bytes of COPY text.
    pub fn new(target: &Target, index: usize, mode: WriteMode, buffer_size: usize) -> Merge {
        let (stage, stage_name) = match index {
            0 => (format!("pg_temp.{STAGE}"), STAGE.to_string()),
            i => (format!("pg_temp.{STAGE}_{i}"), format!("{STAGE}_{i}")),
        };
        // Staged rows take about 1.2× their COPY text as tuples, and sorting them about 2.2×
        // (measured with 8 MB flushes): four times the text, at least 32 MB, at most 1 GB.
        let memory_kb = (buffer_size / 256).clamp(32 << 10, 1 << 20);
        let session = format!("SET temp_buffers = '{memory_kb}kB'; SET work_mem = '{memory_kb}kB'");
        let columns: Vec<String> = target.columns.iter().map(|c| quote_ident(c)).collect();
        let all = columns.join(", ");
        let key: Vec<&str> = target
            .key
            .iter()
            .map(|&k| columns[k as usize].as_str())
            .collect();
        let keys = key.join(", ");
        let table = target.qualified();
        let matches = |a: &str, b: &str| {
            key.iter()
                .map(|k| format!("{a}.{k} = {b}.{k}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let typed: Vec<String> = columns
            .iter()
            .zip(&target.base_types)
            .map(|(c, t)| format!("{c} {t}"))
            .collect();
        let create = format!(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {stage_name} ({}, {DELETE} boolean, {SEQ} bigint) \
             ON COMMIT DELETE ROWS",
            typed.join(", ")
        );
        let copy = format!("COPY {stage} ({all}, {DELETE}, {SEQ}) FROM STDIN");
        let delete = format!(
            "DELETE FROM {table} t USING (SELECT DISTINCT {keys} FROM {stage} WHERE {DELETE}) d \
             WHERE {}",
            matches("t", "d")
        );
        let winners = match mode {
            WriteMode::Ignore => format!(
                "SELECT DISTINCT ON ({keys}) * FROM {stage} s WHERE NOT s.{DELETE} AND NOT EXISTS \
                 (SELECT FROM {stage} d WHERE d.{DELETE} AND {} AND d.{SEQ} > s.{SEQ}) \
                 ORDER BY {keys}, {SEQ}",
                matches("d", "s")
            ),
            WriteMode::Upsert | WriteMode::Append => {
                format!("SELECT DISTINCT ON ({keys}) * FROM {stage} ORDER BY {keys}, {SEQ} DESC")
            }
        };
        let others: Vec<String> = (0..columns.len() as u32)
            .filter(|c| !target.key.contains(c))
            .map(|c| {
                let c = &columns[c as usize];
                format!("{c} = EXCLUDED.{c}")
            })
            .collect();
        let on_conflict = if mode == WriteMode::Ignore || others.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", others.join(", "))
        };
        // OVERRIDING SYSTEM VALUE: a key that is GENERATED ALWAYS AS IDENTITY takes the
        // message's value, as COPY gives it.
        let apply = format!(
            "INSERT INTO {table} ({all}) OVERRIDING SYSTEM VALUE SELECT {all} FROM ({winners}) w \
             WHERE NOT w.{DELETE} ON CONFLICT ({keys}) {on_conflict}"
        );
        Merge {
            session,
            create,
            copy,
            delete,
            apply,
            empty: format!("DELETE FROM {stage}"),
        }
    }
}

/// Tags the COPY rows of one batch for the staging table: each row gets `\t{t|f}\t{seq}`
/// (whether it deletes, and its place), `seq` counting on from `next_seq`. `runs` give each
/// row's operation (none: every row an insert). Returns the tagged rows and how many delete.
pub fn stage_rows(rows: &[u8], runs: &[RowRun], next_seq: &mut u64) -> (Vec<u8>, u64) {
    let lines = memchr_iter(b'\n', rows).count();
    let mut out = Vec::with_capacity(rows.len() + lines * 16);
    let mut deletes = 0;
    let mut operations = runs
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.operation, r.count as usize));
    let mut number = itoa::Buffer::new();
    let mut start = 0;
    for end in memchr_iter(b'\n', rows) {
        let delete = operations.next() == Some(Operation::Delete);
        deletes += u64::from(delete);
        out.extend_from_slice(&rows[start..end]);
        out.extend_from_slice(if delete { b"\tt\t" } else { b"\tf\t" });
        out.extend_from_slice(number.format(*next_seq).as_bytes());
        out.push(b'\n');
        *next_seq += 1;
        start = end + 1;
    }
    (out, deletes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(columns: &[&str], key: &[u32]) -> Target {
        Target {
            schema: "public".into(),
            table: "Kunden".into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            column_types: columns.iter().map(|_| "text".to_string()).collect(),
            base_types: columns.iter().map(|_| "text".to_string()).collect(),
            key: key.to_vec(),
            key_index: None,
            write_mode: WriteMode::Append,
        }
    }

    #[test]
    fn upsert_updates_every_column_but_the_key() {
        let m = Merge::new(
            &target(&["id", "Name", "note"], &[0]),
            0,
            WriteMode::Upsert,
            8_000_000,
        );
        assert_eq!(
            m.session,
            "SET temp_buffers = '32768kB'; SET work_mem = '32768kB'"
        );
        let big = Merge::new(
            &target(&["id", "Name", "note"], &[0]),
            0,
            WriteMode::Upsert,
            64 << 20,
        );
        assert_eq!(
            big.session,
            "SET temp_buffers = '262144kB'; SET work_mem = '262144kB'"
        );
        assert_eq!(
            m.apply,
            "INSERT INTO \"public\".\"Kunden\" (\"id\", \"Name\", \"note\") OVERRIDING SYSTEM VALUE \
             SELECT \"id\", \"Name\", \"note\" \
             FROM (SELECT DISTINCT ON (\"id\") * FROM pg_temp.pgsink_stage ORDER BY \"id\", \"pgsink seq\" DESC) w \
             WHERE NOT w.\"pgsink delete\" ON CONFLICT (\"id\") DO UPDATE SET \"Name\" = EXCLUDED.\"Name\", \
             \"note\" = EXCLUDED.\"note\""
        );
        assert_eq!(
            m.delete,
            "DELETE FROM \"public\".\"Kunden\" t USING (SELECT DISTINCT \"id\" FROM pg_temp.pgsink_stage \
             WHERE \"pgsink delete\") d WHERE t.\"id\" = d.\"id\""
        );
        assert_eq!(
            m.create,
            "CREATE TEMPORARY TABLE IF NOT EXISTS pgsink_stage (\"id\" text, \"Name\" text, \"note\" text, \
             \"pgsink delete\" boolean, \"pgsink seq\" bigint) ON COMMIT DELETE ROWS"
        );
        assert_eq!(
            m.copy,
            "COPY pg_temp.pgsink_stage (\"id\", \"Name\", \"note\", \"pgsink delete\", \"pgsink seq\") FROM STDIN"
        );
    }

    #[test]
    fn ignore_keeps_the_first_row_after_the_last_delete() {
        let m = Merge::new(
            &target(&["a", "b", "v"], &[1, 0]),
            0,
            WriteMode::Ignore,
            1024,
        );
        assert!(
            m.apply.ends_with("ON CONFLICT (\"b\", \"a\") DO NOTHING"),
            "{}",
            m.apply
        );
        assert!(
            m.apply.contains(
                "NOT EXISTS (SELECT FROM pg_temp.pgsink_stage d WHERE d.\"pgsink delete\" AND \
                 d.\"b\" = s.\"b\" AND d.\"a\" = s.\"a\" AND d.\"pgsink seq\" > s.\"pgsink seq\") \
                 ORDER BY \"b\", \"a\", \"pgsink seq\")"
            ),
            "{}",
            m.apply
        );
        assert!(m
            .delete
            .ends_with("WHERE t.\"b\" = d.\"b\" AND t.\"a\" = d.\"a\""));
    }

    #[test]
    fn a_table_of_key_columns_only_does_nothing_on_conflict() {
        let m = Merge::new(&target(&["a", "b"], &[0, 1]), 0, WriteMode::Upsert, 1024);
        assert!(
            m.apply.ends_with("ON CONFLICT (\"a\", \"b\") DO NOTHING"),
            "{}",
            m.apply
        );
    }

    #[test]
    fn each_table_of_a_sink_has_its_own_staging_table() {
        let m = Merge::new(&target(&["a", "b"], &[0]), 2, WriteMode::Upsert, 1024);
        assert!(m
            .create
            .starts_with("CREATE TEMPORARY TABLE IF NOT EXISTS pgsink_stage_2 ("));
        for statement in [&m.copy, &m.delete, &m.apply, &m.empty] {
            assert!(statement.contains("pg_temp.pgsink_stage_2"), "{statement}");
            assert!(!statement.contains("pg_temp.pgsink_stage "), "{statement}");
        }
    }

    #[test]
    fn staged_rows_carry_their_operation_and_place() {
        let runs = [
            RowRun {
                count: 2,
                table: 0,
                operation: Operation::Upsert,
            },
            RowRun {
                count: 1,
                table: 0,
                operation: Operation::Delete,
            },
            RowRun {
                count: 1,
                table: 0,
                operation: Operation::Insert,
            },
        ];
        let mut seq = 9;
        let (rows, deletes) = stage_rows(b"1\ta\n2\t\\N\n1\t\\N\n3\tc\n", &runs, &mut seq);
        assert_eq!(
            String::from_utf8(rows).unwrap(),
            "1\ta\tf\t9\n2\t\\N\tf\t10\n1\t\\N\tt\t11\n3\tc\tf\t12\n"
        );
        assert_eq!((deletes, seq), (1, 13));
        let (rows, deletes) = stage_rows(b"4\td\n", &[], &mut seq);
        assert_eq!((&rows[..], deletes, seq), (&b"4\td\tf\t13\n"[..], 0, 14));
    }

    /// The merge against PostgreSQL and a model that applies the rows one by one: random
    /// histories over a few keys (inserts, upserts, deletes, repeats, rows already in the
    /// table), in both keyed modes, one flush each. Needs the test PostgreSQL
    /// (`PGSINK_TEST_PG`, default `host=127.0.0.1 port=5432 user=postgres`), which `tests/run`
    /// starts.
    mod against_postgres {
        use std::collections::BTreeMap;

        use bytes::Bytes;
        use futures_util::SinkExt;
        use proptest::prelude::*;

        use super::*;

        /// One row of a history: key, value (None: a delete).
        type Change = (u8, Option<u8>);

        /// `existing`, then `history` applied one by one as `mode` says.
        fn model(
            existing: &BTreeMap<u8, u8>,
            history: &[Change],
            mode: WriteMode,
        ) -> BTreeMap<u8, u8> {
            let mut table = existing.clone();
            for &(k, v) in history {
                match (v, mode) {
                    (None, _) => {
                        table.remove(&k);
                    }
                    (Some(v), WriteMode::Ignore) => {
                        table.entry(k).or_insert(v);
                    }
                    (Some(v), _) => {
                        table.insert(k, v);
                    }
                }
            }
            table
        }

        async fn merged(
            client: &tokio_postgres::Client,
            existing: &BTreeMap<u8, u8>,
            history: &[Change],
            mode: WriteMode,
        ) -> BTreeMap<u8, u8> {
            let target = Target {
                schema: "pg_temp".into(),
                table: "merge_model".into(),
                columns: vec!["k".into(), "v".into()],
                column_types: vec!["integer".into(), "integer".into()],
                base_types: vec!["integer".into(), "integer".into()],
                key: vec![0],
                key_index: None,
                write_mode: mode,
            };
            let merge = Merge::new(&target, 0, mode, 1024);
            let mut rows = String::new();
            let mut runs = Vec::new();
            for &(k, v) in history {
                match v {
                    Some(v) => rows.push_str(&format!("{k}\t{v}\n")),
                    None => rows.push_str(&format!("{k}\t\\N\n")),
                }
                let operation = if v.is_some() {
                    Operation::Upsert
                } else {
                    Operation::Delete
                };
                runs.push(RowRun {
                    count: 1,
                    table: 0,
                    operation,
                });
            }
            let (staged, deletes) = stage_rows(rows.as_bytes(), &runs, &mut 0);
            let existing: Vec<String> = existing
                .iter()
                .map(|(k, v)| format!("({k}, {v})"))
                .collect();
            client
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS pg_temp.merge_model; DROP TABLE IF EXISTS pg_temp.pgsink_stage;
                     CREATE TEMPORARY TABLE merge_model (k integer PRIMARY KEY, v integer);
                     {}; {}; BEGIN",
                    if existing.is_empty() { "SELECT".to_string() } else { format!("INSERT INTO pg_temp.merge_model VALUES {}", existing.join(", ")) },
                    merge.create
                ))
                .await
                .expect("set up");
            let sink = client
                .copy_in::<_, Bytes>(merge.copy.as_str())
                .await
                .expect("COPY");
            futures_util::pin_mut!(sink);
            sink.send(Bytes::from(staged)).await.expect("rows");
            sink.as_mut().finish().await.expect("COPY ends");
            if deletes > 0 {
                client.batch_execute(&merge.delete).await.expect("delete");
            }
            client.batch_execute(&merge.apply).await.expect("apply");
            client.batch_execute("COMMIT").await.expect("commit");
            client
                .query("SELECT k, v FROM pg_temp.merge_model", &[])
                .await
                .expect("read")
                .iter()
                .map(|r| (r.get::<_, i32>(0) as u8, r.get::<_, i32>(1) as u8))
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
            #[test]
            fn merge_applies_a_flush_as_one_by_one(
                existing in proptest::collection::btree_map(0u8..5, 0u8..100, 0..4),
                history in proptest::collection::vec((0u8..5, proptest::option::weighted(0.7, 0u8..100)), 0..25),
            ) {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let conninfo = std::env::var("PGSINK_TEST_PG")
                        .ok()
                        .filter(|s| !s.trim().is_empty())
                        .unwrap_or_else(|| "host=127.0.0.1 port=5432 user=postgres".into());
                    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                        .await
                        .unwrap_or_else(|e| panic!("the test PostgreSQL ({conninfo}; tests/run starts it): {e}"));
                    tokio::spawn(connection);
                    for mode in [WriteMode::Upsert, WriteMode::Ignore] {
                        let got = merged(&client, &existing, &history, mode).await;
                        assert_eq!(got, model(&existing, &history, mode), "{mode}: {existing:?} then {history:?}");
                    }
                });
            }
        }
    }
}
