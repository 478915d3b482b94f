//! Reads the hostile-message corpus: `manifest.json` and the message files in `messages/`
//! (see README.md beside this file).
//!
//! Shared by the tests that use the corpus, which include it with
//! `#[path = "…/tests/corpus/corpus.rs"] mod corpus;`: the path-parser's native corpus test
//! (`plugins/path-parser/tests/corpus.rs`) and the end-to-end test
//! (`tests/e2e/hostile_input.rs`). It needs only `serde_json`.
//!
//! The loader is strict, so that a typo in the manifest fails the tests instead of silently
//! testing less: unknown keys, a case with no message or two, a case with no outcome or two,
//! unknown column names, duplicate case names, missing message files and message files that no
//! case uses are all errors.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A column of the corpus table: its name, PostgreSQL type and parse path.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub sql_type: String,
    pub path: String,
}

/// What must happen to a message.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The converter fails the message; the dead letter's reason contains this text.
    ConverterFails(String),
    /// The converter writes one row with these fields (decoded COPY text, `None` for NULL),
    /// one per column.
    Row {
        fields: Vec<Option<String>>,
        /// What PostgreSQL gives back for each column (`column::text`), where it normalizes
        /// the field (numbers, jsonb, booleans); otherwise equal to `fields`.
        db: Vec<Option<String>>,
        /// PostgreSQL rejects the row: the message goes to the dead letters with a reason
        /// starting `PostgreSQL rejected the row` and containing this text.
        db_rejects: Option<String>,
    },
}

impl Expect {
    /// Whether the message ends as a row of the table (not as a dead letter).
    pub fn is_row(&self) -> bool {
        matches!(
            self,
            Expect::Row {
                db_rejects: None,
                ..
            }
        )
    }
}

/// One hostile message and its expected outcome.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub why: String,
    /// The Kafka key (the case name unless the manifest says otherwise).
    pub key: Option<Vec<u8>>,
    /// The Kafka value; `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Built by the test from a `generate` recipe rather than read from a file.
    pub generated: bool,
    pub expect: Expect,
}

/// The whole corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub columns: Vec<Column>,
    pub cases: Vec<Case>,
}

