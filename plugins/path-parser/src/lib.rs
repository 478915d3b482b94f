//! The bundled pgsink converter: JSON **parse paths**, as in the 2016 JustOne
//! `kafka-sink-pg-json` connector.
//!
//! Every Kafka message value is a JSON document. Each target column has a
//! parse path that picks one value out of the document; the message becomes
//! exactly one row.
//!
//! # Configuration
//!
//! | setting         | meaning |
//! |-----------------|---------|
//! | `db.json.parse` | Required. Comma-separated parse paths, one per target column, in column order; an entry starting with `#` takes the key or Kafka metadata instead ([`columns`]). |
//! | `db.json.cast` | `column:cast` pairs: `epoch-s`/`-ms`/`-us`/`-ns` → `timestamptz`, `array` → a PostgreSQL array literal, `base64` → `bytea`, `numeric` ([`casts`]). |
//! | `db.json.envelope` | `none` (default), `debezium` (change events: upserts of `after`, deletes by `before`), `connect` (`{schema, payload}`). |
//! | `db.json.tombstone` | `skip`, `delete` (by the `#key` columns) or `fail`; default `skip` with `debezium`, `fail` otherwise. |
//!
//! The number of paths must equal the number of target columns; path 1 feeds
//! the first column, path 2 the second, and so on. Whitespace around each
//! path is ignored, so `/@id, /@name` works. Two columns may use the same path.
//!
//! # Parse paths
//!
//! A path is a list of steps. Its **first character is the delimiter** that
//! separates the steps: usually `/`, but any character other than `@`, `#`,
//! `,` or whitespace, so it can be chosen to avoid a character used in keys.
//!
//! * `@key` selects the member of an object with this key. The key is taken
//!   exactly (case and inner spaces matter); `@` alone selects the empty key.
//!   Keys in the message are compared after decoding their escapes, so `@é`
//!   matches `"\u00e9"`.
//! * `#index` selects the element of an array at this 0-based index
//!   (decimal digits only: `#0`, `#12`).
//! * A path that is only the delimiter, such as `/`, selects the whole document.
//!
//! With the message
//!
//! ```json
//! {"identity":71293145,"location":{"latitude":51.5009449,"longitude":-2.4773414},"acceleration":[0.01,0.0,0.0]}
//! ```
//!
//! | path                    | value |
//! |-------------------------|-------|
//! | `/@identity`            | `71293145` |
//! | `/@location/@longitude` | `-2.4773414` |
//! | `/@acceleration/#0`     | `0.01` |
//! | `/@location`            | `{"latitude":51.5009449,"longitude":-2.4773414}` |
//! | `/@foo/@bar`            | NULL |
//! | `\|@a/b\|#0`            | element 0 of the member `"a/b"` |
//!
//! Because paths are separated by commas, a key containing a comma cannot be
//! selected, and a path cannot end with a key that ends with whitespace.
//!
//! # What a column receives
//!
//! * **Nothing at the path** gives NULL: a missing key, an index past the end,
//!   `@key` on an array, `#index` on an object, or a step below a string,
//!   number, boolean or null. A message that none of the paths reach gives a
//!   row of NULLs.
//! * **`null`** gives NULL.
//! * **A string** gives its text without the quotes, with every JSON escape
//!   decoded (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\uXXXX`
//!   including surrogate pairs). A string containing `\u0000` fails the
//!   message: PostgreSQL text cannot store NUL.
//! * **A number** gives its text exactly as written in the message (`1.5E+300`,
//!   `-0.0`, a 30-digit integer): nothing is rounded or reformatted.
//! * **`true` / `false`** give `true` / `false`.
//! * **An object or an array** gives compact JSON: the whitespace between
//!   tokens is removed, strings inside are kept exactly as written (escapes
//!   not decoded), so the text is valid JSON for a `json`/`jsonb` column.
//! * **A duplicate key** in an object: the **last** occurrence wins, as in
//!   PostgreSQL's `jsonb`.
//!
//! The pgsink COPY writer then escapes tabs, newlines, carriage returns and
//! backslashes for PostgreSQL, so any text arrives intact.
//!
//! # Messages that fail
//!
//! The whole message must be one valid JSON document (RFC 8259), with only
//! whitespace around it; its top-level value may be of any type. Otherwise
//! the message fails and goes to the dead-letter table with the reason, for
//! example `invalid JSON at byte 17: expected ',' or '}'` (bytes count from 0).
//! This covers: a null value (a tombstone, unless `db.json.tombstone` says
//! otherwise), an empty or whitespace-only value,
//! bytes that are not UTF-8, truncated documents, trailing data or commas,
//! single quotes, leading zeros, `NaN`, unescaped control characters in
//! strings, unknown escapes, lone UTF-16 surrogates, and objects and arrays
//! nested more than 128 deep. The whole document is checked, also past the
//! values the paths select.
//!
//! With only key and metadata columns and no envelope, the value is not read at all.
//!
//! # Differences from the JustOne connector
//!
//! Whitespace around each path in `db.json.parse` is trimmed; string escapes
//! are decoded; invalid JSON fails the one message instead of the task. Keys,
//! metadata, casts, envelopes and tombstone policies are pgsink's additions;
//! none of them changes what a seed path means.

