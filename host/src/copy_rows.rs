//! Checking converter output: COPY text from an untrusted plugin.
//!
//! A converter may be buggy or hostile. Its rows are loaded only when every
//! row of a message has exactly one field per column, uses only the escapes
//! the contract allows, holds no NUL byte and is valid UTF-8; otherwise the
//! message fails with the reason and its rows are dropped. So no plugin can
//! corrupt the COPY stream or smuggle rows into another message.

use memchr::memchr3_iter;

/// Checks the rows of one message: `text` holds whole rows, each ending in a newline.
pub fn check_rows(text: &[u8], columns: usize) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    if text.last() != Some(&b'\n') {
        return Err("the converter's last row does not end with a newline".into());
    }
    if let Err(e) = std::str::from_utf8(text) {
        return Err(format!(
            "the converter wrote invalid UTF-8 at byte {}",
            e.valid_up_to()
        ));
    }
    if memchr::memchr(0, text).is_some() {
        return Err("the converter wrote a NUL byte, which PostgreSQL text cannot store".into());
    }
    let mut fields = 1;
    let mut row = 1;
    let mut field_start = 0;
    let mut skip_until = 0;
    for i in memchr3_iter(b'\t', b'\n', b'\\', text) {
        if i < skip_until {
            continue;
        }
        match text[i] {
            b'\t' => {
                fields += 1;
                field_start = i + 1;
            }
            b'\n' => {
                if fields != columns {
                    return Err(format!(
                        "the converter wrote row {row} with {fields} fields for {columns} columns"
                    ));
                }
                fields = 1;
                row += 1;
                field_start = i + 1;
            }
            _ => {
                let next = text.get(i + 1).copied();
                match next {
                    Some(b'\\' | b't' | b'n' | b'r' | b'b' | b'f' | b'v') => {}
                    Some(b'N')
                        if i == field_start
                            && matches!(text.get(i + 2), Some(b'\t' | b'\n')) => {}
                    Some(b'N') => {
                        return Err(format!(
                            "the converter wrote a NULL marker inside a value in row {row}"
                        ))
                    }
                    Some(c) => {
                        return Err(format!(
                            "the converter wrote an unsupported escape (backslash, then {:?}) in row {row}",
                            c as char
                        ))
                    }
                    None => unreachable!("text ends with a newline"),
                }
                skip_until = i + 2;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_well_formed_rows() {
        assert_eq!(check_rows(b"", 2), Ok(()));
        assert_eq!(check_rows(b"a\tb\n\\N\t\\\\x\\t\\n\\r\n", 2), Ok(()));
        assert_eq!(check_rows("é\t\\N\n".as_bytes(), 2), Ok(()));
        assert_eq!(
            check_rows(b"\\\\N\tx\n", 2),
            Ok(()),
            "escaped backslash then N"
        );
    }

    #[test]
    fn rejects_every_kind_of_broken_row() {
        let bad: &[(&[u8], &str)] = &[
            (b"a\tb", "newline"),
            (b"a\n", "1 fields for 2"),
            (b"a\tb\tc\n", "3 fields for 2"),
            (b"a\tb\nc\n", "row 2 with 1 fields"),
            (b"a\\\n\tb\n", "unsupported escape"),
            (b"a\\.\tb\n", "unsupported escape"),
            (b"a\\0\tb\n", "unsupported escape"),
            (b"a\\N\tb\n", "NULL marker inside"),
            (b"a\0\tb\n", "NUL byte"),
            (b"\xff\tb\n", "invalid UTF-8 at byte 0"),
            (b"a\tb\\\n", "unsupported escape"),
        ];
        for (text, expected) in bad {
            let err = check_rows(text, 2).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
