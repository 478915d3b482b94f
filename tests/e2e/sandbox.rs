//! The converter sandbox and the secrets, end to end (`pgsink run` and `pgsink check` against
//! the mock broker and PostgreSQL).
//!
//! - `sandbox_*`: the test converter `tests/plugins/hostile` (built for wasm32-wasip2 once per
//!   test run) loops, allocates without end, panics, overflows its stack, exits, sleeps for a
//!   minute or probes the host when a message asks it to. The tests check that each such
//!   message alone goes to `pgsink.dead_letters` with a reason naming the cause and its Kafka
//!   position, that every other message is loaded exactly once, that the probes see no files,
//!   environment or network, and that a converter that can never make progress stops the sink
//!   with a clear error without committing anything past the rows already stored.
//! - `security_*`: distinctive passwords (`db.password`, `PGSINK_DB_PASSWORD`,
//!   `kafka.sasl.password`, a converter setting) never appear in the output of `pgsink run`
//!   and `pgsink check` under `RUST_LOG=trace` with librdkafka's `debug=all`, including a
//!   startup that fails while authenticating to a server that asks for the password.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::harness::*;

/// `plugin.timeout.ms` of the sandbox tests.
const TIMEOUT_MS: u64 = 500;
/// `plugin.memory.mb` of the sandbox tests.
const MEMORY_MB: u64 = 32;

const HOSTILE_COLUMNS: [(&str, &str); 3] = [
    ("kafka_offset", "bigint"),
    ("command", "text"),
    ("result", "text"),
];

fn hostile_component() -> PathBuf {
    build_plugin("hostile-plugin", "hostile_plugin.wasm")
}

/// A synchronized sink of `topic` into `table` through the hostile converter with
/// `settings`, flushing every 250 ms, with the sandbox limits of these tests.
fn hostile_config(
    table: &Table,
    topic: &str,
    broker: &Broker,
    group: &str,
    settings: &[(&str, &str)],
) -> String {
    plugin_config_with(
        table,
        topic,
        &sink_kafka(broker, group),
        &hostile_component(),
        &[
            format!("plugin.timeout.ms = {TIMEOUT_MS}"),
            format!("plugin.memory.mb = {MEMORY_MB}"),
        ],
        settings,
    )
}

/// Produces `values` (partition, value) in order, without keys; returns where each landed.
fn produce(broker: &Broker, topic: &str, values: &[(i32, String)]) -> Vec<Delivered> {
    let mut producer = broker.producer(false);
    for (partition, value) in values {
        producer.send(topic, Some(*partition), None, Some(value.as_bytes()));
    }
    producer.flush()
}

/// A row of a hostile table.
#[derive(Debug, Clone)]
struct HostileRow {
    offset: i64,
    value: String,
    result: String,
}

fn hostile_rows(pg: &Pg, t: &Table) -> Vec<HostileRow> {
    pg.query(
        &format!(
            "SELECT kafka_offset, command, result FROM {} ORDER BY kafka_offset, command",
            t.qualified()
        ),
        &[],
    )
    .iter()
    .map(|r| HostileRow {
        offset: r.get(0),
        value: r.get(1),
        result: r.get(2),
    })
    .collect()
}

