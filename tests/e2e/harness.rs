//! Shared machinery of the end-to-end tests: PostgreSQL, the two Kafka brokers (librdkafka's
//! in-process mock cluster and tansu), a producer that records where every message landed, the
//! `pgsink` process, and row checks.
//!
//! Environment (set by `tests/run`):
//! - `PGSINK_TEST_PG`: libpq-style connection string of the PostgreSQL to use
//!   (default `host=127.0.0.1 port=5432 user=postgres`); the tests use its database `pgsink_test`.
//! - `PGSINK_TEST_TANSU`: `host:port` of a running tansu broker (tansu tests fail without it).
//! - `PGSINK_TEST_RUST_LOG`: `RUST_LOG` of the pgsink processes (default `info`).
//!
//! Every test owns a [`Ctx`]: a work directory under `target/tmp/e2e` (kept when the test fails)
//! and the logs of the pgsink processes it started, printed when the test fails.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _, ProducerContext};
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

/// The binary under test.
pub const PGSINK: &str = env!("CARGO_BIN_EXE_pgsink");
/// Database the tests work in (created when missing).
pub const TEST_DB: &str = "pgsink_test";
/// Generous bound for anything that involves a consumer group (mock: join ~3 s, rebalance
/// 9–18 s): waits poll and return as soon as the condition holds.
pub const LONG: Duration = Duration::from_secs(120);
/// Bound for a pgsink process to exit after SIGTERM.
pub const EXIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------------------
// Names
// ------------------------------------------------------------------------------------------

/// Identifies this run of the test binary: topics and consumer groups carry it, so that a
/// broker that outlives a run (tansu with `PGSINK_TANSU_PORT`) never mixes two runs.
pub fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!("{:x}{:x}", now.as_secs() % 0x10_0000, std::process::id())
    })
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `prefix` made safe for table, topic and group names: lowercase ASCII, digits, `_`; at most
/// 28 characters.
fn slug(prefix: &str) -> String {
    let mut s: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(28);
    s
}

