//! [`Queue`]: a handle on one named queue; cheap to clone, safe to share between tasks.

use gpuq_schemas::QueueName;

use crate::{Keys, QueueConfig, RedisConn, RedisTarget};

/// One queue on one Redis (a node or a cluster). Every operation is a single atomic script call (or a pipeline of
/// them), so any number of `Queue` handles in any number of processes may act at once.
#[derive(Clone)]
pub struct Queue {
    pub(crate) conn: RedisConn,
    pub(crate) target: RedisTarget,
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

impl Queue {
    /// A handle on `name` under `namespace`, sharing `conn` (see [`crate::connect`]).
    /// `target` is used to open dedicated connections for blocking claims.
    pub fn new(
        target: RedisTarget,
        conn: RedisConn,
        namespace: &str,
        name: QueueName,
        config: QueueConfig,
    ) -> Self {
        Self {
            keys: Keys::new(namespace, &name),
            conn,
            target,
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
    pub(crate) fn conn(&self) -> RedisConn {
        self.conn.clone()
    }
}
