//! A converter for the sandbox tests (`tests/e2e/sandbox.rs`, and the unit tests of
//! `host/src/converter.rs` and `host/src/conversion.rs`), not an example.
//!
//! It writes rows of three columns: the message's Kafka offset, the message value, and a
//! result. What it does with a message depends on the *command*: the value up to its first
//! `#` (so `loop#7` is the command `loop`, and values can be told apart), trimmed.
//!
//! | command | what the converter does |
//! | --- | --- |
//! | `loop` | spins forever (only `plugin.timeout.ms` stops it) |
//! | `alloc` | allocates 1 MiB blocks until the allocator fails (a memory bomb: it aborts) |
//! | `alloc_try` | reserves 1 MiB blocks until the host refuses, then writes `refused after N MiB` |
//! | `leak` | leaks 4 MiB, then writes a row (the instance grows with every such message) |
//! | `trap` | panics (a trap) |
//! | `stack` | recurses without end (stack exhaustion) |
//! | `exit` | calls `std::process::exit(3)` (WASI `exit`, which passes on only failure: status 1) |
//! | `sleep:MS` | sleeps MS milliseconds in the host (a blocking WASI call), then writes a row |
//! | `fail` | fails the message with a reason (an ordinary rejected message, not a fault) |
//! | `fail_nul` | fails the message with a reason holding a NUL byte (PostgreSQL text cannot) |
//! | `fs`, `env`, `net`, `clock`, `random` | probes what the sandbox grants and writes what it got |
//! | anything else | a row with the result `ok` |
//!
//! Probe results are `name: denied (error)` or `name: GRANTED (what it got)` parts joined by
//! `; `, so a test sees the sandbox from the inside. The clock probe writes
//! `wall: S s since 1970; monotonic: N ns over a busy loop`, the random probe
//! `hash: H` (a hash with std's randomly keyed hasher: equal in two fresh instances when the
//! host gives no randomness).
//!
//! Settings:
//!
//! * `every = "<command>"`: every message behaves as this command (a converter that can
//!   never make progress, with `every = "loop"`);
//! * `tame = "true"`: every message, whatever its command, is a row with the result `tamed`
//!   (the fixed converter, to resume after a stuck one);
//! * `configure = "loop" | "trap" | "alloc" | "reject"`: `configure` misbehaves so.
//!
//! Build it with `cargo build --release --target wasm32-wasip2 -p hostile-plugin`.

use std::fmt::Debug;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgsink_guest::{Converter, Message, RowWriter, Settings, Table};

/// The converter: `every` overrides every message's command, `tame` disarms them all.
#[derive(Debug, Clone)]
pub struct Hostile {
    every: Option<String>,
    tame: bool,
}

impl Converter for Hostile {
    fn configure(settings: &Settings, tables: &[Table]) -> Result<Self, String> {
        match settings.get("configure") {
            None => {}
            Some("loop") => spin(),
            Some("trap") => panic!("hostile: panicking in configure on purpose"),
            Some("alloc") => bomb(),
            Some("reject") => return Err("hostile: rejecting the settings on purpose".into()),
            Some(other) => return Err(format!("unknown configure behaviour {other:?}")),
        }
        tables[0].require_columns(3)?;
        let tame = match settings.get("tame") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(format!("tame must be true or false, not {other:?}")),
        };
        Ok(Hostile {
            every: settings.get("every").map(str::to_string),
            tame,
        })
    }

    fn convert(&mut self, message: &Message<'_>, rows: &mut RowWriter<'_>) -> Result<(), String> {
        let value = message.value_str()?.unwrap_or("");
        let command = self.every.as_deref().unwrap_or(value);
        let command = command.split('#').next().unwrap_or_default().trim();
        let result = if self.tame {
            "tamed".to_string()
        } else {
            run(command)?
        };
        rows.row()
            .push_display(message.offset)
            .push_str(value)
            .push_str(&result);
        Ok(())
    }
}

/// Carries out `command`; the result column, or the message's failure.
fn run(command: &str) -> Result<String, String> {
    if let Some(ms) = command.strip_prefix("sleep:") {
        let ms: u64 = ms.parse().map_err(|_| format!("bad sleep {ms:?}"))?;
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(ms));
        return Ok(format!("slept {} ms", t0.elapsed().as_millis()));
    }
    Ok(match command {
        "loop" => spin(),
        "alloc" => bomb(),
        "alloc_try" => format!("refused after {} MiB", reserve_until_refused()),
        "leak" => {
            let block = vec![7u8; 4 << 20];
            std::mem::forget(black_box(block));
            "leaked 4 MiB".into()
        }
        "trap" => panic!("hostile: panicking on purpose"),
        "stack" => format!("recursed {}", recurse(0)),
        "exit" => std::process::exit(3),
        "fail" => return Err("hostile: failing this message on purpose".into()),
        "fail_nul" => return Err("hostile: a reason with a NUL \0 byte".into()),
        "fs" => probe_fs(),
        "env" => probe_env(),
        "net" => probe_net(),
        "clock" => probe_clock(),
        "random" => probe_random(),
        _ => "ok".into(),
    })
}

/// Spins forever.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates (and touches) 1 MiB blocks until the allocator fails, which aborts.
fn bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(black_box(vec![1u8; 1 << 20]));
    }
}

/// Reserves 1 MiB blocks until a reservation is refused; returns how many MiB it got.
fn reserve_until_refused() -> usize {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = Vec::new();
        if block.try_reserve_exact(1 << 20).is_err() || hoard.try_reserve(1).is_err() {
            return hoard.len();
        }
        block.resize(1 << 20, 1u8);
        hoard.push(black_box(block));
    }
}

