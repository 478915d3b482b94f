//! `pgsink-bench`: the end-to-end throughput benchmark of pgsink.
//!
//! On the same topic and table shape it runs pgsink (synchronized, guaranteed,
//! fastest; `tasks` 1 and 2) on each broker, the Python peer a user would write
//! instead, and a raw `psql \copy` of the same rows (the ceiling), checks every
//! table holds exactly the N rows, and prints one table. See BENCHMARKS.md.
//!
//! How throughput is measured, without slowing down what is measured: every
//! `--poll-ms` the driver takes `pg_current_snapshot()` (a trivial query). After
//! the run one scan groups the table's rows by the transaction that wrote them
//! (`xmin`); a transaction's rows became visible at the first snapshot that sees
//! it committed. That gives the visible row count over time exactly, at the poll
//! resolution, for any sink (pgsink, Python, psql) and any delivery mode, at no
//! cost during the run (a `count(*)` of 2M rows costs ~0.1 s of a core per poll).

mod data;
mod kafka;
mod keyed;
mod pg;
mod procstat;
mod report;
mod runs;
mod tables;
mod watch;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, ValueEnum};

use crate::kafka::{Broker, CommitWatcher};
use crate::pg::{Pg, PgTarget, Snapshot};
use report::*;
use runs::*;
use tables::*;
use watch::*;

/// End-to-end benchmark: Kafka → pgsink → PostgreSQL, against a Python peer and raw COPY.
#[derive(Parser, Debug)]
#[command(name = "pgsink-bench", version, about)]
struct Cli {
    /// Messages to produce and load per run.
    #[arg(long, default_value_t = 2_000_000)]
    messages: u64,
    /// Partitions of the topic on tansu.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Partitions of the topic on the mock cluster (default: 64 per million
    /// messages, at least 64: the mock keeps only 5 MiB per partition).
    #[arg(long)]
    mock_partitions: Option<i32>,
    /// Brokers to run on, in order.
    #[arg(long, value_delimiter = ',', default_value = "tansu,mock")]
    brokers: Vec<BrokerKind>,
    /// Delivery modes of pgsink.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "synchronized,guaranteed,fastest"
    )]
    modes: Vec<Mode>,
    /// Values of pgsink's `tasks`.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    tasks: Vec<u32>,
    /// Skip the Python peer and the raw COPY.
    #[arg(long)]
    skip_peers: bool,
    /// Extra pgsink setting for every run, `key=value` (repeatable), e.g.
    /// `--set kafka.queued.min.messages=200000 --set db.buffer.size=16000000`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// PostgreSQL connection string (host, port, user, password; the database is --database).
    #[arg(
        long,
        env = "PGSINK_PG",
        default_value = "host=127.0.0.1 port=5432 user=postgres"
    )]
    pg: String,
    /// Database for the bench tables (created if missing).
    #[arg(long, default_value = "pgsink_bench")]
    database: String,
    /// Use this running tansu (host:port) instead of starting one.
    #[arg(long, env = "PGSINK_BENCH_TANSU")]
    tansu: Option<String>,
    /// The repository (for tests/tansu.sh, target/release/pgsink and bench/results).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
    repo: PathBuf,
    /// The pgsink binary (default: REPO/target/release/pgsink).
    #[arg(long)]
    pgsink: Option<PathBuf>,
    /// Another pgsink binary (the one before a change) to run alternately with --pgsink, on
    /// the same topic, every mode and tasks; the results end with a before/after table.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Runs of each binary per mode and tasks (alternating with --baseline).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// The Python peer (default: $PGSINK_SHARED/peers/py_sink.py, else REPO/../shared/peers/py_sink.py).
    #[arg(long)]
    py_sink: Option<PathBuf>,
    /// The keyed workload's peer (default: py_upsert_sink.py beside py_sink.py).
    #[arg(long)]
    py_upsert_sink: Option<PathBuf>,
    /// What the topic holds: `seed` (unique ids, appended: raw COPY, pgsink in every mode,
    /// py_sink.py) or `keyed` (--keys keys updated over and over, one message in ten a
    /// tombstone: pgsink upsert and append, py_upsert_sink.py; the mock broker only).
    #[arg(long, value_enum, default_value = "seed")]
    workload: Workload,
    /// Keys of the keyed workload.
    #[arg(long, default_value_t = 500_000)]
    keys: u64,
    /// Where the Markdown results go (default: REPO/bench/results/latest.md, or
    /// keyed-latest.md for the keyed workload).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Work folder: configurations, logs, the rendered rows.
    #[arg(long, default_value = "/tmp/pgsink-bench")]
    work_dir: PathBuf,
    /// Snapshot poll interval, milliseconds (the resolution of the timings).
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// Keep the bench tables after verification (default: drop them).
    #[arg(long)]
    keep_tables: bool,
    /// Before each run, wait up to this many seconds for other processes to stop using
    /// the CPU (builds, tests of others on a shared machine); a run that starts on a busy
    /// machine says so in its note.
    #[arg(long, default_value_t = 0)]
    wait_idle: u64,
    /// Record a system-wide `perf record -e cpu-clock -a` profile of each pgsink run (from
    /// its start until it has loaded everything) into this folder: pgsink's threads, the
    /// PostgreSQL backends and the broker side by side (`perf report --sort comm,dso`).
    #[arg(long)]
    perf: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    Seed,
    Keyed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BrokerKind {
    Tansu,
    Mock,
}

