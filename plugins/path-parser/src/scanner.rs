//! A single-pass validating JSON scanner that follows the compiled parse paths.
//!
//! The scanner walks the whole message once, checking it against RFC 8259,
//! and remembers for each column the byte span of the value its path selects.
//! It builds no tree and allocates nothing (decoding an escaped object key to
//! compare it reuses one scratch buffer). Writing the selected values as COPY
//! fields is left to [`write_string`] and [`write_compact`].

use std::fmt;

use crate::paths::{NodeId, PathTree, ROOT};

/// The deepest nesting of objects and arrays accepted.
pub const MAX_DEPTH: u32 = 128;

/// What a parse path selected in one message, by byte offsets into the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    /// Nothing there, or JSON `null`: the column gets NULL.
    Null,
    /// A string; the span is its content between the quotes, still escaped
    /// when `escaped` is true.
    String {
        /// Offset of the first content byte.
        start: usize,
        /// Offset of the closing quote.
        end: usize,
        /// Whether the content holds backslash escapes.
        escaped: bool,
    },
    /// A number, `true` or `false`, written exactly as in the message.
    Scalar {
        /// Offset of the first byte.
        start: usize,
        /// Offset after the last byte.
        end: usize,
    },
    /// An object or an array, written as compact JSON.
    Composite {
        /// Offset of the opening bracket.
        start: usize,
        /// Offset after the closing bracket.
        end: usize,
    },
}

/// A JSON syntax error at a byte offset of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxError {
    /// The 0-based byte offset where the message stops being valid JSON.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for SyntaxError {}

/// Scans the JSON document `json` and stores in `selected[c]` what the path of
/// column `c` selects ([`Selected::Null`] where it reaches nothing).
///
/// `json` must be valid UTF-8 (the caller checks it, so the scanner only
/// deals with ASCII structure). `scratch` is reused to decode escaped keys.
/// Any syntax error anywhere in the document fails the whole scan.
pub fn scan(
    json: &[u8],
    tree: &PathTree,
    selected: &mut [Selected],
    scratch: &mut Vec<u8>,
) -> Result<(), SyntaxError> {
    debug_assert_eq!(selected.len(), tree.columns);
    selected.fill(Selected::Null);
    let mut scanner = Scanner {
        json,
        pos: 0,
        tree,
        selected,
        scratch,
    };
    scanner.skip_whitespace();
    scanner.value(Some(ROOT), 0)?;
    scanner.skip_whitespace();
    if scanner.pos < json.len() {
        return Err(scanner.error("unexpected data after the JSON document"));
    }
    Ok(())
}

/// The walk over one message.
struct Scanner<'a> {
    json: &'a [u8],
    pos: usize,
    tree: &'a PathTree,
    selected: &'a mut [Selected],
    scratch: &'a mut Vec<u8>,
}

