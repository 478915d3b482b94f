//! Reading a synchronized sink's stored offsets from the consume thread (at assignments and
//! rewinds), on a connection of its own: the writer's may be inside a transaction.
//!
//! The connection is opened when first needed and opened again whenever a query fails: a
//! PostgreSQL restart, a failover or `pg_terminate_backend` must not leave the rebalance
//! callback retrying on a dead connection while the group waits for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_postgres::Client;

use crate::config::DbConfig;
use crate::ledger::Partition;
use crate::postgres;

/// Reads the stored offsets of one sink.
pub struct StoredOffsets {
    db: DbConfig,
    sink: String,
    client: Option<Client>,
    /// The runtime the connection task runs on (the consume thread blocks on it).
    runtime: tokio::runtime::Handle,
}

impl StoredOffsets {
    /// A reader for sink `sink`'s offsets; it connects when first asked.
    pub fn new(db: DbConfig, sink: String, runtime: tokio::runtime::Handle) -> StoredOffsets {
        StoredOffsets {
            db,
            sink,
            client: None,
            runtime,
        }
    }

    /// The stored next offsets, retried with backoff (on a new connection each time) until the
    /// database answers; None if `shutdown` is set meanwhile.
    pub fn read(&mut self, shutdown: &AtomicBool) -> Option<HashMap<Partition, i64>> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.try_read() {
                Ok(stored) => return Some(stored),
                Err(error) => {
                    self.client = None;
                    tracing::warn!(%error, retry_in = ?delay, "cannot read stored offsets; reconnecting");
                    if shutdown.load(Ordering::Relaxed) {
                        return None;
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    fn try_read(&mut self) -> Result<HashMap<Partition, i64>, String> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = self
                .runtime
                .block_on(postgres::connect(&self.db))
                .map_err(|e| e.to_string())?;
            self.client = Some(client);
        }
        let client = self.client.as_ref().expect("connected above");
        self.runtime
            .block_on(postgres::offsets::stored(client, &self.sink))
            .map_err(|e| e.to_string())
    }
}
