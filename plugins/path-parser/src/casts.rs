//! Casts: rewriting a selected JSON value into the text PostgreSQL's COPY
//! input expects for a column type that JSON cannot express directly.
//!
//! Without a cast a column receives the value's JSON text, which PostgreSQL
//! rejects for several common shapes of Kafka data: a `timestamptz` column
//! cannot read epoch numbers, an array column cannot read `[1,2]`, a `bytea`
//! column reads base64 only through `decode()`, and a `numeric` column would
//! take a string holding garbage only to fail the whole COPY batch. Each cast
//! writes the PostgreSQL input text instead; the COPY field writer escapes it
//! afterwards, so nothing here deals with COPY's own escaping.
//!
//! The epoch casts work on the decimal digits as written, never on floats:
//! nanoseconds since 1970 already exceed the 53-bit precision of an `f64`, and
//! a fraction such as `0.1` has no exact binary form.
//!
//! The spans come from [`scan`](crate::scanner::scan), which validated the whole
//! document, so the walks below trust the JSON grammar; they still read every
//! byte through bounds-checked accessors and return an error rather than
//! panic when a span does not hold what it should.

use std::borrow::Cow;

use crate::scanner::{write_compact, write_string, Selected};

/// How a selected value is rewritten for its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cast {
    /// Seconds since the Unix epoch, to `timestamptz` text.
    EpochSeconds,
    /// Milliseconds since the Unix epoch, to `timestamptz` text.
    EpochMillis,
    /// Microseconds since the Unix epoch, to `timestamptz` text.
    EpochMicros,
    /// Nanoseconds since the Unix epoch, to `timestamptz` text.
    EpochNanos,
    /// A JSON array, to an array literal such as `{1,2,3}`.
    Array,
    /// Base64 text, to `bytea` hex text such as `\x0aff`.
    Base64,
    /// A number, or a string holding one, checked and written as it is.
    Numeric,
}

/// Every cast, in the order the error for an unknown name lists them.
const CASTS: [Cast; 7] = [
    Cast::EpochSeconds,
    Cast::EpochMillis,
    Cast::EpochMicros,
    Cast::EpochNanos,
    Cast::Array,
    Cast::Base64,
    Cast::Numeric,
];

impl Cast {
    /// From its name in the `db.json.cast` setting: "epoch-s", "epoch-ms",
    /// "epoch-us", "epoch-ns", "array", "base64", "numeric".
    pub fn parse(name: &str) -> Result<Cast, String> {
        CASTS
            .into_iter()
            .find(|cast| cast.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown cast {name:?} (the casts are epoch-s, epoch-ms, epoch-us, epoch-ns, array, base64 and numeric)"
                )
            })
    }

    /// The name [`Cast::parse`] accepts.
    pub fn name(self) -> &'static str {
        match self {
            Cast::EpochSeconds => "epoch-s",
            Cast::EpochMillis => "epoch-ms",
            Cast::EpochMicros => "epoch-us",
            Cast::EpochNanos => "epoch-ns",
            Cast::Array => "array",
            Cast::Base64 => "base64",
            Cast::Numeric => "numeric",
        }
    }

    /// For an epoch cast, how many decimal places its unit lies below a second.
    fn epoch_places(self) -> Option<usize> {
        match self {
            Cast::EpochSeconds => Some(0),
            Cast::EpochMillis => Some(3),
            Cast::EpochMicros => Some(6),
            Cast::EpochNanos => Some(9),
            Cast::Array | Cast::Base64 | Cast::Numeric => None,
        }
    }
}

/// Writes the PostgreSQL text of `selected` (never [`Selected::Null`]: the
/// caller writes NULL itself) cast by `cast`.
///
/// Nothing is written when the cast fails, except by the array cast, which
/// can only fail on a span that is not valid JSON.
pub fn apply(
    cast: Cast,
    json: &str,
    selected: Selected,
    out: &mut impl FnMut(&str),
) -> Result<(), String> {
    let name = cast.name();
    let (start, end) = match selected {
        Selected::Null => return Err(format!("cast {name} has nothing to cast, found null")),
        Selected::String { start, end, .. }
        | Selected::Scalar { start, end }
        | Selected::Composite { start, end } => (start, end),
    };
    let text = json
        .get(start..end)
        .ok_or_else(|| format!("cast {name} found bytes {start}..{end} outside the message"))?;
    let escaped = matches!(selected, Selected::String { escaped: true, .. });

    match (cast, selected) {
        (
            Cast::EpochSeconds
            | Cast::EpochMillis
            | Cast::EpochMicros
            | Cast::EpochNanos
            | Cast::Array,
            Selected::String { .. },
        ) => {
            // An epoch string is timestamp text PostgreSQL parses itself (ISO 8601),
            // and an array string is an array literal already.
            let decoded = decoded(name, text, escaped)?;
            out(&decoded);
            Ok(())
        }
        (Cast::Base64, Selected::String { .. }) => {
            base64(name, &decoded(name, text, escaped)?, out)
        }
        (Cast::Numeric, Selected::String { .. }) => {
            let decoded = decoded(name, text, escaped)?;
            if !is_numeric_text(&decoded) {
                return Err(format!(
                    "cast {name} needs a number or a string holding one, found the string {:?}",
                    shown(&decoded)
                ));
            }
            out(&decoded);
            Ok(())
        }
        (Cast::Numeric, Selected::Scalar { .. }) if !is_boolean(text) => {
            out(text);
            Ok(())
        }
        (Cast::Array, Selected::Composite { .. }) if text.starts_with('[') => {
            array(name, text, start, out)
        }
        (_, Selected::Scalar { .. }) if !is_boolean(text) => match cast.epoch_places() {
            Some(places) => {
                let (seconds, nanos) = epoch(text, places).map_err(|problem| match problem {
                    EpochProblem::NotANumber => format!(
                        "cast {name} needs a number or a string, found {:?}",
                        shown(text)
                    ),
                    EpochProblem::Exponent => format!(
                        "cast {name} needs a plain integer or decimal, found {} written with an exponent",
                        shown(text)
                    ),
                    EpochProblem::OutOfRange => format!(
                        "cast {name} found {}, which is out of PostgreSQL's timestamp range (4714-11-24 BC to 294276-12-31)",
                        shown(text)
                    ),
                })?;
                write_timestamp(seconds, nanos, out);
                Ok(())
            }
            None => Err(wrong_type(cast, selected, text)),
        },
        _ => Err(wrong_type(cast, selected, text)),
    }
}

