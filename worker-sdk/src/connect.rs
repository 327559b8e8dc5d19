//! Reaching Redis: opening a [`Queue`] with retries, so a worker started before Redis (or
//! during a Redis restart) waits for it instead of exiting.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use gpuq_queue::{Queue, QueueConfig, RedisTarget};
use gpuq_schemas::QueueName;
use tokio_util::sync::CancellationToken;

/// Everything needed to open a [`Queue`] handle; cheap to clone.
#[derive(Clone)]
pub(crate) struct QueueTarget {
    pub target: RedisTarget,
    pub namespace: String,
    pub name: QueueName,
    pub config: QueueConfig,
    pub backoff: RedisBackoff,
}

/// Delays between attempts to reach Redis.
#[derive(Debug, Clone, Copy)]
pub struct RedisBackoff {
    /// First delay.
    pub min_delay: Duration,
    /// Longest delay; retries go on forever at this pace.
    pub max_delay: Duration,
}

impl Default for RedisBackoff {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RedisBackoff {
    /// An endless iterator of jittered, growing delays.
    pub(crate) fn delays(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .without_max_times()
            .with_jitter()
            .build()
    }
}

impl RedisBackoff {
    /// The same pace, giving up after `times` retries (for single operations).
    pub(crate) fn bounded(&self, times: usize) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(times)
            .with_jitter()
    }
}

impl QueueTarget {
    /// Connects, retrying with backoff until Redis answers. `None` if `stop` fired first.
    pub(crate) async fn connect(&self, stop: &CancellationToken, who: &str) -> Option<Queue> {
        let mut delays = self.backoff.delays();
        loop {
            let attempt = tokio::select! {
                _ = stop.cancelled() => return None,
                res = gpuq_queue::connect(&self.target) => res,
            };
            match attempt {
                Ok(conn) => {
                    tracing::info!(queue = %self.name, who, "connected to Redis");
                    return Some(Queue::new(
                        self.target.clone(),
                        conn,
                        &self.namespace,
                        self.name.clone(),
                        self.config.clone(),
                    ));
                }
                Err(e) => {
                    let wait = delays.next().unwrap_or(self.backoff.max_delay);
                    tracing::warn!(
                        queue = %self.name, who, error = %crate::error::chain(&e),
                        retry_in_ms = wait.as_millis() as u64,
                        "Redis unreachable; retrying"
                    );
                    if sleep_or_stop(wait, stop).await {
                        return None;
                    }
                }
            }
        }
    }
}

/// Sleeps `wait`; true if `stop` fired first.
pub(crate) async fn sleep_or_stop(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}
