//! TLS to PostgreSQL (`db.sslmode`, `db.sslrootcert`) against a throwaway PostgreSQL cluster
//! of its own: a CA and server certificates made with `openssl`, `initdb` + `pg_ctl` on a free
//! port, and `pgsink sql install --config FILE` as a quick real connection in each mode.
//!
//! Needs the PostgreSQL server binaries (`initdb`, `pg_ctl`: `/usr/lib/postgresql/*/bin`, or
//! the folder in `PGSINK_TEST_PG_BIN`) and `openssl`; without them the test fails, saying so.
//! As root, the server runs as the `postgres` user (through `runuser`). The cluster lives in a
//! temporary folder and is stopped and removed when the test ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Bound on one `pgsink sql install` (its connect timeout is 10 s).
const PGSINK_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on `initdb`, and on `pg_ctl start`/`stop`.
const SERVER_TIMEOUT: Duration = Duration::from_secs(45);

/// Runs `cmd` to completion, stdin closed; `Err` when it cannot start or outlives `timeout`
/// (then it is killed). Never panics: [`Cluster`]'s `Drop` uses it.
fn run(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
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
fn run_ok(cmd: Command, timeout: Duration) -> Output {
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
            "the TLS test needs the PostgreSQL server binaries (initdb and pg_ctl), found neither \
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
// Certificates
// ------------------------------------------------------------------------------------------

/// Runs `openssl` in `dir` with `args` (split at spaces: names and values without spaces).
fn openssl(dir: &Path, args: &str) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args.split_whitespace());
    match run(cmd, Duration::from_secs(30)) {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "openssl {args} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("the TLS test needs the openssl command (Debian's openssl package): {e}"),
    }
}

/// A self-signed CA: `<name>.crt` and `<name>.key` in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &format!(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
             -subj /CN=pgsink-e2e-{name} -keyout {name}.key -out {name}.crt \
             -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
    dir.join(format!("{name}.crt"))
}

/// A server certificate `<name>.crt` for `server.key` (made when missing), CN=localhost, issued
/// by CA `ca`, with subjectAltName `san` (e.g. `DNS:localhost,IP:127.0.0.1`).
fn make_server_cert(dir: &Path, ca: &str, name: &str, san: &str) -> PathBuf {
    if !dir.join("server.key").exists() {
        openssl(
            dir,
            "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out server.key",
        );
        // PostgreSQL refuses a key that others can read.
        let mut chmod = Command::new("chmod");
        chmod.arg("600").arg(dir.join("server.key"));
        run_ok(chmod, Duration::from_secs(10));
    }
    let ext = format!(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName={san}\n"
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write extensions file");
    openssl(
        dir,
        &format!("req -new -key server.key -subj /CN=localhost -out {name}.csr"),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -days 2 -CA {ca}.crt -CAkey {ca}.key -CAcreateserial \
             -extfile {name}.ext -out {name}.crt"
        ),
    );
    dir.join(format!("{name}.crt"))
}

// ------------------------------------------------------------------------------------------
// The throwaway cluster
// ------------------------------------------------------------------------------------------

/// A PostgreSQL cluster in a temporary folder. Dropping it stops the server (immediate mode,
/// SIGKILL to the postmaster if that fails) and removes the folder; when the test is failing,
/// the server log is printed first.
struct Cluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    running: bool,
}