/// Waits until `n` messages are accounted for (rows plus dead letters) and the stored offsets
/// are `ends`, requiring the sink to keep running.
fn wait_accounted(
    pg: &Pg,
    t: &Table,
    n: usize,
    ends: &BTreeMap<(String, i32), i64>,
    sink: &mut Sink,
) {
    let t0 = Instant::now();
    loop {
        let rows = pg.count(t) as usize;
        let dead = pg.dead_letters(t).len();
        let stored = pg.stored_offsets(t);
        if rows + dead >= n && &stored == ends {
            eprintln!(
                "{}: {rows} rows and {dead} dead letters after {:.1} s",
                t.name,
                t0.elapsed().as_secs_f64()
            );
            return;
        }
        sink.assert_running(&format!(
            "waiting for {n} messages in {} ({rows} rows, {dead} dead letters, stored {stored:?})",
            t.name
        ));
        assert!(
            t0.elapsed() < LONG,
            "{}: {rows} rows + {dead} dead letters (want {n}), stored offsets {stored:?} \
             (want {ends:?}) after {LONG:?}",
            t.name
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks that the rows and dead letters of a table hold each delivered message exactly once,
/// at its Kafka position; returns the dead letters by message value.
fn assert_each_message_once(
    pg: &Pg,
    t: &Table,
    values: &[(i32, String)],
    delivered: &[Delivered],
) -> BTreeMap<String, DeadLetter> {
    let position: BTreeMap<&str, &Delivered> = values
        .iter()
        .zip(delivered)
        .map(|((_, v), d)| (v.as_str(), d))
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for row in hostile_rows(pg, t) {
        let d = position
            .get(row.value.as_str())
            .unwrap_or_else(|| panic!("a row for a message never produced: {row:?}"));
        assert_eq!(row.offset, d.offset, "row {row:?} of the message at {d:?}");
        *seen.entry(row.value).or_default() += 1;
    }
    let mut dead_letters = BTreeMap::new();
    for dead in pg.dead_letters(t) {
        let value = String::from_utf8(dead.value.clone().expect("a value")).expect("UTF-8");
        let d = position
            .get(value.as_str())
            .unwrap_or_else(|| panic!("a dead letter for a message never produced: {dead:?}"));
        assert_eq!(
            (dead.topic.as_str(), dead.partition, dead.offset),
            (d.topic.as_str(), d.partition, d.offset),
            "the dead letter of {value:?} names its topic, partition and offset"
        );
        *seen.entry(value.clone()).or_default() += 1;
        dead_letters.insert(value, dead);
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "messages loaded more than once: {twice:?}"
    );
    let missing: Vec<&str> = position
        .keys()
        .filter(|v| !seen.contains_key(**v))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "messages neither loaded nor dead-lettered: {missing:?}"
    );
    dead_letters
}

/// What each fault must make of its message: the command and a piece of the dead letter's reason.
const FAULTS: [(&str, &str); 8] = [
    (
        "loop",
        "ran longer than plugin.timeout.ms (500ms) on one batch",
    ),
    ("alloc", "ran out of memory: it asked for"),
    (
        "trap",
        "trapped: wasm trap: wasm `unreachable` instruction executed (a panic",
    ),
    ("stack", "trapped: wasm trap: out of bounds memory access"),
    ("exit", "trapped: Exited with i32 exit status 1"),
    (
        "sleep:60000",
        "ran longer than plugin.timeout.ms (500ms) on one batch",
    ),
    ("fail", "hostile: failing this message on purpose"),
    ("fail_nul", "hostile: a reason with a NUL \\0 byte"),
];

/// The probes of the sandbox, run as messages.
const PROBES: [&str; 5] = ["fs", "env", "net", "clock", "random"];

/// A sink whose converter misbehaves on some messages, in synchronized mode: an infinite loop,
/// a memory bomb, a panic, a stack overflow, a WASI exit and a one-minute sleep each fail only
/// their own message, which goes to the dead-letter table with its topic, partition and offset
/// and a reason naming the cause (`plugin.timeout.ms`, `plugin.memory.mb`, the trap), as do
/// two messages the converter rejects (one with a NUL byte in its reason); every
/// other message is loaded exactly once, the stored offsets reach the end, and the process
/// keeps running and stops cleanly. The probe messages show, from inside the converter, no
/// files, environment or network (the variable set for the pgsink process included), a wall
/// clock at the Unix epoch (no `plugin.clock`), and random numbers.
#[test]
fn sandbox_hostile_messages_fail_alone_mock() {
    let ctx = Ctx::new("sandbox_hostile_messages_fail_alone_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.table_in("public", &ctx.table_name(), &HOSTILE_COLUMNS);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 2);
    let specials: Vec<&str> = FAULTS
        .iter()
        .map(|(c, _)| *c)
        .chain(PROBES.iter().copied())
        .collect();
    let mut values = Vec::new();
    for i in 0..260usize {
        let value = match (i % 20 == 7).then(|| specials[i / 20]) {
            Some(special) => format!("{special}#{i}"),
            None => format!("m{i}"),
        };
        values.push(((i % 2) as i32, value));
    }
    let delivered = produce(&broker, &topic, &values);
    let config = hostile_config(&table, &topic, &broker, &ctx.unique("g"), &[]);
    let started = Instant::now();
    let mut sink = ctx
        .sink("sink")
        .toml(&config)
        .env("PGSINK_SANDBOX_CANARY", "visible-to-the-host-only")
        .start();
    wait_accounted(
        &pg,
        &table,
        values.len(),
        &end_offsets(&delivered),
        &mut sink,
    );
    ctx.note(format!(
        "all {} messages accounted for {:.1} s after the start",
        values.len(),
        started.elapsed().as_secs_f64()
    ));
    sink.assert_running("after the hostile messages");

    let dead_letters = assert_each_message_once(&pg, &table, &values, &delivered);
    let commands: BTreeMap<&str, &str> = dead_letters
        .iter()
        .map(|(v, d)| (v.split('#').next().unwrap(), d.reason.as_str()))
        .collect();
    assert_eq!(
        commands.keys().copied().collect::<BTreeSet<_>>(),
        FAULTS.iter().map(|(c, _)| *c).collect::<BTreeSet<_>>(),
        "exactly the faulty messages are dead letters: {dead_letters:#?}"
    );
    for (command, cause) in FAULTS {
        let reason = commands[command];
        assert!(reason.contains(cause), "{command}: {reason}");
        if !command.starts_with("fail") {
            assert!(
                reason.contains("hostile-plugin 0.1.0"),
                "{command}: {reason}"
            );
        }
        assert!(
            !reason.contains('\n'),
            "{command}: a one-line reason: {reason}"
        );
    }
    assert!(
        commands["alloc"].contains(&format!("plugin.memory.mb ({MEMORY_MB} MiB)")),
        "{}",
        commands["alloc"]
    );

    // The dead letters are logged with their position and reason.
    let stderr = sink.stderr();
    for (value, dead) in &dead_letters {
        let logged = stderr.lines().any(|l| {
            l.contains("sending it to pgsink.dead_letters")
                && l.contains(&format!("partition={}", dead.partition))
                && l.contains(&format!("offset={}", dead.offset))
        });
        assert!(logged, "no log line for the dead letter of {value:?}");
    }

    // What the probes saw from inside the converter.
    let rows = hostile_rows(&pg, &table);
    let probe = |name: &str| -> String {
        rows.iter()
            .find(|r| r.value.split('#').next() == Some(name))
            .unwrap_or_else(|| panic!("no row for the {name} probe"))
            .result
            .clone()
    };
    for name in PROBES {
        ctx.note(format!("probe {name}: {}", probe(name)));
    }
    for name in ["fs", "env", "net"] {
        let seen = probe(name);
        assert!(
            seen.contains("denied") && !seen.contains("GRANTED"),
            "{name}: {seen}"
        );
    }
    assert!(
        probe("env").starts_with("vars: 0 []; args: 0 []"),
        "{}",
        probe("env")
    );
    // Without `plugin.clock`, the converter's wall clock reads the Unix epoch.
    let clock = probe("clock");
    assert!(clock.starts_with("wall: 0 "), "{clock}");
    assert!(probe("random").starts_with("hash: "), "{}", probe("random"));
    let good = rows.iter().filter(|r| r.result == "ok").count();
    assert_eq!(good, values.len() - FAULTS.len() - PROBES.len());

    sink.stop_ok();
    assert_offsets_at_end(&pg, &table, &end_offsets(&delivered));
}

/// Offsets stored for partition 0 of `topic`, or 0.
fn stored_at(pg: &Pg, t: &Table, topic: &str) -> i64 {
    pg.stored_offsets(t)
        .get(&(topic.to_string(), 0))
        .copied()
        .unwrap_or(0)
}

/// Waits for a sink that must fail on its own; returns its exit code and stderr.
fn wait_failure(sink: &mut Sink) -> (Option<i32>, String) {
    let status = sink.wait(LONG);
    (status.code(), sink.stderr())
}

/// A converter that can never make progress stops the sink instead of dead-lettering the
/// topic: after 40 messages are loaded, a converter that loops on every message makes the
/// sink exit with status 2 and an error saying it cannot make progress, and one whose
/// `configure` never returns makes it exit 2 at startup naming `plugin.timeout.ms`. Neither
/// commits anything past the rows already stored; the fixed converter then loads exactly the
/// remaining messages.
#[test]
fn sandbox_stuck_converter_stops_the_sink_mock() {
    let ctx = Ctx::new("sandbox_stuck_converter_stops_the_sink_mock");
    let broker = Broker::mock();
    let pg = Pg::connect();
    let table = pg.table_in("public", &ctx.table_name(), &HOSTILE_COLUMNS);
    let topic = ctx.unique("t");
    broker.create_topic(&topic, 1);
    // Each run in a group of its own: synchronized positions come from PostgreSQL, and the
    // mock broker would hold a new member of the same group until the last one's session
    // timed out (45 s).
    let config = |settings: &[(&str, &str)]| {
        hostile_config(&table, &topic, &broker, &ctx.unique("g"), settings)
    };

    let first: Vec<(i32, String)> = (0..40).map(|i| (0, format!("m{i}"))).collect();
    let mut delivered = produce(&broker, &topic, &first);
    let mut sink = ctx.sink("good").toml(&config(&[])).start();
    let ends = end_offsets(&delivered);
    wait_accounted(&pg, &table, 40, &ends, &mut sink);
    sink.stop_ok();

    let second: Vec<(i32, String)> = (40..60).map(|i| (0, format!("m{i}"))).collect();
    delivered.extend(produce(&broker, &topic, &second));
    let all: Vec<(i32, String)> = first.iter().chain(&second).cloned().collect();

    // A converter that loops on every message.
    let t0 = Instant::now();
    let mut stuck = ctx
        .sink("stuck")
        .toml(&config(&[("every", "loop")]))
        .start();
    let (code, stderr) = wait_failure(&mut stuck);
    ctx.note(format!(
        "the stuck sink exited with {code:?} after {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    assert_eq!(code, Some(2), "exit status; stderr:\n{}", tail(&stderr, 20));
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("pgsink: error: ")
            && last.contains("hostile-plugin 0.1.0 cannot make progress")
            && last.contains("plugin.timeout.ms"),
        "the last line says why: {last}"
    );
    // Nothing committed past the stored rows: every offset below the stored one is a row or a
    // dead letter, nothing at or after it is. (With one batch, as usual, nothing moves at all;
    // split batches may dead-letter up to two timeouts before the third stops the sink.)
    let stored = stored_at(&pg, &table, &topic);
    let rows = hostile_rows(&pg, &table);
    let dead = pg.dead_letters(&table);
    ctx.note(format!(
        "after the stuck run: stored offset {stored}, {} rows, {} dead letters",
        rows.len(),
        dead.len()
    ));
    assert!((40..=42).contains(&stored), "stored offset {stored}");
    let mut offsets: Vec<i64> = rows.iter().map(|r| r.offset).collect();
    offsets.extend(dead.iter().map(|d| d.offset));
    offsets.sort_unstable();
    assert_eq!(offsets, (0..stored).collect::<Vec<_>>());
    assert!(rows.iter().all(|r| r.result == "ok"), "{rows:?}");
    assert!(
        dead.iter().all(|d| d.reason.contains("plugin.timeout.ms")),
        "{dead:?}"
    );

    // A converter whose configure never returns: the sink does not start.
    let t0 = Instant::now();
    let mut never = ctx
        .sink("configure")
        .toml(&config(&[("configure", "loop")]))
        .start();
    let (code, stderr) = wait_failure(&mut never);
    assert_eq!(code, Some(2), "exit status; stderr:\n{}", tail(&stderr, 20));
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert!(
        stderr.contains("ran longer than plugin.timeout.ms (500ms) on its configure call"),
        "stderr:\n{}",
        tail(&stderr, 20)
    );
    assert_eq!(stored_at(&pg, &table, &topic), stored, "nothing committed");

    // The fixed converter resumes where the rows stop and loads each message once.
    let mut fixed = ctx.sink("fixed").toml(&config(&[("tame", "true")])).start();
    wait_accounted(&pg, &table, all.len(), &end_offsets(&delivered), &mut fixed);
    fixed.stop_ok();
    assert_each_message_once(&pg, &table, &all, &delivered);
    let tamed: Vec<i64> = hostile_rows(&pg, &table)
        .iter()
        .filter(|r| r.result == "tamed")
        .map(|r| r.offset)
        .collect();
    assert_eq!(
        tamed,
        (stored..60).collect::<Vec<_>>(),
        "the fixed converter's rows"
    );
}

// ------------------------------------------------------------------------------------------
// Secrets
// ------------------------------------------------------------------------------------------

const DB_SECRET: &str = "pgsink-db-secret-7f3a9c";
const ENV_SECRET: &str = "pgsink-env-secret-52e1bd";
const SASL_SECRET: &str = "pgsink-sasl-secret-c08d44";
const SETTING_SECRET: &str = "pgsink-setting-secret-9b2e07";

/// Fails the test if `output` (one process's stdout or stderr) shows any of the secrets.
fn assert_no_secret(what: &str, output: &str) {
    for secret in [DB_SECRET, ENV_SECRET, SASL_SECRET, SETTING_SECRET] {
        if let Some(at) = output.find(secret) {
            let line = output[..at].lines().count();
            panic!(
                "{what} shows the secret {secret} on line {line}: {}",
                output
                    .lines()
                    .nth(line.saturating_sub(1))
                    .unwrap_or_default()
            );
        }
    }
}

/// `pgsink ARGS` with `RUST_LOG=trace` and `env`, to completion.
fn pgsink_traced(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(PGSINK);
    cmd.args(args).env("RUST_LOG", "trace");
    match pg_password() {
        Some(pw) => cmd.env("PGSINK_DB_PASSWORD", pw),
        None => cmd.env_remove("PGSINK_DB_PASSWORD"),
    };
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_timeout(cmd, b"", Duration::from_secs(120))
}

/// A PostgreSQL server that asks for a cleartext password, records it and refuses it, as a
/// server with password authentication does for a wrong password.
struct PasswordServer {
    port: u16,
    passwords: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PasswordServer {
    fn start() -> PasswordServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("address").port();
        let passwords = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (got, stopped) = (passwords.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Ok(Some(password)) = Self::serve(stream) {
                            got.lock().unwrap().push(password);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        PasswordServer {
            port,
            passwords,
            stop,
            thread: Some(thread),
        }
    }

    /// One connection: refuses TLS, asks for a cleartext password, refuses it.
    fn serve(mut stream: TcpStream) -> std::io::Result<Option<String>> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let read_u32 = |s: &mut TcpStream| -> std::io::Result<u32> {
            let mut b = [0u8; 4];
            s.read_exact(&mut b)?;
            Ok(u32::from_be_bytes(b))
        };
        // SSLRequest (refused with 'N') or GSSENCRequest, then the startup message.
        loop {
            let len = read_u32(&mut stream)? as usize;
            let mut body = vec![0u8; len.saturating_sub(4)];
            stream.read_exact(&mut body)?;
            match body.get(..4) {
                Some([0x04, 0xd2, 0x16, 0x2f]) | Some([0x04, 0xd2, 0x16, 0x30]) => {
                    stream.write_all(b"N")?
                }
                _ => break,
            }
        }
        // AuthenticationCleartextPassword.
        stream.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])?;
        let mut kind = [0u8; 1];
        stream.read_exact(&mut kind)?;
        let len = read_u32(&mut stream)? as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        stream.read_exact(&mut body)?;
        let password = (kind[0] == b'p').then(|| {
            String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into_owned()
        });
        let mut fields = Vec::new();
        for (code, text) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "28P01"),
            (b'M', "password authentication failed for user \"sink\""),
        ] {
            fields.push(code);
            fields.extend_from_slice(text.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut error = vec![b'E'];
        error.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
        error.extend_from_slice(&fields);
        stream.write_all(&error)?;
        Ok(password)
    }

    fn passwords(&self) -> Vec<String> {
        self.passwords.lock().unwrap().clone()
    }
}

impl Drop for PasswordServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The secrets never reach the output: a sink with a distinctive `db.password`,
/// `kafka.sasl.password` and secret-looking converter setting runs under `RUST_LOG=trace` with
/// librdkafka's `debug=all` and loads its messages; `pgsink check` checks the same
/// configuration and one with SASL_PLAINTEXT; and a sink whose database asks for the
/// password (given by `PGSINK_DB_PASSWORD`) and refuses it fails to start. The server did
/// receive the password, the logs are at trace level and show the configuration with the
/// secrets masked, and no stdout or stderr shows any secret.
#[test]
fn security_secrets_never_logged_mock() {
    let (ctx, broker, pg, table, topic) =
        stage("security_secrets_never_logged_mock", Broker::mock(), 1);
    let mut producer = broker.producer(false);
    producer.send_std_all(&topic, 1..=20);
    producer.flush();
    let mut toml = SinkToml::new(&table, &[&topic], &broker, &ctx.unique("g"))
        .line(&format!(
            "plugin.settings.api_token = {}",
            toml_str(SETTING_SECRET)
        ))
        .kafka("sasl.username", "sink")
        .kafka("sasl.password", SASL_SECRET)
        .kafka("debug", "all");
    toml.password = Some(DB_SECRET.to_string());
    let config = toml.render();
    let path = ctx.write("sink.toml", &config);
    let path_str = path.to_str().expect("UTF-8 path");

    // A sink that works, logging everything.
    let mut sink = ctx
        .sink("sink")
        .toml(&config)
        .env("RUST_LOG", "trace")
        .start();
    pg.wait_rows(&table, 20, LONG, &mut [&mut sink]);
    sink.stop_ok();
    let stderr = sink.stderr();
    let stdout = std::fs::read_to_string(ctx.dir().join("sink.stdout")).unwrap_or_default();
    assert_no_secret("pgsink run (stderr)", &stderr);
    assert_no_secret("pgsink run (stdout)", &stdout);
    assert!(stderr.contains(" TRACE "), "trace level is on");
    assert!(
        stderr.contains("librdkafka"),
        "librdkafka's debug log is shown"
    );
    assert!(
        stderr.contains("db.password = \"***\""),
        "the configuration is logged with the password masked"
    );
    assert!(
        stderr.contains("kafka.\"sasl.password\" = \"***\""),
        "the configuration is logged with the SASL password masked"
    );
    ctx.note(format!(
        "pgsink run: {} lines of log, no secret",
        stderr.lines().count()
    ));

    // pgsink check on the same configuration, and on one with SASL to a broker without it.
    let sasl = toml
        .clone()
        .kafka("security.protocol", "SASL_PLAINTEXT")
        .kafka("sasl.mechanisms", "PLAIN")
        .render();
    let sasl_path = ctx.write("sasl.toml", &sasl);
    for (what, file) in [
        ("check", path_str),
        ("check (SASL)", sasl_path.to_str().unwrap()),
    ] {
        let out = pgsink_traced(&["check", "--config", file, "--broker-timeout", "3"], &[]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_no_secret(&format!("pgsink {what} (stdout)"), &stdout);
        assert_no_secret(&format!("pgsink {what} (stderr)"), &stderr);
        assert!(stdout.contains("database"), "pgsink {what}: {stdout}");
        ctx.note(format!("pgsink {what}: exit {}, no secret", out.status));
    }

    // A database that asks for the password, gets it and refuses it.
    let server = PasswordServer::start();
    let mut refusing = toml.clone();
    refusing.db_host = format!("127.0.0.1:{}", server.port);
    let refusing_path = ctx.write("refusing.toml", refusing.render());
    let refusing_str = refusing_path.to_str().unwrap();
    let env = [("PGSINK_DB_PASSWORD", ENV_SECRET)];
    for args in [
        vec!["run", "--config", refusing_str],
        vec!["check", "--config", refusing_str, "--broker-timeout", "3"],
    ] {
        let out = pgsink_traced(&args, &env);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(!out.status.success(), "pgsink {args:?} must fail");
        assert!(
            format!("{stdout}{stderr}").contains("password authentication failed"),
            "pgsink {args:?} reports the refusal:\n{stdout}\n{}",
            tail(&stderr, 10)
        );
        assert_no_secret(&format!("pgsink {} (stdout)", args[0]), &stdout);
        assert_no_secret(&format!("pgsink {} (stderr)", args[0]), &stderr);
    }
    let received = server.passwords();
    assert!(
        !received.is_empty() && received.iter().all(|p| p == ENV_SECRET),
        "the server received PGSINK_DB_PASSWORD: {:?}",
        received.len()
    );
}
