//! The runs: pgsink, the Python peer and raw COPY, each against the same topic and table shape.

use super::*;

pub(crate) fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The pgsink settings the bench adds for a broker and mode (before `--set`).
pub(crate) fn bench_settings(kind: BrokerKind, mode: Mode) -> Vec<(String, String)> {
    let mut v = Vec::new();
    if kind == BrokerKind::Tansu {
        // tansu always waits the full fetch.wait.max.ms (see KAFKA.md).
        v.push(("kafka.fetch.wait.max.ms".to_string(), "10".to_string()));
    }
    if mode == Mode::Fastest {
        // Fastest commits through librdkafka's auto-commit; a short interval lets the
        // bench see within ~0.1 s that everything was consumed and stop pgsink, whose
        // last (partial) buffer is written only at shutdown in this mode.
        v.push((
            "kafka.auto.commit.interval.ms".to_string(),
            "100".to_string(),
        ));
    }
    v
}

/// The configuration of a pgsink run; `workload` settings (e.g. `db.json.parse`) replace the
/// seed workload's, and `--set` replaces everything.
pub(crate) fn pgsink_config(
    ctx: &Ctx,
    t: &TopicInfo<'_>,
    mode: Mode,
    tasks: u32,
    table: &str,
    group: &str,
    workload: &[(&str, &str)],
) -> anyhow::Result<String> {
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    settings.insert("db.json.parse".into(), data::PARSE_PATHS.into());
    for (k, v) in workload {
        settings.insert(k.to_string(), v.to_string());
    }
    settings.insert(
        "kafka.bootstrap.servers".into(),
        t.broker.bootstrap().into(),
    );
    settings.insert("kafka.group.id".into(), group.into());
    for (k, v) in bench_settings(t.kind, mode) {
        settings.insert(k, v);
    }
    for s in &ctx.cli.settings {
        let (k, v) = parse_setting(s)?;
        settings.insert(k, v);
    }
    let mut c = String::new();
    let _ = writeln!(c, "# written by pgsink-bench");
    let _ = writeln!(c, "topics = {}", toml_str(t.topic));
    let _ = writeln!(c, "tasks = {tasks}");
    let _ = writeln!(c, "db.host = {}", toml_str(&ctx.target.host_port()));
    let _ = writeln!(c, "db.database = {}", toml_str(&ctx.cli.database));
    let _ = writeln!(c, "db.username = {}", toml_str(&ctx.target.user));
    let _ = writeln!(c, "db.table = {}", toml_str(table));
    let _ = writeln!(c, "db.columns = {}", toml_str(data::COLUMNS));
    let _ = writeln!(c, "db.delivery = {}", toml_str(mode.name()));
    let mut kafka = String::new();
    for (k, v) in &settings {
        match k.strip_prefix("kafka.") {
            Some(prop) => {
                let _ = writeln!(kafka, "{} = {}", toml_str(prop), toml_str(v));
            }
            None => {
                let _ = writeln!(c, "{k} = {}", toml_str(v));
            }
        }
    }
    let _ = write!(c, "\n[kafka]\n{kafka}");
    Ok(c)
}

