//! Watching a run: sampling the process and the database until it is done, and what the samples say.

use super::*;

pub(crate) enum Done<'a> {
    /// pgsink.offsets of the table add up to the expected sum (synchronized).
    DbOffsets { table: &'a str, expected: i64 },
    /// The consumer group's committed offsets add up to the expected sum.
    Committed {
        watcher: CommitWatcher,
        expected: i64,
    },
    /// The process ends by itself.
    SelfExit,
}

#[derive(Default)]
pub(crate) struct Observed {
    /// (seconds since spawn, snapshot, process CPU seconds if alive)
    pub(crate) samples: Vec<(f64, Snapshot, Option<f64>)>,
    pub(crate) exited_at: f64,
    pub(crate) sigterm_at: Option<f64>,
    pub(crate) exit_status: i32,
    pub(crate) cpu_s: f64,
    pub(crate) peak_rss: Option<u64>,
    pub(crate) threads: BTreeMap<u32, (String, f64)>,
    pub(crate) pg_cpu_s: f64,
    pub(crate) pg_bg_cpu_s: f64,
    pub(crate) broker_cpu_s: Option<f64>,
    pub(crate) problem: Option<String>,
}

pub(crate) fn background_pids(db: &Pg) -> Vec<u32> {
    db.query(
        "SELECT pid FROM pg_stat_activity WHERE backend_type IN ('walwriter', 'checkpointer', 'background writer')",
        &[],
    )
    .map(|rows| rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect())
    .unwrap_or_default()
}

pub(crate) fn snapshot(db: &Pg) -> anyhow::Result<Snapshot> {
    let text: String = db
        .query_one("SELECT pg_current_snapshot()::text", &[])?
        .get(0);
    Snapshot::parse(&text).with_context(|| format!("cannot parse the snapshot {text:?}"))
}

/// Samples a child until it exits; stops it (SIGTERM) once `done` says all is loaded.
pub(crate) fn watch(
    ctx: &Ctx,
    child: &Child,
    spawned: Instant,
    done: &Done<'_>,
    broker: Option<&Broker>,
    deadline: Duration,
    perf: Option<&mut Child>,
) -> Observed {
    let pid = child.id();
    let poll = Duration::from_millis(ctx.cli.poll_ms.max(1));
    let mut o = Observed::default();
    let bg = background_pids(&ctx.db);
    let bg_start: f64 = bg.iter().filter_map(|&p| procstat::cpu_seconds(p)).sum();
    let broker_start = broker.and_then(Broker::cpu_seconds);
    let mut backends: BTreeMap<i32, f64> = BTreeMap::new();
    let mut peak: u64 = 0;
    let mut killed = false;
    let mut perf = perf;
    let mut tick: u64 = 0;
    loop {
        let tick_start = Instant::now();
        tick += 1;
        let t0 = spawned.elapsed().as_secs_f64();
        let snap = snapshot(&ctx.db);
        let t = (t0 + spawned.elapsed().as_secs_f64()) / 2.0;
        let cpu = procstat::cpu_seconds(pid);
        if let Some(h) = procstat::peak_rss_bytes(pid) {
            peak = peak.max(h);
        }
        if let Ok(s) = snap {
            o.samples.push((t, s, cpu));
        }
        if tick % 5 == 1 {
            if tick % 10 == 1 {
                if let Ok(rows) = ctx.db.query(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> ALL($1)",
                    &[&ctx.own_backends],
                ) {
                    for r in rows {
                        backends.entry(r.get::<_, i32>(0)).or_insert(0.0);
                    }
                }
            }
            for (p, last) in backends.iter_mut() {
                if let Some(c) = procstat::cpu_seconds(*p as u32) {
                    *last = c;
                }
            }
            if o.sigterm_at.is_none() {
                let th = procstat::threads(pid);
                if !th.is_empty() {
                    o.threads = th;
                }
            }
        }
        // Exited?
        let mut status: libc::c_int = 0;
        // SAFETY: plain FFI call with valid out-pointers.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid as libc::pid_t || r < 0 {
            o.exited_at = spawned.elapsed().as_secs_f64();
            o.exit_status = status;
            o.cpu_s = ru.ru_utime.tv_sec as f64
                + ru.ru_utime.tv_usec as f64 / 1e6
                + ru.ru_stime.tv_sec as f64
                + ru.ru_stime.tv_usec as f64 / 1e6;
            // One more snapshot: sees whatever the process committed on its way out.
            if let Ok(s) = snapshot(&ctx.db) {
                o.samples.push((spawned.elapsed().as_secs_f64(), s, None));
            }
            break;
        }
        let elapsed = spawned.elapsed();
        if o.sigterm_at.is_none() {
            let finished = match done {
                Done::DbOffsets { table, expected } => tick.is_multiple_of(2)
                    && ctx
                        .db
                        .query_one(
                            "SELECT coalesce(sum(next_offset), 0)::bigint FROM pgsink.offsets WHERE first_table = pgsink.qualified('public', $1)",
                            &[table],
                        )
                        .map(|r| r.get::<_, i64>(0) >= *expected)
                        .unwrap_or(false),
                Done::Committed { watcher, expected } => watcher.committed() >= *expected,
                Done::SelfExit => false,
            };
            let timed_out = elapsed > deadline;
            if finished || timed_out {
                if timed_out {
                    o.problem = Some(format!(
                        "not finished after {:.0} s: stopped",
                        deadline.as_secs_f64()
                    ));
                }
                let th = procstat::threads(pid);
                if !th.is_empty() {
                    o.threads = th;
                }
                if let Some(p) = perf.take() {
                    // SAFETY: signalling our own child.
                    unsafe { libc::kill(p.id() as libc::pid_t, libc::SIGINT) };
                    let _ = p.wait();
                }
                // SAFETY: signalling our own child.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                o.sigterm_at = Some(spawned.elapsed().as_secs_f64());
            }
        } else if !killed && elapsed.as_secs_f64() > o.sigterm_at.unwrap_or(0.0) + 60.0 {
            o.problem
                .get_or_insert_with(|| "did not exit 60 s after SIGTERM: killed".to_string());
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            killed = true;
        }
        if let Some(s) = poll.checked_sub(tick_start.elapsed()) {
            std::thread::sleep(s);
        }
    }
    if let Some(p) = perf.take() {
        unsafe { libc::kill(p.id() as libc::pid_t, libc::SIGINT) };
        let _ = p.wait();
    }
    o.peak_rss = (peak > 0).then_some(peak);
    o.pg_cpu_s = backends.values().sum();
    let bg_end: f64 = bg.iter().filter_map(|&p| procstat::cpu_seconds(p)).sum();
    o.pg_bg_cpu_s = (bg_end - bg_start).max(0.0);
    o.broker_cpu_s = match (broker_start, broker.and_then(Broker::cpu_seconds)) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    o
}

