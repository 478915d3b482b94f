//! The benchmark's messages: the seed connector's example, with a unique id and
//! deterministic pseudo-random readings, and the COPY row pgsink should make of it.

use std::fmt::Write as _;

/// The parse paths pgsink is configured with (one per column of the bench tables).
pub const PARSE_PATHS: &str =
    "/@identity,/@location/@latitude,/@location/@longitude,/@acceleration/#0";
/// The columns of every bench table.
pub const COLUMNS: &str = "id,latitude,longitude,acceleration";
/// The DDL of a bench table (no key, no index: as the original connector's examples).
pub const TABLE_DDL: &str =
    "(id bigint, latitude double precision, longitude double precision, acceleration double precision)";

/// The formatted fields of message `id`.
pub struct Reading {
    pub latitude: String,
    pub longitude: String,
    pub acceleration: [String; 3],
}

pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

impl Reading {
    pub fn of(id: u64) -> Reading {
        let a = splitmix64(id);
        let b = splitmix64(a);
        let c = splitmix64(b);
        Reading {
            latitude: format!("{:.6}", 51.0 + unit(a)),
            longitude: format!("{:.6}", -2.0 - unit(b)),
            acceleration: [
                format!("{:.4}", unit(c) - 0.5),
                format!("{:.4}", unit(c.rotate_left(21)) - 0.5),
                format!("{:.4}", 9.0 + unit(c.rotate_left(42))),
            ],
        }
    }
}

/// Writes the JSON message of `id` into `out` (cleared first).
pub fn message(id: u64, out: &mut String) {
    let r = Reading::of(id);
    out.clear();
    let _ = write!(
        out,
        r#"{{"identity":{id},"location":{{"latitude":{},"longitude":{}}},"acceleration":[{},{},{}]}}"#,
        r.latitude, r.longitude, r.acceleration[0], r.acceleration[1], r.acceleration[2]
    );
}

/// Appends the COPY text row pgsink makes of message `id` (the numbers verbatim).
pub fn copy_row(id: u64, out: &mut Vec<u8>) {
    let r = Reading::of(id);
    let _ = std::io::Write::write_fmt(
        out,
        format_args!(
            "{id}\t{}\t{}\t{}\n",
            r.latitude, r.longitude, r.acceleration[0]
        ),
    );
}

#[cfg(test)]
#[allow(unused_imports)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_size() {
        let mut s = String::new();
        message(1_234_567, &mut s);
        assert!(
            s.starts_with(r#"{"identity":1234567,"location":{"latitude":51."#),
            "{s}"
        );
        assert!((100..=130).contains(&s.len()), "{} bytes: {s}", s.len());
        let mut row = Vec::new();
        copy_row(1_234_567, &mut row);
        let row = String::from_utf8(row).unwrap();
        assert_eq!(row.matches('\t').count(), 3);
        assert!(s.contains(row.split('\t').nth(1).unwrap()));
    }
}
