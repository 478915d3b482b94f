//! The sandbox, tested against `tests/plugins/hostile`: a converter that loops, sleeps,
//! allocates, panics, overflows its stack, exits, and probes for files, environment, network
//! and clocks on command. Shared with the other host tests that need a misbehaving converter.
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::instance::ConverterInstance;
use super::runtime::ConverterComponent;
use super::*;
use crate::batch::{BatchBuilder, MessageRef};

#[path = "../../../tests/support/build_plugin.rs"]
mod build_plugin;

/// The time limit of the sandbox tests: long enough for an ordinary batch on a busy
/// machine, short enough to keep the tests quick.
pub(crate) const TIMEOUT: Duration = Duration::from_millis(500);

/// The sandbox limits of the tests: [`TIMEOUT`], and 32 MiB of memory.
pub(crate) const LIMITS: ConverterLimits = ConverterLimits {
    timeout: Some(TIMEOUT),
    memory: 32 << 20,
    wall_clock: false,
};

/// The test converter `tests/plugins/hostile`, built for wasm32-wasip2 once per test run by
/// the builder the end-to-end tests use too.
pub(crate) fn hostile_component() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let wasm = build_plugin::build_plugin("hostile-plugin", "hostile_plugin.wasm");
        std::fs::read(&wasm).unwrap_or_else(|e| panic!("read {}: {e}", wasm.display()))
    })
}

/// A runtime with time limits and no disk cache.
pub(crate) fn runtime() -> Runtime {
    Runtime::build(true).expect("engine")
}

/// The hostile converter's table: offset, command, result.
pub(crate) fn hostile_tables() -> Vec<Table> {
    let columns = ["kafka_offset", "command", "result"].map(String::from);
    vec![Table::untyped("public", "hostile", &columns)]
}

/// The hostile converter, compiled.
pub(crate) fn hostile() -> ConverterComponent {
    runtime()
        .load(hostile_component(), "hostile_plugin.wasm")
        .expect("load the hostile converter")
}

/// A batch of messages with these values, at offsets 0, 1, … of partition 0 of `t`.
pub(crate) fn batch(values: &[&str]) -> BatchBuilder {
    let mut b = BatchBuilder::new();
    for (offset, value) in values.iter().enumerate() {
        b.push(
            MessageRef {
                topic: "t",
                partition: 0,
                offset: offset as i64,
                timestamp: None,
                key: None,
                value: Some(value.as_bytes()),
            },
            [],
        );
    }
    b
}

fn instance(settings: &[(&str, &str)]) -> ConverterInstance {
    let settings: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    hostile()
        .instantiate(&settings, &hostile_tables(), LIMITS)
        .expect("instantiate the hostile converter")
}

/// Converts one message on a fresh instance: the result column of its row, or the error.
fn one(command: &str) -> Result<String, ConverterError> {
    let converted = instance(&[]).convert(batch(&[command]).batch())?;
    let text = String::from_utf8(converted.copy_text).expect("UTF-8");
    let fields: Vec<&str> = text.trim_end_matches('\n').split('\t').collect();
    assert_eq!(fields.len(), 3, "one row of 3 fields: {text:?}");
    Ok(fields[2].to_string())
}

/// Converts one message that must fail, and says how long it took.
fn failing(command: &str) -> (ConverterError, Duration) {
    let t0 = Instant::now();
    let error = one(command).expect_err(command);
    (error, t0.elapsed())
}

/// An infinite loop is stopped by the epoch deadline soon after `plugin.timeout.ms`, and
/// reported as a timeout naming the limit.
#[test]
fn sandbox_an_infinite_loop_is_stopped_at_the_timeout() {
    let (error, took) = failing("loop");
    assert!(
        matches!(error, ConverterError::Timeout { call: "one batch", timeout, .. } if timeout == TIMEOUT),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("plugin.timeout.ms (500ms)"),
        "{error}"
    );
    assert!(
        took >= TIMEOUT && took < TIMEOUT + Duration::from_secs(10),
        "{took:?}"
    );
}