impl Corpus {
    /// `db.columns` of the corpus table.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// `db.json.parse` of the corpus table.
    pub fn parse_paths(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Loads the corpus in `dir` (the `tests/corpus` directory); panics with the reason when the
/// manifest is malformed.
pub fn load(dir: &Path) -> Corpus {
    let manifest = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let root: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", manifest.display()));
    let root = object(&root, "the manifest");
    only_keys(root, &["about", "columns", "cases"], "the manifest");
    let columns: Vec<Column> = array(field(root, "columns", "the manifest"), "columns")
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let what = format!("columns[{i}]");
            let c = object(c, &what);
            only_keys(c, &["name", "type", "path"], &what);
            Column {
                name: string(field(c, "name", &what), &what).to_string(),
                sql_type: string(field(c, "type", &what), &what).to_string(),
                path: string(field(c, "path", &what), &what).to_string(),
            }
        })
        .collect();
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let messages = dir.join("messages");
    let mut used_files = BTreeSet::new();
    let mut case_names = BTreeSet::new();
    let mut cases = Vec::new();
    for (i, c) in array(field(root, "cases", "the manifest"), "cases")
        .iter()
        .enumerate()
    {
        let c = object(c, &format!("cases[{i}]"));
        let name = string(field(c, "name", &format!("cases[{i}]")), "name").to_string();
        let what = format!("case {name}");
        assert!(case_names.insert(name.clone()), "{what}: duplicate name");
        only_keys(
            c,
            &[
                "name",
                "why",
                "key",
                "key_hex",
                "file",
                "generate",
                "value",
                "converter_fails",
                "fields",
                "db",
                "db_rejects",
            ],
            &what,
        );
        let why = string(field(c, "why", &what), &what).to_string();
        let key = match (c.get("key"), c.get("key_hex")) {
            (None, None) => Some(name.clone().into_bytes()),
            (Some(Value::Null), None) => None,
            (Some(Value::String(k)), None) => Some(k.clone().into_bytes()),
            (None, Some(Value::String(hex))) => Some(unhex(hex, &what)),
            _ => panic!("{what}: give at most one of key (a string or null) and key_hex"),
        };
        let sources = ["file", "generate", "value"]
            .iter()
            .filter(|k| c.contains_key(**k))
            .count();
        assert_eq!(
            sources, 1,
            "{what}: give exactly one of file, generate and value (null: a tombstone)"
        );
        let (value, generated) = if let Some(file) = c.get("file") {
            let file = string(file, &what);
            assert!(
                !file.contains('/') && !file.contains('\\'),
                "{what}: file names a file in messages/"
            );
            used_files.insert(file.to_string());
            let path = messages.join(file);
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{what}: cannot read {}: {e}", path.display()));
            (Some(bytes), false)
        } else if let Some(recipe) = c.get("generate") {
            (Some(build(recipe, &what).into_bytes()), true)
        } else {
            assert_eq!(
                c.get("value"),
                Some(&Value::Null),
                "{what}: value may only be null (a tombstone); put messages in files"
            );
            (None, false)
        };
        let expect = match (c.get("converter_fails"), c.get("fields")) {
            (Some(reason), None) => {
                assert!(
                    !c.contains_key("db") && !c.contains_key("db_rejects"),
                    "{what}: db and db_rejects only go with fields"
                );
                Expect::ConverterFails(string(reason, &what).to_string())
            }
            (None, Some(fields)) => {
                let fields = row(fields, &names, &format!("{what}: fields"));
                let mut db = fields.clone();
                if let Some(overrides) = c.get("db") {
                    let overrides = object(overrides, &what);
                    for (column, value) in overrides {
                        let at = column_index(&names, column, &what);
                        db[at] = optional(value, &format!("{what}: db.{column}"));
                    }
                }
                let db_rejects = c.get("db_rejects").map(|r| string(r, &what).to_string());
                assert!(
                    db_rejects.is_none() || !c.contains_key("db"),
                    "{what}: db (values read back) makes no sense with db_rejects"
                );
                Expect::Row {
                    fields,
                    db,
                    db_rejects,
                }
            }
            _ => panic!("{what}: give exactly one of converter_fails and fields"),
        };
        cases.push(Case {
            name,
            why,
            key,
            value,
            generated,
            expect,
        });
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(&messages)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", messages.display()))
        .map(|e| e.expect("directory entry").file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    let unused: Vec<&String> = on_disk.difference(&used_files).collect();
    assert!(
        unused.is_empty(),
        "message files no case of the manifest uses: {unused:?}"
    );
    Corpus { columns, cases }
}

/// The directory of the corpus, from a crate's manifest directory and the relative path to
/// the repository root.
pub fn dir_from(manifest_dir: &str, to_root: &str) -> PathBuf {
    Path::new(manifest_dir)
        .join(to_root)
        .join("tests")
        .join("corpus")
}

/// A row's fields from `{"column": value}`; missing columns are NULL.
fn row(v: &Value, names: &[&str], what: &str) -> Vec<Option<String>> {
    let mut out = vec![None; names.len()];
    for (column, value) in object(v, what) {
        let at = column_index(names, column, what);
        out[at] = optional(value, &format!("{what}.{column}"));
    }
    out
}

fn column_index(names: &[&str], column: &str, what: &str) -> usize {
    names
        .iter()
        .position(|n| *n == column)
        .unwrap_or_else(|| panic!("{what}: no column {column:?} (columns: {names:?})"))
}

/// A value: null, a string, or a recipe (an array of strings and `{"repeat": s, "count": n}`).
fn optional(v: &Value, what: &str) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(_) => Some(build(v, what)),
        _ => panic!("{what}: expected null, a string or a recipe array, got {v}"),
    }
}

/// Builds text from a recipe: an array of strings and `{"repeat": s, "count": n}` parts.
fn build(recipe: &Value, what: &str) -> String {
    let mut out = String::new();
    for part in array(recipe, what) {
        match part {
            Value::String(s) => out.push_str(s),
            Value::Object(o) => {
                only_keys(o, &["repeat", "count"], what);
                let unit = string(field(o, "repeat", what), what);
                let count = field(o, "count", what)
                    .as_u64()
                    .unwrap_or_else(|| panic!("{what}: count must be a whole number"));
                out.push_str(&unit.repeat(count as usize));
            }
            other => panic!("{what}: a recipe part is a string or {{repeat, count}}, got {other}"),
        }
    }
    out
}

fn unhex(hex: &str, what: &str) -> Vec<u8> {
    assert!(
        hex.len().is_multiple_of(2),
        "{what}: key_hex has an odd length"
    );
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16)
                .unwrap_or_else(|_| panic!("{what}: key_hex is not hexadecimal"))
        })
        .collect()
}

fn object<'v>(v: &'v Value, what: &str) -> &'v Map<String, Value> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what}: expected an object, got {v}"))
}

fn array<'v>(v: &'v Value, what: &str) -> &'v Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: expected an array, got {v}"))
}

fn string<'v>(v: &'v Value, what: &str) -> &'v str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

fn field<'v>(o: &'v Map<String, Value>, key: &str, what: &str) -> &'v Value {
    o.get(key)
        .unwrap_or_else(|| panic!("{what}: missing key {key:?}"))
}

fn only_keys(o: &Map<String, Value>, allowed: &[&str], what: &str) {
    for key in o.keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "{what}: unknown key {key:?} (allowed: {allowed:?})"
        );
    }
}

/// A short, printable description of a possibly huge value (for assertion messages).
pub fn preview(value: Option<&str>) -> String {
    match value {
        None => "NULL".into(),
        Some(s) if s.len() <= 120 => format!("{s:?}"),
        Some(s) => {
            let cut = (0..=80).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            format!("{:?}… ({} bytes)", &s[..cut], s.len())
        }
    }
}