/// One run of the pgsink `binary`, named `label` in the results.
pub(crate) fn run_pgsink(
    ctx: &mut Ctx,
    t: &TopicInfo<'_>,
    binary: &Path,
    label: &str,
    mode: Mode,
    tasks: u32,
) -> anyhow::Result<RunResult> {
    let n = ctx.cli.messages as i64;
    let broker_name = t.kind.name();
    let table = format!("bench_{broker_name}_{}_{tasks}", mode.name());
    ctx.runs += 1;
    let group = format!("pgsink-bench-{}-{table}-{}", ctx.run_id, ctx.runs);
    let mut r = RunResult {
        broker: broker_name.into(),
        sink: label.into(),
        mode: mode.name().into(),
        tasks: Some(tasks),
        ..RunResult::default()
    };
    eprintln!(
        "bench: {label} {} tasks={tasks} on {broker_name} → {table}",
        mode.name()
    );
    prepare_table(ctx, &table)?;
    let busy = wait_idle(ctx, &[]);
    let config = pgsink_config(ctx, t, mode, tasks, &table, &group, &[])?;
    let config_path = ctx.cli.work_dir.join(format!("{table}.toml"));
    fs::write(&config_path, config)?;
    let log_path = ctx.cli.work_dir.join(format!("{table}.log"));
    let log = fs::File::create(&log_path)?;
    let done = match mode {
        Mode::Synchronized => Done::DbOffsets {
            table: &table,
            expected: n,
        },
        _ => Done::Committed {
            watcher: CommitWatcher::start(t.broker.bootstrap(), &group, t.topic, t.partitions)?,
            expected: n,
        },
    };
    let (child, spawned) = spawn_pgsink(ctx, binary, &config_path, log)?;
    let mut perf = match &ctx.cli.perf {
        Some(dir) => Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "999", "-a", "-o"])
            .arg(dir.join(format!("{table}.data")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok(),
        None => None,
    };
    let deadline = Duration::from_secs_f64((n as f64 / 20_000.0).max(120.0));
    let o = watch(
        ctx,
        &child,
        spawned,
        &done,
        Some(t.broker),
        deadline,
        perf.as_mut(),
    );
    drop(done);
    fill_process_fields(&o, &mut r);
    if let Some(p) = o.problem.clone().or_else(|| exit_problem(&o, true)) {
        fail(ctx, &mut r, format!("pgsink {p}"), Some(&log_path));
    }
    match verify(ctx, &table) {
        Ok(()) => {
            if let Err(e) = analyse(ctx, &table, &o, &mut r, ctx.cli.messages as i64) {
                fail(ctx, &mut r, format!("{e:#}"), None);
            }
        }
        Err(e) => match tansu_rebalance_loss(ctx, t, tasks, &table, &log_path) {
            Some(lost) if r.error.is_none() => {
                eprintln!(
                    "bench: WARNING: {e:#}\nbench: WARNING: {lost} message(s) never reached pgsink after a rebalance on tansu: \
                     tansu's known memory-engine bug (a fetch resuming inside a producer batch skips data, see KAFKA.md); \
                     not counted as a pgsink failure — the same case on the mock is the exact reference"
                );
                r.broker_loss = Some(lost);
                let _ = analyse(ctx, &table, &o, &mut r, n - lost);
            }
            _ => fail(ctx, &mut r, format!("{e:#}"), Some(&log_path)),
        },
    }
    if let Some(sig) = o.sigterm_at {
        let stop = format!("SIGTERM at {sig:.2} s, exited at {:.2} s", o.exited_at);
        r.add_note(stop);
    }
    Ok(finish(ctx, &table, r, busy))
}

/// Starts `pgsink run` of `binary` with the configuration at `config`, its output to `log`.
pub(crate) fn spawn_pgsink(
    ctx: &Ctx,
    binary: &Path,
    config: &Path,
    log: fs::File,
) -> anyhow::Result<(Child, Instant)> {
    let mut cmd = Command::new(binary);
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(p) = &ctx.target.password {
        cmd.env("PGSINK_DB_PASSWORD", p);
    }
    let spawned = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    Ok((child, spawned))
}

/// Whether a short row count is tansu's known loss after a rebalance: tansu, several
/// tasks, rows missing but none twice, no dead letters, and pgsink logged a revocation.
/// Returns the number of rows missing.
pub(crate) fn tansu_rebalance_loss(
    ctx: &Ctx,
    t: &TopicInfo<'_>,
    tasks: u32,
    table: &str,
    log: &Path,
) -> Option<i64> {
    if t.kind != BrokerKind::Tansu || tasks < 2 {
        return None;
    }
    let row = ctx
        .db
        .query_one(
            &format!("SELECT count(*), count(DISTINCT id) FROM public.{table}"),
            &[],
        )
        .ok()?;
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    let n = ctx.cli.messages as i64;
    let dead: i64 = ctx
        .db
        .query_one(
            "SELECT count(*) FROM pgsink.dead_letters WHERE table_schema = 'public' AND table_name = $1",
            &[&table],
        )
        .map(|r| r.get(0))
        .unwrap_or(0);
    let revoked = fs::read_to_string(log)
        .unwrap_or_default()
        .to_lowercase()
        .contains("revoked");
    (rows == distinct && rows < n && rows > 0 && dead == 0 && revoked).then_some(n - rows)
}

