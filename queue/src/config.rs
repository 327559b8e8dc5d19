//! [`QueueConfig`] and [`Backoff`]: the tunables of one queue.

use std::time::Duration;

/// How a queue behaves. The defaults suit GPU work: long leases renewed often, minutes of
/// backoff at most.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Largest serialized envelope accepted, bytes.
    pub max_payload_bytes: usize,
    /// Waiting jobs (both lanes) beyond which enqueue answers `QueueFull`; `None` is no limit.
    pub max_depth: Option<u64>,
    /// How long an idempotency key remembers its job.
    pub idempotency_window: Duration,
    /// How long a claim or heartbeat keeps a job; a holder silent for longer loses it.
    pub lease: Duration,
    /// A consumer not seen for this long no longer counts as live.
    pub consumer_ttl: Duration,
    /// Delay before retry `n`.
    pub backoff: Backoff,
    /// Jobs handled per reap or promote call.
    pub maintenance_batch: usize,
    /// Most wake-up tokens kept for idle consumers.
    pub signal_cap: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            max_depth: Some(100_000),
            idempotency_window: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(30),
            consumer_ttl: Duration::from_secs(60),
            backoff: Backoff::default(),
            maintenance_batch: 500,
            signal_cap: 256,
        }
    }
}

/// Exponential backoff with jitter: retry `n` (1-based) waits a uniformly random time in
/// `[d/2, d]` where `d = min(max, base * 2^(n-1))`. The jitter spreads a burst of failures
/// (a GPU node dying with 8 jobs) so the retries do not all land at once.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the first retry, before jitter.
    pub base: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(31);
        let full = self.base.saturating_mul(1u32 << exp).min(self.max);
        let half = full / 2;
        let spread = (full - half).as_millis() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            rand::random_range(0..=spread)
        };
        half + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for retry in 1..=10 {
            let full = (100u64 << (retry - 1)).min(2000);
            for _ in 0..50 {
                let d = b.delay(retry).as_millis() as u64;
                assert!(
                    d >= full / 2 && d <= full,
                    "retry {retry}: {d} not in [{}, {full}]",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        let b = Backoff::default();
        assert!(b.delay(u32::MAX) <= b.max);
    }
}
