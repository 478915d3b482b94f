//! The converter's rules, checked through the SDK's native test helpers.

use path_parser::PathParser;
use pgsink_guest::testing::{convert_messages, convert_value};
use pgsink_guest::{Converter, Message, Outcome, Settings, Table};

const SEED: &str = r#"{"identity":71293145,"location":{"latitude":51.5009449,"longitude":-2.4773414},"acceleration":[0.01,0.0,0.0]}"#;

/// A converter with these parse paths and as many columns.
fn parser(paths: &str) -> (PathParser, usize) {
    let n = paths.split(',').count();
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let settings = Settings::from_iter([("db.json.parse", paths)]);
    let parser = PathParser::configure(&settings, &[Table::named(&names)]).unwrap();
    (parser, n)
}

/// The COPY text for `json` converted with `paths`, or the failure reason.
fn convert(paths: &str, json: &[u8]) -> Result<String, String> {
    let (mut parser, n) = parser(paths);
    convert_value(&mut parser, n, None, json)
}

/// The single COPY field `path` gives for `json`.
fn field(path: &str, json: &str) -> String {
    let row = convert(path, json.as_bytes()).unwrap();
    row.strip_suffix('\n').expect("one row").to_owned()
}

fn fails(paths: &str, json: &[u8]) -> String {
    convert(paths, json).expect_err("the message must fail")
}

fn configure_error(paths: &str, columns: &[&str]) -> String {
    let settings = Settings::from_iter([("db.json.parse", paths)]);
    PathParser::configure(&settings, &[Table::named(columns)]).unwrap_err()
}

#[test]
fn the_seed_examples() {
    assert_eq!(field("/@identity", SEED), "71293145");
    assert_eq!(field("/@location/@longitude", SEED), "-2.4773414");
    assert_eq!(field("/@acceleration/#0", SEED), "0.01");
    assert_eq!(
        field("/@location", SEED),
        r#"{"latitude":51.5009449,"longitude":-2.4773414}"#
    );
    assert_eq!(field("/@foo/@bar", SEED), "\\N");
}

#[test]
fn one_message_is_one_row_of_n_fields() {
    let out = convert(
        "/@identity,/@location/@latitude,/@location/@longitude,/@acceleration,/@acceleration/#2,/@nope",
        SEED.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        out,
        "71293145\t51.5009449\t-2.4773414\t[0.01,0.0,0.0]\t0.0\t\\N\n"
    );
}

#[test]
fn missing_paths_of_every_kind_are_null() {
    let json = r#"{"o":{"k":1},"a":[10,20],"s":"text","n":5,"t":true,"z":null}"#;
    for path in [
        "/@missing",
        "/@o/@missing",
        "/@missing/@deeper",
        "/@a/#2",
        "/@a/#4294967295",
        "/@a/@k",
        "/@o/#0",
        "/@s/@x",
        "/@s/#0",
        "/@n/@x",
        "/@t/#0",
        "/@z/@x",
        "/#0",
    ] {
        assert_eq!(field(path, json), "\\N", "{path}");
    }
    assert_eq!(field("/@z", json), "\\N", "JSON null is NULL");
    assert_eq!(field("/", "null"), "\\N");
    assert_eq!(field("/@a/#1", json), "20");
}

#[test]
fn valid_json_reaching_no_path_is_a_row_of_nulls() {
    assert_eq!(convert("/@a,/@b/#0", b"[1,2,3]").unwrap(), "\\N\t\\N\n");
    assert_eq!(convert("/@a,/@b", b"{}").unwrap(), "\\N\t\\N\n");
    assert_eq!(convert("/@a,/@b", b"\"a string\"").unwrap(), "\\N\t\\N\n");
}