pub(crate) fn run_py_sink(
    ctx: &mut Ctx,
    t: &TopicInfo<'_>,
    script: &Path,
) -> anyhow::Result<RunResult> {
    let n = ctx.cli.messages;
    let broker_name = t.kind.name();
    let table = format!("bench_{broker_name}_py_sink");
    let mut r = RunResult {
        broker: broker_name.into(),
        sink: "py_sink.py".into(),
        mode: "commit per 10k".into(),
        ..RunResult::default()
    };
    eprintln!("bench: Python peer on {broker_name} → {table}");
    let script = adapt_py_sink(ctx, script)?;
    prepare_table(ctx, &table)?;
    let busy = wait_idle(ctx, &[]);
    let mut extra = vec!["--expect".to_string(), n.to_string()];
    if t.kind == BrokerKind::Tansu {
        extra.extend(["--conf".to_string(), "fetch.wait.max.ms=10".to_string()]);
    }
    let deadline = Duration::from_secs_f64((n as f64 / 10_000.0).max(180.0));
    let (o, log_path) = run_peer(ctx, t, &script, &table, &extra, deadline, &mut r)?;
    match verify(ctx, &table) {
        Ok(()) => {
            if let Err(e) = analyse(ctx, &table, &o, &mut r, ctx.cli.messages as i64) {
                fail(ctx, &mut r, format!("{e:#}"), None);
            }
        }
        Err(e) => fail(ctx, &mut r, format!("{e:#}"), Some(&log_path)),
    }
    Ok(finish(ctx, &table, r, busy))
}

/// Runs the Python peer `script` into `table` (with `extra` arguments after the broker, topic,
/// group, table and DSN) until it exits; fills `r`'s process fields, its self-reported rate
/// and any failure. Returns what was observed and the log's path.
pub(crate) fn run_peer(
    ctx: &mut Ctx,
    t: &TopicInfo<'_>,
    script: &Path,
    table: &str,
    extra: &[String],
    deadline: Duration,
    r: &mut RunResult,
) -> anyhow::Result<(Observed, PathBuf)> {
    let log_path = ctx.cli.work_dir.join(format!("{table}.log"));
    let log = fs::File::create(&log_path)?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let group = format!("pgsink-bench-{}-{table}", ctx.run_id);
    let mut cmd = Command::new(&python);
    cmd.arg(script)
        .args(["--brokers", t.broker.bootstrap(), "--topic", t.topic])
        .args(["--group", &group, "--table", table])
        .arg("--dsn")
        .arg(ctx.target.conninfo(&ctx.cli.database))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let spawned = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {python} {}", script.display()))?;
    let o = watch(
        ctx,
        &child,
        spawned,
        &Done::SelfExit,
        Some(t.broker),
        deadline,
        None,
    );
    fill_process_fields(&o, r);
    let out = fs::read_to_string(&log_path).unwrap_or_default();
    // Both peers end with a line `PY_…SINK … rate=N …`.
    if let Some(rate) = out
        .lines()
        .filter(|l| l.starts_with("PY_"))
        .flat_map(str::split_whitespace)
        .find_map(|w| w.strip_prefix("rate="))
    {
        r.note = format!("self-reported {rate} msg/s from its first message");
    }
    let name = script.file_name().unwrap_or_default().to_string_lossy();
    if let Some(p) = o.problem.clone().or_else(|| exit_problem(&o, true)) {
        fail(ctx, r, format!("{name} {p}"), Some(&log_path));
    }
    Ok((o, log_path))
}

/// The peer reads a flat message (`d["id"], d["latitude"], …`); the bench's messages have
/// the seed connector's nested shape. The copy it runs differs in that one expression only:
/// the fields are taken at the same paths pgsink is given.
pub(crate) const PY_FLAT: &str = r#"d["id"], d["latitude"], d["longitude"], d["acceleration"]"#;
pub(crate) const PY_NESTED: &str =
    r#"d["identity"], d["location"]["latitude"], d["location"]["longitude"], d["acceleration"][0]"#;

