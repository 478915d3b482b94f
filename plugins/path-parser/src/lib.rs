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
//! | `db.json.parse` | Required. Comma-separated parse paths, one per target column, in column order. |
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
//! This covers: a null value (a tombstone), an empty or whitespace-only value,
//! bytes that are not UTF-8, truncated documents, trailing data or commas,
//! single quotes, leading zeros, `NaN`, unescaped control characters in
//! strings, unknown escapes, lone UTF-16 surrogates, and objects and arrays
//! nested more than 128 deep. The whole document is checked, also past the
//! values the paths select.
//!
//! # Differences from the JustOne connector
//!
//! Whitespace around each path in `db.json.parse` is trimmed; string escapes
//! are decoded; invalid JSON fails the one message instead of the task.

pub mod paths;
pub mod scanner;

use pgsink_guest::{Column, Converter, Message, RowWriter, Settings};

use crate::paths::{parse_paths, PathTree, SETTING};
use crate::scanner::{scan, write_compact, write_string, Selected};

/// The parse-path converter: one row per message, one parse path per column.
#[derive(Debug, Clone)]
pub struct PathParser {
    /// The compiled paths of all columns.
    tree: PathTree,
    /// What each column's path selected in the current message (reused).
    selected: Vec<Selected>,
    /// Buffer for decoding escaped keys (reused).
    scratch: Vec<u8>,
}

impl PathParser {
    /// A converter for these parse paths (the `db.json.parse` syntax) and
    /// this many target columns.
    pub fn new(parse: &str, columns: usize) -> Result<Self, String> {
        let paths = parse_paths(parse)?;
        if paths.len() != columns {
            return Err(format!(
                "{SETTING} has {} but db.columns lists {}",
                plural(paths.len(), "parse path"),
                plural(columns, "column"),
            ));
        }
        let tree = PathTree::compile(&paths);
        Ok(PathParser {
            selected: vec![Selected::Null; tree.columns],
            tree,
            scratch: Vec::new(),
        })
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl Converter for PathParser {
    fn configure(settings: &Settings, columns: &[Column]) -> Result<Self, String> {
        PathParser::new(settings.require(SETTING)?, columns.len())
    }

    fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
        let value = message.value.ok_or(
            "the message has no value (a tombstone), so there is no JSON document to parse",
        )?;
        if value.is_empty() {
            return Err("the message value is empty, so there is no JSON document to parse".into());
        }
        let json = std::str::from_utf8(value).map_err(|e| {
            format!(
                "the message value is not valid UTF-8 at byte {}",
                e.valid_up_to()
            )
        })?;
        scan(value, &self.tree, &mut self.selected, &mut self.scratch)
            .map_err(|e| e.to_string())?;

        let mut row = rows.row();
        for selected in &self.selected {
            match *selected {
                Selected::Null => {
                    row.push_null();
                }
                Selected::Scalar { start, end } => {
                    row.push_str(&json[start..end]);
                }
                Selected::String {
                    start,
                    end,
                    escaped,
                } => {
                    let mut field = row.field();
                    write_string(&json[start..end], escaped, |piece| field.push_str(piece));
                }
                Selected::Composite { start, end } => {
                    let mut field = row.field();
                    write_compact(&json[start..end], |piece| field.push_str(piece));
                }
            }
        }
        Ok(())
    }
}

pgsink_guest::export_converter!(PathParser);