/// The error for a value of a type the cast does not take.
fn wrong_type(cast: Cast, selected: Selected, text: &str) -> String {
    let needs = match cast {
        Cast::Array => "an array or a string",
        Cast::Base64 => "a string",
        _ => "a number or a string",
    };
    let found = match selected {
        Selected::Null => "null",
        Selected::String { .. } => "a string",
        Selected::Scalar { .. } if is_boolean(text) => text,
        Selected::Scalar { .. } => "a number",
        Selected::Composite { .. } if text.starts_with('[') => "an array",
        Selected::Composite { .. } => "an object",
    };
    format!("cast {} needs {needs}, found {found}", cast.name())
}

fn is_boolean(text: &str) -> bool {
    text == "true" || text == "false"
}

/// `text` cut to 40 characters for an error message: a JSON number or string
/// may be megabytes long.
fn shown(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(40) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

/// The content of a selected string with its JSON escapes decoded; borrowed
/// when it has none, which is the common case.
fn decoded<'a>(name: &str, raw: &'a str, escaped: bool) -> Result<Cow<'a, str>, String> {
    if !escaped {
        return Ok(Cow::Borrowed(raw));
    }
    if !escapes_fit(raw.as_bytes()) {
        return Err(format!(
            "cast {name} found a string ending in an incomplete escape"
        ));
    }
    let mut text = String::with_capacity(raw.len());
    write_string(raw, true, |piece| text.push_str(piece));
    Ok(Cow::Owned(text))
}

/// Whether every escape in `raw` has the bytes the scanner's decoder reads
/// after its backslash. The decoder trusts the scan's validation and slices
/// past them; this keeps [`apply`] from panicking on a span it was not built for.
fn escapes_fit(raw: &[u8]) -> bool {
    let mut at = 0;
    while let Some(found) = raw
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
    {
        let backslash = at + found;
        let len = match raw.get(backslash + 1) {
            Some(b'u') => {
                let unit = raw.get(backslash + 2..backslash + 6).and_then(|digits| {
                    digits.iter().try_fold(0u32, |unit, &b| {
                        Some(unit << 4 | char::from(b).to_digit(16)?)
                    })
                });
                match unit {
                    Some(0xD800..=0xDBFF) => 12,
                    _ => 6,
                }
            }
            Some(_) => 2,
            None => 1,
        };
        if backslash + len > raw.len() {
            return false;
        }
        at = backslash + len;
    }
    true
}

// ---------------------------------------------------------------------------
// Epoch casts

/// The earliest instant PostgreSQL's `timestamptz` holds, 4714-11-24 00:00:00
/// BC (Julian day 0), in microseconds since the Unix epoch.
const MIN_MICROS: i128 = -210_866_803_200_000_000;
/// The first instant past PostgreSQL's `timestamptz`, 294277-01-01 00:00:00,
/// in microseconds since the Unix epoch (more than an `i64` holds).
const END_MICROS: i128 = 9_224_318_016_000_000_000;

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Why a number is not an epoch the cast can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EpochProblem {
    NotANumber,
    Exponent,
    OutOfRange,
}

/// The instant that the JSON number `text`, counted in units `places`
/// decimal places below a second, stands for: whole seconds since the epoch
/// and nanoseconds within that second.
///
/// Digits below a nanosecond are dropped, rounding toward the past so that a
/// negative value still lands in the second before it.
fn epoch(text: &str, places: usize) -> Result<(i64, u32), EpochProblem> {
    let bytes = text.as_bytes();
    let (negative, unsigned) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    if unsigned.iter().any(|&b| b == b'e' || b == b'E') {
        return Err(EpochProblem::Exponent);
    }
    let int_len = unsigned.iter().take_while(|b| b.is_ascii_digit()).count();
    let (int, rest) = unsigned.split_at(int_len);
    let frac = match rest {
        [] => rest,
        [b'.', frac @ ..] if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) => frac,
        _ => return Err(EpochProblem::NotANumber),
    };
    if int.is_empty() {
        return Err(EpochProblem::NotANumber);
    }

    // Seconds are the digits of `int` and `frac` with the decimal point moved
    // `places` to the left: the first `whole` digits, then the fraction,
    // which starts with `lead` zeros when `int` is shorter than `places`.
    let whole = int.len().saturating_sub(places);
    let lead = places.saturating_sub(int.len());
    let mut digits = int.iter().chain(frac).map(|&b| i128::from(b - b'0'));
    let mut seconds: i128 = 0;
    for digit in digits.by_ref().take(whole) {
        seconds = seconds
            .checked_mul(10)
            .and_then(|s| s.checked_add(digit))
            .ok_or(EpochProblem::OutOfRange)?;
    }
    let mut fraction = std::iter::repeat_n(0, lead).chain(digits);
    let mut nanos: i128 = 0;
    for _ in 0..9 {
        nanos = nanos * 10 + fraction.next().unwrap_or(0);
    }
    let below_nanos = fraction.any(|digit| digit != 0);

    let magnitude = seconds
        .checked_mul(NANOS_PER_SECOND)
        .and_then(|n| n.checked_add(nanos))
        .ok_or(EpochProblem::OutOfRange)?;
    let total = if negative {
        -magnitude - i128::from(below_nanos)
    } else {
        magnitude
    };
    // PostgreSQL keeps microseconds, rounding the rest: check the value it will store.
    let micros = (total + 500).div_euclid(1000);
    if !(MIN_MICROS..END_MICROS).contains(&micros) {
        return Err(EpochProblem::OutOfRange);
    }
    let seconds =
        i64::try_from(total.div_euclid(NANOS_PER_SECOND)).map_err(|_| EpochProblem::OutOfRange)?;
    let nanos =
        u32::try_from(total.rem_euclid(NANOS_PER_SECOND)).map_err(|_| EpochProblem::OutOfRange)?;
    Ok((seconds, nanos))
}

