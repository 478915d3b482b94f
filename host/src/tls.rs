//! TLS to PostgreSQL: `db.sslmode` and `db.sslrootcert` turned into what
//! tokio-postgres needs, with libpq's meaning of each mode.
//!
//! | `db.sslmode`  | tokio-postgres `SslMode` | connector | server certificate                     |
//! | ------------- | ------------------------ | --------- | -------------------------------------- |
//! | `disable`     | `Disable`                | none      | —                                      |
//! | `prefer`      | `Prefer`                 | rustls    | not checked ([`AcceptAnyServerCertificate`]) |
//! | `require`     | `Require`                | rustls    | not checked ([`AcceptAnyServerCertificate`]) |
//! | `verify-full` | `Require`                | rustls    | chain to `db.sslrootcert` or the system's roots, and the host name |
//!
//! tokio-postgres itself does `prefer`'s fallback: it asks the server for TLS
//! and goes on in plain TCP when the server answers that it has none.
//!
//! Choices:
//! - rustls 0.23 with the *ring* crypto provider, passed explicitly (not the
//!   process-wide default, so that another crate enabling another provider
//!   changes nothing here). ring builds with a C compiler only; aws-lc-rs,
//!   rustls's default provider, is not compiled in.
//! - System roots from `rustls-native-certs`: the operating system's store
//!   (on Debian `/etc/ssl/certs/ca-certificates.crt`, from `ca-certificates`;
//!   `SSL_CERT_FILE` and `SSL_CERT_DIR` override it, as for OpenSSL). Not
//!   `webpki-roots`' list compiled into the binary: the system store is what
//!   libpq (OpenSSL) trusts, gets the distribution's updates, and holds the
//!   CAs an administrator added there (a company CA). Loaded once per process.
//! - `db.sslrootcert` is read with `rustls-pki-types`' PEM parser (re-exported
//!   by rustls; `rustls-pemfile` is unmaintained) on every connection, so a
//!   replaced CA file is picked up by the next reconnection.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{DbConfig, SslMode};

/// Why TLS to the database could not be set up (before any connection attempt).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `db.sslrootcert` cannot be read.
    #[error("cannot read db.sslrootcert file {}: {source}", path.display())]
    ReadRootCert {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `db.sslrootcert` is not PEM, or holds a broken certificate block.
    #[error("db.sslrootcert file {} is not a valid PEM file: {detail}", path.display())]
    BadPem {
        path: PathBuf,
        /// The parser's complaint.
        detail: String,
    },
    /// `db.sslrootcert` holds no `CERTIFICATE` block (empty, or a key only).
    #[error(
        "db.sslrootcert file {} contains no certificate (expected PEM blocks \
         \"-----BEGIN CERTIFICATE-----\")",
        path.display()
    )]
    NoCertificates { path: PathBuf },
    /// A certificate of `db.sslrootcert` cannot serve as a trust anchor.
    #[error("db.sslrootcert file {}: certificate #{number} is not usable as a CA: {source}", path.display())]
    BadCertificate {
        path: PathBuf,
        /// Position of the certificate in the file, from 1.
        number: usize,
        /// rustls's complaint.
        source: rustls::Error,
    },
    /// `verify-full` without `db.sslrootcert`, and the system has no root certificates.
    #[error(
        "db.sslmode = \"verify-full\" without db.sslrootcert trusts the system's root \
         certificates, but none could be loaded{detail}; install the ca-certificates package, \
         or set db.sslrootcert"
    )]
    NoSystemRoots {
        /// What the loader reported, as `: ...`, or empty.
        detail: String,
    },
    /// rustls refused the configuration (not expected with the fixed settings used here).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What [`crate::postgres::connect`] needs for one database: tokio-postgres's
