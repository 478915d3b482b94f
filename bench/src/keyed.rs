//! The keyed workload (`--workload keyed`, issue 16): N messages over K keys, each key
//! updated about N/K times and one message in ten a tombstone, as a CDC or compacted topic
//! looks. Side by side on one topic: pgsink `db.write.mode = "upsert"` (tombstones delete),
//! pgsink appending the same messages into a table without a key (tombstones skipped: the
//! ceiling), and the peer `py_upsert_sink.py` (what Kafka Connect's JDBC sink does: batched
//! `INSERT … ON CONFLICT` and `DELETE`, at least once). Every table is checked against the
//! model of the topic: the live keys, and for each the message that wrote it last.

use std::collections::HashMap;

use super::*;

/// How the keyed workload runs, for the results.
pub(crate) const SETTINGS: &str = "\
- pgsink: synchronized, tasks = 1, `db.json.parse = \"#key/@id, /@latitude, /@longitude, /@acceleration\"` \
(`acceleration` holds the message's number: the check proves which message won each key); upsert: \
`db.write.mode = \"upsert\"`, `db.json.tombstone = \"delete\"`, table with a primary key; append: \
`db.json.tombstone = \"skip\"`, table without a key; pgsink defaults otherwise (db.buffer.size 8000000, \
flush.interval.ms 1000)
- peer: `py_upsert_sink.py --key id --columns id,latitude,longitude,acceleration --expect N` (3000 per batch: \
INSERT … ON CONFLICT DO UPDATE and DELETE in offset order, one transaction, then a synchronous Kafka commit)
- msg/s and \"1st → N-th row\": messages over the time from the process's start to its end of the topic \
(stored offsets at the end for pgsink, the peer's exit), startup included; txns are not counted (updates \
rewrite rows)
- every table is checked against the model of the topic: live keys and the sum of the winning message numbers";

/// The key columns' table (the append run's table has no key).
const KEYED_DDL: &str = "(id bigint PRIMARY KEY, latitude double precision, \
                         longitude double precision, acceleration double precision)";
/// `acceleration` carries the message's number, so the checksum proves which message won.
const PARSE_PATHS: &str = "#key/@id, /@latitude, /@longitude, /@acceleration";

/// Message `j` (1..=n): its key's id (1..=keys) and whether it is a tombstone.
fn change(j: u64, keys: u64) -> (u64, bool) {
    let h = data::splitmix64(j ^ 0x5eed_5eed);
    (h % keys + 1, (h >> 40).is_multiple_of(10))
}

/// What a table must hold after the whole topic: live keys, and the sum of the message
/// numbers that wrote them last. Also the number of tombstones.
fn model(n: u64, keys: u64) -> (i64, i64, u64) {
    let mut last: HashMap<u64, Option<u64>> = HashMap::with_capacity(keys as usize);
    let mut tombstones = 0;
    for j in 1..=n {
        let (id, tombstone) = change(j, keys);
        tombstones += u64::from(tombstone);
        last.insert(id, (!tombstone).then_some(j));
    }
    let live = last.values().flatten();
    (
        live.clone().count() as i64,
        live.sum::<u64>() as i64,
        tombstones,
    )
}