/// Writes `millis` since the Unix epoch as timestamptz text (used for the
/// Kafka message timestamp too).
///
/// Every `i64` gets a date, also those past PostgreSQL's range, which
/// PostgreSQL then rejects itself.
pub fn write_timestamp_millis(millis: i64, out: &mut impl FnMut(&str)) {
    let seconds = millis.div_euclid(1000);
    let nanos = millis.rem_euclid(1000).unsigned_abs() as u32 * 1_000_000;
    write_timestamp(seconds, nanos, out);
}

/// Writes an instant as `YYYY-MM-DD HH:MM:SS[.fraction]+00`, the ISO form
/// PostgreSQL reads under any `DateStyle`.
///
/// The fraction keeps its significant digits (PostgreSQL rounds it to
/// microseconds). Years before 1 AD are written as PostgreSQL writes them,
/// counted back from 1 BC with ` BC` at the end, since its input has no
/// year 0 or negative years; years past 9999 take more digits.
fn write_timestamp(seconds: i64, nanos: u32, out: &mut impl FnMut(&str)) {
    let days = seconds.div_euclid(86_400);
    let time = seconds.rem_euclid(86_400).unsigned_abs();
    let (year, month, day) = civil_from_days(days);
    let bc = year <= 0;
    let year = if bc { 1 - year } else { year };

    let mut text = Text::default();
    text.number(year.unsigned_abs(), 4);
    text.push(b"-");
    text.number(month, 2);
    text.push(b"-");
    text.number(day, 2);
    text.push(b" ");
    text.number(time / 3600, 2);
    text.push(b":");
    text.number(time / 60 % 60, 2);
    text.push(b":");
    text.number(time % 60, 2);
    if nanos > 0 {
        let mut fraction = nanos;
        let mut places = 9;
        while fraction.is_multiple_of(10) {
            fraction /= 10;
            places -= 1;
        }
        text.push(b".");
        text.number(u64::from(fraction), places);
    }
    text.push(b"+00");
    if bc {
        text.push(b" BC");
    }
    out(text.as_str());
}

/// The proleptic Gregorian (year, month, day) of a day counted from
/// 1970-01-01; year 0 is 1 BC. Howard Hinnant's `civil_from_days`, which
/// works in 400-year eras of exactly 146097 days.
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    (year, month.unsigned_abs(), day.unsigned_abs())
}

/// A timestamp's text, built on the stack. The longest, from an `i64` of
/// seconds, is 12 year digits plus 31 bytes.
struct Text {
    bytes: [u8; 48],
    len: usize,
}

impl Default for Text {
    fn default() -> Self {
        Text {
            bytes: [0; 48],
            len: 0,
        }
    }
}

impl Text {
    fn push(&mut self, piece: &[u8]) {
        let end = (self.len + piece.len()).min(self.bytes.len());
        let taken = end - self.len;
        self.bytes[self.len..end].copy_from_slice(&piece[..taken]);
        self.len = end;
    }