pub mod casts;
pub mod columns;
pub mod paths;
pub mod scanner;

use pgsink_guest::{Message, Operation, Row, RowWriter, Settings, Table};

use crate::casts::{write_timestamp_millis, Cast};
use crate::columns::{plan, ColumnPlan, Source, CAST_SETTING};
use crate::paths::{ParsePath, PathTree, Step, SETTING};
use crate::scanner::{scan, write_compact, write_string, Selected, SyntaxError};

/// The setting that names the envelope around each value.
pub const ENVELOPE_SETTING: &str = "db.json.envelope";
/// The setting that says what a tombstone (a null value) does.
pub const TOMBSTONE_SETTING: &str = "db.json.tombstone";

/// The wrapping around the row in each message value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// The value is the row's document.
    None,
    /// A Debezium change event: `op` says what happened, `after` (or `before` for a delete)
    /// is the row; optionally inside Kafka Connect's `{schema, payload}`.
    Debezium,
    /// Kafka Connect's JSON with schemas: `{schema, payload}`, the row in `payload`.
    Connect,
}

/// What a tombstone (a message with a null value) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tombstone {
    /// Nothing: the message is consumed and makes no row.
    Skip,
    /// A delete row keyed by the `#key` columns (the other columns NULL).
    Delete,
    /// The message fails and goes to the dead-letter table.
    Fail,
}

/// Where a column's value is found while a message is converted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// The n-th value path.
    Value(usize),
    /// The n-th key path.
    Key(usize),
    /// The n-th envelope path.
    Envelope(usize),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Header(String),
}

/// Paths compiled over one document and what they selected in the last one scanned.
#[derive(Debug, Clone)]
struct Scan {
    tree: PathTree,
    selected: Vec<Selected>,
}

impl Scan {
    fn new(paths: &[ParsePath]) -> Scan {
        let tree = PathTree::compile(paths);
        Scan {
            selected: vec![Selected::Null; tree.columns],
            tree,
        }
    }

    fn run(&mut self, json: &[u8], scratch: &mut Vec<u8>) -> Result<(), SyntaxError> {
        scan(json, &self.tree, &mut self.selected, scratch)
    }
}

/// `paths`, each below the keys of `prefix`.
fn below(prefix: &[&str], paths: &[ParsePath]) -> Vec<ParsePath> {
    paths
        .iter()
        .map(|path| ParsePath {
            steps: prefix
                .iter()
                .map(|key| Step::Key(key.to_string()))
                .chain(path.steps.iter().cloned())
                .collect(),
        })
        .collect()
}

fn path(keys: &[&str]) -> ParsePath {
    below(keys, &[ParsePath { steps: Vec::new() }]).remove(0)
}

/// Where the parts of an envelope are in the value scan: its locators come first, then the
/// value paths below each place a row image can be, then the envelope paths.
mod layout {
    /// Debezium: `payload.op`, `op`, `payload.after`, `after`; then the value paths below
    /// `payload.after`, `payload.before`, `after`, `before`; then the envelope paths below
    /// `payload` and at the top.
    pub const DEBEZIUM_LOCATORS: usize = 4;
    /// Kafka Connect: `payload`, then the value paths below it.
    pub const CONNECT_LOCATORS: usize = 1;
    /// Keys under an envelope: `schema`, `payload`, then the key paths below `payload` and at
    /// the top.
    pub const KEY_LOCATORS: usize = 2;
}