/// The keyed workload's runs on the mock broker; returns the results and notes.
pub(crate) fn bench(
    ctx: &mut Ctx,
    py_upsert: Option<PathBuf>,
    partitions: i32,
) -> anyhow::Result<(Vec<RunResult>, Vec<String>)> {
    let n = ctx.cli.messages;
    let keys = ctx.cli.keys;
    let broker = Broker::start_mock()?;
    let topic = format!("pgsink-bench-{}-keyed", ctx.run_id);
    broker.create_topic(&ctx.rt, &topic, partitions)?;
    eprintln!("bench: producing {n} keyed messages over {keys} keys to {topic}");
    let (_, produce_rate) = kafka::produce_with(
        broker.bootstrap(),
        &topic,
        partitions,
        n,
        |j, key, value| {
            let (id, tombstone) = change(j, keys);
            let _ = write!(key, "{{\"id\": {id}}}");
            if !tombstone {
                let r = data::Reading::of(j);
                let _ = write!(
                    value,
                    r#"{{"id":{id},"latitude":{},"longitude":{},"acceleration":{j}}}"#,
                    r.latitude, r.longitude
                );
            }
            ((id % partitions as u64) as i32, !tombstone)
        },
    )?;
    let (live, checksum, tombstones) = model(n, keys);
    let mut notes = vec![format!(
        "keyed: {n} messages over {keys} keys ({tombstones} tombstones; {live} keys live at the end), \
         mock broker with {partitions} partitions, produced at {produce_rate:.0} msg/s"
    )];
    let t = TopicInfo {
        kind: BrokerKind::Mock,
        broker: &broker,
        topic: &topic,
        partitions,
    };
    let mut results = Vec::new();
    for _ in 0..ctx.cli.rounds {
        let r = run_keyed(ctx, &t, "append", (n - tombstones) as i64, None)?;
        results.push(r);
        let r = run_keyed(ctx, &t, "upsert", live, Some(checksum))?;
        results.push(r);
    }
    match py_upsert {
        Some(script) => results.push(run_py_upsert(ctx, &t, &script, live, checksum)?),
        None => notes.push("py_upsert_sink.py not found: no peer run".into()),
    }
    Ok((results, notes))
}

/// A pgsink run of the keyed topic in `write_mode` (`append` into a table without a key,
/// tombstones skipped; `upsert`, tombstones delete), synchronized, one task.
fn run_keyed(
    ctx: &mut Ctx,
    t: &TopicInfo<'_>,
    write_mode: &str,
    rows: i64,
    checksum: Option<i64>,
) -> anyhow::Result<RunResult> {
    let table = format!("bench_keyed_{write_mode}");
    ctx.runs += 1;
    let group = format!("pgsink-bench-{}-{table}-{}", ctx.run_id, ctx.runs);
    let mut r = RunResult {
        broker: "mock".into(),
        sink: "pgsink".into(),
        mode: format!("synchronized, {write_mode}"),
        tasks: Some(1),
        ..RunResult::default()
    };
    eprintln!("bench: pgsink {write_mode} of the keyed topic → {table}");
    let ddl = match write_mode {
        "append" => data::TABLE_DDL,
        _ => KEYED_DDL,
    };
    prepare_table_as(ctx, &table, ddl)?;
    let busy = wait_idle(ctx, &[]);
    let tombstone = if write_mode == "append" {
        "skip"
    } else {
        "delete"
    };
    let lines = [
        ("db.json.parse", PARSE_PATHS),
        ("db.json.tombstone", tombstone),
        ("db.write.mode", write_mode),
    ];
    let config = pgsink_config(ctx, t, Mode::Synchronized, 1, &table, &group, &lines)?;
    let config_path = ctx.cli.work_dir.join(format!("{table}.toml"));
    fs::write(&config_path, config)?;
    let log_path = ctx.cli.work_dir.join(format!("{table}.log"));
    let log = fs::File::create(&log_path)?;
    let done = Done::DbOffsets {
        table: &table,
        expected: ctx.cli.messages as i64,
    };
    let (child, spawned) = spawn_pgsink(ctx, &ctx.pgsink, &config_path, log)?;
    let deadline = Duration::from_secs_f64((ctx.cli.messages as f64 / 5_000.0).max(120.0));
    let o = watch(ctx, &child, spawned, &done, Some(t.broker), deadline, None);
    drop(done);
    fill_process_fields(&o, &mut r);
    if let Some(p) = o.problem.clone().or_else(|| exit_problem(&o, true)) {
        fail(ctx, &mut r, format!("pgsink {p}"), Some(&log_path));
    }
    finish_keyed(ctx, &table, &o, o.sigterm_at, rows, checksum, &mut r);
    Ok(finish(ctx, &table, r, busy))
}

