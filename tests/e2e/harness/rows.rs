//! The standard messages (`std_message`) and the rows they must give, and the delivery
//! guarantees checked on a table: exactly once, at least once, and the synchronized invariant
//! (rows and stored offsets agree in every snapshot).

use std::collections::{BTreeMap, BTreeSet};

use super::{ident, Pg, Table};

/// Columns of the standard table.
pub const STD_COLUMNS: [&str; 6] = ["id", "lat", "lon", "ax", "ay", "az"];
/// Parse paths of the standard table, in [`STD_COLUMNS`] order.
pub const STD_PATHS: &str = "/@identity,/@location/@latitude,/@location/@longitude,/@acceleration/#0,/@acceleration/#1,/@acceleration/#2";

/// The fields of message `id`, as the JSON text writes them.
pub struct StdFields {
    pub lat: String,
    pub lon: String,
    pub ax: String,
    pub ay: String,
    pub az: String,
}

pub fn std_fields(id: u64) -> StdFields {
    let ax = ((id % 2000) as f64 - 1000.0) / 100.0;
    StdFields {
        lat: format!("{}.{:07}", 40 + id % 20, id.wrapping_mul(7919) % 10_000_000),
        lon: format!(
            "-{}.{:07}",
            1 + id % 179,
            id.wrapping_mul(104_729) % 10_000_000
        ),
        ax: format!("{ax}"),
        ay: format!("{}.{}", id % 7, id % 10),
        az: format!("{}e-3", id % 997),
    }
}

/// The standard message of `id`, shaped like the original connector's example.
pub fn std_message(id: u64) -> String {
    let f = std_fields(id);
    format!(
        r#"{{"identity":{id},"location":{{"latitude":{},"longitude":{}}},"acceleration":[{},{},{}]}}"#,
        f.lat, f.lon, f.ax, f.ay, f.az
    )
}

/// A row of a standard table as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StdRow {
    pub id: Option<i64>,
    pub lat: Option<String>,
    pub lon: Option<String>,
    pub ax: Option<f64>,
    pub ay: Option<f64>,
    pub az: Option<f64>,
}

impl StdRow {
    /// The row message `id` must give.
    pub fn expected(id: u64) -> StdRow {
        let f = std_fields(id);
        StdRow {
            id: Some(id as i64),
            lat: Some(f.lat),
            lon: Some(f.lon),
            ax: Some(f.ax.parse().expect("ax")),
            ay: Some(f.ay.parse().expect("ay")),
            az: Some(f.az.parse().expect("az")),
        }
    }
}

/// How a table's rows compare with the ids that were produced.
#[derive(Debug, Default)]
pub struct RowReport {
    pub rows: usize,
    pub distinct: usize,
    /// Ids present more than once, with their count (at most 20 listed) and how many there are.
    pub duplicated: Vec<(i64, usize)>,
    pub duplicated_ids: usize,
    pub missing: Vec<u64>,
    pub missing_count: usize,
    pub unexpected: Vec<Option<i64>>,
    pub unexpected_count: usize,
    pub wrong: Vec<String>,
    pub wrong_count: usize,
}

impl RowReport {
    pub fn summary(&self) -> String {
        format!(
            "{} rows, {} distinct ids; {} ids duplicated {:?}; {} ids missing {:?}; {} unexpected rows {:?}; {} wrong rows {:?}",
            self.rows,
            self.distinct,
            self.duplicated_ids,
            self.duplicated,
            self.missing_count,
            self.missing,
            self.unexpected_count,
            self.unexpected,
            self.wrong_count,
            self.wrong
        )
    }
}

/// Compares `rows` with the standard rows of `ids`, field by field.
pub fn check_std_rows(rows: &[StdRow], ids: &BTreeSet<u64>) -> RowReport {
    let mut r = RowReport {
        rows: rows.len(),
        ..RowReport::default()
    };
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for row in rows {
        let Some(id) = row.id.filter(|id| *id >= 0 && ids.contains(&(*id as u64))) else {
            r.unexpected_count += 1;
            if r.unexpected.len() < 20 {
                r.unexpected.push(row.id);
            }
            continue;
        };
        *seen.entry(id).or_default() += 1;
        let want = StdRow::expected(id as u64);
        if *row != want {
            r.wrong_count += 1;
            if r.wrong.len() < 10 {
                r.wrong.push(format!("got {row:?}, expected {want:?}"));
            }
        }
    }
    r.distinct = seen.len();
    for (id, n) in &seen {
        if *n > 1 {
            r.duplicated_ids += 1;
            if r.duplicated.len() < 20 {
                r.duplicated.push((*id, *n));
            }
        }
    }
    for id in ids {
        if !seen.contains_key(&(*id as i64)) {
            r.missing_count += 1;
            if r.missing.len() < 20 {
                r.missing.push(*id);
            }
        }
    }
    r
}

