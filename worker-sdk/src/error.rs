//! Errors: [`WorkerError`] for building and running a worker, [`JobError`] for what a
//! handler returns when a job cannot produce its outputs.

use std::fmt;

/// Why a worker could not be built or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A required builder setting was not given.
    #[error("worker builder: `{0}` is required")]
    Missing(&'static str),
    /// A builder setting has an unusable value.
    #[error("worker builder: {0}")]
    Invalid(String),
    /// The Redis URL does not parse.
    #[error("invalid Redis URL")]
    RedisUrl(#[source] redis::RedisError),
    /// The callback HTTP client could not be created.
    #[error("could not create the callback HTTP client")]
    Http(#[source] reqwest::Error),
    /// The lease keeper thread could not be started.
    #[error("could not start the lease keeper thread")]
    LeaseKeeper(#[source] std::io::Error),
    /// The callback service refused the start-up probe: the callback URL or the secret is
    /// wrong. Nothing was claimed.
    #[error("the callback service at {url} refused this worker's signed probe ({status}): {body}; check the callback URL and secret")]
    CallbackRefused {
        /// The URL probed.
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the answer.
        body: String,
    },
}

/// Why a job failed. The variant decides what the queue does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Another attempt may succeed (out of GPU memory, a flaky download): the queue retries
    /// it with backoff until the type's `max_attempts` are used up.
    Retryable(String),
    /// No attempt will succeed (an invalid prompt, a missing reference image): the job goes
    /// straight to the dead-letter set.
    Permanent(String),
}

impl JobError {
    /// A retryable error with `message`.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable(message.into())
    }

    /// A permanent error with `message`.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent(message.into())
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }

    /// The human-readable reason.
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable(m) | Self::Permanent(m) => m,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.is_retryable() {
            "retryable"
        } else {
            "permanent"
        };
        write!(f, "{kind} job error: {}", self.message())
    }
}

impl std::error::Error for JobError {}

impl From<crate::StorageError> for JobError {
    /// Storage trouble is usually passing (a network blip, a full disk being cleaned), and
    /// another worker may be configured differently: retry.
    fn from(e: crate::StorageError) -> Self {
        Self::Retryable(format!("storage: {e}"))
    }
}

/// An error and its causes on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