impl BrokerKind {
    fn name(self) -> &'static str {
        match self {
            BrokerKind::Tansu => "tansu",
            BrokerKind::Mock => "mock",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Synchronized,
    Guaranteed,
    Fastest,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Synchronized => "synchronized",
            Mode::Guaranteed => "guaranteed",
            Mode::Fastest => "fastest",
        }
    }
}

/// Everything one run measured.
#[derive(Default, Debug)]
struct RunResult {
    broker: String,
    sink: String,
    mode: String,
    tasks: Option<u32>,
    /// Messages/s from the first row visible to the N-th.
    rate: Option<f64>,
    /// Messages/s between 10% and 90% of the rows visible.
    steady: Option<f64>,
    /// Process start to the first row visible.
    startup_s: Option<f64>,
    /// First row visible to the N-th.
    window_s: Option<f64>,
    /// Transactions that wrote the rows.
    txns: usize,
    /// CPU seconds of the sink process, whole life (getrusage of the child).
    cpu_s: Option<f64>,
    /// CPU seconds of the sink process between the first and the N-th row.
    cpu_window_s: Option<f64>,
    /// Peak RSS of the sink process (VmHWM), bytes.
    rss: Option<u64>,
    /// CPU seconds of the PostgreSQL backends serving the sink.
    pg_cpu_s: Option<f64>,
    /// CPU seconds of PostgreSQL's walwriter, checkpointer and background writer.
    pg_bg_cpu_s: Option<f64>,
    /// CPU seconds of the broker during the run.
    broker_cpu_s: Option<f64>,
    /// The busiest threads of the sink (name[tid], CPU seconds) just before it was stopped.
    threads: Vec<(String, f64)>,
    note: String,
    error: Option<String>,
    /// Rows the broker lost (tansu's known bug after a rebalance), when that explains a short count.
    broker_loss: Option<i64>,
}

impl RunResult {
    /// Appends `note` to the run's notes (`; `-separated).
    fn add_note(&mut self, note: String) {
        if self.note.is_empty() {
            self.note = note;
        } else {
            self.note = format!("{}; {note}", self.note);
        }
    }
}