#[test]
fn scalars_keep_their_text() {
    let json = r#"{"big":123456789012345678901234567890,"neg":-98765432109876543210,
        "e1":1.5E+300,"e2":-2e-7,"e3":0.1e1,"zero":-0.0,"t":true,"f":false,"frac":3.14159265358979323846264338}"#;
    assert_eq!(field("/@big", json), "123456789012345678901234567890");
    assert_eq!(field("/@neg", json), "-98765432109876543210");
    assert_eq!(field("/@e1", json), "1.5E+300");
    assert_eq!(field("/@e2", json), "-2e-7");
    assert_eq!(field("/@e3", json), "0.1e1");
    assert_eq!(field("/@zero", json), "-0.0");
    assert_eq!(field("/@t", json), "true");
    assert_eq!(field("/@f", json), "false");
    assert_eq!(field("/@frac", json), "3.14159265358979323846264338");
}

#[test]
fn strings_are_unquoted_and_decoded() {
    let json = r#"{"plain":"hello world","e":"caf\u00e9 café","smile":"\ud83d\ude00 😀",
        "q":"say \"hi\"","slash":"a\/b","ctl":"\b\f","empty":"","N":"\\N","upper":"\u00C9"}"#;
    assert_eq!(field("/@plain", json), "hello world");
    assert_eq!(field("/@e", json), "café café");
    assert_eq!(field("/@smile", json), "😀 😀");
    assert_eq!(field("/@q", json), "say \"hi\"");
    assert_eq!(field("/@slash", json), "a/b");
    assert_eq!(field("/@ctl", json), "\u{8}\u{c}");
    assert_eq!(field("/@empty", json), "");
    assert_eq!(
        field("/@N", json),
        "\\\\N",
        "a backslash N string is not NULL"
    );
    assert_eq!(field("/@upper", json), "É");
}

#[test]
fn copy_specials_inside_strings_are_escaped() {
    let json = r#"{"s":"tab\there\nnew\\back\rcr"}"#;
    assert_eq!(field("/@s", json), r"tab\there\nnew\\back\rcr");
    // The same characters as \u escapes.
    let json = r#"{"s":"\u0009\u000a\u005c\u000d"}"#;
    assert_eq!(field("/@s", json), r"\t\n\\\r");
}