/// Bytes that end a plain run inside a string: `"`, `\` and control characters.
static STRING_SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.json.get(self.pos).copied()
    }

    #[cold]
    fn error(&self, reason: &'static str) -> SyntaxError {
        SyntaxError {
            offset: self.pos,
            reason,
        }
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Scans one value at the current position (whitespace already skipped);
    /// `node` is the path-tree position of this value, if any path reaches it.
    fn value(&mut self, node: Option<NodeId>, depth: u32) -> Result<(), SyntaxError> {
        let start = self.pos;
        let selected = match self.peek() {
            Some(b'{') => {
                self.object(node, depth + 1)?;
                Selected::Composite {
                    start,
                    end: self.pos,
                }
            }
            Some(b'[') => {
                self.array(node, depth + 1)?;
                Selected::Composite {
                    start,
                    end: self.pos,
                }
            }
            Some(b'"') => {
                let escaped = self.string()?;
                Selected::String {
                    start: start + 1,
                    end: self.pos - 1,
                    escaped,
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Selected::Scalar {
                    start,
                    end: self.pos,
                }
            }
            Some(b't') => {
                self.literal(b"true")?;
                Selected::Scalar {
                    start,
                    end: self.pos,
                }
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Selected::Scalar {
                    start,
                    end: self.pos,
                }
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Selected::Null
            }
            Some(_) => return Err(self.error("expected a JSON value")),
            None => return Err(self.error("expected a JSON value, found the end of the message")),
        };
        if let Some(node) = node {
            for &column in &self.tree.node(node).columns {
                self.selected[column as usize] = selected;
            }
        }
        Ok(())
    }

    fn object(&mut self, node: Option<NodeId>, depth: u32) -> Result<(), SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error("objects and arrays are nested more than 128 deep"));
        }
        self.pos += 1; // '{'
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        let keyed = node.filter(|&n| !self.tree.node(n).keys.is_empty());
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key_start = self.pos + 1;
            let escaped = self.string()?;
            let key_end = self.pos - 1;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':' after an object key"));
            }
            self.pos += 1;
            self.skip_whitespace();
            let child = match keyed {
                Some(node) => self.find_key(node, key_start, key_end, escaped),
                None => None,
            };
            if let Some(child) = child {
                // A duplicate key replaces what an earlier one selected: the last wins.
                for &column in &self.tree.node(child).subtree {
                    self.selected[column as usize] = Selected::Null;
                }
            }
            self.value(child, depth)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    /// The child of `node` for the key whose raw content is `json[start..end]`.
    fn find_key(
        &mut self,
        node: NodeId,
        start: usize,
        end: usize,
        escaped: bool,
    ) -> Option<NodeId> {
        let raw = &self.json[start..end];
        let key: &[u8] = if escaped {
            self.scratch.clear();
            let scratch = &mut *self.scratch;
            decode_escapes(raw, |piece| scratch.extend_from_slice(piece.as_bytes()));
            scratch
        } else {
            raw
        };
        self.tree
            .node(node)
            .keys
            .iter()
            .find(|(k, _)| same_bytes(k, key))
            .map(|&(_, child)| child)
    }

    fn array(&mut self, node: Option<NodeId>, depth: u32) -> Result<(), SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(self.error("objects and arrays are nested more than 128 deep"));
        }
        self.pos += 1; // '['
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let indexed = node
            .map(|n| &self.tree.node(n).indexes[..])
            .filter(|indexes| !indexes.is_empty());
        let mut index: u32 = 0;
        loop {
            let child = indexed.and_then(|indexes| {
                indexes
                    .iter()
                    .find(|&&(i, _)| i == index)
                    .map(|&(_, child)| child)
            });
            self.value(child, depth)?;
            index = index.saturating_add(1);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// Scans a string from its opening quote to after its closing quote;
    /// returns whether it holds escapes.
    fn string(&mut self) -> Result<bool, SyntaxError> {
        self.pos += 1; // '"'
        let mut escaped = false;
        loop {
            while let Some(&b) = self.json.get(self.pos) {
                if STRING_SPECIAL[b as usize] {
                    break;
                }
                self.pos += 1;
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => {
                    return Err(self.error(
                        "control character in a string (it must be written as an escape such as \\n or \\u0001)",
                    ))
                }
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// Checks one escape sequence at the current backslash and moves past it.
    fn escape(&mut self) -> Result<(), SyntaxError> {
        match self.json.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let unit = self.hex4(self.pos + 2)?;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = match self.json.get(self.pos + 6..self.pos + 8) {
                            Some(b"\\u") => self.hex4(self.pos + 8)?,
                            _ => 0,
                        };
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(self.error(
                                "lone surrogate: \\uD800-\\uDBFF must be followed by a \\uDC00-\\uDFFF escape",
                            ));
                        }
                        self.pos += 12;
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.error(
                            "lone surrogate: \\uDC00-\\uDFFF must follow a \\uD800-\\uDBFF escape",
                        ))
                    }
                    _ => self.pos += 6,
                }
                Ok(())
            }
            _ => Err(self.error(
                "invalid escape (expected \\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\u and 4 hex digits)",
            )),
        }
    }

    /// The 4 hex digits at `at`, as a UTF-16 code unit.
    fn hex4(&self, at: usize) -> Result<u32, SyntaxError> {
        let digits = self
            .json
            .get(at..at + 4)
            .ok_or_else(|| self.error("\\u must be followed by 4 hex digits"))?;
        digits.iter().try_fold(0, |unit, &b| match hex_digit(b) {
            Some(d) => Ok(unit << 4 | d),
            None => Err(self.error("\\u must be followed by 4 hex digits")),
        })
    }

    fn number(&mut self) -> Result<(), SyntaxError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("leading zeros are not allowed in a number"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit after the decimal point"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit in the exponent"));
            }
            self.digits();
        }
        Ok(())
    }

    #[inline]
    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), SyntaxError> {
        if self.json[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("expected a JSON value (true, false and null are lowercase)"))
        }
    }
}

/// `a == b`, checking the length and first byte before calling `memcmp`:
/// keys are short and most candidates differ early.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.first() == b.first() && a == b
}