/// A sleep inside the host (a blocking WASI call, which the epoch deadline cannot
/// interrupt) ends at `plugin.timeout.ms` too, while short sleeps still sleep.
#[test]
fn sandbox_a_long_sleep_is_cut_at_the_timeout() {
    let (error, took) = failing("sleep:30000");
    assert!(matches!(error, ConverterError::Timeout { .. }), "{error:?}");
    assert!(took < TIMEOUT + Duration::from_secs(10), "{took:?}");
    let slept = one("sleep:50").expect("a short sleep");
    let ms: u64 = slept
        .strip_prefix("slept ")
        .and_then(|s| s.strip_suffix(" ms"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{slept}"));
    assert!((50..2000).contains(&ms), "{slept}");
}

/// A memory bomb cannot grow past `plugin.memory.mb`, and its failure is reported as
/// running out of memory, naming the limit; a converter that checks its allocations sees
/// them refused below the limit.
#[test]
fn sandbox_a_memory_bomb_is_stopped_at_the_memory_cap() {
    let (error, _) = failing("alloc");
    match &error {
        ConverterError::Memory { limit, asked, .. } => {
            assert_eq!(*limit, 32);
            assert!(*asked > 32, "{error}");
        }
        other => panic!("expected a memory error: {other:?}"),
    }
    assert!(
        error.to_string().contains("plugin.memory.mb (32 MiB)"),
        "{error}"
    );
    let refused = one("alloc_try").expect("alloc_try makes a row");
    let mib: usize = refused
        .strip_prefix("refused after ")
        .and_then(|s| s.strip_suffix(" MiB"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{refused}"));
    assert!((16..32).contains(&mib), "{refused}");
}

/// A panic, a stack overflow and a WASI `exit` are traps: an error for the call, never a
/// crash of the host.
#[test]
fn sandbox_panics_stack_overflows_and_exits_are_traps() {
    for (command, word) in [
        (
            "trap",
            "wasm trap: wasm `unreachable` instruction executed (a panic or abort",
        ),
        ("stack", "wasm trap: out of bounds memory access"),
        ("exit", "Exited with i32 exit status 1"),
    ] {
        let (error, _) = failing(command);
        assert!(
            matches!(error, ConverterError::Trap { .. }),
            "{command}: {error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("trapped") && text.contains(word),
            "{command}: {text}"
        );
        assert!(
            !text.contains('\n'),
            "one line, without the backtrace: {text}"
        );
    }
}

/// From the inside, the sandbox has no files, no environment and no network.
#[test]
fn sandbox_grants_no_files_environment_or_network() {
    for probe in ["fs", "env", "net"] {
        let result = one(probe).expect(probe);
        assert!(!result.contains("GRANTED"), "{probe}: {result}");
        assert!(result.contains("denied"), "{probe}: {result}");
    }
    let env = one("env").unwrap();
    assert!(env.starts_with("vars: 0 []; args: 0 []"), "{env}");
}

/// The clock probe's wall-clock reading, in seconds since the epoch, under `limits`.
fn wall_clock_seconds(limits: ConverterLimits) -> (u64, String) {
    let converted = hostile()
        .instantiate(&[], &hostile_tables(), limits)
        .expect("instantiate the hostile converter")
        .convert(batch(&["clock"]).batch())
        .expect("the clock probe converts");
    let text = String::from_utf8(converted.copy_text).expect("UTF-8");
    let probe = text
        .trim_end_matches('\n')
        .split('\t')
        .nth(2)
        .unwrap_or_default();
    let wall = probe
        .strip_prefix("wall: ")
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{probe}"));
    (wall, probe.to_string())
}

/// What the sandbox gives: no wall clock by default (it reads the Unix epoch), the host's
/// with `plugin.clock = true`; a monotonic clock and random numbers always (language
/// runtimes need them). Documented here so that a change is a decision.
#[test]
fn sandbox_wall_clock_only_when_configured_monotonic_and_random_always() {
    let (wall, probe) = wall_clock_seconds(LIMITS);
    assert_eq!(wall, 0, "{probe}: no wall clock without plugin.clock");
    assert!(!probe.contains("monotonic: 0 ns"), "{probe}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let with_clock = ConverterLimits {
        wall_clock: true,
        ..LIMITS
    };
    let (wall, probe) = wall_clock_seconds(with_clock);
    assert!(wall.abs_diff(now) < 60, "{probe}: the host's wall clock");
    let (a, b) = (one("random").unwrap(), one("random").unwrap());
    assert_ne!(a, b, "two instances get different random seeds");
}

/// A `configure` that never returns, runs out of memory, traps or rejects its settings
/// fails the instantiation with an error saying which, in bounded time.
#[test]
fn sandbox_misbehaving_configure_fails_the_instantiation() {
    let component = hostile();
    let try_configure = |how: &str| {
        let settings = vec![("configure".to_string(), how.to_string())];
        let t0 = Instant::now();
        let result = component.instantiate(&settings, &hostile_tables(), LIMITS);
        assert!(t0.elapsed() < TIMEOUT + Duration::from_secs(10));
        result
            .err()
            .unwrap_or_else(|| panic!("configure = {how} must fail"))
    };
    let error = try_configure("loop");
    assert!(
        matches!(
            error,
            ConverterError::Timeout {
                call: "its configure call",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("on its configure call"),
        "{error}"
    );
    assert!(
        matches!(try_configure("alloc"), ConverterError::Memory { .. }),
        "alloc"
    );
    assert!(
        matches!(try_configure("trap"), ConverterError::Trap { .. }),
        "trap"
    );
    let error = try_configure("reject");
    assert!(
        matches!(error, ConverterError::Rejected { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("on purpose"), "{error}");
}

/// After a trap the instance is not reused; a fresh one from the same component works.
#[test]
fn sandbox_a_fresh_instance_works_after_a_trap() {
    let component = hostile();
    let mut first = component
        .instantiate(&[], &hostile_tables(), LIMITS)
        .unwrap();
    assert!(first.convert(batch(&["loop"]).batch()).is_err());
    let mut second = component
        .instantiate(&[], &hostile_tables(), LIMITS)
        .unwrap();
    let converted = second.convert(batch(&["a", "b"]).batch()).unwrap();
    assert_eq!(converted.copy_text, b"0\ta\tok\n1\tb\tok\n");
}

/// The versioned test converter as built for WIT 0.1.0 by the SDK of that time
/// (`tests/fixtures/wit-0.1/README.md`).
const WIT_0_1_COMPONENT: &[u8] =
    include_bytes!("../../../tests/fixtures/wit-0.1/versioned_plugin.wasm");

/// A component built for `pgsink:converter@0.1.0` runs unchanged: it is recognised by its
/// exports, configured with the one table's columns, and handed the batch as it is; its rows
/// come back as inserts into that table.
#[test]
fn a_wit_0_1_component_runs_unchanged() {
    let component = runtime()
        .load(WIT_0_1_COMPONENT, "versioned_plugin.wasm (0.1)")
        .expect("load");
    assert_eq!(component.wit_version(), "0.1.0");
    assert_eq!(hostile().wit_version(), "0.2.0");
    let columns = ["id", "version", "kafka_partition", "kafka_offset"].map(String::from);
    let tables = vec![Table::untyped("public", "t", &columns)];
    let settings = vec![("version".to_string(), "old".to_string())];
    let mut converter = Converter::new(component.clone(), settings.clone(), tables.clone(), LIMITS)
        .expect("configure");
    let converted = converter
        .convert(&batch(&[r#"{"id":7}"#, "not json", r#"{"id":9}"#]))
        .expect("convert");
    assert_eq!(
        String::from_utf8(converted.copy_text).unwrap(),
        "7\told\t0\t0\n9\told\t0\t2\n"
    );
    assert_eq!(converted.row_messages, [0, 2]);
    assert!(converted.runs.is_empty(), "all inserts into the one table");
    assert_eq!(converted.failed.len(), 1);
    assert_eq!(converted.failed[0].0, 1);

    let two = vec![tables[0].clone(), Table::untyped("public", "u", &columns)];
    let error = Converter::new(component, settings, two, LIMITS)
        .err()
        .expect("a 0.1 converter writes one table");
    assert!(
        error
            .to_string()
            .contains("pgsink:converter@0.1.0, which writes one table, and the sink declares 2"),
        "{error}"
    );
}

/// A component that implements neither world is refused when it is loaded, with both
/// versions named.
#[test]
fn a_component_of_another_world_is_refused() {
    // The binary of `(component)`: the magic number, then component-model version 0x0d, layer 1.
    let empty = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    let error = runtime().load(&empty, "empty.wasm").err().expect("refused");
    assert!(
        format!("{error:#}").contains("neither pgsink:converter@0.2.0 nor @0.1.0"),
        "{error:#}"
    );
}
