//! [`QueueError`]: everything that can go wrong in the queue crate.

use gpuq_schemas::InvalidQueueName;

/// Errors of the queue API. Input errors are detected before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or refused a command.
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    /// The queue name is not valid.
    #[error("invalid queue name: {0}")]
    InvalidQueueName(#[from] InvalidQueueName),
    /// The lane is neither `high` nor `normal`.
    #[error("unknown lane {0:?}; expected high or normal")]
    UnknownLane(String),
    /// The consumer name is not valid.
    #[error("invalid consumer name {0:?}: 1-128 bytes of A-Z a-z 0-9 . _ : -")]
    InvalidConsumer(String),
    /// A model name of a [`crate::Route`] is empty, too long, or holds a comma, a space or
    /// `*`.
    #[error("invalid model name {0:?}: 1-128 characters without commas, spaces or *")]
    InvalidModel(String),
    /// The idempotency key is empty, too long or has control characters.
    #[error("invalid idempotency key: 1-255 printable characters")]
    InvalidIdempotencyKey,
    /// A concurrency cap is out of range (1 to [`crate::MAX_CAP`]).
    #[error("a concurrency cap must be from 1 to {max}, not {cap}")]
    InvalidCap {
        /// The cap given.
        cap: u32,
        /// The largest allowed.
        max: u32,
    },
    /// The serialized envelope is larger than the configured maximum.
    #[error("payload of {size} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge {
        /// Serialized size.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A worker profile too large to advertise, even without its loaded names.
    #[error(
        "a worker profile of {size} bytes exceeds the {max}-byte limit (too many runnable models?)"
    )]
    ProfileTooLarge {
        /// Serialized size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The envelope names another queue than the one it is sent to.
    #[error("envelope is for queue {envelope:?}, not {queue:?}")]
    WrongQueue {
        /// The envelope's queue.
        envelope: String,
        /// This queue.
        queue: String,
    },
    /// An envelope could not be encoded or decoded.
    #[error("envelope JSON")]
    Json(#[from] serde_json::Error),
    /// This consumer is quarantined and may not claim until an admin releases it
    /// ([`crate::Queue::quarantine`]); the text is the reason.
    #[error("this consumer is quarantined: {0}")]
    Quarantined(String),
    /// A script answered something the protocol does not allow (a bug, or a foreign writer).
    #[error("unexpected reply from {script}: {detail}")]
    Protocol {
        /// The script.
        script: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// Result with [`QueueError`].
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