/// mode, and a connector unless TLS is off.
pub enum Tls {
    /// `disable`: plain TCP, no TLS connector at all.
    Off,
    /// Every other mode: tokio-postgres's mode and the rustls connector.
    On(PgSslMode, MakeRustlsConnect),
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tls::Off => f.write_str("Tls::Off"),
            Tls::On(mode, _) => write!(f, "Tls::On({mode:?})"),
        }
    }
}

/// How the server's certificate is checked, given `db.sslmode` and `db.sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCheck {
    /// `prefer`, `require`: not at all, as libpq ([`AcceptAnyServerCertificate`]).
    None,
    /// `verify-full`: the chain must lead to a CA of this PEM file (`None`:
    /// the system's roots), and the certificate must name the host.
    Verify(Option<PathBuf>),
}

/// tokio-postgres's mode and the certificate check for `mode`; `None` for `disable`.
///
/// `verify-full` is tokio-postgres's `Require`: tokio-postgres knows only
/// whether TLS is wanted; the verification is the rustls configuration's.
pub fn plan(mode: SslMode, rootcert: Option<&Path>) -> Option<(PgSslMode, ServerCheck)> {
    match mode {
        SslMode::Disable => None,
        SslMode::Prefer => Some((PgSslMode::Prefer, ServerCheck::None)),
        SslMode::Require => Some((PgSslMode::Require, ServerCheck::None)),
        SslMode::VerifyFull => Some((
            PgSslMode::Require,
            ServerCheck::Verify(rootcert.map(Path::to_path_buf)),
        )),
    }
}

/// The TLS setup of a connection to `db` (reads `db.sslrootcert` if set).
pub fn for_db(db: &DbConfig) -> Result<Tls, TlsError> {
    let Some((mode, check)) = plan(db.sslmode, db.sslrootcert.as_deref()) else {
        return Ok(Tls::Off);
    };
    let config = client_config(&check)?;
    Ok(Tls::On(mode, MakeRustlsConnect::new(config)))
}

/// The crypto provider of every connection: ring.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The rustls client configuration for `check`.
pub fn client_config(check: &ServerCheck) -> Result<ClientConfig, TlsError> {
    let verifier = verifier(check)?;
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The server-certificate verifier for `check`.
pub fn verifier(check: &ServerCheck) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    let roots = match check {
        ServerCheck::None => {
            return Ok(Arc::new(AcceptAnyServerCertificate::new(provider())));
        }
        ServerCheck::Verify(Some(path)) => Arc::new(load_root_file(path)?),
        ServerCheck::Verify(None) => system_roots()?,
    };
    // rustls's standard verifier: chain to `roots`, validity period, server
    // purpose, and the name tokio-postgres connects to (`db.host`: a DNS name
    // matches a dNSName, an IP address an iPAddress of the subjectAltName).
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map(|v| v as Arc<dyn ServerCertVerifier>)
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))
}

/// The CA certificates of a PEM file: every `CERTIFICATE` block, each one
/// required to be usable; other blocks (keys, CRLs) are ignored.
pub fn load_root_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadRootCert {
        path: path.to_path_buf(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
        let cert = cert.map_err(|e| TlsError::BadPem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        roots.add(cert).map_err(|source| TlsError::BadCertificate {
            path: path.to_path_buf(),
            number: i + 1,
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    Ok(roots)
}

/// The system's root certificates, loaded once per process.
fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, unusable) = roots.add_parsable_certificates(loaded.certs);
            for error in &loaded.errors {
                tracing::warn!(%error, "loading the system's root certificates");
            }
            if unusable > 0 {
                tracing::debug!(
                    added,
                    unusable,
                    "some system root certificates are not usable by rustls"
                );
            }
            if roots.is_empty() {
                let detail: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
                Err(if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", detail.join("; "))
                })
            } else {
                Ok(Arc::new(roots))
            }
        })
        .clone()
        .map_err(|detail| TlsError::NoSystemRoots { detail })
}

