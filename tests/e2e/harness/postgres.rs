//! PostgreSQL as the tests see it: the server of `PGSINK_TEST_PG`, a blocking client ([`Pg`]) on
//! the test database, the target tables, and pgsink's state tables (`pgsink.offsets`,
//! `pgsink.dead_letters`) read back.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{check_std_rows, ident, Sink, StdRow, STD_COLUMNS, TEST_DB};

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

    /// The identity of an unnamed sink of this table, which owns its offsets.
    pub fn sink(&self) -> String {
        format!("{}.{}", self.schema, self.name)
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

    /// Runs `sql`; a database error is returned as (SQLSTATE, message), any other fails.
    pub fn try_batch(&self, sql: &str) -> Result<(), (String, String)> {
        match self.rt.block_on(self.client.batch_execute(sql)) {
            Ok(()) => Ok(()),
            Err(e) => match e.as_db_error() {
                Some(db) => Err((db.code().code().to_string(), db.message().to_string())),
                None => panic!("{sql}: {e:?}"),
            },
        }
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

    /// The SQL package of this version (offsets keyed by sink) is installed: an older one, as
    /// the upgrade tests install, reads as none.
    pub fn pgsink_installed(&self) -> bool {
        let rows = self.query(
            "SELECT to_regclass('pgsink.dead_letters') IS NOT NULL AND EXISTS (
                 SELECT 1 FROM information_schema.columns
                  WHERE table_schema = 'pgsink' AND table_name = 'offsets' AND column_name = 'sink')",
            &[],
        );
        rows[0].get(0)
    }

    /// Removes what an earlier run left for this table in pgsink's state tables.
    pub fn forget_state(&self, schema: &str, table: &str) {
        if self.pgsink_installed() {
            self.query(
                "DELETE FROM pgsink.offsets WHERE sink = $1 || '.' || $2",
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
        self.poll_rows(t, n, timeout, sinks, |c, last| {
            format!(
                "timed out after {timeout:?} waiting for {n} rows in {}: {c} rows (previous poll {last})",
                t.qualified()
            )
        })
        .unwrap_or_else(|e| panic!("{e}"))
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
        self.poll_rows(t, n, timeout, sinks, |_, _| {
            let r = check_std_rows(&self.std_rows(t), ids);
            let offsets = self.stored_offsets(t);
            format!(
                "timed out after {timeout:?} waiting for all {n} rows in {}: {}; \
                 pgsink.offsets (sum {}): {offsets:?}",
                t.qualified(),
                r.summary(),
                offsets.values().sum::<i64>()
            )
        })
    }

    /// Polls every 50 ms until the table has at least `n` rows, requiring every sink to keep
    /// running; after `timeout`, the error `timed_out(count, previous count)`.
    fn poll_rows(
        &self,
        t: &Table,
        n: i64,
        timeout: Duration,
        sinks: &mut [&mut Sink],
        timed_out: impl FnOnce(i64, i64) -> String,
    ) -> Result<i64, String> {
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
                return Ok(c);
            }
            for s in sinks.iter_mut() {
                s.assert_running(&format!("waiting for {n} rows in {} ({c} so far)", t.name));
            }
            if t0.elapsed() > timeout {
                return Err(timed_out(c, last));
            }
            last = c;
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

    /// `pgsink.offsets` of the unnamed sink of a table (its identity is `<schema>.<table>`):
    /// (topic, partition) → next offset.
    pub fn stored_offsets(&self, t: &Table) -> BTreeMap<(String, i32), i64> {
        self.sink_offsets(&t.sink())
    }

    /// `pgsink.offsets` of the sink `sink` (its `name`): (topic, partition) → next offset.
    pub fn sink_offsets(&self, sink: &str) -> BTreeMap<(String, i32), i64> {
        if !self.pgsink_installed() {
            return BTreeMap::new();
        }
        self.query(
            "SELECT topic, partition, next_offset FROM pgsink.offsets WHERE sink = $1",
            &[&sink],
        )
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect()
    }

    /// `pgsink.dead_letters` of the sinks whose first table is `t`, ordered by topic, partition,
    /// offset.
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