struct Ctx {
    cli: Cli,
    rt: Arc<tokio::runtime::Runtime>,
    target: PgTarget,
    /// Sampler / admin connection to the bench database.
    db: Pg,
    /// Backends of this driver (excluded from the PostgreSQL CPU).
    own_backends: Vec<i32>,
    pgsink: PathBuf,
    run_id: String,
    /// pgsink runs so far (each gets a consumer group of its own).
    runs: u32,
    failures: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(0) => {}
        Ok(failures) => {
            eprintln!("bench: FAILED: {failures} run(s) failed: wrong rows in the table, or the sink did not run or stop cleanly (see above)");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<usize> {
    if cli.messages == 0 {
        bail!("--messages must be at least 1");
    }
    let repo = cli
        .repo
        .canonicalize()
        .with_context(|| format!("no repository at {}", cli.repo.display()))?;
    let pgsink = cli
        .pgsink
        .clone()
        .unwrap_or_else(|| repo.join("target/release/pgsink"));
    if !pgsink.is_file() {
        bail!(
            "no pgsink binary at {}: run `cargo build --release -p pgsink` (bench/run does)",
            pgsink.display()
        );
    }
    if let Some(baseline) = cli.baseline.as_ref().filter(|b| !b.is_file()) {
        bail!("no pgsink binary at {} (--baseline)", baseline.display());
    }
    if cli.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    for s in &cli.settings {
        parse_setting(s)?;
    }
    fs::create_dir_all(&cli.work_dir)?;
    if let Some(dir) = &cli.perf {
        fs::create_dir_all(dir)?;
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-pg")
            .enable_all()
            .build()?,
    );
    let target = PgTarget::parse(&cli.pg)?;
    pg::ensure_database(&rt, &target, &cli.database)?;
    let db = Pg::connect(&rt, &target, &cli.database)?;
    let own_backends = vec![db.backend_pid()];
    let run_id = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let mut ctx = Ctx {
        cli,
        rt,
        target,
        db,
        own_backends,
        pgsink,
        run_id,
        runs: 0,
        failures: Vec::new(),
    };
    let started = Instant::now();
    let machine = procstat::machine();
    let commit = git_commit(&repo);
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let pg_settings = postgres_settings(&ctx.db);
    eprintln!("bench: {machine}; PostgreSQL: {pg_settings}; pgsink {commit}");
    let busy = procstat::busy_processes(Duration::from_secs(1), 0.25, &[std::process::id()]);
    let busy_note = if busy.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = busy
            .iter()
            .take(5)
            .map(|(pid, name, share)| format!("{name}[{pid}] {:.0}%", share * 100.0))
            .collect();
        eprintln!(
            "bench: WARNING: the machine is busy ({}): the numbers will be lower than they should",
            list.join(", ")
        );
        format!("busy at start: {}", list.join(", "))
    };

    let mut results: Vec<RunResult> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let n = ctx.cli.messages;
    let mock_partitions = ctx
        .cli
        .mock_partitions
        .unwrap_or_else(|| (n.div_ceil(1_000_000) as i32 * 64).max(64));
    if ctx.cli.workload == Workload::Keyed {
        let peer = if ctx.cli.skip_peers {
            None
        } else {
            find_peer(
                ctx.cli.py_upsert_sink.as_deref(),
                "py_upsert_sink.py",
                &repo,
                &mut notes,
            )
        };
        let (keyed_results, keyed_notes) = keyed::bench(&mut ctx, peer, mock_partitions)?;
        results.extend(keyed_results);
        notes.extend(keyed_notes);
    } else {
        seed_workload(&mut ctx, &repo, mock_partitions, &mut results, &mut notes)?;
    }

    let settings_text = settings_summary(&ctx);
    let mut table = render_table(&results, n);
    if ctx.cli.workload == Workload::Keyed {
        table.push('\n');
        table.push_str(&keyed::render_ratios(&results));
    }
    if ctx.cli.baseline.is_some() {
        table.push('\n');
        table.push_str(&render_comparison(&results, n));
    }
    let details = render_details(&results);
    println!("\n{table}\n{details}");
    let header = format!(
        "# pgsink benchmark results\n\n\
         - date: {date}\n- machine: {machine}; load average at start {:.2}{}\n\
         - PostgreSQL: {pg_settings}\n- pgsink commit: {commit}\n\
         - messages per run: {n}; tansu partitions: {}; mock partitions: {mock_partitions}\n\
         - command: `{}`\n- total bench time: {:.0} s\n",
        procstat::loadavg(),
        if busy_note.is_empty() {
            String::new()
        } else {
            format!(" ({busy_note})")
        },
        ctx.cli.partitions,
        std::env::args().collect::<Vec<_>>().join(" "),
        started.elapsed().as_secs_f64()
    );
    let mut md = String::new();
    let _ = write!(md, "{header}\n{table}\n{details}\n{settings_text}");
    for note in &notes {
        let _ = writeln!(md, "- {note}");
    }
    if !ctx.failures.is_empty() {
        let _ = writeln!(md, "\n**FAILED runs:**\n");
        for f in &ctx.failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    let out = ctx
        .cli
        .out
        .clone()
        .unwrap_or_else(|| match ctx.cli.workload {
            Workload::Seed => repo.join("bench/results/latest.md"),
            Workload::Keyed => repo.join("bench/results/keyed-latest.md"),
        });
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&out, md).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "bench: wrote {} ({:.0} s in all)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ctx.failures.len())
}

struct TopicInfo<'a> {
    kind: BrokerKind,
    broker: &'a Broker,
    topic: &'a str,
    partitions: i32,
}

fn parse_setting(s: &str) -> anyhow::Result<(String, String)> {
    let Some((k, v)) = s.split_once('=') else {
        bail!("--set {s:?}: expected KEY=VALUE");
    };
    let k = k.trim();
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        bail!("--set {s:?}: bad key");
    }
    Ok((k.to_string(), v.trim().to_string()))
}