impl Cluster {
    /// `initdb` in a new temporary folder (owned by `postgres` when we are root).
    fn init(ctx: &Ctx) -> Cluster {
        let bin = server_bin_dir();
        let as_postgres = is_root();
        // As root, the postgres user must reach the folder: /tmp, not TMPDIR or target/.
        let base = if as_postgres {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("pgsink-tls-")
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

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("cluster folder").path()
    }

    fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    fn log(&self) -> PathBuf {
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
    fn start(&mut self, ctx: &Ctx, ssl: Option<&Path>, hba: &str) {
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
    fn stop(&mut self) {
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
                "tls: pg_ctl stop failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("tls: {e}"),
        }
        // The postmaster's pid is the first line of postmaster.pid.
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
        if let Some(pid) = pid {
            eprintln!("tls: killing the postmaster (pid {pid})");
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
                "===== tls: server log (last 60 lines) =====\n{}",
                tail(&log, 60)
            );
        }
        self.stop();
        // TempDir's own drop removes the folder.
        self.dir.take();
    }
}

// ------------------------------------------------------------------------------------------
// The test
// ------------------------------------------------------------------------------------------

/// pg_hba.conf accepting TLS connections only (trust: no password).
const HBA_TLS_ONLY: &str = "local all all trust\n\
                            hostssl all all 127.0.0.1/32 trust\n\
                            hostssl all all ::1/128 trust\n";
/// pg_hba.conf accepting any TCP connection (for the server without TLS).
const HBA_ANY: &str = "local all all trust\n\
                       host all all 127.0.0.1/32 trust\n\
                       host all all ::1/128 trust\n";

/// Runs `pgsink sql install` with `db.host = "<host>:<port>"`, `db.sslmode = mode` and, when
/// given, `db.sslrootcert`.
fn sql_install(
    ctx: &Ctx,
    label: &str,
    host: &str,
    port: u16,
    mode: &str,
    rootcert: Option<&Path>,
) -> Output {
    let mut toml = format!(
        "topics = \"tls_test\"\n\
         db.host = {}\n\
         db.database = \"postgres\"\n\
         db.username = \"postgres\"\n\
         db.table = \"t\"\n\
         db.columns = \"c\"\n\
         db.json.parse = \"/@c\"\n\
         db.sslmode = {}\n",
        toml_str(&format!("{host}:{port}")),
        toml_str(mode)
    );
    if let Some(ca) = rootcert {
        toml.push_str(&format!(
            "db.sslrootcert = {}\n",
            toml_str(ca.to_str().unwrap())
        ));
    }
    let config = ctx.write(&format!("{label}.toml"), toml);
    let t0 = Instant::now();
    let out = ctx.run_pgsink(
        &["sql", "install", "--config", config.to_str().unwrap()],
        b"",
        PGSINK_TIMEOUT,
    );
    ctx.note(format!(
        "{label}: sslmode={mode} host={host}: {} in {:.1} s{}",
        out.status,
        t0.elapsed().as_secs_f64(),
        if out.status.success() {
            String::new()
        } else {
            format!(": {}", String::from_utf8_lossy(&out.stderr).trim())
        }
    ));
    out
}

fn expect_ok(out: &Output, label: &str) {
    assert!(
        out.status.success(),
        "{label}: pgsink sql install failed ({}), expected a connection:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fails unless pgsink failed and its stderr contains every one of `needles`.
fn expect_err(out: &Output, label: &str, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{label}: pgsink sql install succeeded, expected a failure mentioning {needles:?}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{label}: expected {needle:?} in pgsink's error; stderr:\n{stderr}"
        );
    }
}

#[test]
fn tls_sslmodes_against_a_throwaway_server() {
    let ctx = Ctx::new("tls_sslmodes");
    let t0 = Instant::now();
    let mut cluster = Cluster::init(&ctx);
    let dir = cluster.path().to_path_buf();
    let ca = make_ca(&dir, "ca");
    let wrong_ca = make_ca(&dir, "wrong-ca");
    let cert_both = make_server_cert(&dir, "ca", "server-both", "DNS:localhost,IP:127.0.0.1");
    let cert_dns = make_server_cert(&dir, "ca", "server-dns", "DNS:localhost");
    let missing_ca = dir.join("no-such-ca.pem");
    let port = cluster.port;

    // 1. TLS only (hostssl), certificate for localhost and 127.0.0.1.
    cluster.start(&ctx, Some(&cert_both), HBA_TLS_ONLY);
    expect_ok(
        &sql_install(&ctx, "require", "localhost", port, "require", None),
        "require",
    );
    // hostssl only: prefer succeeding means it negotiated TLS.
    expect_ok(
        &sql_install(&ctx, "prefer_tls", "localhost", port, "prefer", None),
        "prefer",
    );
    expect_ok(
        &sql_install(
            &ctx,
            "verify_full",
            "localhost",
            port,
            "verify-full",
            Some(&ca),
        ),
        "verify-full to localhost",
    );
    expect_ok(
        &sql_install(
            &ctx,
            "verify_full_ip",
            "127.0.0.1",
            port,
            "verify-full",
            Some(&ca),
        ),
        "verify-full to 127.0.0.1 (IP address in the subjectAltName)",
    );
    expect_err(
        &sql_install(
            &ctx,
            "wrong_ca",
            "localhost",
            port,
            "verify-full",
            Some(&wrong_ca),
        ),
        "verify-full with a wrong CA",
        &["TLS handshake", "invalid peer certificate", "UnknownIssuer"],
    );
    expect_err(
        &sql_install(
            &ctx,
            "missing_ca",
            "localhost",
            port,
            "verify-full",
            Some(&missing_ca),
        ),
        "verify-full with a missing sslrootcert",
        &[
            "cannot read db.sslrootcert file",
            missing_ca.to_str().unwrap(),
        ],
    );
    expect_err(
        &sql_install(&ctx, "disable", "localhost", port, "disable", None),
        "disable against a TLS-only server",
        &["no pg_hba.conf entry", "no encryption"],
    );

    // 2. Certificate for DNS:localhost only: verify-full to 127.0.0.1 fails on the name.
    cluster.start(&ctx, Some(&cert_dns), HBA_TLS_ONLY);
    expect_err(
        &sql_install(
            &ctx,
            "wrong_name",
            "127.0.0.1",
            port,
            "verify-full",
            Some(&ca),
        ),
        "verify-full to 127.0.0.1 with a certificate for localhost only",
        &["TLS handshake", "not valid for name", "127.0.0.1"],
    );
    expect_ok(
        &sql_install(
            &ctx,
            "verify_full_dns",
            "localhost",
            port,
            "verify-full",
            Some(&ca),
        ),
        "verify-full to localhost with a certificate for localhost only",
    );
    // Without verification the name does not matter.
    expect_ok(
        &sql_install(&ctx, "require_ip", "127.0.0.1", port, "require", None),
        "require to 127.0.0.1",
    );

    // 3. No TLS at all: prefer falls back to plain TCP; require refuses.
    cluster.start(&ctx, None, HBA_ANY);
    expect_ok(
        &sql_install(&ctx, "prefer_plain", "localhost", port, "prefer", None),
        "prefer without TLS",
    );
    expect_ok(
        &sql_install(&ctx, "disable_plain", "localhost", port, "disable", None),
        "disable",
    );
    expect_err(
        &sql_install(&ctx, "require_plain", "localhost", port, "require", None),
        "require against a server without TLS",
        &["server does not support TLS"],
    );

    drop(cluster);
    ctx.note(format!("done in {:.1} s", t0.elapsed().as_secs_f64()));
}