/// A verifier that accepts whatever certificate the server presents: no
/// chain, no validity period, no host name.
///
/// This is deliberate, and only for `db.sslmode = "prefer"` and `"require"`:
/// libpq does not check the certificate in those modes either (without a root
/// certificate file), and the documentation promises libpq's meaning. They
/// protect against eavesdropping, not against an impostor server; that is
/// `verify-full`'s job, which uses rustls's standard verifier instead.
///
/// The handshake signature is still checked against the presented
/// certificate's key, so the session really belongs to that certificate
/// (which keeps SCRAM channel binding to it meaningful).
#[derive(Debug)]
pub struct AcceptAnyServerCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyServerCertificate {
    /// A verifier checking handshake signatures with `provider`'s algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> AcceptAnyServerCertificate {
        AcceptAnyServerCertificate {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AcceptAnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;

    /// A CA (EC P-256, valid until 2126).
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBojCCAUmgAwIBAgIUO7X+dyNMjUz7a2UQJdIg739S0gUwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTcGdzaW5rIHVuaXQtdGVzdCBDQTAgFw0yNjExMjcwOTA1Mjla
GA8yMTI2MTEwMzA5MDUyOVowHjEcMBoGA1UEAwwTcGdzaW5rIHVuaXQtdGVzdCBD
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABALzSIoyBR1FhE9E1h1chYc/7/pC
Yj5y5ymjqCYULhFNC0/3ORNFUMw3rYq/Sc9oje06/1jGqXs4Nif9IXaZgtCjYzBh
MB0GA1UdDgQWBBSE5MnfSeJrcV/XT3CSXudzu2djGDAfBgNVHSMEGDAWgBSE5Mnf
SeJrcV/XT3CSXudzu2djGDAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIB
BjAKBggqhkjOPQQDAgNHADBEAiBl65SUZkD7D0eTKJqgAsbs4X1aN5FEPnpPOri1
jrWIXAIgd3iY9RiYeN3rBxCwa4uWOJvW7MSVw26mdWTuTDVzBRc=
-----END CERTIFICATE-----
";

    /// A server certificate issued by [`CA`] for `DNS:localhost` only (until 2126).
    const LEAF: &str = "-----BEGIN CERTIFICATE-----
MIIBwzCCAWmgAwIBAgIUR8URQOj39NcNcKELYvlb66ZOqU8wCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTcGdzaW5rIHVuaXQtdGVzdCBDQTAgFw0yNjExMjcwOTA1Mjla
GA8yMTI2MTEwMzA5MDUyOVowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAE0kniUl8ZtHciGVxZEEpWKOeM4Yr7UZT5a4ipSS9t
XXza1zWX/OoZpfp9L0qAIOXLhpnwGIHW8ssSoSIT4Gn9AKOBjDCBiTAMBgNVHRMB
Af8EAjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAUBgNV
HREEDTALgglsb2NhbGhvc3QwHQYDVR0OBBYEFMajwFVskXN46VmxAyN4XO9oDLap
MB8GA1UdIwQYMBaAFITkyd9J4mtxX9dPcJJe53O7Z2MYMAoGCCqGSM49BAMCA0gA
MEUCIQCAM74ognTAouQsclEY1/1cdYuvTsuRqDSggpEdYjZ/UwIgdnBrFh6kI+KE
0Vp7Wzcg5BU2u+mQRLQogpBE/uREPzw=
-----END CERTIFICATE-----
";

    /// Another CA, which did not issue [`LEAF`].
    const OTHER_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBrzCCAVWgAwIBAgIURNo/KdrWuM8QGQ/cDNs3AIbAzLkwCgYIKoZIzj0EAwIw
JDEiMCAGA1UEAwwZcGdzaW5rIHVuaXQtdGVzdCBvdGhlciBDQTAgFw0yNjExMjcw
OTA1MjlaGA8yMTI2MTEwMzA5MDUyOVowJDEiMCAGA1UEAwwZcGdzaW5rIHVuaXQt
dGVzdCBvdGhlciBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMq5aNTKmjQL
Q3rZOR5Hqav4rf/8+p+AXG6VMhpUSll4vnxfZ/y+uT/FZNMMInbLCmLDdtIUGWRK
wtVwr0nmMXqjYzBhMB0GA1UdDgQWBBQMv1je3Ozd5hodu3MhBT/mBKcSMDAfBgNV
HSMEGDAWgBQMv1je3Ozd5hodu3MhBT/mBKcSMDAPBgNVHRMBAf8EBTADAQH/MA4G
A1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNIADBFAiEAo4DHmhYwqac7THw2OueB
jMXXwBckOZTuD/XA+vnRZukCIBVbKF6tG9PCBvbC2ljY1Kpfib2hR4pIJoQxiTIy
1A+k
-----END CERTIFICATE-----
";

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("test certificate")
    }

