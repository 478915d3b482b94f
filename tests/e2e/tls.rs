//! TLS to PostgreSQL (`db.sslmode`, `db.sslrootcert`) against a throwaway PostgreSQL cluster
//! of its own: a CA and server certificates made with `openssl`, `initdb` + `pg_ctl` on a free
//! port, and `pgsink sql install --config FILE` as a quick real connection in each mode.
//! The cluster is `pg_cluster::Cluster`; this test also needs `openssl`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::pg_cluster::{run, run_ok, Cluster, HBA_ANY};

/// Bound on one `pgsink sql install` (its connect timeout is 10 s).
const PGSINK_TIMEOUT: Duration = Duration::from_secs(20);

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
// The test
// ------------------------------------------------------------------------------------------

/// pg_hba.conf accepting TLS connections only (trust: no password).
const HBA_TLS_ONLY: &str = "local all all trust\n\
                            hostssl all all 127.0.0.1/32 trust\n\
                            hostssl all all ::1/128 trust\n";

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
