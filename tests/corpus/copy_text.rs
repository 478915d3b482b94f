//! A reference decoder of PostgreSQL's COPY text format, written from PostgreSQL's
//! `copyfromparse.c` (text format, not CSV) for the tests: what the guest SDK's escaper and the
//! converters write must decode back to the values they were given.
//!
//! Shared by the tests that need it, which include it with
//! `#[path = "…/tests/corpus/copy_text.rs"] mod copy_text;`: the guest SDK's escaping tests
//! (`guest-sdk/src/row_writer.rs`), the host's COPY-check tests (`host/src/converter/output.rs`), the
//! path-parser's corpus test and the end-to-end hostile-input test. It uses only `std`.

#![allow(dead_code)]

/// One decoded row: a value per field, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// Decodes PostgreSQL COPY text format (rows ending in a newline) into rows of fields, as
/// PostgreSQL's `COPY … FROM STDIN` (text format, UTF-8) reads it: a raw tab separates fields
/// and a raw newline ends a row; a field that is exactly `\N` is NULL; `\b \f \n \r \t
/// \v`, `\` and 1–3 octal digits, `\x` and 1–2 hex digits, and a backslash before any other
/// character (a tab or a newline included) give that character. Errors where PostgreSQL would
/// refuse or misread the text: a raw carriage return, the end marker `\.`, a NUL character or
/// invalid UTF-8 after decoding, a missing final newline.
pub fn decode(text: &[u8]) -> Result<Vec<Row>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    if text.last() != Some(&b'\n') {
        return Err("the last row does not end with a newline".into());
    }
    let mut rows = Vec::new();
    let mut fields = Vec::new();
    let mut out = Vec::new();
    let mut field_start = 0;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        i += 1;
        match b {
            b'\t' | b'\n' => {
                if &text[field_start..i - 1] == b"\\N" {
                    fields.push(None);
                } else {
                    if out.contains(&0) {
                        return Err(format!("a NUL character in row {}", rows.len() + 1));
                    }
                    let value = String::from_utf8(std::mem::take(&mut out))
                        .map_err(|e| format!("invalid UTF-8 in row {}: {e}", rows.len() + 1))?;
                    fields.push(Some(value));
                }
                out.clear();
                field_start = i;
                if b == b'\n' {
                    rows.push(std::mem::take(&mut fields));
                }
            }
            b'\r' => return Err(format!("a raw carriage return in row {}", rows.len() + 1)),
            b'\\' => {
                // The text ends with a newline, so a backslash always has a next byte.
                let c = text[i];
                i += 1;
                match c {
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'v' => out.push(11),
                    b'.' => {
                        return Err(format!(
                            "the end-of-data marker \\. in row {}",
                            rows.len() + 1
                        ))
                    }
                    b'0'..=b'7' => {
                        let mut v = u32::from(c - b'0');
                        for _ in 0..2 {
                            match text.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push((v & 0xff) as u8);
                    }
                    b'x' if text.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                        let mut v = 0;
                        for _ in 0..2 {
                            match text.get(i) {
                                Some(&d) if d.is_ascii_hexdigit() => {
                                    v = v * 16 + (d as char).to_digit(16).unwrap_or(0);
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(v as u8);
                    }
                    other => out.push(other),
                }
            }
            other => out.push(other),
        }
    }
    if field_start != text.len() {
        return Err("the last row ends in an escaped newline, not a newline".into());
    }
    Ok(rows)
}
