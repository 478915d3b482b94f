//! Tables: preparing, checking and dropping the target tables, and waiting for an idle machine.

use super::*;

pub(crate) fn prepare_table(ctx: &Ctx, table: &str) -> anyhow::Result<()> {
    prepare_table_as(ctx, table, data::TABLE_DDL)
}

/// (Re)creates `table` with the columns of `ddl` and forgets pgsink's state of it.
pub(crate) fn prepare_table_as(ctx: &Ctx, table: &str, ddl: &str) -> anyhow::Result<()> {
    ctx.db.batch(&format!(
        "DROP TABLE IF EXISTS public.{table}; CREATE TABLE public.{table} {ddl};"
    ))?;
    // The positions of whichever sink loaded the table (pgsink 3 records the table with each;
    // an older package keys them by table).
    let layout: Option<bool> = ctx
        .db
        .query_one(
            "SELECT CASE WHEN to_regclass('pgsink.offsets') IS NULL THEN NULL
                         ELSE EXISTS (SELECT 1 FROM information_schema.columns
                                       WHERE table_schema = 'pgsink' AND table_name = 'offsets'
                                         AND column_name = 'first_table') END",
            &[],
        )?
        .get(0);
    if let Some(current) = layout {
        let offsets = if current {
            "DELETE FROM pgsink.offsets WHERE first_table = pgsink.qualified('public', $1)"
        } else {
            "DELETE FROM pgsink.offsets WHERE table_schema = 'public' AND table_name = $1"
        };
        ctx.db.query(offsets, &[&table])?;
        ctx.db.query(
            "DELETE FROM pgsink.dead_letters WHERE table_schema = 'public' AND table_name = $1",
            &[&table],
        )?;
    }
    // Start every run with a clean WAL/checkpoint state, outside the timing.
    ctx.db.batch("CHECKPOINT")?;
    Ok(())
}

/// Checks that `table` holds exactly ids 1..=n, each once, with every column filled.
pub(crate) fn verify(ctx: &Ctx, table: &str) -> anyhow::Result<()> {
    let n = ctx.cli.messages as i64;
    let r = ctx.db.query_one(
        &format!(
            "SELECT count(*), count(DISTINCT id), coalesce(min(id), 0), coalesce(max(id), 0), \
             count(latitude), count(longitude), count(acceleration) FROM public.{table}"
        ),
        &[],
    )?;
    let v: Vec<i64> = (0..7).map(|i| r.get::<_, i64>(i)).collect();
    let dead: i64 = if ctx
        .db
        .query_one("SELECT to_regclass('pgsink.dead_letters') IS NOT NULL", &[])?
        .get(0)
    {
        ctx.db
            .query_one(
                "SELECT count(*) FROM pgsink.dead_letters WHERE table_schema = 'public' AND table_name = $1",
                &[&table],
            )?
            .get(0)
    } else {
        0
    };
    if v != [n, n, 1, n, n, n, n] || dead != 0 {
        bail!(
            "{table}: expected {n} rows with ids 1..={n} each once and no NULL, got rows={} distinct ids={} min={} max={} non-null latitude/longitude/acceleration={}/{}/{}, dead letters={dead}",
            v[0], v[1], v[2], v[3], v[4], v[5], v[6]
        );
    }
    Ok(())
}

pub(crate) fn drop_table(ctx: &Ctx, table: &str, r: &RunResult) {
    if r.error.is_some() || r.broker_loss.is_some() {
        eprintln!("bench: kept table public.{table} for inspection");
    } else if !ctx.cli.keep_tables {
        let _ = ctx
            .db
            .batch(&format!("DROP TABLE IF EXISTS public.{table}"));
    }
}

/// Waits (up to --wait-idle seconds) until no other process uses more than 20% of a core;
/// returns a note naming the busy processes if the machine is still busy.
pub(crate) fn wait_idle(ctx: &Ctx, exclude: &[u32]) -> String {
    let mut exclude = exclude.to_vec();
    exclude.push(std::process::id());
    let deadline = Instant::now() + Duration::from_secs(ctx.cli.wait_idle);
    let mut said = false;
    loop {
        let busy = procstat::busy_processes(Duration::from_millis(700), 0.2, &exclude);
        if busy.is_empty() {
            return String::new();
        }
        let list: Vec<String> = busy
            .iter()
            .take(3)
            .map(|(pid, name, share)| format!("{name}[{pid}] {:.0}%", share * 100.0))
            .collect();
        if Instant::now() >= deadline {
            eprintln!(
                "bench: WARNING: running on a busy machine: {}",
                list.join(", ")
            );
            return format!("machine busy at start: {}", list.join(", "));
        }
        if !said {
            eprintln!(
                "bench: waiting for the machine to be idle ({})",
                list.join(", ")
            );
            said = true;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