    /// Appends `n` in decimal, zero-padded to at least `width` digits.
    fn number(&mut self, mut n: u64, width: usize) {
        let mut digits = [b'0'; 20];
        let mut start = digits.len();
        while n > 0 || digits.len() - start < width.min(digits.len()) {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.push(&digits[start..]);
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Array cast

/// Writes the JSON array `text` (which starts at byte `base` of the message)
/// as a PostgreSQL array literal.
///
/// Brackets become braces; numbers, `true` and `false` keep their text;
/// `null` becomes `NULL`. Every string is double-quoted, because unquoted
/// elements lose surrounding spaces and read `NULL`, `""`, commas and braces
/// as syntax. Objects inside become their compact JSON text, quoted the same
/// way, for a `json[]` or `jsonb[]` column. Whether nested arrays form the
/// regular shape PostgreSQL requires is left to PostgreSQL to judge.
fn array(name: &str, text: &str, base: usize, out: &mut impl FnMut(&str)) -> Result<(), String> {
    let bytes = text.as_bytes();
    let invalid = |at: usize| format!("cast {name} found invalid JSON at byte {}", base + at);
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        match b {
            b'[' => {
                out("{");
                at += 1;
            }
            b']' => {
                out("}");
                at += 1;
            }
            b',' => {
                out(",");
                at += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => at += 1,
            b'"' => {
                let (close, escaped) = string_end(bytes, at).ok_or_else(|| invalid(at))?;
                let raw = text.get(at + 1..close).ok_or_else(|| invalid(at))?;
                let content = decoded(name, raw, escaped)?;
                out("\"");
                write_quoted(&content, out);
                out("\"");
                at = close + 1;
            }
            b'{' => {
                let end = composite_end(bytes, at).ok_or_else(|| invalid(at))?;
                let object = text.get(at..end).ok_or_else(|| invalid(at))?;
                out("\"");
                write_compact(object, |piece| write_quoted(piece, out));
                out("\"");
                at = end;
            }
            _ => {
                let len = bytes[at..]
                    .iter()
                    .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                    .count();
                let token = text
                    .get(at..at + len)
                    .filter(|token| !token.is_empty())
                    .ok_or_else(|| invalid(at))?;
                out(if token == "null" { "NULL" } else { token });
                at += len;
            }
        }
    }
    Ok(())
}

/// Writes `piece` with `"` and `\` backslash-escaped, as a quoted array element needs.
fn write_quoted(piece: &str, out: &mut impl FnMut(&str)) {
    let mut rest = piece;
    while let Some(at) = rest.find(['"', '\\']) {
        let (run, special) = rest.split_at(at);
        let (special, after) = special.split_at(1);
        out(run);
        out("\\");
        out(special);
        rest = after;
    }
    out(rest);
}

/// For the string whose opening quote is at `open`: the offset of its closing
/// quote and whether it holds escapes.
fn string_end(bytes: &[u8], open: usize) -> Option<(usize, bool)> {
    let mut at = open + 1;
    let mut escaped = false;
    loop {
        match bytes.get(at)? {
            b'"' => return Some((at, escaped)),
            b'\\' => {
                escaped = true;
                at += 2;
            }
            _ => at += 1,
        }
    }
}

/// For the object or array whose opening bracket is at `open`: the offset
/// after its closing bracket.
fn composite_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = open;
    loop {
        match bytes.get(at)? {
            b'"' => at = string_end(bytes, at)?.0,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
    }
}

// ---------------------------------------------------------------------------
// Base64 cast

/// Writes the base64 text `text` as `bytea` hex text.
///
/// Both alphabets of RFC 4648 are read, the standard one (`+/`) and the
/// URL-safe one (`-_`); padding may be left out but, when present, must
/// complete the last group of four. Nothing is skipped: whitespace or any
/// other character is an error naming its byte offset in the string (after
/// JSON escapes are decoded, so a `\/` some encoders write reads as `/`).
/// Bits left over in the last character are ignored, as most decoders do.
fn base64(name: &str, text: &str, out: &mut impl FnMut(&str)) -> Result<(), String> {
    let bytes = text.as_bytes();
    let data_len = bytes.iter().position(|&b| b == b'=').unwrap_or(bytes.len());
    let (data, padding) = bytes.split_at(data_len);
    let found_at = |at: usize| {
        let c = text
            .get(at..)
            .and_then(|rest| rest.chars().next())
            .unwrap_or('?');
        format!("cast {name} needs base64 text, found {c:?} at byte {at}")
    };
    if let Some(at) = data.iter().position(|&b| sextet(b).is_none()) {
        return Err(found_at(at));
    }
    if let Some(at) = padding.iter().position(|&b| b != b'=') {
        return Err(format!("{} after the padding", found_at(data_len + at)));
    }
    match (data_len % 4, padding.len()) {
        (1, _) => {
            return Err(format!(
                "cast {name} needs base64 text, found a last group of one character at byte {}",
                data_len - 1
            ))
        }
        (_, 0) | (2, 2) | (3, 1) => {}
        _ => {
            return Err(format!(
                "cast {name} needs base64 text, found padding at byte {data_len} that does not complete a group of four"
            ))
        }
    }

    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 256];
    let mut len = 2;
    hex[..2].copy_from_slice(b"\\x");
    let mut bits: u32 = 0;
    let mut count = 0;
    for &b in data {
        bits = bits << 6 | sextet(b).unwrap_or(0);
        count += 6;
        if count >= 8 {
            count -= 8;
            let byte = (bits >> count) as u8;
            bits &= (1 << count) - 1;
            hex[len] = HEX[usize::from(byte >> 4)];
            hex[len + 1] = HEX[usize::from(byte & 0xF)];
            len += 2;
            if len == hex.len() {
                out(std::str::from_utf8(&hex).unwrap_or_default());
                len = 0;
            }
        }
    }
    out(std::str::from_utf8(&hex[..len]).unwrap_or_default());
    Ok(())
}

/// The 6-bit value of a base64 character of either alphabet.
fn sextet(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Numeric cast

/// Whether `text` is a number `numeric` reads: the JSON number grammar with
/// an optional leading `+`, or `NaN`, `Infinity`, `+Infinity`, `-Infinity`.
///
/// Stricter than PostgreSQL (which also takes `inf`, spaces around, leading
/// zeros, `1.` and `.5`), so that a string in a numeric field is a number
/// that some JSON producer wrote as text, not arbitrary input.
fn is_numeric_text(text: &str) -> bool {
    if matches!(text, "NaN" | "Infinity" | "+Infinity" | "-Infinity") {
        return true;
    }
    let bytes = match text.as_bytes() {
        [b'+' | b'-', rest @ ..] => rest,
        bytes => bytes,
    };
    let digits = |from: usize| {
        bytes.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        })
    };
    let mut at = match bytes.first() {
        Some(b'0') => 1,
        Some(b'1'..=b'9') => digits(0),
        _ => return false,
    };
    if bytes.get(at) == Some(&b'.') {
        let n = digits(at + 1);
        if n == 0 {
            return false;
        }
        at += 1 + n;
    }
    if let Some(b'e' | b'E') = bytes.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = bytes.get(at) {
            at += 1;
        }
        let n = digits(at);
        if n == 0 {
            return false;
        }
        at += n;
    }
    at == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::{parse_paths, PathTree};
    use crate::scanner::scan;
    use chrono::{DateTime, Datelike, Timelike};
    use proptest::prelude::*;

    /// `cast` applied to the whole document `json`, which must be valid JSON.
    fn cast(cast: Cast, json: &str) -> Result<String, String> {
        let tree = PathTree::compile(&parse_paths("/").unwrap());
        let mut selected = vec![Selected::Null];
        scan(json.as_bytes(), &tree, &mut selected, &mut Vec::new()).unwrap();
        let mut text = String::new();
        apply(cast, json, selected[0], &mut |piece: &str| {
            text.push_str(piece)
        })?;
        Ok(text)
    }