/// The parse-path converter: per table, one row per message (none for a skipped tombstone),
/// one source per column.
#[derive(Debug, Clone)]
pub struct PathParser {
    /// Per table of the sink, in its order: its parser, and the topics whose messages fill it
    /// (empty: every topic).
    tables: Vec<(TableParser, Vec<String>)>,
}

/// The rows of one table.
#[derive(Debug, Clone)]
struct TableParser {
    /// The table's index among the sink's tables.
    table: usize,
    slots: Vec<Slot>,
    casts: Vec<Option<Cast>>,
    envelope: Envelope,
    tombstone: Tombstone,
    values: usize,
    keys: usize,
    envelopes: usize,
    /// Whether every key path selects the whole key (then a key that is not JSON is text).
    whole_keys_only: bool,
    /// Only value paths, no casts, no envelope: the seed connector's case, on its own short
    /// path (it is what most sinks run, and the bench holds it to its speed before keys,
    /// metadata and envelopes existed).
    plain: bool,
    value: Scan,
    key: Scan,
    /// Buffer for decoding escaped keys (reused).
    scratch: Vec<u8>,
}

impl PathParser {
    /// A converter for these parse paths (the `db.json.parse` syntax) and
    /// this many target columns, without envelope or casts.
    pub fn new(parse: &str, columns: usize) -> Result<Self, String> {
        let names: Vec<String> = (0..columns).map(|c| format!("column {}", c + 1)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let table = Table::named(&names);
        let settings = Settings::from_iter([(SETTING, parse)]);
        <Self as pgsink_guest::Converter>::configure(&settings, &[table])
    }
}

/// The settings of the table `name`: `db.json.parse` and `db.json.cast` replaced by its own
/// (`table.NAME.json.parse`, `table.NAME.json.cast`) where it has them; and its topics
/// (`table.NAME.topics`, comma-separated; none: every topic).
fn table_settings(settings: &Settings, name: &str) -> (Settings, Vec<String>) {
    let own = |key: &str| {
        let field = key.strip_prefix("db.").unwrap_or(key);
        settings.get(&format!("table.{name}.{field}"))
    };
    let mut entries: Vec<(String, String)> = Vec::new();
    for (key, value) in settings.iter() {
        if key.starts_with("table.") {
            continue;
        }
        let value = match key {
            SETTING | CAST_SETTING => own(key).unwrap_or(value),
            _ => value,
        };
        entries.push((key.to_string(), value.to_string()));
    }
    for key in [SETTING, CAST_SETTING] {
        if let (None, Some(value)) = (settings.get(key), own(key)) {
            entries.push((key.to_string(), value.to_string()));
        }
    }
    let topics = settings
        .get(&format!("table.{name}.topics"))
        .map(|list| list.split(',').map(|t| t.trim().to_string()).collect())
        .unwrap_or_default();
    (Settings::new(entries), topics)
}

impl TableParser {
    /// A converter for `table` configured by `settings`.
    fn with_settings(settings: &Settings, table: &Table) -> Result<Self, String> {
        let envelope = match settings.get(ENVELOPE_SETTING).map(str::trim) {
            None | Some("none") => Envelope::None,
            Some("debezium") => Envelope::Debezium,
            Some("connect") => Envelope::Connect,
            Some(other) => {
                return Err(format!(
                    "{ENVELOPE_SETTING} must be none, debezium or connect, not {other:?}"
                ))
            }
        };
        let tombstone = match settings.get(TOMBSTONE_SETTING).map(str::trim) {
            None if envelope == Envelope::Debezium => Tombstone::Skip,
            None => Tombstone::Fail,
            Some("skip") => Tombstone::Skip,
            Some("delete") => Tombstone::Delete,
            Some("fail") => Tombstone::Fail,
            Some(other) => {
                return Err(format!(
                    "{TOMBSTONE_SETTING} must be skip, delete or fail, not {other:?}"
                ))
            }
        };
        let plan = plan(
            settings.require(SETTING)?,
            settings.get(CAST_SETTING),
            &table.columns,
        )?;
        let mut groups: [Vec<ParsePath>; 3] = Default::default();
        let mut slots = Vec::with_capacity(plan.len());
        for ColumnPlan { source, .. } in &plan {
            let mut grouped = |group: usize, path: &ParsePath, slot: fn(usize) -> Slot| {
                groups[group].push(path.clone());
                slot(groups[group].len() - 1)
            };
            slots.push(match source {
                Source::Value(p) => grouped(0, p, Slot::Value),
                Source::Key(p) => grouped(1, p, Slot::Key),
                Source::Envelope(p) => grouped(2, p, Slot::Envelope),
                Source::Topic => Slot::Topic,
                Source::Partition => Slot::Partition,
                Source::Offset => Slot::Offset,
                Source::Timestamp => Slot::Timestamp,
                Source::Header(name) => Slot::Header(name.clone()),
            });
        }
        let [values, keys, envelopes] = groups;
        if !envelopes.is_empty() && envelope != Envelope::Debezium {
            return Err(format!(
                "{SETTING}: #envelope paths read a Debezium change event: set {ENVELOPE_SETTING} = \"debezium\""
            ));
        }
        if tombstone == Tombstone::Delete && keys.is_empty() {
            return Err(format!(
                "{TOMBSTONE_SETTING} = \"delete\" deletes by the key: give the key columns #key paths in {SETTING}"
            ));
        }
        let value_paths = match envelope {
            Envelope::None => values.clone(),
            Envelope::Connect => [vec![path(&["payload"])], below(&["payload"], &values)].concat(),
            Envelope::Debezium => [
                vec![
                    path(&["payload", "op"]),
                    path(&["op"]),
                    path(&["payload", "after"]),
                    path(&["after"]),
                ],
                below(&["payload", "after"], &values),
                below(&["payload", "before"], &values),
                below(&["after"], &values),
                below(&["before"], &values),
                below(&["payload"], &envelopes),
                envelopes.clone(),
            ]
            .concat(),
        };
        let key_paths = match envelope {
            Envelope::None => keys.clone(),
            _ => [
                vec![path(&["schema"]), path(&["payload"])],
                below(&["payload"], &keys),
                keys.clone(),
            ]
            .concat(),
        };
        Ok(TableParser {
            table: 0,
            slots,
            casts: plan.iter().map(|c| c.cast).collect(),
            envelope,
            tombstone,
            values: values.len(),
            keys: keys.len(),
            envelopes: envelopes.len(),
            whole_keys_only: keys.iter().all(|k| k.steps.is_empty()),
            plain: envelope == Envelope::None
                && plan
                    .iter()
                    .all(|c| c.cast.is_none() && matches!(c.source, Source::Value(_))),
            value: Scan::new(&value_paths),
            key: Scan::new(&key_paths),
            scratch: Vec::new(),
        })
    }
}

/// Where the value columns and the envelope columns of this message are in the value scan.
#[derive(Debug, Clone, Copy)]
struct Image {
    /// Index of the first value path's selection; `None`: the value columns are NULL.
    values: Option<usize>,
    /// Index of the first envelope path's selection.
    envelope: Option<usize>,
}

impl pgsink_guest::Converter for PathParser {
    fn configure(settings: &Settings, tables: &[Table]) -> Result<Self, String> {
        if let [table] = tables {
            let (settings, topics) = table_settings(settings, &table.name);
            let parser = TableParser::with_settings(&settings, table)?;
            return Ok(PathParser {
                tables: vec![(parser, topics)],
            });
        }
        let mut parsers = Vec::with_capacity(tables.len());
        for (index, table) in tables.iter().enumerate() {
            let (settings, topics) = table_settings(settings, &table.name);
            let mut parser = TableParser::with_settings(&settings, table)
                .map_err(|e| format!("table {}: {e}", table.name))?;
            parser.table = index;
            parsers.push((parser, topics));
        }
        Ok(PathParser { tables: parsers })
    }

