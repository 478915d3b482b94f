//! A blocking PostgreSQL client for the driver (tokio-postgres on a small runtime).

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::runtime::Runtime;
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row};

/// Where PostgreSQL is, from a libpq-style connection string (`PGSINK_PG`).
#[derive(Clone, Debug)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
}

impl PgTarget {
    pub fn parse(conninfo: &str) -> anyhow::Result<PgTarget> {
        let config = Config::from_str(conninfo)
            .with_context(|| format!("cannot parse the connection string {conninfo:?}"))?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(_) => anyhow::bail!("use a TCP host in the connection string, not a socket path"),
            None => "127.0.0.1".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config
            .get_user()
            .map(str::to_string)
            .unwrap_or_else(|| "postgres".to_string());
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        Ok(PgTarget {
            host,
            port,
            user,
            password,
        })
    }

    fn config(&self, dbname: &str) -> Config {
        let mut c = Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(dbname)
            .application_name("pgsink-bench");
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }

    /// A libpq connection string for `dbname` (psql, psycopg).
    pub fn conninfo(&self, dbname: &str) -> String {
        let mut s = format!(
            "host={} port={} user={} dbname={dbname}",
            self.host, self.port, self.user
        );
        if let Some(p) = &self.password {
            s.push_str(&format!(
                " password='{}'",
                p.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
        s
    }

    /// `host:port` as pgsink's `db.host` takes it.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One connection, used synchronously.
pub struct Pg {
    rt: Arc<Runtime>,
    client: Client,
    pid: i32,
}

impl Pg {
    pub fn connect(rt: &Arc<Runtime>, target: &PgTarget, dbname: &str) -> anyhow::Result<Pg> {
        let config = target.config(dbname);
        let (client, connection) = rt
            .block_on(config.connect(NoTls))
            .with_context(|| {
                format!(
                    "cannot connect to PostgreSQL at {}:{} as {} (database {dbname}); run tests/setup.sh",
                    target.host, target.port, target.user
                )
            })?;
        rt.spawn(async move {
            let _ = connection.await;
        });
        let pid: i32 = rt
            .block_on(client.query_one("SELECT pg_backend_pid()", &[]))?
            .get(0);
        Ok(Pg {
            rt: rt.clone(),
            client,
            pid,
        })
    }

    /// Backend process id of this connection.
    pub fn backend_pid(&self) -> i32 {
        self.pid
    }

    pub fn batch(&self, sql: &str) -> anyhow::Result<()> {
        self.rt
            .block_on(self.client.batch_execute(sql))
            .with_context(|| format!("SQL failed: {sql}"))
    }

    pub fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> anyhow::Result<Vec<Row>> {
        self.rt
            .block_on(self.client.query(sql, params))
            .with_context(|| format!("SQL failed: {sql}"))
    }

    pub fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> anyhow::Result<Row> {
        self.rt
            .block_on(self.client.query_one(sql, params))
            .with_context(|| format!("SQL failed: {sql}"))
    }
}

/// Creates database `dbname` unless it exists.
pub fn ensure_database(rt: &Arc<Runtime>, target: &PgTarget, dbname: &str) -> anyhow::Result<()> {
    let admin = Pg::connect(rt, target, "postgres")?;
    let exists = !admin
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])?
        .is_empty();
    if !exists {
        admin.batch(&format!(
            "CREATE DATABASE \"{}\"",
            dbname.replace('"', "\"\"")
        ))?;
    }
    Ok(())
}

/// A transaction snapshot (`pg_current_snapshot()`): xmin:xmax:xip,…
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub xmin: u64,
    pub xmax: u64,
    pub xip: Vec<u64>,
}

impl Snapshot {
    pub fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next() {
            Some("") | None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?,
        };
        Some(Snapshot { xmin, xmax, xip })
    }

    /// Whether the (64-bit) transaction `xid` is committed as seen by this snapshot.
    pub fn sees(&self, xid: u64) -> bool {
        xid < self.xmin || (xid < self.xmax && !self.xip.contains(&xid))
    }

    /// Widens a row's 32-bit `xmin` to 64 bits, given that it is older than this snapshot.
    pub fn widen(&self, xid32: u64) -> u64 {
        let full = (self.xmax & !0xffff_ffff) | (xid32 & 0xffff_ffff);
        if full >= self.xmax {
            full.wrapping_sub(1 << 32)
        } else {
            full
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots() {
        let s = Snapshot::parse("100:105:101,103").unwrap();
        assert!(s.sees(99) && s.sees(100) && s.sees(102) && s.sees(104));
        assert!(!s.sees(101) && !s.sees(103) && !s.sees(105));
        assert!(Snapshot::parse("7:7:").unwrap().xip.is_empty());
        let wide = Snapshot::parse(&format!("{}:{}:", (1u64 << 32) + 5, (1u64 << 32) + 9)).unwrap();
        assert_eq!(wide.widen(3), (1 << 32) + 3);
        assert_eq!(wide.widen(0xffff_fff0), 0xffff_fff0);
    }
}
