//! Randomized check against serde_json: random documents, written with random
//! whitespace and random (valid) escapes, and random paths into them. What the
//! converter gives must equal serde_json's value at that path.

use path_parser::PathParser;
use pgsink_guest::testing::convert_value;
use pgsink_guest::{escape_copy_text, Converter, Settings, Table};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Random JSON values, nested a few levels, with short keys so paths hit.
fn json_value() -> impl Strategy<Value = Value> {
    let text = prop::collection::vec(
        prop_oneof![
            4 => prop::char::range('a', 'e'),
            1 => Just('/'),
            1 => prop::char::range('\0', '\u{1f}'),
            1 => prop::sample::select(vec!['"', '\\', ' ', ',', '|', 'é', '€', '😀', '\u{7f}', '\u{2028}']),
            1 => any::<char>(),
        ],
        0..6,
    )
    .prop_map(String::from_iter);
    let number = prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
        (-1000i32..1000).prop_map(|n| Number::from_f64(f64::from(n) / 8.0).unwrap()),
    ]
    // serde_json's default float parser is not exact for every f64; the
    // comparison needs numbers it reads back unchanged.
    .prop_filter("serde_json reads it back", |n| {
        serde_json::from_str::<Number>(&n.to_string()).ok().as_ref() == Some(n)
    });
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number.prop_map(Value::Number),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text.clone(), inner), 0..6)
                .prop_map(|members| Value::Object(Map::from_iter(members))),
        ]
    })
}

/// A tiny deterministic generator for the writer's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

/// Writes `value` as JSON with random whitespace and random valid escapes.
fn write(value: &Value, rng: &mut Rng, out: &mut String) {
    let space = |rng: &mut Rng, out: &mut String| {
        while rng.one_in(3) {
            out.push([' ', '\t', '\n', '\r'][(rng.next() % 4) as usize]);
        }
    };
    space(rng, out);
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&value.to_string()),
        Value::String(s) => write_string(s, rng, out),
        Value::Array(items) => {
            out.push('[');
            space(rng, out);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, rng, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            space(rng, out);
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    space(rng, out);
                }
                write_string(key, rng, out);
                space(rng, out);
                out.push(':');
                write(item, rng, out);
            }
            out.push('}');
        }
    }
    space(rng, out);
}

fn write_string(s: &str, rng: &mut Rng, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        let must = matches!(c, '"' | '\\' | '\0'..='\u{1f}');
        if !must && !rng.one_in(6) {
            out.push(c);
        } else if let (Some(short), true) = (short, rng.one_in(2)) {
            out.push_str(short);
        } else {
            let mut units = [0; 2];
            for unit in c.encode_utf16(&mut units) {
                if rng.one_in(2) {
                    out.push_str(&format!("\\u{unit:04x}"));
                } else {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
        }
    }
    out.push('"');
}

/// A random path into `value` from `picks`: the path text (without its
/// delimiter) and the value there, if any. Returns None for a path that
/// cannot be written (a key with a comma or with every candidate delimiter).
fn pick_path<'v>(value: &'v Value, picks: &[u32]) -> Option<(String, Option<&'v Value>)> {
    let mut steps = Vec::new();
    let mut at = Some(value);
    for &p in picks {
        let Some(here) = at else { break };
        if p % 7 == 0 {
            break;
        }
        match here {
            Value::Object(members) if !members.is_empty() && p % 11 != 1 => {
                let (key, child) = members.iter().nth(p as usize % members.len()).unwrap();
                steps.push(format!("@{key}"));
                at = Some(child);
            }
            Value::Array(items) if !items.is_empty() && p % 11 != 1 => {
                let i = p as usize % items.len();
                steps.push(format!("#{i}"));
                at = Some(&items[i]);
            }
            Value::Array(items) => {
                steps.push(format!("#{}", items.len() + p as usize % 3));
                at = None;
            }
            Value::Object(members) => {
                let key = (0..)
                    .map(|n| format!("missing{n}"))
                    .find(|k| !members.contains_key(k))
                    .unwrap();
                steps.push(format!("@{key}"));
                at = None;
            }
            _ => {
                steps.push(if p % 2 == 0 { "@a".into() } else { "#0".into() });
                at = None;
            }
        }
    }
    let delimiter = ['/', '|', '.', '~', '^', '¦']
        .into_iter()
        .find(|&d| steps.iter().all(|s| !s.contains(d)))?;
    let text = format!("{delimiter}{}", steps.join(&delimiter.to_string()));
    if text.contains(',') || text.trim() != text {
        return None;
    }
    Some((text, at))
}

/// The COPY field expected for `value`; Err when it must fail the message.
fn expected(value: Option<&Value>) -> Result<Option<String>, ()> {
    Ok(match value {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) => {
            let mut out = Vec::new();
            escape_copy_text(s, &mut out).map_err(|_| ())?;
            Some(String::from_utf8(out).unwrap())
        }
        Some(_) => return Ok(Some(String::new())), // compared as JSON below
    })
}