    /// One row per table that takes the message's topic, in table order.
    fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
        for (parser, topics) in &mut self.tables {
            if topics.is_empty() || topics.iter().any(|t| t == message.topic) {
                parser.convert(message, rows)?;
            }
        }
        Ok(())
    }
}

impl TableParser {
    /// The row of `message` for this table, if any.
    fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
        let Some(value) = message.value else {
            return match self.tombstone {
                Tombstone::Skip => Ok(()),
                Tombstone::Fail => Err(
                    "the message has no value (a tombstone), so there is no JSON document to parse"
                        .into(),
                ),
                Tombstone::Delete => {
                    let absent = Image {
                        values: None,
                        envelope: None,
                    };
                    self.write_row(message, "", absent, Operation::Delete, rows)
                }
            };
        };
        if self.plain {
            return self.convert_plain(value, rows);
        }
        let needs_value = self.values > 0 || self.envelope != Envelope::None;
        let json = if needs_value {
            self.scan_value(value)?
        } else {
            ""
        };
        let (image, operation) = self.locate(json)?;
        self.write_row(message, json, image, operation, rows)
    }
}

impl TableParser {
    /// Scans the message value with the value paths; the value as text.
    fn scan_value<'v>(&mut self, value: &'v [u8]) -> Result<&'v str, String> {
        if value.is_empty() {
            return Err("the message value is empty, so there is no JSON document to parse".into());
        }
        let json = std::str::from_utf8(value).map_err(|e| {
            format!(
                "the message value is not valid UTF-8 at byte {}",
                e.valid_up_to()
            )
        })?;
        self.value
            .run(value, &mut self.scratch)
            .map_err(|e| e.to_string())?;
        Ok(json)
    }

    /// One row of the value paths over `value`, in column order.
    fn convert_plain(&mut self, value: &[u8], rows: &mut RowWriter<'_>) -> Result<(), String> {
        let json = self.scan_value(value)?;
        let mut row = rows.row_for(self.table, Operation::Insert);
        for selected in &self.value.selected {
            write_selected(&mut row, json, *selected, None)?;
        }
        Ok(())
    }

    /// Where this message's row is in the value scan, and what it asks of the table.
    fn locate(&self, json: &str) -> Result<(Image, Operation), String> {
        let selected = &self.value.selected;
        let values = self.values;
        // A sink that deletes by key on tombstones mirrors the topic by key: the other
        // messages are the rows as they should be.
        let plain_op = match self.tombstone {
            Tombstone::Delete => Operation::Upsert,
            _ => Operation::Insert,
        };
        match self.envelope {
            Envelope::None => Ok((
                Image {
                    values: Some(0),
                    envelope: None,
                },
                plain_op,
            )),
            Envelope::Connect => match selected[0] {
                Selected::Null => Err("the value is not a Kafka Connect {\"schema\", \"payload\"} envelope: it has no payload (is db.json.envelope right?)".into()),
                _ => Ok((
                    Image {
                        values: Some(layout::CONNECT_LOCATORS),
                        envelope: None,
                    },
                    plain_op,
                )),
            },
            Envelope::Debezium => {
                let wrapped = matches!(selected[0], Selected::String { .. });
                let base = layout::DEBEZIUM_LOCATORS + if wrapped { 0 } else { 2 * values };
                let envelope = Some(
                    layout::DEBEZIUM_LOCATORS + 4 * values + if wrapped { 0 } else { self.envelopes },
                );
                let op: std::borrow::Cow<'_, str> = match selected[usize::from(!wrapped)] {
                    Selected::String { start, end, escaped: false } => json[start..end].into(),
                    Selected::String { start, end, escaped: true } => {
                        let mut decoded = String::new();
                        write_string(&json[start..end], true, |piece| decoded.push_str(piece));
                        decoded.into()
                    }
                    _ => return Err("the value is not a Debezium change event: it has no op (is db.json.envelope right?)".into()),
                };
                let after = selected[2 + usize::from(!wrapped)];
                let letter = match op.as_bytes() {
                    [letter] => *letter,
                    _ => 0,
                };
                Ok(match letter {
                    b'c' | b'r' | b'u' => {
                        let object = matches!(after, Selected::Composite { start, .. } if json.as_bytes()[start] == b'{');
                        if !object {
                            return Err("the Debezium change event has no after image (its op says the row exists)".into());
                        }
                        (Image { values: Some(base), envelope }, Operation::Upsert)
                    }
                    b'd' => (Image { values: Some(base + values), envelope }, Operation::Delete),
                    b't' => return Err("the Debezium event is a truncate (op t): pgsink does not truncate tables".into()),
                    b'm' => return Err("the Debezium event is a logical decoding message (op m): it holds no row".into()),
                    _ => return Err("the value is not a Debezium change event: its op is not one of c, r, u, d".into()),
                })
            }
        }
    }

    /// Writes the row of `message`: value columns from `json` at `image`, key columns from
    /// the key, metadata from the message.
    fn write_row(
        &mut self,
        message: &Message<'_>,
        json: &str,
        image: Image,
        operation: Operation,
        rows: &mut RowWriter<'_>,
    ) -> Result<(), String> {
        let key = self.scan_key(message.key)?;
        let mut row = rows.row_for(self.table, operation);
        for (slot, cast) in self.slots.iter().zip(&self.casts) {
            let (doc, selected) = match *slot {
                Slot::Value(i) => match image.values {
                    Some(base) => (json, self.value.selected[base + i]),
                    None => (json, Selected::Null),
                },
                Slot::Envelope(i) => match image.envelope {
                    Some(base) => (json, self.value.selected[base + i]),
                    None => (json, Selected::Null),
                },
                Slot::Key(i) => match key {
                    KeyDoc::Absent => ("", Selected::Null),
                    KeyDoc::Json { text, base } => (text, self.key.selected[base + i]),
                    // A key that is not JSON is read as a string would be: a cast reads it too.
                    KeyDoc::Text(text) => (
                        text,
                        Selected::String {
                            start: 0,
                            end: text.len(),
                            escaped: false,
                        },
                    ),
                },
                Slot::Topic => {
                    row.push_str(message.topic);
                    continue;
                }
                Slot::Partition => {
                    row.push_display(message.partition);
                    continue;
                }
                Slot::Offset => {
                    row.push_display(message.offset);
                    continue;
                }
                Slot::Timestamp => {
                    match message.timestamp {
                        Some(millis) => {
                            let mut field = row.field();
                            write_timestamp_millis(millis, &mut |piece| field.push_str(piece));
                        }
                        None => {
                            row.push_null();
                        }
                    }
                    continue;
                }
                Slot::Header(ref name) => {
                    let text = match message.header(name).flatten() {
                        Some(bytes) => Some(std::str::from_utf8(bytes).map_err(|e| {
                            format!(
                                "the header {name:?} is not valid UTF-8 at byte {}",
                                e.valid_up_to()
                            )
                        })?),
                        None => None,
                    };
                    row.push_opt(text);
                    continue;
                }
            };
            write_selected(&mut row, doc, selected, *cast)?;
        }
        Ok(())
    }

    /// Scans the message key, when key columns need it.
    fn scan_key<'k>(&mut self, key: Option<&'k [u8]>) -> Result<KeyDoc<'k>, String> {
        let Some(key) = key.filter(|_| self.keys > 0) else {
            return Ok(KeyDoc::Absent);
        };
        let text = std::str::from_utf8(key).map_err(|e| {
            format!(
                "the message key is not valid UTF-8 at byte {}",
                e.valid_up_to()
            )
        })?;
        match self.key.run(key, &mut self.scratch) {
            Ok(()) => {}
            Err(_) if self.whole_keys_only => return Ok(KeyDoc::Text(text)),
            Err(error) => {
                return Err(format!(
                    "the message key is not JSON ({error}), so #key paths cannot select in it"
                ))
            }
        }
        let base = match self.envelope {
            Envelope::None => 0,
            _ => {
                let selected = &self.key.selected;
                let wrapped = matches!(selected[0], Selected::Composite { .. })
                    && selected[1] != Selected::Null;
                layout::KEY_LOCATORS + if wrapped { 0 } else { self.keys }
            }
        };
        Ok(KeyDoc::Json { text, base })
    }
}