/// Exactly once: every id once, every field right, nothing else.
pub fn assert_exactly_once(pg: &Pg, t: &Table, ids: &BTreeSet<u64>) {
    let r = check_std_rows(&pg.std_rows(t), ids);
    assert!(
        r.rows == ids.len()
            && r.duplicated_ids == 0
            && r.missing_count == 0
            && r.unexpected_count == 0
            && r.wrong_count == 0,
        "{}: expected exactly the {} produced rows: {}",
        t.qualified(),
        ids.len(),
        r.summary()
    );
}

/// At least once: every id present, every field right, nothing else (duplicates allowed).
/// Returns the number of duplicated rows.
pub fn assert_at_least_once(pg: &Pg, t: &Table, ids: &BTreeSet<u64>) -> usize {
    let r = check_std_rows(&pg.std_rows(t), ids);
    assert!(
        r.missing_count == 0 && r.unexpected_count == 0 && r.wrong_count == 0,
        "{}: expected every one of the {} produced ids: {}",
        t.qualified(),
        ids.len(),
        r.summary()
    );
    r.rows - r.distinct
}

/// The synchronized invariant at any moment, even while sinks run: no duplicates, only
/// produced ids with the right fields, and as many rows as the stored offsets account for (all
/// topics start at offset 0 and every message makes one row). The count and the offsets are
/// read by one statement, so in one snapshot. Returns the row count.
pub fn assert_synchronized_consistent(pg: &Pg, t: &Table, ids: &BTreeSet<u64>) -> usize {
    let r = check_std_rows(&pg.std_rows(t), ids);
    assert!(
        r.duplicated_ids == 0 && r.unexpected_count == 0 && r.wrong_count == 0,
        "{}: synchronized table inconsistent: {}",
        t.qualified(),
        r.summary()
    );
    let row = &pg.query(
        &format!(
            "SELECT (SELECT count(*) FROM {}), \
                    (SELECT coalesce(sum(next_offset), 0)::bigint FROM pgsink.offsets \
                      WHERE sink = $1 || '.' || $2), \
                    (SELECT coalesce(string_agg(topic || '[' || partition || ']=' || next_offset, ', ' \
                                     ORDER BY topic, partition), '') \
                       FROM pgsink.offsets WHERE sink = $1 || '.' || $2)",
            t.qualified()
        ),
        &[&t.schema, &t.name],
    )[0];
    let rows: i64 = row.get(0);
    let sum: i64 = row.get(1);
    let offsets: String = row.get(2);
    assert_eq!(
        rows,
        sum,
        "{}: {rows} rows but the stored offsets (same snapshot) account for {sum} messages: {offsets}",
        t.qualified()
    );
    rows as usize
}

/// Compares `pgsink.offsets` of the unnamed sink of a table with the partitions' end offsets.
/// Partitions that got no message may be absent or at 0.
pub fn assert_offsets_at_end(pg: &Pg, t: &Table, ends: &BTreeMap<(String, i32), i64>) {
    assert_sink_offsets_at_end(pg, &t.sink(), ends);
}

/// Compares `pgsink.offsets` of sink `sink` with the partitions' end offsets.
pub fn assert_sink_offsets_at_end(pg: &Pg, sink: &str, ends: &BTreeMap<(String, i32), i64>) {
    let stored = pg.sink_offsets(sink);
    let mut problems = Vec::new();
    for (tp, end) in ends {
        match stored.get(tp) {
            Some(s) if s == end => {}
            other => problems.push(format!("{}[{}]: stored {other:?}, end {end}", tp.0, tp.1)),
        }
    }
    for (tp, s) in &stored {
        if !ends.contains_key(tp) && *s != 0 {
            problems.push(format!(
                "{}[{}]: stored {s} for an empty partition",
                tp.0, tp.1
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "sink {sink}: pgsink.offsets differs from the partitions' end offsets: {}",
        problems.join("; ")
    );
}

/// Loads the standard rows of `ids` into `t` (as another process would), on `pg`'s connection
/// (inside its open transaction, if any).
pub fn copy_std_rows(pg: &Pg, t: &Table, ids: impl IntoIterator<Item = u64>) {
    let columns: Vec<String> = t.columns.iter().map(|c| ident(c)).collect();
    pg.copy_in(
        &format!("COPY {} ({}) FROM STDIN", t.qualified(), columns.join(", ")),
        std_copy_text(ids),
    );
}

/// COPY text of the standard rows of `ids` (columns in [`STD_COLUMNS`] order).
fn std_copy_text(ids: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut text = String::new();
    for id in ids {
        let f = std_fields(id);
        text.push_str(&format!(
            "{id}\t{}\t{}\t{}\t{}\t{}\n",
            f.lat, f.lon, f.ax, f.ay, f.az
        ));
    }
    text.into_bytes()
}
