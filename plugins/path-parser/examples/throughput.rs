//! Native throughput of the parse-path converter on the JustOne example message.
//!
//! ```sh
//! cargo run --release -p path-parser --example throughput [seconds]
//! ```
//!
//! Converts batches of 10,000 copies of the ~130-byte example message with
//! the four example paths through the SDK's batch loop, and prints messages
//! per second (best and median of the batches run for the given time).

use std::time::{Duration, Instant};

use path_parser::PathParser;
use pgsink_guest::testing::convert_messages;
use pgsink_guest::{Converter, Message, Outcome, Settings, Table};

const MESSAGE: &[u8] = br#"{"identity":71293145,"location":{"latitude":51.5009449,"longitude":-2.4773414},"acceleration":[0.01,0.0,0.0]}"#;
const PATHS: &str = "/@identity,/@location/@latitude,/@location/@longitude,/@acceleration";
const BATCH: usize = 10_000;

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let settings = Settings::from_iter([("db.json.parse", PATHS)]);
    let table = Table::named(&["id", "lat", "lon", "acc"]);
    let mut parser =
        PathParser::configure(&settings, std::slice::from_ref(&table)).expect("valid settings");
    let messages = vec![Message::from_value(MESSAGE); BATCH];

    let check = convert_messages(&mut parser, table.columns.len(), &messages[..1]);
    assert_eq!(check.outcomes, [Outcome::Rows(1)]);
    print!("row: {}", String::from_utf8_lossy(&check.copy_text));

    let mut rates = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline || rates.len() < 5 {
        let start = Instant::now();
        let out = convert_messages(&mut parser, table.columns.len(), &messages);
        let elapsed = start.elapsed();
        assert_eq!(out.outcomes.len(), BATCH);
        std::hint::black_box(out);
        rates.push(BATCH as f64 / elapsed.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let best = rates[rates.len() - 1];
    println!(
        "{} batches of {BATCH} messages ({} bytes each): median {:.0} msg/s ({:.0} ns/msg), best {:.0} msg/s",
        rates.len(),
        MESSAGE.len(),
        median,
        1e9 / median,
        best,
    );
}