/// The message key as the key columns see it.
#[derive(Debug, Clone, Copy)]
enum KeyDoc<'k> {
    /// No key (or no key columns): NULL.
    Absent,
    /// A JSON key, scanned; the key paths' selections start at `base`.
    Json { text: &'k str, base: usize },
    /// A key that is not JSON, taken as text (only whole-key columns).
    Text(&'k str),
}

/// Writes what a path selected in `doc` as one field, cast if asked.
fn write_selected(
    row: &mut Row<'_, '_>,
    doc: &str,
    selected: Selected,
    cast: Option<Cast>,
) -> Result<(), String> {
    match (selected, cast) {
        (Selected::Null, _) => {
            row.push_null();
        }
        (selected, Some(cast)) => {
            let mut field = row.field();
            casts::apply(cast, doc, selected, &mut |piece| field.push_str(piece))?;
        }
        (Selected::Scalar { start, end }, None) => {
            row.push_str(&doc[start..end]);
        }
        (
            Selected::String {
                start,
                end,
                escaped,
            },
            None,
        ) => {
            let mut field = row.field();
            write_string(&doc[start..end], escaped, |piece| field.push_str(piece));
        }
        (Selected::Composite { start, end }, None) => {
            let mut field = row.field();
            write_compact(&doc[start..end], |piece| field.push_str(piece));
        }
    }
    Ok(())
}

pgsink_guest::export_converter!(PathParser);