    fn ok(c: Cast, json: &str) -> String {
        cast(c, json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn err(c: Cast, json: &str) -> String {
        cast(c, json).expect_err(json)
    }

    fn millis(ms: i64) -> String {
        let mut text = String::new();
        write_timestamp_millis(ms, &mut |piece: &str| text.push_str(piece));
        text
    }

    /// The expected text of an instant, from chrono's calendar. Instants
    /// outside chrono's years (±262143) are moved by whole 400-year cycles,
    /// which repeat the calendar exactly.
    fn reference(seconds: i64, nanos: u32) -> String {
        const CYCLE: i64 = 146_097 * 86_400;
        let (shift, seconds) = match DateTime::from_timestamp(seconds, nanos) {
            Some(_) => (0, seconds),
            None => (seconds.div_euclid(CYCLE) * 400, seconds.rem_euclid(CYCLE)),
        };
        let t = DateTime::from_timestamp(seconds, nanos).unwrap();
        let year = i64::from(t.year()) + shift;
        let mut text = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            if year <= 0 { 1 - year } else { year },
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        if nanos > 0 {
            text.push_str(format!(".{nanos:09}").trim_end_matches('0'));
        }
        text.push_str("+00");
        if year <= 0 {
            text.push_str(" BC");
        }
        text
    }

    #[test]
    fn names_round_trip() {
        for c in CASTS {
            assert_eq!(Cast::parse(c.name()), Ok(c));
        }
        assert_eq!(Cast::parse("epoch-ms"), Ok(Cast::EpochMillis));
        let e = Cast::parse("epoch").unwrap_err();
        assert_eq!(
            e,
            "unknown cast \"epoch\" (the casts are epoch-s, epoch-ms, epoch-us, epoch-ns, array, base64 and numeric)"
        );
        assert!(Cast::parse("Array").is_err());
        assert!(Cast::parse(" array").is_err());
    }

    #[test]
    fn epoch_zero_in_every_unit() {
        for c in [
            Cast::EpochSeconds,
            Cast::EpochMillis,
            Cast::EpochMicros,
            Cast::EpochNanos,
        ] {
            assert_eq!(ok(c, "0"), "1970-01-01 00:00:00+00");
            assert_eq!(ok(c, "-0"), "1970-01-01 00:00:00+00");
            assert_eq!(ok(c, "0.0"), "1970-01-01 00:00:00+00");
        }
    }

    #[test]
    fn epoch_units() {
        assert_eq!(
            ok(Cast::EpochSeconds, "1700000000"),
            "2023-11-14 22:13:20+00"
        );
        assert_eq!(
            ok(Cast::EpochMillis, "1700000000123"),
            "2023-11-14 22:13:20.123+00"
        );
        assert_eq!(
            ok(Cast::EpochMicros, "1700000000123456"),
            "2023-11-14 22:13:20.123456+00"
        );
        assert_eq!(
            ok(Cast::EpochNanos, "1700000000123456789"),
            "2023-11-14 22:13:20.123456789+00"
        );
        assert_eq!(ok(Cast::EpochMillis, "1500"), "1970-01-01 00:00:01.5+00");
        assert_eq!(
            ok(Cast::EpochNanos, "1"),
            "1970-01-01 00:00:00.000000001+00"
        );
        assert_eq!(
            ok(Cast::EpochMicros, "86400000000"),
            "1970-01-02 00:00:00+00"
        );
    }

    #[test]
    fn epoch_fractions_in_every_unit() {
        assert_eq!(ok(Cast::EpochSeconds, "1.5"), "1970-01-01 00:00:01.5+00");
        assert_eq!(ok(Cast::EpochSeconds, "1.000"), "1970-01-01 00:00:01+00");
        assert_eq!(
            ok(Cast::EpochSeconds, "1.123456789"),
            "1970-01-01 00:00:01.123456789+00"
        );
        // Digits below a nanosecond are dropped.
        assert_eq!(
            ok(Cast::EpochSeconds, "1.1234567891999"),
            "1970-01-01 00:00:01.123456789+00"
        );
        assert_eq!(ok(Cast::EpochMillis, "1.5"), "1970-01-01 00:00:00.0015+00");
        assert_eq!(
            ok(Cast::EpochMillis, "1700000000123.25"),
            "2023-11-14 22:13:20.12325+00"
        );
        assert_eq!(
            ok(Cast::EpochMicros, "1.5"),
            "1970-01-01 00:00:00.0000015+00"
        );
        assert_eq!(
            ok(Cast::EpochMicros, "0.001"),
            "1970-01-01 00:00:00.000000001+00"
        );
        assert_eq!(
            ok(Cast::EpochNanos, "1.9"),
            "1970-01-01 00:00:00.000000001+00"
        );
        assert_eq!(ok(Cast::EpochNanos, "0.5"), "1970-01-01 00:00:00+00");
    }

    #[test]
    fn negative_epochs_floor() {
        assert_eq!(ok(Cast::EpochMillis, "-1"), "1969-12-31 23:59:59.999+00");
        assert_eq!(ok(Cast::EpochSeconds, "-1"), "1969-12-31 23:59:59+00");
        assert_eq!(ok(Cast::EpochSeconds, "-1.5"), "1969-12-31 23:59:58.5+00");
        assert_eq!(ok(Cast::EpochSeconds, "-86400"), "1969-12-31 00:00:00+00");
        assert_eq!(ok(Cast::EpochMicros, "-1"), "1969-12-31 23:59:59.999999+00");
        assert_eq!(
            ok(Cast::EpochNanos, "-1"),
            "1969-12-31 23:59:59.999999999+00"
        );
        // -1.5 ns lies between -2 ns and -1 ns; the earlier one is kept.
        assert_eq!(
            ok(Cast::EpochNanos, "-1.5"),
            "1969-12-31 23:59:59.999999998+00"
        );
        assert_eq!(
            ok(Cast::EpochNanos, "-0.5"),
            "1969-12-31 23:59:59.999999999+00"
        );
        assert_eq!(
            ok(Cast::EpochSeconds, "-0.0000000001"),
            "1969-12-31 23:59:59.999999999+00"
        );
    }

    #[test]
    fn years_before_1_ad_and_after_9999() {
        assert_eq!(
            ok(Cast::EpochSeconds, "-62135596800"),
            "0001-01-01 00:00:00+00"
        );
        assert_eq!(
            ok(Cast::EpochSeconds, "-62135596801"),
            "0001-12-31 23:59:59+00 BC"
        );
        assert_eq!(
            ok(Cast::EpochMillis, "-62135596800001"),
            "0001-12-31 23:59:59.999+00 BC"
        );
        // 1 BC is a leap year (year 0 of the proleptic Gregorian calendar).
        assert_eq!(
            ok(Cast::EpochSeconds, "-62162121600"),
            "0001-02-29 00:00:00+00 BC"
        );
        assert_eq!(
            ok(Cast::EpochSeconds, "253402300799"),
            "9999-12-31 23:59:59+00"
        );
        assert_eq!(
            ok(Cast::EpochSeconds, "253402300800"),
            "10000-01-01 00:00:00+00"
        );
    }

    #[test]
    fn postgresql_range_ends() {
        assert_eq!(
            ok(Cast::EpochSeconds, "-210866803200"),
            "4714-11-24 00:00:00+00 BC"
        );
        assert_eq!(
            ok(Cast::EpochSeconds, "9224318015999"),
            "294276-12-31 23:59:59+00"
        );
        assert_eq!(
            ok(Cast::EpochMicros, "9224318015999999999"),
            "294276-12-31 23:59:59.999999+00"
        );
        // Rounded to microseconds by PostgreSQL, this stays in range...
        assert_eq!(
            ok(Cast::EpochSeconds, "9224318015999.9999994"),
            "294276-12-31 23:59:59.9999994+00"
        );
        // ...and this reaches 294277.
        let e = err(Cast::EpochSeconds, "9224318015999.9999995");
        assert!(
            e.ends_with("is out of PostgreSQL's timestamp range (4714-11-24 BC to 294276-12-31)"),
            "{e}"
        );
        assert_eq!(
            err(Cast::EpochSeconds, "-210866803201"),
            "cast epoch-s found -210866803201, which is out of PostgreSQL's timestamp range (4714-11-24 BC to 294276-12-31)"
        );
        // PostgreSQL would round this up to its first microsecond.
        assert_eq!(
            ok(Cast::EpochSeconds, "-210866803200.0000004"),
            "4714-11-23 23:59:59.9999996+00 BC"
        );
        assert!(cast(Cast::EpochSeconds, "-210866803200.0000006").is_err());
        assert!(cast(Cast::EpochSeconds, "9224318016000").is_err());
        assert!(cast(Cast::EpochNanos, "9223372036854775807").is_ok());
        assert!(cast(Cast::EpochSeconds, &"9".repeat(39)).is_err());
        assert!(cast(Cast::EpochSeconds, &format!("-{}", "9".repeat(400))).is_err());
        let long = err(Cast::EpochNanos, &"1".repeat(1000));
        assert!(long.contains(&format!("{}...,", "1".repeat(40))), "{long}");
        assert!(long.len() < 200);
    }

    #[test]
    fn epoch_rejects_exponents_and_other_types() {
        assert_eq!(
            err(Cast::EpochMillis, "1.5E3"),
            "cast epoch-ms needs a plain integer or decimal, found 1.5E3 written with an exponent"
        );
        assert!(err(Cast::EpochSeconds, "1e0").ends_with("written with an exponent"));
        assert_eq!(
            err(Cast::EpochMillis, "true"),
            "cast epoch-ms needs a number or a string, found true"
        );
        assert_eq!(
            err(Cast::EpochSeconds, "false"),
            "cast epoch-s needs a number or a string, found false"
        );
        assert_eq!(
            err(Cast::EpochNanos, r#"{"a":1}"#),
            "cast epoch-ns needs a number or a string, found an object"
        );
        assert_eq!(
            err(Cast::EpochMicros, "[1]"),
            "cast epoch-us needs a number or a string, found an array"
        );
    }

    #[test]
    fn epoch_strings_pass_through_decoded() {
        assert_eq!(
            ok(Cast::EpochMillis, r#""2024-02-29T12:00:00Z""#),
            "2024-02-29T12:00:00Z"
        );
        assert_eq!(
            ok(Cast::EpochSeconds, r#""\u0032024-01-01 00:00:00+01""#),
            "2024-01-01 00:00:00+01"
        );
        assert_eq!(ok(Cast::EpochSeconds, r#""""#), "");
        assert_eq!(ok(Cast::EpochSeconds, r#""1700000000""#), "1700000000");
    }

    #[test]
    fn kafka_timestamps_over_the_whole_i64_range() {
        assert_eq!(millis(0), "1970-01-01 00:00:00+00");
        assert_eq!(millis(1_700_000_000_100), "2023-11-14 22:13:20.1+00");
        assert_eq!(millis(-1), "1969-12-31 23:59:59.999+00");
        assert_eq!(millis(i64::MAX), "292278994-08-17 07:12:55.807+00");
        assert_eq!(millis(i64::MIN), "292275056-05-16 16:47:04.192+00 BC");
    }

    #[test]
    fn null_and_bad_spans_are_errors() {
        let mut out = |_: &str| panic!("nothing is written");
        assert_eq!(
            apply(Cast::Numeric, "1", Selected::Null, &mut out),
            Err("cast numeric has nothing to cast, found null".into())
        );
        assert!(apply(
            Cast::Numeric,
            "1",
            Selected::Scalar { start: 0, end: 9 },
            &mut out
        )
        .is_err());
        assert!(apply(
            Cast::Array,
            "[é]",
            Selected::Composite { start: 0, end: 2 },
            &mut out
        )
        .is_err());
        let escape = r#""ab\ud800""#;
        let string = Selected::String {
            start: 1,
            end: escape.len() - 1,
            escaped: true,
        };
        assert_eq!(
            apply(Cast::EpochSeconds, escape, string, &mut out),
            Err("cast epoch-s found a string ending in an incomplete escape".into())
        );
        // The array cast writes as it walks: its errors need invalid JSON.
        assert_eq!(
            apply(
                Cast::Array,
                r#"["\u12"]"#,
                Selected::Composite { start: 0, end: 8 },
                &mut |_: &str| {}
            ),
            Err("cast array found a string ending in an incomplete escape".into())
        );
        assert_eq!(
            apply(
                Cast::Array,
                "[1,:]",
                Selected::Composite { start: 0, end: 5 },
                &mut |_: &str| {}
            ),
            Err("cast array found invalid JSON at byte 3".into())
        );
    }

    #[test]
    fn arrays_of_scalars() {
        assert_eq!(ok(Cast::Array, "[1,2,3]"), "{1,2,3}");
        assert_eq!(ok(Cast::Array, "[]"), "{}");
        assert_eq!(ok(Cast::Array, " [ ] "), "{}");
        assert_eq!(ok(Cast::Array, "[ 1 ,\n\t2 ,\r\n3 ]"), "{1,2,3}");
        assert_eq!(
            ok(Cast::Array, "[null, true, false, -1.5E+300, 0.0]"),
            "{NULL,true,false,-1.5E+300,0.0}"
        );
        assert_eq!(ok(Cast::Array, "[null]"), "{NULL}");
    }

    #[test]
    fn nested_arrays() {
        assert_eq!(ok(Cast::Array, "[[1,2],[3,4]]"), "{{1,2},{3,4}}");
        assert_eq!(ok(Cast::Array, "[[[1]], [[null]]]"), "{{{1}},{{NULL}}}");
        assert_eq!(ok(Cast::Array, "[[],[]]"), "{{},{}}");
        assert_eq!(
            ok(Cast::Array, r#"[["a", "b,c"], ["{d}", "\""]]"#),
            r#"{{"a","b,c"},{"{d}","\""}}"#
        );
    }

    #[test]
    fn array_strings_are_quoted_and_escaped() {
        assert_eq!(
            ok(
                Cast::Array,
                r#"["NULL", "a,b", "{x}", "", "  padded ", "q\"uote", "back\\slash", "\\\""]"#
            ),
            r#"{"NULL","a,b","{x}","","  padded ","q\"uote","back\\slash","\\\""}"#
        );
        assert_eq!(
            ok(
                Cast::Array,
                r#"["caf\u00e9", "\ud83d\ude00", "é", "\u00E9"]"#
            ),
            r#"{"café","😀","é","é"}"#
        );
        assert_eq!(
            ok(Cast::Array, r#"["a\nb\tc\/d\r\b\f"]"#),
            "{\"a\nb\tc/d\r\u{8}\u{c}\"}"
        );
        assert_eq!(ok(Cast::Array, r#"["[1]", "null"]"#), r#"{"[1]","null"}"#);
    }

    #[test]
    fn array_objects_become_quoted_compact_json() {
        assert_eq!(
            ok(Cast::Array, r#"[{"a": "x\"y", "b": [1, 2]}, {}, null]"#),
            r#"{"{\"a\":\"x\\\"y\",\"b\":[1,2]}","{}",NULL}"#
        );
        assert_eq!(
            ok(Cast::Array, r#"[[{"k":"} ]"}], [{"w":"a b"}]]"#),
            r#"{{"{\"k\":\"} ]\"}"},{"{\"w\":\"a b\"}"}}"#
        );
        // Escapes inside an object stay JSON escapes (the value is JSON text).
        assert_eq!(
            ok(Cast::Array, r#"[{"e":"\u00e9\\"}]"#),
            r#"{"{\"e\":\"\\u00e9\\\\\"}"}"#
        );
    }

    #[test]
    fn array_strings_pass_through_and_other_types_fail() {
        assert_eq!(ok(Cast::Array, r#""{1,2}""#), "{1,2}");
        assert_eq!(ok(Cast::Array, r#""{\"a b\"}""#), r#"{"a b"}"#);
        assert_eq!(
            err(Cast::Array, r#"{"a":[1]}"#),
            "cast array needs an array or a string, found an object"
        );
        assert_eq!(
            err(Cast::Array, "12"),
            "cast array needs an array or a string, found a number"
        );
        assert_eq!(
            err(Cast::Array, "true"),
            "cast array needs an array or a string, found true"
        );
    }

    #[test]
    fn base64_to_hex() {
        assert_eq!(ok(Cast::Base64, r#""""#), r"\x");
        assert_eq!(ok(Cast::Base64, r#""aGVsbG8=""#), r"\x68656c6c6f");
        assert_eq!(ok(Cast::Base64, r#""aGVsbG8""#), r"\x68656c6c6f");
        assert_eq!(ok(Cast::Base64, r#""aGVsbA==""#), r"\x68656c6c");
        assert_eq!(ok(Cast::Base64, r#""aGVsbA""#), r"\x68656c6c");
        assert_eq!(ok(Cast::Base64, r#""aGVs""#), r"\x68656c");
        assert_eq!(ok(Cast::Base64, r#""AAr/""#), r"\x000aff");
        assert_eq!(ok(Cast::Base64, r#""+/+/""#), r"\xfbffbf");
        assert_eq!(ok(Cast::Base64, r#""-_-_""#), r"\xfbffbf");
        assert_eq!(ok(Cast::Base64, r#""+_-/""#), r"\xfbffbf");
        assert_eq!(ok(Cast::Base64, r#""AAr\/""#), r"\x000aff");
        // Unused low bits of the last character are ignored.
        assert_eq!(ok(Cast::Base64, r#""QR==""#), r"\x41");
        let long = "AAEC".repeat(500);
        assert_eq!(
            ok(Cast::Base64, &format!("\"{long}\"")),
            format!(r"\x{}", "000102".repeat(500))
        );
    }

    #[test]
    fn invalid_base64() {
        assert_eq!(
            err(Cast::Base64, r#""aGV!bG8=""#),
            "cast base64 needs base64 text, found '!' at byte 3"
        );
        assert_eq!(
            err(Cast::Base64, r#""aGVs bG8=""#),
            "cast base64 needs base64 text, found ' ' at byte 4"
        );
        assert_eq!(
            err(Cast::Base64, r#""aGVs\nbG8=""#),
            "cast base64 needs base64 text, found '\\n' at byte 4"
        );
        assert_eq!(
            err(Cast::Base64, r#""aGé=""#),
            "cast base64 needs base64 text, found 'é' at byte 2"
        );
        assert_eq!(
            err(Cast::Base64, r#""aGVsb""#),
            "cast base64 needs base64 text, found a last group of one character at byte 4"
        );
        assert_eq!(
            err(Cast::Base64, r#""aGVsbG8==""#),
            "cast base64 needs base64 text, found padding at byte 7 that does not complete a group of four"
        );
        assert!(err(Cast::Base64, r#""aGVsbA=""#).contains("padding at byte 6"));
        assert!(err(Cast::Base64, r#""aGVs=""#).contains("padding at byte 4"));
        assert_eq!(
            err(Cast::Base64, r#""aG=Vs""#),
            "cast base64 needs base64 text, found 'V' at byte 3 after the padding"
        );
        assert_eq!(
            err(Cast::Base64, "12"),
            "cast base64 needs a string, found a number"
        );
        assert_eq!(
            err(Cast::Base64, "[]"),
            "cast base64 needs a string, found an array"
        );
    }

    #[test]
    fn numeric_numbers_as_written() {
        for n in [
            "0",
            "-0.0",
            "1.5E+300",
            "123456789012345678901234567890",
            "2e-5",
        ] {
            assert_eq!(ok(Cast::Numeric, n), n);
        }
    }

    #[test]
    fn numeric_strings() {
        for n in [
            "12.5",
            "+3",
            "-1e-5",
            "0",
            "1E+3",
            "NaN",
            "Infinity",
            "+Infinity",
            "-Infinity",
        ] {
            assert_eq!(ok(Cast::Numeric, &format!("\"{n}\"")), n);
        }
        assert_eq!(ok(Cast::Numeric, r#""\u0031\u0032""#), "12");
        for bad in [
            "", "abc", " 1", "1 ", "1.", ".5", "01", "1e", "1e+", "+", "-", "nan", "inf", "0x10",
            "1,5", "++1", "- 1",
        ] {
            assert_eq!(
                err(Cast::Numeric, &format!("\"{bad}\"")),
                format!(
                    "cast numeric needs a number or a string holding one, found the string {bad:?}"
                )
            );
        }
    }

    #[test]
    fn numeric_rejects_other_types() {
        assert_eq!(
            err(Cast::Numeric, "true"),
            "cast numeric needs a number or a string, found true"
        );
        assert_eq!(
            err(Cast::Numeric, "{}"),
            "cast numeric needs a number or a string, found an object"
        );
        assert_eq!(
            err(Cast::Numeric, "[1]"),
            "cast numeric needs a number or a string, found an array"
        );
    }

    #[test]
    fn casts_of_a_member_inside_a_document() {
        let json = r#"{"ts": 1700000000000, "tags": ["a", "b"], "raw": "AQID", "n": "7"}"#;
        let tree = PathTree::compile(&parse_paths("/@ts,/@tags,/@raw,/@n").unwrap());
        let mut selected = vec![Selected::Null; 4];
        scan(json.as_bytes(), &tree, &mut selected, &mut Vec::new()).unwrap();
        let casts = [Cast::EpochMillis, Cast::Array, Cast::Base64, Cast::Numeric];
        let got: Vec<String> = casts
            .iter()
            .zip(&selected)
            .map(|(&c, &s)| {
                let mut text = String::new();
                apply(c, json, s, &mut |piece: &str| text.push_str(piece)).unwrap();
                text
            })
            .collect();
        assert_eq!(
            got,
            ["2023-11-14 22:13:20+00", r#"{"a","b"}"#, r"\x010203", "7"]
        );
    }

    /// Standard or URL-safe base64, with or without padding.
    fn encode(bytes: &[u8], url_safe: bool, pad: bool) -> String {
        let alphabet: &[u8] = if url_safe {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        } else {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        };
        let mut text = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                text.push(char::from(alphabet[(n >> (18 - 6 * i) & 63) as usize]));
            }
            if pad {
                text.push_str(&"=".repeat(3 - chunk.len()));
            }
        }
        text
    }

    /// The elements of a one-dimensional array literal whose elements are
    /// quoted strings or NULL.
    fn parse_literal(literal: &str) -> Vec<Option<String>> {
        let inner = literal
            .strip_prefix('{')
            .unwrap()
            .strip_suffix('}')
            .unwrap();
        let mut elements = Vec::new();
        let mut chars = inner.chars().peekable();
        while chars.peek().is_some() {
            if chars.peek() == Some(&'N') {
                let word: String = chars.by_ref().take(4).collect();
                assert_eq!(word, "NULL");
                elements.push(None);
            } else {
                assert_eq!(chars.next(), Some('"'));
                let mut s = String::new();
                loop {
                    match chars.next().unwrap() {
                        '"' => break,
                        '\\' => s.push(chars.next().unwrap()),
                        c => s.push(c),
                    }
                }
                elements.push(Some(s));
            }
            if let Some(c) = chars.next() {
                assert_eq!(c, ',');
            }
        }
        elements
    }

    /// Milliseconds since the Unix epoch within PostgreSQL's range.
    const MIN_MILLIS: i64 = -210_866_803_200_000;
    const END_MILLIS: i64 = 9_224_318_016_000_000;

    proptest! {
        #[test]
        fn timestamps_match_chrono(ms in prop_oneof![
            any::<i64>(),
            MIN_MILLIS..END_MILLIS,
            -100_000_000_000_000i64..100_000_000_000_000,
        ]) {
            let seconds = ms.div_euclid(1000);
            let nanos = ms.rem_euclid(1000) as u32 * 1_000_000;
            prop_assert_eq!(millis(ms), reference(seconds, nanos));
        }

        #[test]
        fn epoch_casts_agree_in_every_unit(ms in MIN_MILLIS..END_MILLIS) {
            let expected = millis(ms);
            let seconds = format!(
                "{}{}.{:03}",
                if ms < 0 { "-" } else { "" },
                ms.unsigned_abs() / 1000,
                ms.unsigned_abs() % 1000
            );
            prop_assert_eq!(&ok(Cast::EpochSeconds, &seconds), &expected);
            prop_assert_eq!(&ok(Cast::EpochMillis, &ms.to_string()), &expected);
            prop_assert_eq!(&ok(Cast::EpochMicros, &format!("{ms}000")), &expected);
            prop_assert_eq!(&ok(Cast::EpochNanos, &format!("{ms}000000")), &expected);
            prop_assert_eq!(&ok(Cast::EpochMillis, &format!("{ms}.000")), &expected);
        }

        #[test]
        fn epoch_micros_and_nanos_match_chrono(
            us in -210_866_803_200_000_000i64..=i64::MAX,
            ns in any::<i64>(),
        ) {
            prop_assert_eq!(
                ok(Cast::EpochMicros, &us.to_string()),
                reference(us.div_euclid(1_000_000), us.rem_euclid(1_000_000) as u32 * 1000)
            );
            prop_assert_eq!(
                ok(Cast::EpochNanos, &ns.to_string()),
                reference(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
            );
        }

        #[test]
        fn base64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100),
                              url_safe: bool, pad: bool) {
            let json = format!("\"{}\"", encode(&bytes, url_safe, pad));
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(ok(Cast::Base64, &json), format!(r"\x{hex}"));
        }

        #[test]
        fn array_strings_round_trip(
            elements in proptest::collection::vec(proptest::option::of(".*"), 0..8),
        ) {
            let json = serde_json::to_string(&elements).unwrap();
            prop_assert_eq!(parse_literal(&ok(Cast::Array, &json)), elements);
        }

        #[test]
        fn never_panics(json in ".{0,40}", start in 0usize..48, len in 0usize..48,
                        kind in 0u8..4, which in 0usize..7) {
            let end = start + len;
            let selected = match kind {
                0 => Selected::String { start, end, escaped: true },
                1 => Selected::String { start, end, escaped: false },
                2 => Selected::Scalar { start, end },
                _ => Selected::Composite { start, end },
            };
            let _ = apply(CASTS[which], &json, selected, &mut |_: &str| {});
        }

        #[test]
        fn never_panics_on_bracketed_text(body in r#"[\[\]{}",\\u0-9a-fA-F D8 :é]{0,40}"#,
                                          which in 0usize..7) {
            let json = format!("[{body}");
            let selected = Selected::Composite { start: 0, end: json.len() };
            let _ = apply(CASTS[which], &json, selected, &mut |_: &str| {});
        }
    }
}
