//! A test's context ([`Ctx`]: work directory, process logs, progress notes) and the names it
//! makes: topics and groups carry the run id, so that a tansu broker that outlives a run never
//! mixes two runs; table names do not, so that a rerun replaces the previous run's table.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{Broker, Pg, Table};

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

    /// Where the `stream` (stdout, stderr) of process `label` goes; printed when the test fails.
    pub(super) fn log_file(&self, label: &str, stream: &str) -> PathBuf {
        let path = self.dir().join(format!("{label}.{stream}"));
        self.logs
            .borrow_mut()
            .push((format!("{label} {stream}"), path.clone()));
        path
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
