//! Hostile input for the parse-path converter, natively: the corpus of `tests/corpus` (the
//! same manifest the end-to-end test `tests/e2e/hostile_input.rs` loads through a running
//! sink), mutations of it, and the parse-path syntax itself.

use path_parser::paths::{parse_paths, ParsePath, PathTree, Step};
use path_parser::PathParser;
use pgsink_guest::testing::convert_messages;
use pgsink_guest::{Converter, Message, Outcome, Settings, Table};
use proptest::prelude::*;
use serde_json::Value;

#[path = "../../../tests/corpus/copy_text.rs"]
mod copy_text;
#[path = "../../../tests/corpus/corpus.rs"]
mod corpus;

use corpus::{preview, Corpus, Expect};

fn load() -> Corpus {
    corpus::load(&corpus::dir_from(env!("CARGO_MANIFEST_DIR"), "../.."))
}

/// The converter the corpus table uses.
fn corpus_parser(corpus: &Corpus) -> PathParser {
    let names = corpus.column_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let paths = corpus.parse_paths();
    let settings = Settings::from_iter([("db.json.parse", paths.as_str())]);
    PathParser::configure(&settings, &[Table::named(&names)]).expect("the corpus paths are valid")
}

/// Converts one message; the outcome and the COPY text it left.
fn convert(
    parser: &mut PathParser,
    columns: usize,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> (Outcome, Vec<u8>) {
    let message = Message {
        key,
        value,
        ..Message::from_value(b"")
    };
    let out = convert_messages(parser, columns, &[message]);
    assert_eq!(out.outcomes.len(), 1, "one outcome per message");
    (out.outcomes.into_iter().next().unwrap(), out.copy_text)
}

/// Whether serde_json takes `bytes` as one JSON document: `Some(accepted)`, or `None` where
/// serde_json cannot tell (its own nesting limit of 128, below path-parser's). Numbers beyond
/// f64 are valid JSON that serde_json refuses to convert; its grammar-only walk decides those.
fn serde_json_accepts(bytes: &[u8]) -> Option<bool> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(_) => Some(true),
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => None,
        Err(e) if e.to_string().starts_with("number out of range") => {
            Some(serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok())
        }
        Err(_) => Some(false),
    }
}

