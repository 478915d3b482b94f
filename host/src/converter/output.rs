//! Checking converter output: COPY text from an untrusted converter.
//!
//! A converter may be buggy or hostile. Its rows are loaded only when every
//! row of a message has exactly one field per column, uses only the escapes
//! the contract allows, holds no NUL byte or raw carriage return and is valid
//! UTF-8; otherwise the
//! message fails with the reason and its rows are dropped. So no converter can
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
    if memchr::memchr(b'\r', text).is_some() {
        return Err(
            "the converter wrote a raw carriage return (COPY text needs it escaped as \\r)".into(),
        );
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

/// Whether field `index` of `row` (one checked row, without its newline) is NULL.
pub fn null_field(row: &[u8], index: usize) -> bool {
    row.split(|&b| b == b'\t').nth(index) == Some(b"\\N")
}

/// The reference COPY-text decoder the repository's tests share.
#[cfg(test)]
#[path = "../../../tests/corpus/copy_text.rs"]
mod copy_text;

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    use super::copy_text;

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
    fn null_fields_are_found_by_position() {
        let row = b"1\t\\N\t\\\\N\tx";
        assert!(!null_field(row, 0));
        assert!(null_field(row, 1));
        assert!(!null_field(row, 2), "an escaped backslash then N is text");
        assert!(!null_field(row, 3));
        assert!(!null_field(row, 4), "no such field");
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

    /// Text for fields: COPY's specials, the letters of escape sequences, other controls,
    /// multi-byte characters and any character, but no NUL (the SDK refuses it).
    fn field_text() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            3 => prop::sample::select(vec![
                '\\', '\t', '\n', '\r', 'N', '.', '0', 'x', 'b', 'v', '\u{8}', '\u{b}',
                '\u{1f}', '\u{7f}', 'é', '😀',
            ]),
            2 => any::<char>().prop_filter("no NUL", |c| *c != '\0'),
        ];
        prop::collection::vec(c, 0..12).prop_map(String::from_iter)
    }

    /// Rows of `columns` fields (NULL or text), as the guest SDK writes them.
    fn sdk_rows() -> impl Strategy<Value = (usize, Vec<copy_text::Row>, Vec<u8>)> {
        (1usize..6).prop_flat_map(|columns| {
            prop::collection::vec(
                prop::collection::vec(prop::option::weighted(0.85, field_text()), columns),
                1..6,
            )
            .prop_map(move |rows| {
                let mut out = Vec::new();
                let mut writer = pgsink_guest::RowWriter::new(&mut out, columns);
                for fields in &rows {
                    let mut row = writer.row();
                    for field in fields {
                        row.push_opt(field.as_deref());
                    }
                }
                assert_eq!(writer.take_outcome(), Ok(rows.len() as u32));
                (columns, rows, out)
            })
        })
    }

    /// Where a token of escaped text starts: a character or an escape pair, plus the end. A
    /// corruption inserted there does not split an escape.
    fn token_starts(text: &[u8]) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut i = 0;
        while i < text.len() {
            starts.push(i);
            i += match text[i] {
                b'\\' => 2,
                b if b < 0x80 => 1,
                b if b >= 0xf0 => 4,
                b if b >= 0xe0 => 3,
                _ => 2,
            };
        }
        starts.push(text.len());
        starts
    }

    /// The contract of converter output, as a simple model: UTF-8 without NUL or raw CR, whole rows
    /// ending in a newline, `columns` fields per row, and no backslash but `\\ \t \n \r \b
    /// \f \v` and a whole-field `\N`.
    fn contract_accepts(text: &[u8], columns: usize) -> bool {
        if text.is_empty() {
            return true;
        }
        if std::str::from_utf8(text).is_err()
            || text.contains(&0)
            || text.contains(&b'\r')
            || text.last() != Some(&b'\n')
        {
            return false;
        }
        text[..text.len() - 1].split(|&b| b == b'\n').all(|row| {
            let fields: Vec<&[u8]> = row.split(|&b| b == b'\t').collect();
            fields.len() == columns
                && fields.iter().all(|field| {
                    if *field == b"\\N" {
                        return true;
                    }
                    let mut bytes = field.iter();
                    while let Some(&b) = bytes.next() {
                        if b == b'\\'
                            && !matches!(
                                bytes.next(),
                                Some(b'\\' | b't' | b'n' | b'r' | b'b' | b'f' | b'v')
                            )
                        {
                            return false;
                        }
                    }
                    true
                })
        })
    }

    /// Ways to break well-formed rows, each with the words its rejection must contain.
    #[derive(Debug, Clone)]
    enum Corruption {
        /// A tab and a field before a row's newline.
        ExtraField(prop::sample::Index),
        /// One field separator removed.
        MissingField(prop::sample::Index),
        /// A raw NUL byte at a token boundary.
        Nul(prop::sample::Index),
        /// A byte that cannot occur in UTF-8 there (FF, a lone C3, a lone continuation byte).
        InvalidUtf8(prop::sample::Index, u8),
        /// A backslash and a character no allowed escape starts with.
        BadEscape(prop::sample::Index, char),
        /// `\N` inside a non-empty field.
        NullInside(prop::sample::Index),
        /// The last newline removed, or text after it.
        Unterminated(bool),
    }

    fn corruption() -> impl Strategy<Value = Corruption> {
        let at = any::<prop::sample::Index>;
        prop_oneof![
            at().prop_map(Corruption::ExtraField),
            at().prop_map(Corruption::MissingField),
            at().prop_map(Corruption::Nul),
            (at(), prop::sample::select(vec![0xff, 0xc3, 0x80, 0xfe]))
                .prop_map(|(i, b)| Corruption::InvalidUtf8(i, b)),
            (
                at(),
                prop::sample::select(vec![
                    '0', '7', 'x', '.', 'a', 'q', 'T', ' ', '\t', '\n', 'é'
                ])
            )
                .prop_map(|(i, c)| Corruption::BadEscape(i, c)),
            at().prop_map(Corruption::NullInside),
            any::<bool>().prop_map(Corruption::Unterminated),
        ]
    }

    /// Applies `corruption` to `text` (well-formed rows); `None` when it does not
    /// apply (no separator to remove in one-column rows, no non-empty field), otherwise the
    /// corrupted text and the words one of which the rejection must contain.
    fn corrupt(text: &[u8], corruption: &Corruption) -> Option<(Vec<u8>, &'static [&'static str])> {
        let mut out = text.to_vec();
        let newlines: Vec<usize> = memchr::memchr_iter(b'\n', text).collect();
        let tabs: Vec<usize> = memchr::memchr_iter(b'\t', text).collect();
        let starts = token_starts(text);
        // Not after the final newline: there, any byte is first of all an unterminated row.
        let inner = &starts[..starts.len() - 1];
        Some(match corruption {
            Corruption::ExtraField(i) => {
                out.splice(*i.get(&newlines)..*i.get(&newlines), *b"\tx");
                (out, &["fields for"])
            }
            Corruption::MissingField(i) => {
                if tabs.is_empty() {
                    return None;
                }
                out.remove(*i.get(&tabs));
                // Joined to a NULL marker, the marker is what is wrong first.
                (out, &["fields for", "NULL marker inside"])
            }
            Corruption::Nul(i) => {
                out.insert(*i.get(inner), 0);
                (out, &["NUL byte"])
            }
            Corruption::InvalidUtf8(i, b) => {
                out.insert(*i.get(inner), *b);
                (out, &["invalid UTF-8"])
            }
            Corruption::BadEscape(i, c) => {
                let at = *i.get(inner);
                let mut escape = vec![b'\\'];
                escape.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                out.splice(at..at, escape);
                // Right after a NULL marker, the marker is what is wrong first.
                (out, &["unsupported escape", "NULL marker inside"])
            }
            Corruption::NullInside(i) => {
                // Token boundaries in a non-empty field (a NULL marker counts as content).
                let inside: Vec<usize> = starts
                    .iter()
                    .copied()
                    .filter(|&at| {
                        let before = at > 0 && !matches!(text[at - 1], b'\t' | b'\n');
                        let after = at < text.len() && !matches!(text[at], b'\t' | b'\n');
                        before || after
                    })
                    .collect();
                if inside.is_empty() {
                    return None;
                }
                let at = *i.get(&inside);
                out.splice(at..at, *b"\\N");
                (out, &["NULL marker inside"])
            }
            Corruption::Unterminated(true) => {
                out.pop();
                if out.is_empty() || out.ends_with(b"\n") {
                    return None; // the last row was a lone empty field: still whole rows
                }
                (out, &["newline"])
            }
            Corruption::Unterminated(false) => {
                out.extend_from_slice(b"x\ty");
                (out, &["newline"])
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Every batch of rows the guest SDK writes passes the check, and PostgreSQL's COPY
        /// decoding of it gives back exactly the fields written; the same text is refused for
        /// any other column count.
        #[test]
        fn accepts_every_row_the_sdk_writes((columns, rows, text) in sdk_rows()) {
            prop_assert_eq!(check_rows(&text, columns), Ok(()));
            prop_assert_eq!(copy_text::decode(&text), Ok(rows));
            let wrong = check_rows(&text, columns + 1).unwrap_err();
            prop_assert!(wrong.contains("fields for"), "{}", wrong);
            if columns > 1 {
                prop_assert!(check_rows(&text, columns - 1).is_err());
            }
        }

        /// Each kind of corruption of well-formed rows is refused, with its reason.
        #[test]
        fn rejects_corrupted_rows((columns, _rows, text) in sdk_rows(), corruption in corruption()) {
            let Some((bad, reasons)) = corrupt(&text, &corruption) else {
                return Ok(());
            };
            let err = check_rows(&bad, columns);
            prop_assert!(
                err.as_ref().is_err_and(|e| reasons.iter().any(|r| e.contains(r))),
                "{:?} of {:?} gave {:?}, expected an error with one of {:?}",
                corruption, String::from_utf8_lossy(&bad), err, reasons
            );
        }

        /// On arbitrary text over COPY's alphabet, the check accepts exactly what the contract
        /// allows, and what it accepts PostgreSQL reads as rows of the right width.
        #[test]
        fn agrees_with_the_contract_on_arbitrary_text(
            columns in 1usize..4,
            text in prop::collection::vec(
                prop::sample::select(vec![
                    b'a', b'\\', b'\\', b't', b'n', b'r', b'N', b'.', b'0', b'x', b'v',
                    b'\t', b'\t', b'\n', b'\n', 0, 0xc3, 0xa9, 0xff, 0x80,
                ]),
                0..16,
            ),
        ) {
            let ours = check_rows(&text, columns);
            prop_assert_eq!(ours.is_ok(), contract_accepts(&text, columns), "{:?}: {:?}", String::from_utf8_lossy(&text), ours);
            if ours.is_ok() {
                let rows = copy_text::decode(&text);
                prop_assert!(
                    rows.as_ref().is_ok_and(|rows| rows.iter().all(|r| r.len() == columns)),
                    "{:?} passed the check but PostgreSQL reads {:?}", String::from_utf8_lossy(&text), rows
                );
            }
        }
    }

    /// A raw carriage return is refused: PostgreSQL's COPY either rejects it ("literal
    /// carriage return found in data", which would make the writer bisect the whole flush) or,
    /// when `\r\n` ends the first row of a COPY, takes it as the line ending and drops it from
    /// the value (`a\tb\r\n` would load as ("a", "b")). The guest SDK never writes one.
    #[test]
    fn rejects_a_raw_carriage_return() {
        for text in [&b"a\tb\r\n"[..], b"a\rb\tc\n", b"\r\t\n"] {
            assert!(check_rows(text, 2).is_err(), "{text:?} passed");
            assert!(
                copy_text::decode(text).is_err(),
                "the reference decoder refuses {text:?}"
            );
        }
    }
}