/// Reverses COPY text escaping of one field.
fn unescape_copy(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(match chars.next() {
                Some('t') => '\t',
                Some('n') => '\n',
                Some('r') => '\r',
                Some(other) => other,
                None => panic!("dangling backslash"),
            });
        } else {
            out.push(c);
        }
    }
    out
}

/// True when `json` has no whitespace outside its strings.
fn is_compact(json: &str) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_whitespace() {
            return false;
        }
    }
    true
}

/// Whether serde_json takes `bytes` as one JSON document.
///
/// serde_json rejects numbers beyond f64 (`1e999`) that are valid JSON, and
/// path-parser passes on as text; for those, its grammar-only walk
/// (`IgnoredAny`, which skips number conversion but also the surrogate check)
/// decides. The tests make one edit per document, so the rest of a document
/// with such a number is as the writer wrote it.
fn serde_json_accepts(bytes: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(_) => true,
        Err(e) if e.to_string().starts_with("number out of range") => {
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
        }
        Err(_) => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn selects_what_serde_json_selects(
        value in json_value(),
        seed in any::<u64>(),
        picks in prop::collection::vec(prop::collection::vec(any::<u32>(), 0..6), 1..5),
    ) {
        let mut rng = Rng(seed | 1);
        let mut json = String::new();
        write(&value, &mut rng, &mut json);
        prop_assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), value.clone(), "the writer is valid");

        let chosen: Vec<_> = picks.iter().filter_map(|p| pick_path(&value, p)).collect();
        prop_assume!(!chosen.is_empty());
        let paths: Vec<&str> = chosen.iter().map(|(text, _)| text.as_str()).collect();
        let paths = paths.join(",");
        let columns = vec!["c"; chosen.len()];
        let mut parser = PathParser::configure(
            &Settings::from_iter([("db.json.parse", paths.as_str())]),
            &[Table::named(&columns)],
        ).unwrap();
        let result = convert_value(&mut parser, chosen.len(), None, json.as_bytes());

        let expectations: Result<Vec<_>, ()> = chosen.iter().map(|(_, at)| expected(*at)).collect();
        let Ok(expectations) = expectations else {
            let reason = result.expect_err("a NUL string fails the message");
            prop_assert!(reason.contains("NUL"), "{}", reason);
            return Ok(());
        };
        let row = result.unwrap();
        let row = row.strip_suffix('\n').expect("one row");
        prop_assert!(!row.contains('\n'), "one row only");
        let fields: Vec<&str> = row.split('\t').collect();
        prop_assert_eq!(fields.len(), chosen.len());
        for ((field, expect), (path, at)) in fields.iter().zip(&expectations).zip(&chosen) {
            match (expect, at) {
                (None, _) => prop_assert_eq!(*field, "\\N", "path {}", path),
                (Some(_), Some(at @ (Value::Array(_) | Value::Object(_)))) => {
                    let text = unescape_copy(field);
                    prop_assert!(is_compact(&text), "not compact: {}", text);
                    prop_assert_eq!(&serde_json::from_str::<Value>(&text).unwrap(), *at, "path {}", path);
                }
                (Some(expect), _) => prop_assert_eq!(*field, expect.as_str(), "path {}", path),
            }
        }
    }

    #[test]
    fn mutated_documents_are_accepted_exactly_when_serde_json_accepts_them(
        value in json_value(),
        seed in any::<u64>(),
        at in any::<prop::sample::Index>(),
        byte in prop::sample::select(b"{}[]\":,.-+0123456789eEtfnu\\/ \t\n\x00\x1f\x7f\xc3\xa9\xff".to_vec()),
        edit in 0..3u8,
    ) {
        let mut json = String::new();
        write(&value, &mut Rng(seed | 1), &mut json);
        let mut bytes = json.into_bytes();
        let i = at.index(bytes.len() + 1);
        match edit {
            0 if i < bytes.len() => { bytes.remove(i); }
            1 if i < bytes.len() => bytes[i] = byte,
            _ => bytes.insert(i, byte),
        }
        // A path that selects nothing, so no string is decoded (a decoded NUL
        // would fail a message serde_json accepts).
        let mut parser = PathParser::new("/@never/@selected", 1).unwrap();
        let ours = convert_value(&mut parser, 1, None, &bytes);
        prop_assert_eq!(
            ours.is_ok(),
            serde_json_accepts(&bytes),
            "{:?}: ours {:?}",
            String::from_utf8_lossy(&bytes),
            ours,
        );
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut parser = PathParser::new("/@a,/#0,/", 3).unwrap();
        let _ = convert_value(&mut parser, 3, None, &bytes);
    }

    #[test]
    fn accepts_exactly_what_serde_json_accepts(
        bytes in prop::collection::vec(
            prop::sample::select(b"{}[]\":,0123456789.-+eEtrufalsn \\u/ab".to_vec()),
            0..24,
        )
    ) {
        let mut parser = PathParser::new("/", 1).unwrap();
        let ours = convert_value(&mut parser, 1, None, &bytes);
        prop_assert_eq!(ours.is_ok(), serde_json_accepts(&bytes), "{:?}: ours {:?}", String::from_utf8_lossy(&bytes), ours);
    }
}