/// Quotes an SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of strings.
pub fn toml_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| toml_str(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// A TCP port on 127.0.0.1 where nothing listens (it was free a moment ago).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

// ------------------------------------------------------------------------------------------
// Per-test context
// ------------------------------------------------------------------------------------------

/// One test's work directory and the logs of the processes it ran.
pub struct Ctx {
    pub name: String,
    dir: Option<tempfile::TempDir>,
    logs: RefCell<Vec<(String, PathBuf)>>,
    started: Instant,
}

impl Ctx {
    pub fn new(name: &str) -> Ctx {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e");
        std::fs::create_dir_all(&base).expect("create target/tmp/e2e");
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-", slug(name)))
            .tempdir_in(&base)
            .expect("create the test's work directory");
        Ctx {
            name: name.to_string(),
            dir: Some(dir),
            logs: RefCell::new(Vec::new()),
            started: Instant::now(),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("work dir").path()
    }

    /// A name unique in this run: `<test>_<what>_<run id>_<counter>` (topic names).
    pub fn unique(&self, what: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("e2e_{}_{}_{}_{n}", slug(&self.name), slug(what), run_id())
    }

    /// A table name: `<test>_<counter>` — stable across runs so that a rerun replaces the
    /// previous run's table instead of piling up new ones.
    pub fn table_name(&self) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("e2e_{}_{n}", slug(&self.name))
    }

    /// Prints a progress line (visible with `--nocapture` or when the test fails).
    pub fn note(&self, msg: impl AsRef<str>) {
        eprintln!(
            "[{} +{:.1}s] {}",
            self.name,
            self.started.elapsed().as_secs_f64(),
            msg.as_ref()
        );
    }

    /// Writes a file into the work directory.
    pub fn write(&self, file: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir().join(file);
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// Writes `config` to `<label>.toml` and starts `pgsink run` on it.
    pub fn start_sink(&self, label: &str, config: &str) -> Sink {
        let path = self.write(&format!("{label}.toml"), config);
        self.start_sink_file(label, &path)
    }

    /// Starts `pgsink run --config <path>`.
    pub fn start_sink_file(&self, label: &str, config: &Path) -> Sink {
        self.start_sink_file_env(label, config, &[])
    }

    /// Writes `config` to `<label>.toml` and starts `pgsink run` on it with extra environment.
    pub fn start_sink_env(&self, label: &str, config: &str, env: &[(&str, &str)]) -> Sink {
        let path = self.write(&format!("{label}.toml"), config);
        self.start_sink_file_env(label, &path, env)
    }

    /// Starts `pgsink run --config <path>` with extra environment variables.
    pub fn start_sink_file_env(&self, label: &str, config: &Path, env: &[(&str, &str)]) -> Sink {
        let stderr_path = self.dir().join(format!("{label}.stderr"));
        let stdout_path = self.dir().join(format!("{label}.stdout"));
        self.logs
            .borrow_mut()
            .push((format!("{label} stderr"), stderr_path.clone()));
        self.logs
            .borrow_mut()
            .push((format!("{label} stdout"), stdout_path.clone()));
        let mut cmd = pgsink_command();
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("create stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("create stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn pgsink run");
        self.note(format!("{label}: started pgsink run (pid {})", child.id()));
        Sink {
            label: label.to_string(),
            child,
            exited: None,
            stderr_path,
            started: Instant::now(),
        }
    }

    /// Runs pgsink to completion (`convert`, `sql`, ...) with `stdin` as its input.
    pub fn run_pgsink(&self, args: &[&str], stdin: &[u8], timeout: Duration) -> Output {
        let mut cmd = pgsink_command();
        cmd.args(args);
        run_with_timeout(cmd, stdin, timeout)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (label, path) in self.logs.borrow().iter() {
            let text = std::fs::read(path)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
            if text.is_empty() && label.ends_with("stdout") {
                continue;
            }
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(400);
            eprintln!(
                "===== {}: {label} ({} lines{}; {}) =====",
                self.name,
                lines.len(),
                if skip > 0 { ", last 400 shown" } else { "" },
                path.display()
            );
            for line in &lines[skip..] {
                eprintln!("{line}");
            }
            eprintln!("===== end of {label} =====");
        }
        if let Some(dir) = self.dir.take() {
            let kept = dir.keep();
            eprintln!("{}: work directory kept: {}", self.name, kept.display());
        }
    }
}

fn pgsink_command() -> Command {
    let mut cmd = Command::new(PGSINK);
    let log = std::env::var("PGSINK_TEST_RUST_LOG").unwrap_or_else(|_| "info".into());
    cmd.env("RUST_LOG", log);
    match pg_password() {
        Some(pw) => cmd.env("PGSINK_DB_PASSWORD", pw),
        None => cmd.env_remove("PGSINK_DB_PASSWORD"),
    };
    cmd
}

/// Runs a command with `stdin`, collecting its output; kills it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Output {
    use std::io::{Read, Write};
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn command");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

// ------------------------------------------------------------------------------------------
// The pgsink process
// ------------------------------------------------------------------------------------------

/// A running `pgsink run`. Dropping it kills the process (SIGKILL) if it still runs.
pub struct Sink {
    pub label: String,
    child: Child,
    exited: Option<ExitStatus>,
    stderr_path: PathBuf,
    started: Instant,
}

impl Sink {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Fails the test if the process has ended.
    pub fn assert_running(&mut self, while_doing: &str) {
        if let Some(status) = self.try_status() {
            panic!(
                "{}: pgsink exited ({status}) after {:.1} s while {while_doing}; last stderr:\n{}",
                self.label,
                self.started.elapsed().as_secs_f64(),
                tail(&self.stderr(), 40)
            );
        }
    }

    /// What the process wrote to stderr so far.
    /// Lets the sink run for `d`, failing the test if it exits meanwhile (`while_doing` says
    /// what was going on).
    pub fn stays_up(&mut self, d: Duration, while_doing: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < d {
            self.assert_running(while_doing);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Sends SIGTERM (through `kill -TERM`).
    pub fn sigterm(&mut self) {
        if !self.is_running() {
            return;
        }
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        self.exited = Some(self.child.wait().expect("wait after kill -9"));
    }

    /// Waits for the process to exit; kills it and fails the test after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{}: pgsink did not exit within {timeout:?}; last stderr:\n{}",
                    self.label,
                    tail(&self.stderr(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM, then waits (at most [`EXIT`]) and requires exit status 0.
    pub fn stop_ok(&mut self) {
        self.sigterm();
        let t0 = Instant::now();
        let status = self.wait(EXIT);
        assert!(
            status.success(),
            "{}: pgsink exited with {status} after SIGTERM (expected 0); last stderr:\n{}",
            self.label,
            tail(&self.stderr(), 40)
        );
        eprintln!(
            "{}: exited 0 {:.1} s after SIGTERM",
            self.label,
            t0.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `cond` every 100 ms until it holds; fails the test after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if cond() {
            return t0.elapsed();
        }
        if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------------------------------
// Sink configuration
// ------------------------------------------------------------------------------------------

/// The usual start of a test: its context, a broker, a standard table in the test database,
/// and a topic `t…` with `partitions` partitions, bound as
/// `let (ctx, broker, pg, table, topic) = stage(…)` (`ctx` drops last, so a failing test
/// still prints the sinks' logs).
pub fn stage(name: &str, broker: Broker, partitions: i32) -> (Ctx, Broker, Pg, Table, String) {
    let ctx = Ctx::new(name);
    let pg = Pg::connect();
    let table = pg.std_table(&ctx.table_name());
    let topic = ctx.unique("t");
    broker.create_topic(&topic, partitions);
    (ctx, broker, pg, table, topic)
}

/// Builds a TOML configuration for `pgsink run`.
#[derive(Clone, Debug)]
pub struct SinkToml {
    pub topics: Vec<String>,
    pub table: Table,
    pub parse: String,
    pub delivery: Option<String>,
    pub buffer_size: Option<usize>,
    pub flush_ms: Option<u64>,
    pub db_host: String,
    pub database: String,
    pub password: Option<String>,
    /// Extra top-level lines, written as they are.
    pub extra: Vec<String>,
    /// `kafka.*` properties (bootstrap.servers and group.id included).
    pub kafka: Vec<(String, String)>,
}

impl SinkToml {
    /// A sink of the standard messages ([`STD_PATHS`]) into `table`.
    pub fn new(table: &Table, topics: &[&str], broker: &Broker, group: &str) -> SinkToml {
        let mut kafka = vec![
            ("bootstrap.servers".to_string(), broker.bootstrap()),
            ("group.id".to_string(), group.to_string()),
        ];
        kafka.extend(broker.sink_kafka_props());
        SinkToml {
            topics: topics.iter().map(|s| s.to_string()).collect(),
            table: table.clone(),
            parse: STD_PATHS.to_string(),
            delivery: None,
            buffer_size: None,
            flush_ms: None,
            db_host: pg_host_port(),
            database: TEST_DB.to_string(),
            password: None,
            extra: Vec::new(),
            kafka,
        }
    }

    pub fn delivery(mut self, mode: &str) -> Self {
        self.delivery = Some(mode.to_string());
        self
    }

    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = Some(bytes);
        self
    }

    pub fn flush_ms(mut self, ms: u64) -> Self {
        self.flush_ms = Some(ms);
        self
    }

    pub fn line(mut self, line: &str) -> Self {
        self.extra.push(line.to_string());
        self
    }

    pub fn kafka(mut self, key: &str, value: &str) -> Self {
        self.kafka.retain(|(k, _)| k != key);
        self.kafka.push((key.to_string(), value.to_string()));
        self
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.topics.is_empty() {
            let _ = writeln!(s, "topics = {}", toml_list(&self.topics));
        }
        for line in &self.extra {
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(s, "db.host = {}", toml_str(&self.db_host));
        let _ = writeln!(s, "db.database = {}", toml_str(&self.database));
        let _ = writeln!(s, "db.username = {}", toml_str(&pg_user()));
        if let Some(pw) = &self.password {
            let _ = writeln!(s, "db.password = {}", toml_str(pw));
        }
        let _ = writeln!(s, "db.schema = {}", toml_str(&self.table.schema));
        let _ = writeln!(s, "db.table = {}", toml_str(&self.table.name));
        let _ = writeln!(s, "db.columns = {}", toml_list(&self.table.columns));
        let _ = writeln!(s, "db.json.parse = {}", toml_str(&self.parse));
        if let Some(d) = &self.delivery {
            let _ = writeln!(s, "db.delivery = {}", toml_str(d));
        }
        if let Some(b) = self.buffer_size {
            let _ = writeln!(s, "db.buffer.size = {b}");
        }
        if let Some(f) = self.flush_ms {
            let _ = writeln!(s, "flush.interval.ms = {f}");
        }
        let _ = writeln!(s, "\n[kafka]");
        for (k, v) in &self.kafka {
            let _ = writeln!(s, "{} = {}", toml_str(k), toml_str(v));
        }
        s
    }
}

// ------------------------------------------------------------------------------------------
// PostgreSQL
// ------------------------------------------------------------------------------------------

/// The connection string of the server under test (no database).
pub fn pg_conninfo() -> String {
    std::env::var("PGSINK_TEST_PG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "host=127.0.0.1 port=5432 user=postgres".to_string())
}

fn pg_base_config() -> tokio_postgres::Config {
    tokio_postgres::Config::from_str(&pg_conninfo())
        .unwrap_or_else(|e| panic!("PGSINK_TEST_PG {:?} is invalid: {e}", pg_conninfo()))
}

/// `db.host` for pgsink: `host:port` of the server under test.
pub fn pg_host_port() -> String {
    let cfg = pg_base_config();
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(_)) => {
            panic!("PGSINK_TEST_PG must name a TCP host (pgsink's db.host is host:port)")
        }
        None => "localhost".to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub fn pg_user() -> String {
    pg_base_config()
        .get_user()
        .unwrap_or("postgres")
        .to_string()
}

pub fn pg_password() -> Option<String> {
    pg_base_config()
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .filter(|p| !p.is_empty())
}

/// A target table: schema, name and the columns pgsink fills (in [`STD_PATHS`] order for the
/// standard tables).
#[derive(Clone, Debug)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<String>,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }

    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A blocking PostgreSQL client on database [`TEST_DB`].
pub struct Pg {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

fn new_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn pg_connect(cfg: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, conn) = tokio::time::timeout(Duration::from_secs(15), cfg.connect(tokio_postgres::NoTls))
        .await
        .unwrap_or_else(|_| panic!("connecting to PostgreSQL ({}) timed out", pg_conninfo()))
        .unwrap_or_else(|e| {
            panic!(
                "cannot connect to PostgreSQL ({}): {e} — run the tests through tests/run, which prepares PostgreSQL",
                pg_conninfo()
            )
        });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Creates database `db` once per process; safe against concurrent creation.
fn ensure_database(rt: &tokio::runtime::Runtime, db: &str) {
    static READY: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if ready.contains(db) {
        return;
    }
    rt.block_on(async {
        let client = pg_connect(&pg_base_config()).await;
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await
            .expect("query pg_database")
            .is_some();
        if !exists {
            if let Err(e) = client
                .batch_execute(&format!("CREATE DATABASE {}", ident(db)))
                .await
            {
                let code = e.code().cloned();
                if code != Some(tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                    && code != Some(tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
                {
                    panic!("CREATE DATABASE {db}: {e:?}");
                }
            }
        }
    });
    ready.insert(db.to_string());
}

impl Pg {
    pub fn connect() -> Pg {
        Pg::connect_to(TEST_DB)
    }

    /// Connects with a connection string of its own (a throwaway server, say).
    pub fn connect_with(conninfo: &str) -> Pg {
        let rt = new_runtime();
        let cfg = tokio_postgres::Config::from_str(conninfo)
            .unwrap_or_else(|e| panic!("connection string {conninfo:?}: {e}"));
        let client = rt.block_on(pg_connect(&cfg));
        Pg { rt, client }
    }

    /// Connects to database `db`, creating it when missing.
    pub fn connect_to(db: &str) -> Pg {
        let rt = new_runtime();
        ensure_database(&rt, db);
        let mut cfg = pg_base_config();
        cfg.dbname(db);
        let client = rt.block_on(pg_connect(&cfg));
        Pg { rt, client }
    }

    pub fn batch(&self, sql: &str) {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    pub fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Vec<tokio_postgres::Row> {
        self.rt
            .block_on(self.client.query(sql, params))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
    }

    /// `COPY ... FROM STDIN` with `data`; returns the number of rows.
    pub fn copy_in(&self, statement: &str, data: Vec<u8>) -> u64 {
        use futures_util::SinkExt;
        self.rt
            .block_on(async {
                let sink = self.client.copy_in::<_, bytes::Bytes>(statement).await?;
                let mut sink = std::pin::pin!(sink);
                sink.send(bytes::Bytes::from(data)).await?;
                sink.as_mut().finish().await
            })
            .unwrap_or_else(|e| panic!("{statement}: {e:?}"))
    }

    pub fn pgsink_installed(&self) -> bool {
        let rows = self.query(
            "SELECT to_regclass('pgsink.offsets') IS NOT NULL AND to_regclass('pgsink.dead_letters') IS NOT NULL",
            &[],
        );
        rows[0].get(0)
    }

    /// Removes what an earlier run left for this table in pgsink's state tables.
    pub fn forget_state(&self, schema: &str, table: &str) {
        if self.pgsink_installed() {
            self.query(
                "DELETE FROM pgsink.offsets WHERE table_schema = $1 AND table_name = $2",
                &[&schema, &table],
            );
            self.query(
                "DELETE FROM pgsink.dead_letters WHERE table_schema = $1 AND table_name = $2",
                &[&schema, &table],
            );
        }
    }

    /// (Re)creates `public.<name>` for the standard messages: columns `id bigint`,
    /// `lat numeric`, `lon numeric`, `ax`/`ay`/`az double precision`.
    pub fn std_table(&self, name: &str) -> Table {
        self.std_table_in("public", name, &STD_COLUMNS)
    }

    /// (Re)creates a standard table with other names (schema created when missing).
    pub fn std_table_in(&self, schema: &str, name: &str, columns: &[&str; 6]) -> Table {
        let types = [
            "bigint",
            "numeric",
            "numeric",
            "double precision",
            "double precision",
            "double precision",
        ];
        let typed: Vec<(&str, &str)> = columns.iter().copied().zip(types).collect();
        self.table_in(schema, name, &typed)
    }

    /// (Re)creates `<schema>.<name>` with `columns` (name, SQL type), creating the schema
    /// when missing, and forgets pgsink's state of it.
    pub fn table_in<C: AsRef<str>, T: AsRef<str>>(
        &self,
        schema: &str,
        name: &str,
        columns: &[(C, T)],
    ) -> Table {
        let table = Table {
            schema: schema.to_string(),
            name: name.to_string(),
            columns: columns
                .iter()
                .map(|(c, _)| c.as_ref().to_string())
                .collect(),
        };
        let cols: Vec<String> = columns
            .iter()
            .map(|(c, t)| format!("{} {}", ident(c.as_ref()), t.as_ref()))
            .collect();
        self.batch(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema_q}; DROP TABLE IF EXISTS {q}; CREATE TABLE {q} ({cols})",
            schema_q = ident(schema),
            q = table.qualified(),
            cols = cols.join(", ")
        ));
        self.forget_state(schema, name);
        table
    }

    pub fn count(&self, t: &Table) -> i64 {
        self.query(&format!("SELECT count(*) FROM {}", t.qualified()), &[])[0].get(0)
    }

    pub fn count_distinct_ids(&self, t: &Table) -> i64 {
        self.query(
            &format!(
                "SELECT count(DISTINCT {}) FROM {}",
                ident(&t.columns[0]),
                t.qualified()
            ),
            &[],
        )[0]
        .get(0)
    }

    /// Polls until the table has at least `n` rows, requiring every sink in `sinks` to keep
    /// running meanwhile. Returns the row count seen.
    pub fn wait_rows(&self, t: &Table, n: i64, timeout: Duration, sinks: &mut [&mut Sink]) -> i64 {
        let t0 = Instant::now();
        let mut last = -1;
        loop {
            let c = self.count(t);
            if c >= n {
                eprintln!(
                    "{}: {c} rows (wanted {n}) after {:.1} s",
                    t.name,
                    t0.elapsed().as_secs_f64()
                );
                return c;
            }
            for s in sinks.iter_mut() {
                s.assert_running(&format!("waiting for {n} rows in {} ({c} so far)", t.name));
            }
            if t0.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {n} rows in {}: {c} rows (previous poll {last})",
                    t.qualified()
                );
            }
            last = c;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until a standard table has a row for each of `ids` (at least `ids.len()` rows),
    /// requiring every sink in `sinks` to keep running. On timeout the failure lists the missing
    /// and duplicated ids and the stored offsets.
    pub fn wait_all_rows(
        &self,
        t: &Table,
        ids: &BTreeSet<u64>,
        timeout: Duration,
        sinks: &mut [&mut Sink],
    ) -> i64 {
        self.try_wait_all_rows(t, ids, timeout, sinks)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Pg::wait_all_rows`], returning the timeout's description instead of failing.
    pub fn try_wait_all_rows(
        &self,
        t: &Table,
        ids: &BTreeSet<u64>,
        timeout: Duration,
        sinks: &mut [&mut Sink],
    ) -> Result<i64, String> {
        let n = ids.len() as i64;
        let t0 = Instant::now();
        loop {
            let c = self.count(t);
            if c >= n {
                eprintln!(
                    "{}: {c} rows (wanted {n}) after {:.1} s",
                    t.name,
                    t0.elapsed().as_secs_f64()
                );
                return Ok(c);
            }
            for s in sinks.iter_mut() {
                s.assert_running(&format!("waiting for {n} rows in {} ({c} so far)", t.name));
            }
            if t0.elapsed() > timeout {
                let r = check_std_rows(&self.std_rows(t), ids);
                let offsets = self.stored_offsets(t);
                return Err(format!(
                    "timed out after {timeout:?} waiting for all {n} rows in {}: {}; \
                     pgsink.offsets (sum {}): {offsets:?}",
                    t.qualified(),
                    r.summary(),
                    offsets.values().sum::<i64>()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// All rows of a standard table.
    pub fn std_rows(&self, t: &Table) -> Vec<StdRow> {
        let c = &t.columns;
        let sql = format!(
            "SELECT {}, {}::text, {}::text, {}, {}, {} FROM {} ORDER BY 1",
            ident(&c[0]),
            ident(&c[1]),
            ident(&c[2]),
            ident(&c[3]),
            ident(&c[4]),
            ident(&c[5]),
            t.qualified()
        );
        self.query(&sql, &[])
            .iter()
            .map(|r| StdRow {
                id: r.get(0),
                lat: r.get(1),
                lon: r.get(2),
                ax: r.get(3),
                ay: r.get(4),
                az: r.get(5),
            })
            .collect()
    }

    /// `pgsink.offsets` of a table: (topic, partition) → next offset.
    pub fn stored_offsets(&self, t: &Table) -> BTreeMap<(String, i32), i64> {
        if !self.pgsink_installed() {
            return BTreeMap::new();
        }
        self.query(
            "SELECT topic, partition, next_offset FROM pgsink.offsets WHERE table_schema = $1 AND table_name = $2",
            &[&t.schema, &t.name],
        )
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
    }

    /// `pgsink.dead_letters` of a table, ordered by topic, partition, offset.
    pub fn dead_letters(&self, t: &Table) -> Vec<DeadLetter> {
        if !self.pgsink_installed() {
            return Vec::new();
        }
        self.query(
            "SELECT topic, partition, \"offset\", key, value, reason FROM pgsink.dead_letters \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY topic, partition, \"offset\"",
            &[&t.schema, &t.name],
        )
        .iter()
        .map(|r| DeadLetter {
            topic: r.get(0),
            partition: r.get(1),
            offset: r.get(2),
            key: r.get(3),
            value: r.get(4),
            reason: r.get(5),
        })
        .collect()
    }
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub reason: String,
}

// ------------------------------------------------------------------------------------------
// The standard messages and their rows
// ------------------------------------------------------------------------------------------

/// Columns of the standard table.
pub const STD_COLUMNS: [&str; 6] = ["id", "lat", "lon", "ax", "ay", "az"];
/// Parse paths of the standard table, in [`STD_COLUMNS`] order.
pub const STD_PATHS: &str = "/@identity,/@location/@latitude,/@location/@longitude,/@acceleration/#0,/@acceleration/#1,/@acceleration/#2";

/// The fields of message `id`, as the JSON text writes them.
pub struct StdFields {
    pub lat: String,
    pub lon: String,
    pub ax: String,
    pub ay: String,
    pub az: String,
}

pub fn std_fields(id: u64) -> StdFields {
    let ax = ((id % 2000) as f64 - 1000.0) / 100.0;
    StdFields {
        lat: format!("{}.{:07}", 40 + id % 20, id.wrapping_mul(7919) % 10_000_000),
        lon: format!(
            "-{}.{:07}",
            1 + id % 179,
            id.wrapping_mul(104_729) % 10_000_000
        ),
        ax: format!("{ax}"),
        ay: format!("{}.{}", id % 7, id % 10),
        az: format!("{}e-3", id % 997),
    }
}

/// The standard message of `id`, shaped like the original connector's example.
pub fn std_message(id: u64) -> String {
    let f = std_fields(id);
    format!(
        r#"{{"identity":{id},"location":{{"latitude":{},"longitude":{}}},"acceleration":[{},{},{}]}}"#,
        f.lat, f.lon, f.ax, f.ay, f.az
    )
}

/// A row of a standard table as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StdRow {
    pub id: Option<i64>,
    pub lat: Option<String>,
    pub lon: Option<String>,
    pub ax: Option<f64>,
    pub ay: Option<f64>,
    pub az: Option<f64>,
}

impl StdRow {
    /// The row message `id` must give.
    pub fn expected(id: u64) -> StdRow {
        let f = std_fields(id);
        StdRow {
            id: Some(id as i64),
            lat: Some(f.lat),
            lon: Some(f.lon),
            ax: Some(f.ax.parse().expect("ax")),
            ay: Some(f.ay.parse().expect("ay")),
            az: Some(f.az.parse().expect("az")),
        }
    }
}

/// How a table's rows compare with the ids that were produced.
#[derive(Debug, Default)]
pub struct RowReport {
    pub rows: usize,
    pub distinct: usize,
    /// Ids present more than once, with their count (at most 20 listed) and how many there are.
    pub duplicated: Vec<(i64, usize)>,
    pub duplicated_ids: usize,
    pub missing: Vec<u64>,
    pub missing_count: usize,
    pub unexpected: Vec<Option<i64>>,
    pub unexpected_count: usize,
    pub wrong: Vec<String>,
    pub wrong_count: usize,
}

impl RowReport {
    pub fn summary(&self) -> String {
        format!(
            "{} rows, {} distinct ids; {} ids duplicated {:?}; {} ids missing {:?}; {} unexpected rows {:?}; {} wrong rows {:?}",
            self.rows,
            self.distinct,
            self.duplicated_ids,
            self.duplicated,
            self.missing_count,
            self.missing,
            self.unexpected_count,
            self.unexpected,
            self.wrong_count,
            self.wrong
        )
    }
}

/// Compares `rows` with the standard rows of `ids`, field by field.
pub fn check_std_rows(rows: &[StdRow], ids: &BTreeSet<u64>) -> RowReport {
    let mut r = RowReport {
        rows: rows.len(),
        ..RowReport::default()
    };
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for row in rows {
        let Some(id) = row.id.filter(|id| *id >= 0 && ids.contains(&(*id as u64))) else {
            r.unexpected_count += 1;
            if r.unexpected.len() < 20 {
                r.unexpected.push(row.id);
            }
            continue;
        };
        *seen.entry(id).or_default() += 1;
        let want = StdRow::expected(id as u64);
        if *row != want {
            r.wrong_count += 1;
            if r.wrong.len() < 10 {
                r.wrong.push(format!("got {row:?}, expected {want:?}"));
            }
        }
    }
    r.distinct = seen.len();
    for (id, n) in &seen {
        if *n > 1 {
            r.duplicated_ids += 1;
            if r.duplicated.len() < 20 {
                r.duplicated.push((*id, *n));
            }
        }
    }
    for id in ids {
        if !seen.contains_key(&(*id as i64)) {
            r.missing_count += 1;
            if r.missing.len() < 20 {
                r.missing.push(*id);
            }
        }
    }
    r
}

/// Exactly once: every id once, every field right, nothing else.
pub fn assert_exactly_once(pg: &Pg, t: &Table, ids: &BTreeSet<u64>) {
    let r = check_std_rows(&pg.std_rows(t), ids);
    assert!(
        r.rows == ids.len()
            && r.duplicated_ids == 0
            && r.missing_count == 0
            && r.unexpected_count == 0
            && r.wrong_count == 0,
        "{}: expected exactly the {} produced rows: {}",
        t.qualified(),
        ids.len(),
        r.summary()
    );
}

/// At least once: every id present, every field right, nothing else (duplicates allowed).
/// Returns the number of duplicated rows.
pub fn assert_at_least_once(pg: &Pg, t: &Table, ids: &BTreeSet<u64>) -> usize {
    let r = check_std_rows(&pg.std_rows(t), ids);
    assert!(
        r.missing_count == 0 && r.unexpected_count == 0 && r.wrong_count == 0,
        "{}: expected every one of the {} produced ids: {}",
        t.qualified(),
        ids.len(),
        r.summary()
    );
    r.rows - r.distinct
}

/// The synchronized invariant at any moment, even while sinks run: no duplicates, only
/// produced ids with the right fields, and as many rows as the stored offsets account for (all
/// topics start at offset 0 and every message makes one row). The count and the offsets are
/// read by one statement, so in one snapshot. Returns the row count.
pub fn assert_synchronized_consistent(pg: &Pg, t: &Table, ids: &BTreeSet<u64>) -> usize {
    let r = check_std_rows(&pg.std_rows(t), ids);
    assert!(
        r.duplicated_ids == 0 && r.unexpected_count == 0 && r.wrong_count == 0,
        "{}: synchronized table inconsistent: {}",
        t.qualified(),
        r.summary()
    );
    let row = &pg.query(
        &format!(
            "SELECT (SELECT count(*) FROM {}), \
                    (SELECT coalesce(sum(next_offset), 0)::bigint FROM pgsink.offsets \
                      WHERE table_schema = $1 AND table_name = $2), \
                    (SELECT coalesce(string_agg(topic || '[' || partition || ']=' || next_offset, ', ' \
                                     ORDER BY topic, partition), '') \
                       FROM pgsink.offsets WHERE table_schema = $1 AND table_name = $2)",
            t.qualified()
        ),
        &[&t.schema, &t.name],
    )[0];
    let rows: i64 = row.get(0);
    let sum: i64 = row.get(1);
    let offsets: String = row.get(2);
    assert_eq!(
        rows,
        sum,
        "{}: {rows} rows but the stored offsets (same snapshot) account for {sum} messages: {offsets}",
        t.qualified()
    );
    rows as usize
}

// ------------------------------------------------------------------------------------------
// Brokers
// ------------------------------------------------------------------------------------------

enum MockCmd {
    CreateTopic(String, i32, mpsc::Sender<Result<(), String>>),
    /// Broker 1 down (true) or up (false).
    Down(bool, mpsc::Sender<Result<(), String>>),
    /// Fail the next requests of one API with these errors, in order.
    RequestErrors(RDKafkaApiKey, Vec<RDKafkaRespErr>, mpsc::Sender<()>),
}

/// librdkafka's mock cluster, alive on its own thread (it is not `Send`) until dropped.
pub struct MockBroker {
    bootstrap: String,
    tx: Option<mpsc::Sender<MockCmd>>,
    thread: Option<JoinHandle<()>>,
}

impl MockBroker {
    pub fn start() -> MockBroker {
        let (tx, rx) = mpsc::channel::<MockCmd>();
        let (boot_tx, boot_rx) = mpsc::channel::<Result<String, String>>();
        let thread = std::thread::Builder::new()
            .name("mock-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = boot_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = boot_tx.send(Ok(cluster.bootstrap_servers()));
                for cmd in rx {
                    match cmd {
                        MockCmd::CreateTopic(name, partitions, reply) => {
                            let r = cluster
                                .create_topic(&name, partitions, 1)
                                .map_err(|e| e.to_string());
                            let _ = reply.send(r);
                        }
                        MockCmd::Down(down, reply) => {
                            let r = if down {
                                cluster.broker_down(1)
                            } else {
                                cluster.broker_up(1)
                            };
                            let _ = reply.send(r.map_err(|e| e.to_string()));
                        }
                        MockCmd::RequestErrors(api, errors, reply) => {
                            cluster.request_errors(api, &errors);
                            let _ = reply.send(());
                        }
                    }
                }
                drop(cluster);
            })
            .expect("spawn mock cluster thread");
        let bootstrap = boot_rx
            .recv()
            .expect("mock cluster thread died")
            .unwrap_or_else(|e| panic!("MockCluster::new: {e}"));
        MockBroker {
            bootstrap,
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .as_ref()
            .expect("mock running")
            .send(MockCmd::CreateTopic(name.to_string(), partitions, reply_tx))
            .expect("mock cluster thread gone");
        reply_rx
            .recv()
            .expect("mock cluster thread gone")
            .unwrap_or_else(|e| panic!("mock create_topic {name}: {e}"));
    }
}

impl MockBroker {
    /// Takes the (only) broker down, or brings it back up.
    pub fn set_down(&self, down: bool) {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .as_ref()
            .expect("mock running")
            .send(MockCmd::Down(down, reply_tx))
            .expect("mock cluster thread gone");
        reply_rx
            .recv()
            .expect("mock cluster thread gone")
            .unwrap_or_else(|e| panic!("mock broker down={down}: {e}"));
    }
}

impl MockBroker {
    /// librdkafka's error injection: the next `errors.len()` requests of `api` (from any
    /// client of this cluster) fail with these errors, in order.
    pub fn request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .as_ref()
            .expect("mock running")
            .send(MockCmd::RequestErrors(api, errors.to_vec(), reply_tx))
            .expect("mock cluster thread gone");
        reply_rx.recv().expect("mock cluster thread gone");
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Kafka-protocol broker for one test.
pub enum Broker {
    Mock(MockBroker),
    Tansu(String),
}

impl Broker {
    pub fn mock() -> Broker {
        Broker::Mock(MockBroker::start())
    }

    /// The tansu broker of `tests/run`; fails the test when there is none.
    pub fn tansu() -> Broker {
        match std::env::var("PGSINK_TEST_TANSU") {
            Ok(addr) if !addr.trim().is_empty() => Broker::Tansu(addr.trim().to_string()),
            _ => panic!(
                "PGSINK_TEST_TANSU is not set: the tansu tests need a running tansu broker. \
                 Run the tests with tests/run (it starts one), or start one with \
                 `tests/tansu.sh start 19092` and set PGSINK_TEST_TANSU=127.0.0.1:19092"
            ),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "mock",
            Broker::Tansu(_) => "tansu",
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap.clone(),
            Broker::Tansu(a) => a.clone(),
        }
    }

    /// librdkafka properties the sink needs on this broker.
    pub fn sink_kafka_props(&self) -> Vec<(String, String)> {
        match self {
            Broker::Mock(_) => Vec::new(),
            // tansu always waits the full fetch.wait.max.ms.
            Broker::Tansu(_) => vec![("fetch.wait.max.ms".to_string(), "10".to_string())],
        }
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        match self {
            Broker::Mock(m) => m.create_topic(name, partitions),
            Broker::Tansu(addr) => tansu_create_topic(addr, name, partitions),
        }
        // Wait until the topic's metadata shows all partitions.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("metadata client");
        wait_for(
            Duration::from_secs(60),
            &format!("metadata of topic {name}"),
            || {
                consumer
                    .fetch_metadata(Some(name), Duration::from_secs(5))
                    .ok()
                    .and_then(|md| {
                        md.topics().iter().find(|t| t.name() == name).map(|t| {
                            t.error().is_none() && t.partitions().len() == partitions as usize
                        })
                    })
                    .unwrap_or(false)
            },
        );
    }

    /// A producer; `one_per_batch` sets `batch.num.messages=1` (tansu tests that resume from a
    /// stored offset need it: tansu cannot fetch from the middle of a batch).
    pub fn producer(&self, one_per_batch: bool) -> Producer {
        self.producer_spec(one_per_batch).create()
    }

    pub fn producer_spec(&self, one_per_batch: bool) -> ProducerSpec {
        ProducerSpec {
            bootstrap: self.bootstrap(),
            one_per_batch,
        }
    }

    /// The message at `offset` of a partition, as (offset, key, value), read with a plain
    /// consumer (diagnostics: is a message the sink lacks really in the log?).
    pub fn read_at(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<(i64, Vec<u8>, Vec<u8>)> {
        use rdkafka::Message as _;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", format!("e2e-diagnostics-{}", run_id()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .ok()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .ok()?;
        consumer.assign(&tpl).ok()?;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                return Some((
                    m.offset(),
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().unwrap_or_default().to_vec(),
                ));
            }
        }
        None
    }

    /// The committed offsets of `group` for the partitions of `topic` (None: no commit).
    pub fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
    ) -> BTreeMap<i32, Option<i64>> {
        committed_offsets(&self.bootstrap(), group, topic, partitions)
    }
}

fn tansu_create_topic(addr: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)));
    let results = rt
        .block_on(admin.create_topics([&topic], &opts))
        .unwrap_or_else(|e| {
            panic!("tansu at {addr}: CreateTopics {name}: {e} (is tansu running? use tests/run)")
        });
    for r in results {
        match r {
            Ok(_) => {}
            Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => {
                panic!("topic {t} already exists on tansu (names should be unique per run)")
            }
            Err((t, code)) => panic!("tansu: CreateTopics {t}: {code}"),
        }
    }
}

/// Reads the committed offsets of a consumer group without joining it.
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Option<i64>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer for committed offsets");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("committed offsets of group {group}: {e}"));
    got.elements()
        .iter()
        .filter(|e| e.topic() == topic)
        .map(|e| {
            let off = match e.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            };
            (e.partition(), off)
        })
        .collect()
}

/// Where one produced message landed.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub seq: usize,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Default)]
pub struct DeliveryLog {
    ok: Mutex<Vec<Delivered>>,
    failed: Mutex<Vec<String>>,
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(m) => self.ok.lock().unwrap().push(Delivered {
                seq,
                topic: m.topic().to_string(),
                partition: m.partition(),
                offset: m.offset(),
            }),
            Err((e, m)) => self
                .failed
                .lock()
                .unwrap()
                .push(format!("message {seq} to {}: {e}", m.topic())),
        }
    }
}

/// Everything needed to create a producer on another thread.
#[derive(Clone, Debug)]
pub struct ProducerSpec {
    pub bootstrap: String,
    pub one_per_batch: bool,
}

impl ProducerSpec {
    pub fn create(&self) -> Producer {
        let mut cfg = ClientConfig::new();
        // 50 ms of linger: a paced producer still makes batches of several messages. The mock
        // broker serves about one batch per partition per fetch, so one-message batches cap a
        // catching-up consumer near 500 msg/s.
        cfg.set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "50")
            .set("queue.buffering.max.messages", "1000000")
            .set("message.timeout.ms", "90000");
        if self.one_per_batch {
            cfg.set("batch.num.messages", "1");
        }
        let inner: BaseProducer<DeliveryLog> = cfg
            .create_with_context(DeliveryLog::default())
            .expect("create producer");
        Producer { inner, sent: 0 }
    }
}

/// A producer that records the partition and offset of every message.
pub struct Producer {
    inner: BaseProducer<DeliveryLog>,
    sent: usize,
}

impl Producer {
    /// Queues one message (waiting while the local queue is full); returns its sequence number.
    pub fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> usize {
        let seq = self.sent;
        self.sent += 1;
        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, seq);
        record.partition = partition;
        record.key = key;
        record.payload = value;
        loop {
            match self.inner.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.inner.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce to {topic}: {e}"),
            }
        }
        self.inner.poll(Duration::ZERO);
        seq
    }

    /// Sends the standard message of `id`, keyed by the id.
    pub fn send_std(&mut self, topic: &str, id: u64) -> usize {
        let key = id.to_string();
        let value = std_message(id);
        self.send(topic, None, Some(key.as_bytes()), Some(value.as_bytes()))
    }

    /// Sends the standard messages of `ids`, keyed by id.
    pub fn send_std_all(&mut self, topic: &str, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            self.send_std(topic, id);
        }
    }

    /// Waits until every message is acknowledged; fails the test on any delivery error.
    /// Returns the deliveries so far, by sequence number.
    pub fn flush(&mut self) -> Vec<Delivered> {
        let t0 = Instant::now();
        self.inner
            .flush(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("producer flush: {e}"));
        let ctx = self.inner.context();
        let failed = ctx.failed.lock().unwrap();
        assert!(
            failed.is_empty(),
            "{} messages failed to deliver, e.g. {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        );
        let mut ok = ctx.ok.lock().unwrap().clone();
        assert_eq!(ok.len(), self.sent, "not every message was acknowledged");
        ok.sort_by_key(|d| d.seq);
        eprintln!(
            "producer: {} messages acknowledged (flush {:.1} s)",
            ok.len(),
            t0.elapsed().as_secs_f64()
        );
        ok
    }
}

/// The end offset (last offset + 1) of every partition that received messages.
pub fn end_offsets(delivered: &[Delivered]) -> BTreeMap<(String, i32), i64> {
    let mut ends = BTreeMap::new();
    for d in delivered {
        let e = ends.entry((d.topic.clone(), d.partition)).or_insert(0);
        if d.offset + 1 > *e {
            *e = d.offset + 1;
        }
    }
    ends
}

/// Compares `pgsink.offsets` of a table with the partitions' end offsets. Partitions that got
/// no message may be absent or at 0.
pub fn assert_offsets_at_end(pg: &Pg, t: &Table, ends: &BTreeMap<(String, i32), i64>) {
    let stored = pg.stored_offsets(t);
    let mut problems = Vec::new();
    for (tp, end) in ends {
        match stored.get(tp) {
            Some(s) if s == end => {}
            other => problems.push(format!("{}[{}]: stored {other:?}, end {end}", tp.0, tp.1)),
        }
    }
    for (tp, s) in &stored {
        if !ends.contains_key(tp) && *s != 0 {
            problems.push(format!(
                "{}[{}]: stored {s} for an empty partition",
                tp.0, tp.1
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{}: pgsink.offsets differs from the partitions' end offsets: {}",
        t.qualified(),
        problems.join("; ")
    );
}

/// Waits until the committed offsets of `group` equal the end offsets of `topic`.
pub fn wait_committed_at_end(
    broker: &Broker,
    group: &str,
    topic: &str,
    partitions: i32,
    ends: &BTreeMap<(String, i32), i64>,
    sink: &mut Sink,
) {
    let mut last = BTreeMap::new();
    let t0 = Instant::now();
    loop {
        let got = broker.committed(group, topic, partitions);
        let done = (0..partitions).all(|p| {
            let want = ends.get(&(topic.to_string(), p)).copied();
            let have = got.get(&p).copied().flatten();
            match want {
                Some(w) => have == Some(w),
                None => have.is_none() || have == Some(0),
            }
        });
        if done {
            eprintln!(
                "group {group}: committed offsets at the end after {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            return;
        }
        sink.assert_running("waiting for the Kafka offset commit");
        if t0.elapsed() > LONG {
            panic!(
                "group {group}: committed offsets {got:?} never reached the end offsets {ends:?} \
                 within {LONG:?} (previous poll {last:?})"
            );
        }
        last = got;
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Produces the standard messages of `ids` on a thread at about `rate` messages per second,
/// while the test does other things. Dropping it stops production.
pub struct BackgroundProducer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Delivered>>>,
}

impl BackgroundProducer {
    pub fn start(spec: ProducerSpec, topic: &str, ids: Vec<u64>, rate: u64) -> BackgroundProducer {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let topic = topic.to_string();
        let handle = std::thread::spawn(move || {
            let mut p = spec.create();
            let t0 = Instant::now();
            for (i, id) in ids.iter().enumerate() {
                if stop2.load(Ordering::Relaxed) {
                    return Vec::new();
                }
                p.send_std(&topic, *id);
                // Pace: message i is due at i / rate seconds.
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                let now = t0.elapsed();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            p.flush()
        });
        BackgroundProducer {
            stop,
            handle: Some(handle),
        }
    }

    /// Waits for every message to be acknowledged.
    pub fn finish(mut self) -> Vec<Delivered> {
        self.handle
            .take()
            .expect("handle")
            .join()
            .expect("background producer panicked")
    }
}

impl Drop for BackgroundProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// GET `path` from `127.0.0.1:port` with a plain HTTP/1.0 request; the body, or None when
/// the server does not answer (yet) or answers with another status than 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    if !status.contains(" 200") {
        eprintln!("GET {path}: {status}");
        return None;
    }
    Some(body.to_string())
}

/// The samples of metric `name` (exact name, not `_bucket` etc.) whose labels contain every
/// `label="value"` of `labels`: (label text, value).
pub fn samples(body: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in body.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(after) = rest.strip_prefix('{') {
            let Some((l, v)) = after.split_once('}') else {
                continue;
            };
            (l.to_string(), v.trim())
        } else if rest.starts_with(' ') {
            (String::new(), rest.trim())
        } else {
            continue; // another metric with this prefix
        };
        if !labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        let value = value.split_whitespace().next().unwrap_or("");
        if let Ok(v) = value.parse::<f64>() {
            out.push((label_text, v));
        }
    }
    out
}
