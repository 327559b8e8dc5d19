//! [`Queue`]: a handle on one named queue; cheap to clone, safe to share between tasks.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Client;

use gpuq_schemas::QueueName;

use crate::{Keys, QueueConfig, Result};

/// One queue on one Redis. Every operation is a single atomic script call (or a pipeline of
/// them), so any number of `Queue` handles in any number of processes may act at once.
#[derive(Clone)]
pub struct Queue {
    pub(crate) conn: ConnectionManager,
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    pub(crate) name: QueueName,
    pub(crate) config: QueueConfig,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("prefix", &self.keys.prefix())
            .finish()
    }
}

/// Opens the shared, self-reconnecting connection all non-blocking operations use. The
/// response timeout is generous: a cancel may `LREM` a long list.
pub async fn connect(client: &Client) -> Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(std::time::Duration::from_secs(10)))
        .set_connection_timeout(Some(std::time::Duration::from_secs(3)))
        .set_number_of_retries(3);
    Ok(ConnectionManager::new_with_config(client.clone(), config).await?)
}

impl Queue {
    /// A handle on `name` under `namespace`, sharing `conn` (see [`connect`]). `client` is
    /// used to open dedicated connections for blocking claims.
    pub fn new(
        client: Client,
        conn: ConnectionManager,
        namespace: &str,
        name: QueueName,
        config: QueueConfig,
    ) -> Self {
        Self {
            keys: Keys::new(namespace, &name),
            conn,
            client,
            name,
            config,
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &QueueName {
        &self.name
    }

    /// The queue's keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The queue's configuration.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// A clone of the shared connection.
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}