#[test]
fn nul_in_a_string_fails_the_message() {
    let reason = fails("/@s", br#"{"s":"a\u0000b"}"#);
    assert!(reason.contains("NUL"), "{reason}");
    // Even when it is not the only column.
    let reason = fails("/@n,/@s", br#"{"n":1,"s":"\u0000"}"#);
    assert!(reason.contains("NUL"), "{reason}");
    // An unselected NUL is fine, and inside a composite it stays escaped.
    assert_eq!(field("/@n", r#"{"n":1,"s":"\u0000"}"#), "1");
    assert_eq!(field("/", r#"["\u0000"]"#), r#"["\\u0000"]"#);
}

#[test]
fn composites_are_compacted_with_strings_kept_verbatim() {
    let json = "{ \"o\" : {\n\t\"a b\" : [ 1 , 2.50 , { } , [ ] ] ,\r\n  \"s\" : \"x y\\n\\u00e9\\\"\" } }";
    assert_eq!(
        field("/@o", json),
        r#"{"a b":[1,2.50,{},[]],"s":"x y\\n\\u00e9\\""}"#
    );
    assert_eq!(field("/@o/@a b", json), "[1,2.50,{},[]]");
    assert_eq!(field("/@o/@a b/#2", json), "{}");
    // Tabs inside a string value of a composite cannot occur raw; escapes stay escapes.
    assert_eq!(field("/", r#"{"t":"a\tb"}"#), r#"{"t":"a\\tb"}"#);
}

#[test]
fn the_whole_document_path() {
    assert_eq!(field("/", "  [1, 2]  \n"), "[1,2]");
    assert_eq!(field("/", " \"top\" "), "top");
    assert_eq!(field("/", "42"), "42");
    assert_eq!(field("/", "true"), "true");
    assert_eq!(field("|", SEED), SEED);
    assert_eq!(
        convert("/,/@identity", SEED.as_bytes()).unwrap(),
        format!("{SEED}\t71293145\n")
    );
}

#[test]
fn a_custom_delimiter_allows_slashes_in_keys() {
    let json = r#"{"a/b":[7,8],"a":{"b":[9]}}"#;
    assert_eq!(field("|@a/b|#0", json), "7");
    assert_eq!(field("/@a/@b/#0", json), "9");
    assert_eq!(field(".@a/b.#1", json), "8");
}

#[test]
fn escaped_keys_match_their_decoded_text() {
    let json = r#"{"caf\u00e9":1,"a\/b":2,"q\"k":3,"\ud83d\ude00":4}"#;
    assert_eq!(field("/@café", json), "1");
    assert_eq!(field("|@a/b", json), "2");
    assert_eq!(field("/@q\"k", json), "3");
    assert_eq!(field("/@😀", json), "4");
    assert_eq!(field("/@caf\\u00e9", json), "\\N", "path keys are literal");
}

#[test]
fn keys_are_exact() {
    let json = r#"{"Key":1,"key":2," key":3,"":4}"#;
    assert_eq!(field("/@Key", json), "1");
    assert_eq!(field("/@key", json), "2");
    assert_eq!(field("/@ key", json), "3");
    assert_eq!(field("/@", json), "4");
    assert_eq!(field("/@KEY", json), "\\N");
}

#[test]
fn duplicate_keys_the_last_wins() {
    assert_eq!(field("/@a", r#"{"a":1,"a":2}"#), "2");
    assert_eq!(field("/@a", r#"{"a":1,"a":null}"#), "\\N");
    // The whole earlier value is replaced, also what a deeper path found in it.
    let json = r#"{"a":{"b":1,"c":2},"a":{"c":3}}"#;
    assert_eq!(
        convert("/@a/@b,/@a/@c,/@a", json.as_bytes()).unwrap(),
        "\\N\t3\t{\"c\":3}\n"
    );
    assert_eq!(field("/@a/#0", r#"{"a":[5],"a":{"x":1}}"#), "\\N");
}

#[test]
fn repeated_paths_fill_both_columns() {
    assert_eq!(
        convert("/@identity,/@identity", SEED.as_bytes()).unwrap(),
        "71293145\t71293145\n"
    );
}

#[test]
fn many_messages_one_row_each() {
    let (mut parser, n) = parser("/@k, /@v");
    let messages = [
        Message::from_value(br#"{"k":"a","v":1}"#),
        Message::from_value(b"{bad"),
        Message::from_value(br#"{"v":[true]}"#),
        Message {
            value: None,
            ..Message::from_value(b"")
        },
    ];
    let out = convert_messages(&mut parser, n, &messages);
    assert_eq!(
        String::from_utf8(out.copy_text).unwrap(),
        "a\t1\n\\N\t[true]\n"
    );
    assert!(matches!(&out.outcomes[..], [
        Outcome::Rows(1),
        Outcome::Failed(bad),
        Outcome::Rows(1),
        Outcome::Failed(tombstone),
    ] if bad.contains("byte 1") && tombstone.contains("tombstone")));
}

#[test]
fn invalid_json_fails_with_the_byte_position() {
    let cases: &[(&[u8], &str)] = &[
        (
            br#"{"a":1 "b":2}"#,
            "invalid JSON at byte 7: expected ',' or '}'",
        ),
        (
            br#"{"identity":71293145"#,
            "invalid JSON at byte 20: expected ',' or '}'",
        ),
        (
            br#"{"a":[1,2"#,
            "invalid JSON at byte 9: expected ',' or ']'",
        ),
        (
            br#"{"a":"#,
            "invalid JSON at byte 5: expected a JSON value, found the end of the message",
        ),
        (
            br#"{"a":"abc"#,
            "invalid JSON at byte 9: unterminated string",
        ),
        (
            br#"{"a":1}x"#,
            "invalid JSON at byte 7: unexpected data after the JSON document",
        ),
        (
            br#"{"a":1} {"b":2}"#,
            "invalid JSON at byte 8: unexpected data after the JSON document",
        ),
        (
            br#"{"a":1,}"#,
            "invalid JSON at byte 7: expected a string key",
        ),
        (b"[1,2,]", "invalid JSON at byte 5: expected a JSON value"),
        (b"{'a':1}", "invalid JSON at byte 1: expected a string key"),
        (
            br#"{"a":'x'}"#,
            "invalid JSON at byte 5: expected a JSON value",
        ),
        (
            br#"{"a":01}"#,
            "invalid JSON at byte 6: leading zeros are not allowed in a number",
        ),
        (
            br#"{"a":-01}"#,
            "invalid JSON at byte 7: leading zeros are not allowed in a number",
        ),
        (
            br#"{"a":NaN}"#,
            "invalid JSON at byte 5: expected a JSON value",
        ),
        (
            br#"{"a":Infinity}"#,
            "invalid JSON at byte 5: expected a JSON value",
        ),
        (br#"{"a":-}"#, "invalid JSON at byte 6: expected a digit"),
        (
            br#"{"a":+1}"#,
            "invalid JSON at byte 5: expected a JSON value",
        ),
        (
            br#"{"a":1.}"#,
            "invalid JSON at byte 7: expected a digit after the decimal point",
        ),
        (
            br#"{"a":.5}"#,
            "invalid JSON at byte 5: expected a JSON value",
        ),
        (
            br#"{"a":1e}"#,
            "invalid JSON at byte 7: expected a digit in the exponent",
        ),
        (
            br#"{"a":1e+}"#,
            "invalid JSON at byte 8: expected a digit in the exponent",
        ),
        (
            br#"{"a":0x10}"#,
            "invalid JSON at byte 6: expected ',' or '}'",
        ),
        (
            br#"{"a":True}"#,
            "invalid JSON at byte 5: expected a JSON value",
        ),
        (
            br#"{"a":tru}"#,
            "invalid JSON at byte 5: expected a JSON value (true, false and null are lowercase)",
        ),
        (
            br#"{"a":nul"#,
            "invalid JSON at byte 5: expected a JSON value (true, false and null are lowercase)",
        ),
        (
            br#"{"a":truex}"#,
            "invalid JSON at byte 9: expected ',' or '}'",
        ),
        (
            b"{\"a\":\"x\ty\"}",
            "invalid JSON at byte 7: control character in a string",
        ),
        (
            b"{\"a\":\"x\ny\"}",
            "invalid JSON at byte 7: control character in a string",
        ),
        (br#"{"a":"\x"}"#, "invalid JSON at byte 6: invalid escape"),
        (
            br#"{"a":"\u12G4"}"#,
            "invalid JSON at byte 6: \\u must be followed by 4 hex digits",
        ),
        (
            br#"{"a":"\u12"}"#,
            "invalid JSON at byte 6: \\u must be followed by 4 hex digits",
        ),
        (
            br#"{"a":"\ud83d"}"#,
            "invalid JSON at byte 6: lone surrogate",
        ),
        (
            br#"{"a":"\ud83dx"}"#,
            "invalid JSON at byte 6: lone surrogate",
        ),
        (
            br#"{"a":"\ud83d\u0041"}"#,
            "invalid JSON at byte 6: lone surrogate",
        ),
        (
            br#"{"a":"\ude00"}"#,
            "invalid JSON at byte 6: lone surrogate",
        ),
        (
            br#"{"a":"\ud83d\ud83d"}"#,
            "invalid JSON at byte 6: lone surrogate",
        ),
        (
            br#"{"a" 1}"#,
            "invalid JSON at byte 5: expected ':' after an object key",
        ),
        (br#"{a:1}"#, "invalid JSON at byte 1: expected a string key"),
        (b"[1 2]", "invalid JSON at byte 3: expected ',' or ']'"),
        (b"]", "invalid JSON at byte 0: expected a JSON value"),
        (
            b"   ",
            "invalid JSON at byte 3: expected a JSON value, found the end of the message",
        ),
        (b"\x0b{}", "invalid JSON at byte 0: expected a JSON value"),
        (
            b"\xef\xbb\xbf{}",
            "invalid JSON at byte 0: expected a JSON value",
        ),
    ];
    for (json, expected) in cases {
        let reason = fails("/@a", json);
        assert!(
            reason.starts_with(expected),
            "{}: got {reason:?}, expected {expected:?}",
            String::from_utf8_lossy(json)
        );
    }
}

#[test]
fn errors_after_the_selected_values_still_fail() {
    // The paths are satisfied early; the document breaks later.
    let reason = fails("/@identity", br#"{"identity":1,"rest":[1,2,}"#);
    assert_eq!(reason, "invalid JSON at byte 26: expected a JSON value");
}

#[test]
fn empty_null_and_non_utf8_values_fail() {
    assert!(fails("/@a", b"").contains("empty"));
    let (mut parser, n) = parser("/@a");
    let tombstone = Message {
        value: None,
        ..Message::from_value(b"")
    };
    let out = convert_messages(&mut parser, n, &[tombstone]);
    assert!(matches!(&out.outcomes[0], Outcome::Failed(r) if r.contains("tombstone")));
    assert!(out.copy_text.is_empty());
    assert_eq!(
        fails("/@a", b"{\"a\":\"\xff\"}"),
        "the message value is not valid UTF-8 at byte 6"
    );
    assert!(fails("/@a", b"{\"a\":\"\xc3\"}").contains("UTF-8"));
    assert!(
        fails("/@a", b"{\"a\":\"\xed\xa0\x80\"}").contains("UTF-8"),
        "an encoded surrogate"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(10_000);
    assert_eq!(
        fails("/", deep.as_bytes()),
        "invalid JSON at byte 128: objects and arrays are nested more than 128 deep"
    );
    let deep_objects = r#"{"a":"#.repeat(10_000);
    assert!(fails("/@a", deep_objects.as_bytes()).contains("nested more than 128 deep"));
    let ok = format!("{}7{}", "[".repeat(128), "]".repeat(128));
    let path = format!("/{}", vec!["#0"; 128].join("/"));
    assert_eq!(field(&path, &ok), "7");
}

#[test]
fn column_count_must_match() {
    assert_eq!(
        configure_error("/@a,/@b,/@c", &["w", "x", "y", "z"]),
        "db.json.parse has 3 parse paths but db.columns lists 4 columns"
    );
    assert_eq!(
        configure_error("/@a,/@b", &["x"]),
        "db.json.parse has 2 parse paths but db.columns lists 1 column"
    );
    assert_eq!(
        configure_error("/@a", &[]),
        "db.json.parse has 1 parse path but db.columns lists 0 columns"
    );
}

#[test]
fn configuration_errors() {
    let err = PathParser::configure(&Settings::default(), &[Table::named(&["a"])]).unwrap_err();
    assert!(
        err.contains("db.json.parse") && err.contains("required"),
        "{err}"
    );
    assert_eq!(
        configure_error("", &["a"]),
        "db.json.parse: parse path 1 is empty"
    );
    assert_eq!(
        configure_error("/@a, ", &["a", "b"]),
        "db.json.parse: parse path 2 is empty"
    );
    for (paths, expected) in [
        (
            "@a",
            "parse path 1 `@a` is invalid: a path starts with its delimiter",
        ),
        (
            "/@a,/b",
            "parse path 2 `/b` is invalid: the step `b` must start with @",
        ),
        ("/@a/#x", "`#x` is not an array index"),
        ("/@a/#-1", "`#-1` is not an array index"),
        ("/@a//@b", "empty step"),
        ("/@a/", "empty step"),
        ("/#4294967296", "too large"),
    ] {
        let cols = vec!["c"; paths.split(',').count()];
        let err = configure_error(paths, &cols);
        assert!(err.contains(expected), "{paths}: {err}");
    }
}

#[test]
fn the_parser_is_reusable_after_errors() {
    let (mut parser, n) = parser("/@a");
    assert!(convert_value(&mut parser, n, None, b"{\"a\":[").is_err());
    assert_eq!(
        convert_value(&mut parser, n, None, br#"{"a":"x"}"#).unwrap(),
        "x\n"
    );
    assert_eq!(
        convert_value(&mut parser, n, None, br#"{"b":"x"}"#).unwrap(),
        "\\N\n"
    );
}