fn git_commit(repo: &Path) -> String {
    let rev = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let dirty = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    match rev {
        Some(r) if dirty => format!("{r} (with uncommitted changes)"),
        Some(r) => r,
        None => "unknown (not a git checkout)".into(),
    }
}

fn postgres_settings(db: &Pg) -> String {
    let q = "SELECT split_part(version(), ' ', 2), current_setting('shared_buffers'), \
             current_setting('synchronous_commit'), current_setting('fsync'), \
             current_setting('wal_level'), current_setting('max_wal_size')";
    match db.query_one(q, &[]) {
        Ok(r) => format!(
            "{} (shared_buffers {}, synchronous_commit {}, fsync {}, wal_level {}, max_wal_size {})",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, String>(3),
            r.get::<_, String>(4),
            r.get::<_, String>(5)
        ),
        Err(_) => "unknown".into(),
    }
}

/// The seed workload: raw COPY, then on each broker pgsink in every mode and tasks, and the
/// Python append peer.
fn seed_workload(
    ctx: &mut Ctx,
    repo: &Path,
    mock_partitions: i32,
    results: &mut Vec<RunResult>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let py_sink = if ctx.cli.skip_peers {
        None
    } else {
        find_peer(ctx.cli.py_sink.as_deref(), "py_sink.py", repo, notes)
    };

    // The ceiling: the same rows, pre-rendered, loaded by psql \copy.
    if !ctx.cli.skip_peers {
        results.push(run_raw_copy(ctx)?);
    }

    let n = ctx.cli.messages;
    for kind in ctx.cli.brokers.clone() {
        let partitions = match kind {
            BrokerKind::Tansu => ctx.cli.partitions,
            BrokerKind::Mock => mock_partitions,
        };
        eprintln!(
            "bench: == broker {} ({partitions} partitions) ==",
            kind.name()
        );
        let broker = match kind {
            BrokerKind::Tansu => match &ctx.cli.tansu {
                Some(addr) => Broker::existing_tansu(addr),
                None => Broker::start_tansu(repo)?,
            },
            BrokerKind::Mock => Broker::start_mock()?,
        };
        let topic = format!("pgsink-bench-{}-{}", ctx.run_id, kind.name());
        broker.create_topic(&ctx.rt, &topic, partitions)?;
        eprintln!(
            "bench: producing {n} messages to {topic} on {}",
            broker.bootstrap()
        );
        let (_ends, produce_rate) = kafka::produce(broker.bootstrap(), &topic, partitions, n)?;
        eprintln!("bench: produced {n} messages at {produce_rate:.0} msg/s");
        notes.push(format!(
            "{}: topic with {partitions} partitions, produced at {:.0} msg/s",
            kind.name(),
            produce_rate
        ));
        let topic_info = TopicInfo {
            kind,
            broker: &broker,
            topic: &topic,
            partitions,
        };
        let mut binaries = vec![(ctx.pgsink.clone(), "pgsink")];
        if let Some(baseline) = ctx.cli.baseline.clone() {
            binaries.insert(0, (baseline, BASELINE));
        }
        for &mode in &ctx.cli.modes.clone() {
            for &tasks in &ctx.cli.tasks.clone() {
                for _ in 0..ctx.cli.rounds {
                    for (binary, label) in &binaries {
                        let r = run_pgsink(ctx, &topic_info, binary, label, mode, tasks)?;
                        results.push(r);
                    }
                }
            }
        }
        if let Some(py) = &py_sink {
            results.push(run_py_sink(ctx, &topic_info, py)?);
        }
        drop(broker);
    }

    Ok(())
}

/// The peer script `name` (`py_sink.py`, `py_upsert_sink.py`): `explicit`, else in
/// `$PGSINK_SHARED/peers`, `REPO/../shared/peers` or `/work/shared/peers`.
fn find_peer(
    explicit: Option<&Path>,
    name: &str,
    repo: &Path,
    notes: &mut Vec<String>,
) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => {
            let mut v = Vec::new();
            if let Ok(shared) = std::env::var("PGSINK_SHARED") {
                v.push(PathBuf::from(shared).join("peers").join(name));
            }
            v.push(repo.join("../shared/peers").join(name));
            v.push(PathBuf::from("/work/shared/peers").join(name));
            v
        }
    };
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Some(p.clone()),
        None => {
            let note = format!(
                "Python peer skipped: {name} not found (looked at {})",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            eprintln!("bench: NOTE: {note}");
            notes.push(note);
            None
        }
    }
}