pub(crate) fn adapt_py_sink(ctx: &Ctx, script: &Path) -> anyhow::Result<PathBuf> {
    let text =
        fs::read_to_string(script).with_context(|| format!("cannot read {}", script.display()))?;
    if text.contains(PY_NESTED) {
        return Ok(script.to_path_buf());
    }
    if !text.contains(PY_FLAT) {
        bail!(
            "{} no longer reads the fields as `{PY_FLAT}`: update adapt_py_sink in bench/src/main.rs",
            script.display()
        );
    }
    let adapted = ctx.cli.work_dir.join("py_sink_nested.py");
    fs::write(&adapted, text.replace(PY_FLAT, PY_NESTED))?;
    Ok(adapted)
}

pub(crate) fn run_raw_copy(ctx: &mut Ctx) -> anyhow::Result<RunResult> {
    let n = ctx.cli.messages;
    let table = "bench_raw_copy";
    let mut r = RunResult {
        broker: "—".into(),
        sink: "psql \\copy".into(),
        mode: "1 transaction".into(),
        ..RunResult::default()
    };
    let rows_path = ctx.cli.work_dir.join(format!("rows-{n}.tsv"));
    if !rows_path.is_file() {
        eprintln!("bench: rendering {n} rows to {}", rows_path.display());
        let mut f = std::io::BufWriter::new(fs::File::create(&rows_path)?);
        let mut buf = Vec::with_capacity(1 << 20);
        for id in 1..=n {
            data::copy_row(id, &mut buf);
            if buf.len() > (1 << 20) - 128 {
                f.write_all(&buf)?;
                buf.clear();
            }
        }
        f.write_all(&buf)?;
        f.flush()?;
    }
    eprintln!("bench: raw COPY of {n} pre-rendered rows (psql \\copy) → {table}");
    prepare_table(ctx, table)?;
    let busy = wait_idle(ctx, &[]);
    let log_path = ctx.cli.work_dir.join(format!("{table}.log"));
    let log = fs::File::create(&log_path)?;
    let mut cmd = Command::new("psql");
    cmd.arg(ctx.target.conninfo(&ctx.cli.database))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!(
            "\\copy public.{table} (id, latitude, longitude, acceleration) FROM '{}'",
            rows_path.display()
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let spawned = Instant::now();
    let child = cmd.spawn().context("cannot start psql")?;
    let o = watch(
        ctx,
        &child,
        spawned,
        &Done::SelfExit,
        None,
        Duration::from_secs(600),
        None,
    );
    fill_process_fields(&o, &mut r);
    r.rss = None; // psql's memory is not the point
    if let Some(p) = o.problem.clone().or_else(|| exit_problem(&o, true)) {
        fail(ctx, &mut r, format!("psql {p}"), Some(&log_path));
    }
    match verify(ctx, table) {
        Ok(()) => {
            let _ = analyse(ctx, table, &o, &mut r, ctx.cli.messages as i64);
            r.note.clear();
            // One transaction: its rows appear at once; the rate is rows over psql's run time.
            r.rate = Some(n as f64 / o.exited_at);
            r.window_s = Some(o.exited_at);
            r.startup_s = None;
            r.cpu_window_s = None;
        }
        Err(e) => fail(ctx, &mut r, format!("{e:#}"), Some(&log_path)),
    }
    Ok(finish(ctx, table, r, busy))
}

pub(crate) fn report_line(r: &RunResult) {
    eprintln!(
        "bench:   → {} msg/s (first→N-th row {}; steady {}), CPU {} s, peak RSS {}, {} transactions{}",
        fmt_rate(r.rate),
        fmt_s(r.window_s),
        fmt_rate(r.steady),
        fmt_f(r.cpu_s, 2),
        r.rss.map(|b| format!("{:.0} MB", b as f64 / 1e6)).unwrap_or("—".into()),
        r.txns,
        if r.error.is_some() { " — FAILED" } else { "" }
    );
}

/// Ends a run: notes a busy machine, prints the result line, drops the table unless kept.
pub(crate) fn finish(ctx: &Ctx, table: &str, mut r: RunResult, busy: String) -> RunResult {
    if !busy.is_empty() {
        r.add_note(busy);
    }
    report_line(&r);
    drop_table(ctx, table, &r);
    r
}
