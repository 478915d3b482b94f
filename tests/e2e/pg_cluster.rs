//! A throwaway PostgreSQL cluster for tests that need a server of their own: TLS settings
//! (`tls.rs`) or a server to stop and start under a running sink (`faults.rs`).
//!
//! Needs the PostgreSQL server binaries (`initdb`, `pg_ctl`: `/usr/lib/postgresql/*/bin`, or
//! the folder in `PGSINK_TEST_PG_BIN`); without them the test fails, saying so. As root, the
//! server runs as the `postgres` user (through `runuser`). The cluster lives in a temporary
//! folder and is stopped and removed when the test ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// pg_hba.conf accepting any TCP connection without a password.
pub const HBA_ANY: &str = "local all all trust\n\
                           host all all 127.0.0.1/32 trust\n\
                           host all all ::1/128 trust\n";

/// Bound on `initdb`, and on `pg_ctl start`/`stop`.
const SERVER_TIMEOUT: Duration = Duration::from_secs(45);

/// Runs `cmd` to completion, stdin closed; `Err` when it cannot start or outlives `timeout`
/// (then it is killed). Never panics: [`Cluster`]'s `Drop` uses it.
pub fn run(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {timeout:?}"));
            }
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    }
    child
        .wait_with_output()
        .map_err(|e| format!("collecting the output of {what}: {e}"))
}

/// Runs `cmd` and fails the test unless it exits 0.
pub fn run_ok(cmd: Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let out = run(cmd, timeout).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The folder of `initdb` and `pg_ctl`: `PGSINK_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` that has both. Fails the test when there is none.
fn server_bin_dir() -> PathBuf {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PGSINK_TEST_PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        assert!(
            has_both(&dir),
            "PGSINK_TEST_PG_BIN={} has no initdb and pg_ctl",
            dir.display()
        );
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "this test needs the PostgreSQL server binaries (initdb and pg_ctl), found neither \
             in /usr/lib/postgresql/*/bin nor through PGSINK_TEST_PG_BIN: install Debian's \
             postgresql package (tests/setup.sh does)"
        )
    })
}

fn is_root() -> bool {
    let mut id = Command::new("id");
    id.arg("-u");
    let out = run_ok(id, Duration::from_secs(10));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

// ------------------------------------------------------------------------------------------
// The cluster
// ------------------------------------------------------------------------------------------

/// A PostgreSQL cluster in a temporary folder. Dropping it stops the server (immediate mode,
/// SIGKILL to the postmaster if that fails) and removes the folder; when the test is failing,
/// the server log is printed first.
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    as_postgres: bool,
    pub port: u16,
    running: bool,
}

impl Cluster {
    /// `initdb` in a new temporary folder (owned by `postgres` when we are root).
    pub fn init(ctx: &Ctx) -> Cluster {
        let bin = server_bin_dir();
        let as_postgres = is_root();
        // As root, the postgres user must reach the folder: /tmp, not TMPDIR or target/.
        let base = if as_postgres {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("pgsink-pg-")
            .tempdir_in(&base)
            .expect("create the cluster's temporary folder");
        let cluster = Cluster {
            dir: Some(dir),
            bin,
            as_postgres,
            port: free_port(),
            running: false,
        };
        if as_postgres {
            cluster.chown();
        }
        let t0 = Instant::now();
        let mut cmd = cluster.server_command("initdb");
        cmd.arg("-D").arg(cluster.data()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run_ok(cmd, SERVER_TIMEOUT);
        ctx.note(format!(
            "initdb with {} in {:.1} s ({})",
            cluster.bin.display(),
            t0.elapsed().as_secs_f64(),
            cluster.path().display()
        ));
        cluster
    }

    /// A connection string for database `postgres` of this server.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// `db.host` for pgsink.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether the server runs as the `postgres` user (we are root).
    pub fn as_postgres(&self) -> bool {
        self.as_postgres
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("cluster folder").path()
    }

    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn log(&self) -> PathBuf {
        self.path().join("server.log")
    }

    /// Gives the folder to the postgres user (root only); keys must be 0600 and the server's.
    fn chown(&self) {
        let mut cmd = Command::new("chown");
        cmd.arg("-R").arg("postgres:postgres").arg(self.path());
        run_ok(cmd, Duration::from_secs(10));
    }

    /// `bin/<program>`, run as the postgres user when we are root.
    fn server_command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        }
    }

    /// Writes `pg_hba.conf` and starts the server with `ssl` on (with that certificate and
    /// `server.key`) or off. Stops it first if it runs.
    pub fn start(&mut self, ctx: &Ctx, ssl: Option<&Path>, hba: &str) {
        self.stop();
        std::fs::write(self.data().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        if self.as_postgres {
            self.chown();
        }
        let mut options = format!(
            "-p {} -c listen_addresses=localhost -c unix_socket_directories={} -c fsync=off \
             -c max_connections=20 -c shared_buffers=16MB -c log_connections=on",
            self.port,
            self.path().display()
        );
        match ssl {
            Some(cert) => options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                self.path().join("server.key").display()
            )),
            None => options.push_str(" -c ssl=off"),
        }
        let t0 = Instant::now();
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .args(["-w", "-t", "30", "-o", &options]);
        self.running = true; // even a failed start may leave a server to stop
        let out = run(cmd, SERVER_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.status.success(),
            "pg_ctl start failed ({}):\n{}{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&std::fs::read_to_string(self.log()).unwrap_or_default(), 30)
        );
        ctx.note(format!(
            "PostgreSQL on port {} with ssl={} in {:.1} s",
            self.port,
            if ssl.is_some() { "on" } else { "off" },
            t0.elapsed().as_secs_f64()
        ));
    }

    /// Stops the server if it runs (never panics).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "30"]);
        match run(cmd, SERVER_TIMEOUT) {
            Ok(out) if out.status.success() => return,
            Ok(out) => eprintln!(
                "pg_cluster: pg_ctl stop failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("pg_cluster: {e}"),
        }
        // The postmaster's pid is the first line of postmaster.pid.
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
        if let Some(pid) = pid {
            eprintln!("pg_cluster: killing the postmaster (pid {pid})");
            let mut kill = Command::new("kill");
            kill.arg("-KILL").arg(pid.to_string());
            let _ = run(kill, Duration::from_secs(10));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            eprintln!(
                "===== pg_cluster: server log (last 60 lines) =====\n{}",
                tail(&log, 60)
            );
        }
        self.stop();
        // TempDir's own drop removes the folder.
        self.dir.take();
    }
}
