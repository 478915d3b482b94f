//! Everything pgsink says to PostgreSQL: connecting, the SQL package, errors sorted by how
//! the sink reacts, and dead letters. The target table's shape is [`target`], the flush
//! transaction [`flush`], a keyed flush's staging and merge [`merge`], and the sink's stored
//! positions [`offsets`].

mod flush;
mod merge;
pub mod offsets;
mod target;

pub use flush::{FlushData, Writer};
pub use merge::stage_rows;
pub use target::Target;

use std::time::Duration;

use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, NoTls, Socket};

use crate::batch::MessageRef;
use crate::config::DbConfig;
use crate::tls::{self, Tls};

/// The SQL package, also shipped as `sql/install.sql`.
pub const INSTALL_SQL: &str = include_str!("../../sql/install.sql");
/// Removes the SQL package, also shipped as `sql/uninstall.sql`.
pub const UNINSTALL_SQL: &str = include_str!("../../sql/uninstall.sql");

/// The SQLSTATE `pgsink.commit_offsets` raises when the offset fence trips.
const FENCE_SQLSTATE: &str = "PSK01";

/// Errors talking to PostgreSQL, sorted by what the sink should do about them.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection failed or broke; retrying on a new connection may work.
    #[error("PostgreSQL connection to {target}: {}", error_chain(.error))]
    Connection {
        /// `host:port/database`.
        target: String,
        /// The driver's error (shown in the message, so not a `source`).
        error: tokio_postgres::Error,
    },
    /// PostgreSQL ran out of a resource (SQLSTATE class 53: disk full, out of
    /// memory, too many connections); retrying later may work.
    #[error("PostgreSQL at {target} is out of resources (SQLSTATE {code}): {text}")]
    Resources {
        /// `host:port/database`.
        target: String,
        /// The SQLSTATE, e.g. `53100` (disk full).
        code: String,
        /// The server's message.
        text: String,
    },
    /// Another process moved a partition's stored offset: roll back and re-seek.
    #[error("offset fence: {0}")]
    Fenced(String),
    /// PostgreSQL rejected a row's value (bad cast, constraint, too long).
    #[error("PostgreSQL rejected the data: {0}")]
    Data(String),
    /// The target table is missing, or lacks columns.
    #[error("{0}")]
    Table(String),
    /// Any other database error; the sink stops.
    #[error("PostgreSQL error: {0}")]
    Other(String),
}

impl DbError {
    /// Sorts a driver error by how to react to it.
    pub fn classify(error: tokio_postgres::Error, target: &str) -> DbError {
        let Some(db) = error.as_db_error() else {
            return DbError::Connection {
                target: target.to_string(),
                error,
            };
        };
        let code = db.code().code();
        let text = match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        };
        let text = match db.where_() {
            Some(w) if w.starts_with("COPY") => format!("{text}; {w}"),
            _ => text,
        };
        // pgsink's own errors (`sql/install.sql`) carry what to do in their hint.
        let text = match db.hint() {
            Some(hint) if code.starts_with("PSK") => format!("{text}; {hint}"),
            _ => text,
        };
        if code == FENCE_SQLSTATE {
            DbError::Fenced(text)
        } else if code.starts_with("22") || code.starts_with("23") {
            DbError::Data(text)
        } else if code.starts_with("53") {
            DbError::Resources {
                target: target.to_string(),
                code: code.to_string(),
                text,
            }
        } else if code.starts_with("08")
            || code.starts_with("57P")
            || code == SqlState::T_R_SERIALIZATION_FAILURE.code()
            || code == SqlState::T_R_DEADLOCK_DETECTED.code()
        {
            DbError::Connection {
                target: target.to_string(),
                error,
            }
        } else {
            DbError::Other(format!("{text} (SQLSTATE {code})"))
        }
    }

    /// True when a new connection and a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DbError::Connection { .. } | DbError::Resources { .. })
    }
}

/// An error and its causes, `outer: inner: innermost` (the driver's own
/// message leaves the cause out, and that is where TLS and I/O details are).
fn error_chain(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Quotes an SQL identifier: `my "table"` becomes `"my ""table"""`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `host:port/database`, for messages (never the password).
pub fn describe(db: &DbConfig) -> String {
    format!("{}/{}", db.host_port(), db.database)
}

/// Opens a connection; the connection task runs on the current tokio runtime.
///
/// TLS follows `db.sslmode` and `db.sslrootcert` with libpq's meaning (see
/// `tls.rs`); a TLS setup that cannot even start (an unreadable
/// `db.sslrootcert`, no system roots) is a [`DbError::Other`], not retried.
pub async fn connect(db: &DbConfig) -> Result<Client, DbError> {
    /// Connects through `tls` and spawns the connection task.
    async fn connect_with<T>(
        config: &tokio_postgres::Config,
        tls: T,
        target: &str,
    ) -> Result<Client, DbError>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + 'static,
    {
        let (client, connection) = config
            .connect(tls)
            .await
            .map_err(|e| DbError::classify(e, target))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    let mut config = tokio_postgres::Config::new();
    config
        .host(&db.host)
        .port(db.port)
        .dbname(&db.database)
        .user(&db.username)
        .application_name("pgsink")
        .connect_timeout(Duration::from_secs(10));
    if let Some(password) = &db.password {
        config.password(password);
    }
    let target = describe(db);
    let tls = tls::for_db(db).map_err(|e| DbError::Other(format!("TLS to {target}: {e}")))?;
    match tls {
        Tls::Off => {
            config.ssl_mode(PgSslMode::Disable);
            connect_with(&config, NoTls, &target).await
        }
        Tls::On(mode, connector) => {
            config.ssl_mode(mode);
            connect_with(&config, connector, &target).await
        }
    }
}

/// Installs or upgrades the SQL package (idempotent, serialized by an advisory lock).
pub async fn install(client: &Client) -> Result<(), tokio_postgres::Error> {
    client.batch_execute(INSTALL_SQL).await
}

/// The version of the SQL package this binary installs (`pgsink N:` in the schema's comment).
pub const SQL_VERSION: i32 = 3;

/// True when the SQL package is installed, at [`SQL_VERSION`] or newer (an older one lacks
/// what this binary relies on, e.g. version 3's offsets keyed by sink).
pub async fn installed(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT coalesce(substring(obj_description(to_regnamespace('pgsink'), 'pg_namespace')
                                       FROM '^pgsink ([0-9]+):')::int, 0)",
            &[],
        )
        .await?;
    Ok(row.get::<_, i32>(0) >= SQL_VERSION)
}

/// One message that goes to the dead-letter table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Why it could not be loaded.
    pub reason: String,
}

impl DeadLetter {
    /// A dead letter for `message`, failed for `reason`.
    pub fn new(message: MessageRef<'_>, reason: String) -> Self {
        DeadLetter {
            topic: message.topic.to_string(),
            partition: message.partition,
            offset: message.offset,
            timestamp: message.timestamp,
            key: message.key.map(<[u8]>::to_vec),
            value: message.value.map(<[u8]>::to_vec),
            reason: storable_text(&reason).into_owned(),
        }
    }
}

/// `text` as PostgreSQL can store it in a `text` column: a NUL character
/// (which a converter's reason or name may carry) becomes the two characters `\0`.
pub fn storable_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\\0"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}