/// Every corpus case, converted natively, gives exactly what the manifest says: the failure
/// reason, or one row whose COPY text decodes (as PostgreSQL decodes it) to exactly the
/// manifest's fields. Where the converter calls a message invalid JSON or not UTF-8, serde_json
/// refuses it too, and every message that becomes a row is one serde_json accepts.
#[test]
fn corpus_cases_convert_as_the_manifest_says() {
    let corpus = load();
    assert!(
        corpus.cases.len() >= 100,
        "the corpus lost cases: {}",
        corpus.cases.len()
    );
    let mut parser = corpus_parser(&corpus);
    let columns = corpus.columns.len();
    let mut problems = Vec::new();
    for case in &corpus.cases {
        let (outcome, text) = convert(
            &mut parser,
            columns,
            case.key.as_deref(),
            case.value.as_deref(),
        );
        match (&case.expect, &outcome) {
            (Expect::ConverterFails(expected), Outcome::Failed(reason)) => {
                if !reason.contains(expected.as_str()) {
                    problems.push(format!(
                        "{}: reason {reason:?}, expected it to contain {expected:?}",
                        case.name
                    ));
                }
                if !text.is_empty() {
                    problems.push(format!("{}: a failed message left COPY text", case.name));
                }
            }
            (Expect::Row { fields, .. }, Outcome::Rows(1)) => match copy_text::decode(&text) {
                Ok(rows) if rows.len() == 1 && rows[0] == *fields => {}
                Ok(rows) => problems.push(format!(
                    "{}: got {}, expected [{}]",
                    case.name,
                    rows.iter()
                        .map(|r| format!(
                            "[{}]",
                            r.iter()
                                .map(|f| preview(f.as_deref()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                        .collect::<Vec<_>>()
                        .join(" "),
                    fields
                        .iter()
                        .map(|f| preview(f.as_deref()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                Err(e) => {
                    problems.push(format!("{}: the COPY text does not decode: {e}", case.name))
                }
            },
            (expected, got) => problems.push(format!(
                "{}: expected {}, got {got:?}",
                case.name,
                match expected {
                    Expect::ConverterFails(r) => format!("a failure with {r:?}"),
                    Expect::Row { .. } => "one row".into(),
                }
            )),
        }
        if let Some(value) = &case.value {
            let syntax_error = matches!(&outcome, Outcome::Failed(r)
                if r.starts_with("invalid JSON") || r.contains("not valid UTF-8") || r.contains("is empty"));
            let rows = matches!(outcome, Outcome::Rows(_));
            match serde_json_accepts(value) {
                Some(true) if syntax_error => problems.push(format!(
                    "{}: serde_json accepts what the converter calls invalid",
                    case.name
                )),
                Some(false) if rows => problems.push(format!(
                    "{}: serde_json refuses what the converter loads",
                    case.name
                )),
                _ => {}
            }
        }
    }
    let rows = corpus.cases.iter().filter(|c| c.expect.is_row()).count();
    eprintln!(
        "{} corpus cases: {} rows, {} dead letters ({} by the converter)",
        corpus.cases.len(),
        rows,
        corpus.cases.len() - rows,
        corpus
            .cases
            .iter()
            .filter(|c| matches!(c.expect, Expect::ConverterFails(_)))
            .count()
    );
    assert!(
        problems.is_empty(),
        "{} corpus case(s) differ from the manifest:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// One edit of a message.
#[derive(Debug, Clone)]
enum Edit {
    Insert(prop::sample::Index, u8),
    Replace(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Truncate(prop::sample::Index),
    /// Copies a piece of another corpus message in.
    Splice(
        prop::sample::Index,
        prop::sample::Index,
        prop::sample::Index,
        u8,
    ),
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<prop::sample::Index>;
    let byte = prop::sample::select(
        b"{}[]\":,.-+0123456789eEtfnul\\/ \t\n\r\x00\x01\x1f\x7f\xc3\xa9\xed\xa0\x80\xef\xbb\xbf\xff"
            .to_vec(),
    );
    prop_oneof![
        (at(), byte.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        (at(), byte).prop_map(|(i, b)| Edit::Replace(i, b)),
        at().prop_map(Edit::Delete),
        at().prop_map(Edit::Truncate),
        (at(), at(), at(), 1..16u8).prop_map(|(i, s, f, n)| Edit::Splice(i, s, f, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit, seeds: &[Vec<u8>]) {
    match edit {
        Edit::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        Edit::Replace(i, b) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Edit::Delete(i) if !bytes.is_empty() => {
            bytes.remove(i.index(bytes.len()));
        }
        Edit::Truncate(i) => bytes.truncate(i.index(bytes.len() + 1)),
        Edit::Splice(i, s, f, n) => {
            let seed = s.get(seeds);
            let from = f.index(seed.len() + 1);
            let piece = &seed[from..(from + usize::from(*n)).min(seed.len())];
            let at = i.index(bytes.len() + 1);
            bytes.splice(at..at, piece.iter().copied());
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// The corpus as the seed of a fuzzer: every small corpus message with up to six random
    /// edits (bytes that matter to JSON, UTF-8 and COPY inserted or replaced, deletions,
    /// truncation, pieces of other corpus messages spliced in). The converter never panics,
    /// gives one outcome, leaves COPY text only for a row, and that text decodes to one row of
    /// the right width; it accepts exactly the documents serde_json accepts (but a string with
    /// NUL in a selected field, which it refuses).
    #[test]
    fn mutated_corpus_messages_never_break_the_converter(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 0..7),
    ) {
        thread_local! {
            static SEEDS: (Corpus, Vec<Vec<u8>>) = {
                let corpus = load();
                let seeds = corpus
                    .cases
                    .iter()
                    .filter_map(|c| c.value.clone())
                    .filter(|v| v.len() <= 4096)
                    .collect();
                (corpus, seeds)
            };
        }
        SEEDS.with(|(corpus, seeds)| {
            let mut bytes = seed.get(seeds).clone();
            for e in &edits {
                apply(&mut bytes, e, seeds);
            }
            let mut parser = corpus_parser(corpus);
            let columns = corpus.columns.len();
            let (outcome, text) = convert(&mut parser, columns, None, Some(&bytes));
            let serde = serde_json_accepts(&bytes);
            match outcome {
                Outcome::Rows(1) => {
                    let rows = copy_text::decode(&text).map_err(TestCaseError::fail)?;
                    prop_assert_eq!(rows.len(), 1);
                    prop_assert_eq!(rows[0].len(), columns);
                    prop_assert_ne!(serde, Some(false), "loaded what serde_json refuses: {:?}", String::from_utf8_lossy(&bytes));
                }
                Outcome::Failed(reason) => {
                    prop_assert!(text.is_empty(), "a failure left COPY text");
                    prop_assert!(!reason.is_empty());
                    if serde == Some(true) {
                        prop_assert!(reason.contains("NUL"), "refused a document serde_json accepts: {:?}: {}", String::from_utf8_lossy(&bytes), reason);
                    }
                }
                other => prop_assert!(false, "{:?}", other),
            }
            Ok(())
        })?;
    }

    /// Arbitrary `db.json.parse` settings never panic: either an error naming the path, or
    /// paths that compile and configure a converter that survives a corpus message.
    #[test]
    fn any_parse_setting_is_refused_or_works(
        setting in prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(vec!['/', '@', '#', ',', '|', ' ', '\t', '0', '9', 'a', 'é', '😀', '\\', '"', '\0']),
                1 => any::<char>(),
            ],
            0..24,
        ).prop_map(String::from_iter),
    ) {
        match parse_paths(&setting) {
            Err(reason) => prop_assert!(reason.starts_with("db.json.parse: parse path "), "{}", reason),
            Ok(paths) => {
                let tree = PathTree::compile(&paths);
                prop_assert_eq!(tree.columns, paths.len());
                let mut parser = PathParser::new(&setting, paths.len()).map_err(TestCaseError::fail)?;
                let (outcome, text) = convert(
                    &mut parser,
                    paths.len(),
                    None,
                    Some(br##"{"a":[1,{"b":"c"}],"@":{"#0":"x"},"0":[["y"]]}"##),
                );
                prop_assert_eq!(outcome, Outcome::Rows(1));
                let rows = copy_text::decode(&text).map_err(TestCaseError::fail)?;
                prop_assert_eq!(rows[0].len(), paths.len());
            }
        }
    }

    /// A path written from steps (keys of any characters but the delimiter, indexes with or
    /// without leading zeros) parses back to those steps, whatever the delimiter.
    #[test]
    fn written_paths_parse_back_to_their_steps(
        delimiter in prop::sample::select(vec!['/', '|', '.', '~', '¦', 'x', '\u{2603}']),
        steps in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<char>(), 0..8).prop_map(|k| Step::Key(String::from_iter(k))),
                any::<u32>().prop_map(Step::Index),
            ],
            0..6,
        ),
        zeros in prop::collection::vec(0usize..3, 6),
    ) {
        let steps: Vec<Step> = steps
            .into_iter()
            .map(|step| match step {
                Step::Key(key) => Step::Key(key.replace(delimiter, "")),
                index => index,
            })
            .collect();
        let mut text = delimiter.to_string();
        for (i, step) in steps.iter().enumerate() {
            if i > 0 {
                text.push(delimiter);
            }
            match step {
                Step::Key(key) => text.push_str(&format!("@{key}")),
                Step::Index(index) => text.push_str(&format!("#{}{index}", "0".repeat(zeros[i]))),
            }
        }
        prop_assert_eq!(ParsePath::parse(&text).map(|p| p.steps), Ok(steps));
    }

    /// A key of any characters (quotes, backslashes, controls, NUL, `@`, `#`, `/`, non-ASCII),
    /// written in a message with serde_json's escaping, is found by a path naming it, also
    /// among decoys, with the delimiter `|`. (Commas, `|` and trailing whitespace are taken
    /// out of the key: `db.json.parse` cannot name such a key.)
    #[test]
    fn keys_of_any_characters_are_found(
        key in prop::collection::vec(
            prop_oneof![
                3 => prop::sample::select(vec!['"', '\\', '/', '@', '#', '\0', '\t', '\n', '\u{1f}', '\u{7f}', 'é', '😀', '\u{2028}', ' ']),
                2 => any::<char>(),
            ],
            0..10,
        ).prop_map(String::from_iter),
    ) {
        let key = key.replace([',', '|'], "").trim_end().to_string();
        let path = format!("|@{key}");
        let mut parser = PathParser::new(&path, 1).map_err(TestCaseError::fail)?;
        let quoted = serde_json::to_string(&key).unwrap();
        let decoy = serde_json::to_string(&format!("{key}!")).unwrap();
        let json = format!(r#"{{"decoy":0,{quoted}:"found",{decoy}:"decoy"}}"#);
        let (outcome, text) = convert(&mut parser, 1, None, Some(json.as_bytes()));
        prop_assert_eq!(outcome, Outcome::Rows(1), "{}", json);
        prop_assert_eq!(copy_text::decode(&text), Ok(vec![vec![Some("found".to_string())]]));
    }
}