/// The peer on the keyed topic.
fn run_py_upsert(
    ctx: &mut Ctx,
    t: &TopicInfo<'_>,
    script: &Path,
    live: i64,
    checksum: i64,
) -> anyhow::Result<RunResult> {
    let table = "bench_keyed_py_upsert";
    let mut r = RunResult {
        broker: "mock".into(),
        sink: "py_upsert_sink.py".into(),
        mode: "upsert, 3000 per batch".into(),
        ..RunResult::default()
    };
    eprintln!("bench: Python upsert peer of the keyed topic → {table}");
    prepare_table_as(ctx, table, KEYED_DDL)?;
    let busy = wait_idle(ctx, &[]);
    let extra: Vec<String> = ["--key", "id", "--columns", data::COLUMNS, "--expect"]
        .iter()
        .map(|a| a.to_string())
        .chain([ctx.cli.messages.to_string()])
        .collect();
    let deadline = Duration::from_secs_f64((ctx.cli.messages as f64 / 2_000.0).max(300.0));
    let (o, _) = run_peer(ctx, t, script, table, &extra, deadline, &mut r)?;
    finish_keyed(ctx, table, &o, None, live, Some(checksum), &mut r);
    Ok(finish(ctx, table, r, busy))
}

/// Checks the table against the model (`rows`, and with `checksum` the sum of the message
/// numbers that wrote the rows) and records the rate: messages over the time from the start
/// to the end of the topic (`done_at`, else the exit).
fn finish_keyed(
    ctx: &mut Ctx,
    table: &str,
    o: &Observed,
    done_at: Option<f64>,
    rows: i64,
    checksum: Option<i64>,
    r: &mut RunResult,
) {
    let got = ctx.db.query_one(
        &format!(
            "SELECT count(*), coalesce(sum(acceleration::bigint), 0)::bigint FROM public.{table}"
        ),
        &[],
    );
    let (count, sum): (i64, i64) = match got {
        Ok(row) => (row.get(0), row.get(1)),
        Err(e) => {
            fail(ctx, r, format!("{e:#}"), None);
            return;
        }
    };
    if count != rows || checksum.is_some_and(|c| c != sum) {
        fail(
            ctx,
            r,
            format!(
                "{table}: expected {rows} rows{}, got {count} (sum {sum})",
                checksum
                    .map(|c| format!(" whose message numbers sum to {c}"))
                    .unwrap_or_default()
            ),
            None,
        );
        return;
    }
    let elapsed = done_at.unwrap_or(o.exited_at);
    r.window_s = Some(elapsed);
    r.rate = Some(ctx.cli.messages as f64 / elapsed);
}

/// Upsert against append (the ceiling) and against the peer, from the same run: rate, and
/// CPU seconds per million messages (pgsink and PostgreSQL's backends).
pub(crate) fn render_ratios(results: &[RunResult]) -> String {
    let find = |mode: &str| {
        results
            .iter()
            .find(|r| r.mode.ends_with(mode) && r.error.is_none())
    };
    let (Some(upsert), Some(append)) = (find("upsert"), find("append")) else {
        return String::new();
    };
    let peer = results
        .iter()
        .find(|r| r.sink.starts_with("py_upsert") && r.error.is_none());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "—".into(),
    };
    let cpu = |r: &RunResult| Some(r.cpu_s? + r.pg_cpu_s?);
    let mut s = String::from(
        "| keyed workload | upsert ÷ append | upsert ÷ py_upsert_sink |\n| --- | --- | --- |\n",
    );
    let _ = writeln!(
        s,
        "| msg/s | {} | {} |",
        ratio(upsert.rate, append.rate),
        ratio(upsert.rate, peer.and_then(|p| p.rate))
    );
    let _ = writeln!(
        s,
        "| CPU s (sink + its PostgreSQL backends) | {} | {} |",
        ratio(cpu(upsert), cpu(append)),
        ratio(cpu(upsert), peer.and_then(cpu))
    );
    let _ = writeln!(
        s,
        "| peak RSS | {} | — |",
        ratio(upsert.rss.map(|b| b as f64), append.rss.map(|b| b as f64))
    );
    s
}