    /// Runs `check`'s verifier on [`LEAF`] presented by a server called `host`.
    fn verify_leaf(check: &ServerCheck, host: &str) -> Result<(), rustls::Error> {
        let verifier = verifier(check).expect("verifier");
        let name = ServerName::try_from(host.to_string()).expect("server name");
        verifier
            .verify_server_cert(&der(LEAF), &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    fn write(dir: &tempfile::TempDir, name: &str, contents: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).expect("write");
        path
    }

    fn db(mode: SslMode, rootcert: Option<PathBuf>) -> DbConfig {
        DbConfig {
            host: "localhost".into(),
            port: 5432,
            database: "db".into(),
            username: "user".into(),
            password: None,
            tables: Vec::new(),
            sslmode: mode,
            sslrootcert: rootcert,
        }
    }

    #[test]
    fn modes_map_to_tokio_postgres_modes_and_checks() {
        let ca = Path::new("/etc/pg/ca.pem");
        assert_eq!(plan(SslMode::Disable, None), None);
        assert_eq!(
            plan(SslMode::Prefer, None),
            Some((PgSslMode::Prefer, ServerCheck::None))
        );
        assert_eq!(
            plan(SslMode::Require, None),
            Some((PgSslMode::Require, ServerCheck::None))
        );
        assert_eq!(
            plan(SslMode::VerifyFull, None),
            Some((PgSslMode::Require, ServerCheck::Verify(None)))
        );
        assert_eq!(
            plan(SslMode::VerifyFull, Some(ca)),
            Some((PgSslMode::Require, ServerCheck::Verify(Some(ca.into()))))
        );
        // The default mode is prefer: TLS when offered, plain otherwise.
        assert_eq!(
            plan(SslMode::default(), None).map(|p| p.0),
            Some(PgSslMode::Prefer)
        );
    }

    #[test]
    fn for_db_gives_no_connector_for_disable_and_one_otherwise() {
        assert!(matches!(for_db(&db(SslMode::Disable, None)), Ok(Tls::Off)));
        assert!(matches!(
            for_db(&db(SslMode::Prefer, None)),
            Ok(Tls::On(PgSslMode::Prefer, _))
        ));
        assert!(matches!(
            for_db(&db(SslMode::Require, None)),
            Ok(Tls::On(PgSslMode::Require, _))
        ));
        let dir = tempfile::tempdir().unwrap();
        let ca = write(&dir, "ca.pem", CA);
        assert!(matches!(
            for_db(&db(SslMode::VerifyFull, Some(ca))),
            Ok(Tls::On(PgSslMode::Require, _))
        ));
        let missing = dir.path().join("missing.pem");
        let err = for_db(&db(SslMode::VerifyFull, Some(missing.clone()))).unwrap_err();
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn prefer_and_require_accept_any_certificate() {
        // Not issued by any trusted CA, and not for this host: still accepted.
        assert_eq!(verify_leaf(&ServerCheck::None, "db.example.com"), Ok(()));
        assert_eq!(verify_leaf(&ServerCheck::None, "10.1.2.3"), Ok(()));
        // Even bytes that are no certificate at all.
        let verifier = verifier(&ServerCheck::None).unwrap();
        let junk = CertificateDer::from(vec![1u8, 2, 3]);
        let name = ServerName::try_from("localhost").unwrap();
        assert!(verifier
            .verify_server_cert(&junk, &[], &name, &[], UnixTime::now())
            .is_ok());
        // The handshake signature schemes are ring's, not an empty list.
        assert!(!verifier.supported_verify_schemes().is_empty());
    }

    #[test]
    fn verify_full_checks_the_chain_and_the_host_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(&dir, "ca.pem", CA);
        let other = write(&dir, "other.pem", OTHER_CA);
        let check = ServerCheck::Verify(Some(ca));
        assert_eq!(verify_leaf(&check, "localhost"), Ok(()));
        match verify_leaf(&check, "127.0.0.1") {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {}
            other => panic!("expected a host-name error, got {other:?}"),
        }
        match verify_leaf(&check, "db.example.com") {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => {}
            other => panic!("expected a host-name error, got {other:?}"),
        }
        assert_eq!(
            verify_leaf(&ServerCheck::Verify(Some(other)), "localhost"),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        );
    }

    #[test]
    fn verify_full_with_a_bundle_trusts_each_of_its_cas() {
        let dir = tempfile::tempdir().unwrap();
        // Comments, a key block and several CAs, as in real bundles.
        let bundle = format!(
            "# our CAs\n{OTHER_CA}\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{CA}"
        );
        let path = write(&dir, "bundle.pem", &bundle);
        assert_eq!(load_root_file(&path).unwrap().len(), 2);
        assert_eq!(
            verify_leaf(&ServerCheck::Verify(Some(path)), "localhost"),
            Ok(())
        );
    }

    #[test]
    fn verify_full_with_system_roots_rejects_a_private_ca() {
        match verifier(&ServerCheck::Verify(None)) {
            // A machine without ca-certificates: the error says what to do.
            Err(err @ TlsError::NoSystemRoots { .. }) => {
                let text = err.to_string();
                assert!(text.contains("ca-certificates"), "{text}");
                assert!(text.contains("db.sslrootcert"), "{text}");
            }
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => assert_eq!(
                verify_leaf(&ServerCheck::Verify(None), "localhost"),
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer
                ))
            ),
        }
    }

    #[test]
    fn unreadable_root_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = load_root_file(&missing).unwrap_err();
        assert!(matches!(err, TlsError::ReadRootCert { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot read db.sslrootcert file {}: ",
                missing.display()
            )),
            "{text}"
        );
        // A directory is not a file either.
        let err = load_root_file(dir.path()).unwrap_err();
        assert!(matches!(err, TlsError::ReadRootCert { .. }), "{err:?}");
    }

    #[test]
    fn root_file_without_certificates_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        for (name, contents) in [
            ("empty.pem", ""),
            ("text.pem", "not a certificate\n"),
            (
                "key.pem",
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            ),
        ] {
            let path = write(&dir, name, contents);
            let err = load_root_file(&path).unwrap_err();
            assert!(
                matches!(err, TlsError::NoCertificates { .. }),
                "{name}: {err:?}"
            );
            let text = err.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains("contains no certificate"), "{text}");
        }
    }

    #[test]
    fn broken_root_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A certificate block whose base64 is broken.
        let path = write(
            &dir,
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let err = load_root_file(&path).unwrap_err();
        assert!(matches!(err, TlsError::BadPem { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // Valid base64 that is no certificate: the second block is named.
        let path = write(
            &dir,
            "junk.pem",
            &format!("{CA}-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n"),
        );
        let err = load_root_file(&path).unwrap_err();
        assert!(
            matches!(err, TlsError::BadCertificate { number: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("certificate #2"), "{err}");
    }
}