#[inline]
fn hex_digit(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'a'..=b'f' => Some(u32::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u32::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Decodes the content of a JSON string that the scanner validated, passing
/// the text to `out` in pieces: runs without escapes, then each decoded character.
pub fn decode_escapes(raw: &[u8], mut out: impl FnMut(&str)) {
    let mut rest = raw;
    while let Some(at) = rest.iter().position(|&b| b == b'\\') {
        out(as_str(&rest[..at]));
        let (c, len) = decode_escape(&rest[at..]);
        out(c.encode_utf8(&mut [0; 4]));
        rest = &rest[at + len..];
    }
    out(as_str(rest));
}

/// The character of the validated escape at the start of `escape`, and its length.
fn decode_escape(escape: &[u8]) -> (char, usize) {
    let hex = |at: usize| {
        escape
            .get(at..at + 4)
            .and_then(|digits| {
                digits
                    .iter()
                    .try_fold(0, |u, &b| Some(u << 4 | hex_digit(b)?))
            })
            .unwrap_or(0xFFFD)
    };
    match escape.get(1) {
        Some(b'b') => ('\u{8}', 2),
        Some(b'f') => ('\u{c}', 2),
        Some(b'n') => ('\n', 2),
        Some(b'r') => ('\r', 2),
        Some(b't') => ('\t', 2),
        Some(b'u') => {
            let unit = hex(2);
            if (0xD800..=0xDBFF).contains(&unit) {
                let low = hex(8);
                let c = 0x10000 + ((unit - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
                (char::from_u32(c).unwrap_or('\u{FFFD}'), 12)
            } else {
                (char::from_u32(unit).unwrap_or('\u{FFFD}'), 6)
            }
        }
        Some(&b) => (char::from(b), 2), // '"', '\\' and '/'
        None => ('\\', 1),
    }
}

/// `bytes` as text: the caller checked the whole message is UTF-8 and splits
/// it only at ASCII bytes, so this never fails.
#[inline]
fn as_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// Writes a validated JSON object or array to `out` in pieces, without the
/// whitespace outside strings. Strings are copied as they are (escapes kept),
/// so the result is valid JSON.
pub fn write_compact(json: &str, mut out: impl FnMut(&str)) {
    let bytes = json.as_bytes();
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                out(&json[run..i]);
                while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(i) {
                    i += 1;
                }
                run = i;
            }
            _ => i += 1,
        }
    }
    out(&json[run.min(json.len())..]);
}

/// Writes the content of a selected string to `out`: as it is when it has no
/// escapes, decoded otherwise.
pub fn write_string(raw: &str, escaped: bool, mut out: impl FnMut(&str)) {
    if escaped {
        decode_escapes(raw.as_bytes(), out);
    } else {
        out(raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::{parse_paths, PathTree};

    fn select(paths: &str, json: &str) -> Result<Vec<Selected>, SyntaxError> {
        let tree = PathTree::compile(&parse_paths(paths).unwrap());
        let mut selected = vec![
            Selected::String {
                start: 9,
                end: 9,
                escaped: true
            };
            tree.columns
        ];
        scan(json.as_bytes(), &tree, &mut selected, &mut Vec::new())?;
        Ok(selected)
    }

    fn decoded(raw: &str) -> String {
        let mut s = String::new();
        decode_escapes(raw.as_bytes(), |p| s.push_str(p));
        s
    }

    fn compact(json: &str) -> String {
        let mut s = String::new();
        write_compact(json, |p| s.push_str(p));
        s
    }

    #[test]
    fn spans_of_each_kind() {
        let json = r#" {"s":"a\nb","n":-1.5e3,"t":true,"o":{"x":[1]},"z":null} "#;
        let got = select("/@s,/@n,/@t,/@o,/@z,/@missing,/", json).unwrap();
        assert_eq!(
            got,
            vec![
                Selected::String {
                    start: 7,
                    end: 11,
                    escaped: true
                },
                Selected::Scalar { start: 17, end: 23 },
                Selected::Scalar { start: 28, end: 32 },
                Selected::Composite { start: 37, end: 46 },
                Selected::Null,
                Selected::Null,
                Selected::Composite {
                    start: 1,
                    end: json.len() - 1
                },
            ]
        );
    }

    #[test]
    fn errors_point_at_the_offending_byte() {
        let err = |json| select("/", json).unwrap_err();
        assert_eq!(
            err(r#"{"a":1 "b":2}"#),
            SyntaxError {
                offset: 7,
                reason: "expected ',' or '}'"
            }
        );
        assert_eq!(err("[1,2,]").offset, 5);
        assert_eq!(
            err("").to_string(),
            "invalid JSON at byte 0: expected a JSON value, found the end of the message"
        );
        assert_eq!(err("\"ab").reason, "unterminated string");
        assert_eq!(err(r#""\uD800x""#).offset, 1);
    }

    #[test]
    fn depth_limit_is_128() {
        let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(select("/", &ok).is_ok());
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert_eq!(select("/", &deep).unwrap_err().offset, 128);
        let objects = format!("{}1{}", r#"{"a":"#.repeat(129), "}".repeat(129));
        assert!(select("/", &objects).unwrap_err().reason.contains("nested"));
    }

    #[test]
    fn decodes_every_escape() {
        assert_eq!(decoded(r#"plain"#), "plain");
        assert_eq!(decoded(r#"\"\\\/\b\f\n\r\t"#), "\"\\/\u{8}\u{c}\n\r\t");
        assert_eq!(decoded(r#"caf\u00e9 \u00E9"#), "café é");
        assert_eq!(decoded(r#"\ud83d\ude00!"#), "😀!");
        assert_eq!(decoded(r#"a\u0000b"#), "a\0b");
        assert_eq!(decoded(r#"\u20ac\u0041x"#), "€Ax");
    }

    #[test]
    fn compacts_outside_strings_only() {
        assert_eq!(
            compact("{ \"a b\" : [ 1 ,\n\t2 ] ,\r\n \"c\":\"x \\\" y\" }"),
            r#"{"a b":[1,2],"c":"x \" y"}"#
        );
        assert_eq!(compact("[]"), "[]");
        assert_eq!(compact(r#"["\\", " "]"#), r#"["\\"," "]"#);
    }
}