/// Recurses with a 4 KiB frame until the stack runs out.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[(depth % 4096) as usize] = 1;
    black_box(&mut frame);
    if black_box(depth) == u64::MAX {
        return depth;
    }
    recurse(depth + 1) + u64::from(frame[0])
}

/// `name: denied (error)` or `name: GRANTED (what it got)`.
fn probe<T: Debug>(name: &str, result: std::io::Result<T>) -> String {
    match result {
        Ok(got) => {
            let mut got = format!("{got:?}");
            got.truncate(120);
            format!("{name}: GRANTED ({got})")
        }
        Err(error) => format!("{name}: denied ({error})"),
    }
}

fn probe_fs() -> String {
    use std::fs;
    [
        probe("read /etc/passwd", fs::read_to_string("/etc/passwd")),
        probe(
            "list /",
            fs::read_dir("/").map(|d| d.filter_map(Result::ok).count()),
        ),
        probe(
            "list .",
            fs::read_dir(".").map(|d| d.filter_map(Result::ok).count()),
        ),
        probe("stat /tmp", fs::metadata("/tmp").map(|m| m.is_dir())),
        probe(
            "create /tmp/pgsink-hostile",
            fs::File::create("/tmp/pgsink-hostile"),
        ),
        probe(
            "create ./pgsink-hostile",
            fs::File::create("pgsink-hostile"),
        ),
        // The current directory is wasi-libc's own bookkeeping ("/"), not a host directory.
        match std::env::current_dir() {
            Ok(dir) => format!("current dir: {} (the guest's own)", dir.display()),
            Err(error) => format!("current dir: denied ({error})"),
        },
    ]
    .join("; ")
}

fn probe_env() -> String {
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    let args: Vec<String> = std::env::args().collect();
    let mut parts = vec![
        format!("vars: {} {vars:?}", vars.len()),
        format!("args: {} {args:?}", args.len()),
    ];
    for name in [
        "PATH",
        "HOME",
        "PGSINK_DB_PASSWORD",
        "PGSINK_SANDBOX_CANARY",
    ] {
        parts.push(match std::env::var(name) {
            Ok(value) => format!("{name}: GRANTED ({} bytes)", value.len()),
            Err(error) => format!("{name}: denied ({error})"),
        });
    }
    parts.join("; ")
}

fn probe_net() -> String {
    use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
    [
        probe(
            "tcp connect 127.0.0.1:5432",
            TcpStream::connect("127.0.0.1:5432").map(|s| s.peer_addr().ok()),
        ),
        probe(
            "tcp listen 127.0.0.1:0",
            TcpListener::bind("127.0.0.1:0").map(|l| l.local_addr().ok()),
        ),
        probe(
            "udp send 127.0.0.1:9",
            UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", "127.0.0.1:9")),
        ),
        probe(
            "resolve localhost",
            "localhost:5432"
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>()),
        ),
    ]
    .join("; ")
}

fn probe_clock() -> String {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t0 = Instant::now();
    let mut n = 0u64;
    for _ in 0..2_000_000 {
        n = black_box(n.wrapping_add(1));
    }
    let elapsed = t0.elapsed();
    format!(
        "wall: {wall} s since 1970; monotonic: {} ns over a busy loop",
        elapsed.as_nanos()
    )
}

fn probe_random() -> String {
    use std::hash::BuildHasher;
    let hash = std::collections::hash_map::RandomState::new().hash_one(0u64);
    format!("hash: {hash:016x}")
}

pgsink_guest::export_converter!(Hostile);

#[cfg(test)]
mod tests {
    use super::*;
    use pgsink_guest::testing::convert_value;

    fn columns() -> Vec<Table> {
        vec![Table::named(&["kafka_offset", "command", "result"])]
    }

    fn configured(settings: &[(&str, &str)]) -> Hostile {
        Hostile::configure(&Settings::from_iter(settings.iter().copied()), &columns()).unwrap()
    }

    #[test]
    fn ordinary_messages_are_rows() {
        let mut c = configured(&[]);
        assert_eq!(
            convert_value(&mut c, 3, None, b"m1").unwrap(),
            "0\tm1\tok\n"
        );
        assert_eq!(
            convert_value(&mut c, 3, None, b"fail#2").unwrap_err(),
            "hostile: failing this message on purpose"
        );
        assert_eq!(
            convert_value(&mut c, 3, None, b"fail").unwrap_err(),
            "hostile: failing this message on purpose"
        );
        let slept = convert_value(&mut c, 3, None, b"sleep:1").unwrap();
        assert!(slept.starts_with("0\tsleep:1\tslept "), "{slept}");
    }

    #[test]
    fn tame_disarms_every_command() {
        let mut c = configured(&[("tame", "true"), ("every", "loop")]);
        assert_eq!(
            convert_value(&mut c, 3, None, b"trap").unwrap(),
            "0\ttrap\ttamed\n"
        );
    }

    #[test]
    fn probes_report_each_part() {
        let clock = run("clock").unwrap();
        assert!(clock.starts_with("wall: "), "{clock}");
        assert_eq!(run("env").unwrap().split("; ").count(), 6);
        assert!(run("random").unwrap().starts_with("hash: "));
    }

    #[test]
    fn settings_are_checked() {
        let bad = |s: &[(&str, &str)]| {
            Hostile::configure(&Settings::from_iter(s.iter().copied()), &columns()).unwrap_err()
        };
        assert!(bad(&[("configure", "reject")]).contains("on purpose"));
        assert!(bad(&[("tame", "yes")]).contains("tame"));
        assert!(Hostile::configure(&Settings::default(), &[Table::named(&["a"])]).is_err());
    }

    #[test]
    fn panics_on_trap() {
        let mut c = configured(&[]);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            convert_value(&mut c, 3, None, b"trap")
        }));
        assert!(panicked.is_err());
    }
}