/// Fills the timing fields of `r` from the samples and the table's rows per transaction.
pub(crate) fn analyse(
    ctx: &Ctx,
    table: &str,
    o: &Observed,
    r: &mut RunResult,
    n: i64,
) -> anyhow::Result<()> {
    let groups: Vec<(u64, i64)> = ctx
        .db
        .query(
            &format!("SELECT xmin::text::bigint, count(*) FROM public.{table} GROUP BY 1"),
            &[],
        )?
        .iter()
        .map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1)))
        .collect();
    r.txns = groups.len();
    let Some((_, last, _)) = o.samples.last() else {
        bail!("no snapshot was taken");
    };
    let groups: Vec<(u64, i64)> = groups.iter().map(|&(x, c)| (last.widen(x), c)).collect();
    let curve: Vec<(f64, i64, Option<f64>)> = o
        .samples
        .iter()
        .map(|(t, s, cpu)| {
            let v = groups
                .iter()
                .filter(|(x, _)| s.sees(*x))
                .map(|(_, c)| c)
                .sum();
            (*t, v, *cpu)
        })
        .collect();
    let at = |pred: &dyn Fn(i64) -> bool| curve.iter().find(|(_, v, _)| pred(*v)).copied();
    let first = at(&|v| v > 0);
    let full = at(&|v| v >= n);
    if let (Some((t1, r1, c1)), Some((tn, _, cn))) = (first, full) {
        r.startup_s = Some(t1);
        if tn > t1 {
            r.window_s = Some(tn - t1);
            r.rate = Some((n - r1) as f64 / (tn - t1));
            let cn = cn.unwrap_or(o.cpu_s);
            if let Some(c1) = c1 {
                r.cpu_window_s = Some(cn - c1);
            }
        }
    }
    if r.rate.is_none() && first.is_some() {
        r.note = "all rows in one transaction: no rate (use more --messages)".into();
    }
    let p10 = at(&|v| v * 10 >= n);
    let p90 = at(&|v| v * 10 >= n * 9);
    if let (Some((ta, va, _)), Some((tb, vb, _))) = (p10, p90) {
        if tb > ta {
            r.steady = Some((vb - va) as f64 / (tb - ta));
        }
    }
    Ok(())
}

pub(crate) fn fill_process_fields(o: &Observed, r: &mut RunResult) {
    r.cpu_s = Some(o.cpu_s);
    r.rss = o.peak_rss;
    r.pg_cpu_s = Some(o.pg_cpu_s);
    r.pg_bg_cpu_s = Some(o.pg_bg_cpu_s);
    r.broker_cpu_s = o.broker_cpu_s;
    let mut threads: Vec<(String, f64)> = o
        .threads
        .iter()
        .map(|(tid, (name, s))| (format!("{name}[{tid}]"), *s))
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    threads.truncate(5);
    r.threads = threads;
}

pub(crate) fn exit_problem(o: &Observed, expect_clean: bool) -> Option<String> {
    let status = o.exit_status;
    let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if expect_clean && !clean {
        Some(if libc::WIFEXITED(status) {
            format!("exited with status {}", libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            format!("killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!("ended with wait status {status}")
        })
    } else {
        None
    }
}

pub(crate) fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Records a failed run loudly (one failure per run, reasons joined).
pub(crate) fn fail(ctx: &mut Ctx, r: &mut RunResult, what: String, log: Option<&Path>) {
    let run = format!(
        "{} {} {}{}",
        r.broker,
        r.sink,
        r.mode,
        r.tasks.map(|t| format!(" tasks={t}")).unwrap_or_default()
    );
    eprintln!("bench: FAILED: {run}: {what}");
    if let Some(log) = log {
        eprintln!("bench: last lines of {}:\n{}", log.display(), log_tail(log));
    }
    match &mut r.error {
        Some(e) => {
            e.push_str("; ");
            e.push_str(&what);
            if let Some(last) = ctx.failures.last_mut() {
                last.push_str("; ");
                last.push_str(&what);
            }
        }
        None => {
            ctx.failures.push(format!("{run}: {what}"));
            r.error = Some(what);
        }
    }
}
