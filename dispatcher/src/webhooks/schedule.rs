//! When a failed delivery is tried again: exponential backoff with full jitter (backon),
//! from `retry_base_ms` doubling up to `retry_max_ms`, for `retry_for_secs` after the event.
//! With the defaults: about 5 s, 10 s, 20 s ... then hourly, some 30 attempts over 25 h.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::WebhookSettings;

/// The wait after a delivery's `attempts`-th failed attempt (1 = after the first).
pub fn delay_after(settings: &WebhookSettings, attempts: u32) -> Duration {
    let n = attempts.saturating_sub(1) as usize;
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(settings.retry_base_ms.max(1)))
        .with_max_delay(Duration::from_millis(settings.retry_max_ms.max(1)))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(n)
        .unwrap_or(Duration::from_millis(settings.retry_max_ms))
}

/// Whether a delivery of an event `age` old is still tried after a failed attempt, when
/// the next would come `next` from now.
pub fn gives_up(settings: &WebhookSettings, age: Duration, next: Duration) -> bool {
    age + next > Duration::from_secs(settings.retry_for_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_base_with_jitter_up_to_the_cap() {
        let s = WebhookSettings::default();
        for attempts in 1..=40 {
            let unjittered = (5_000u64 << (attempts - 1).min(20)).min(3_600_000);
            let d = delay_after(&s, attempts).as_millis() as u64;
            // backon's jitter adds up to one more delay.
            assert!(
                d >= unjittered && d <= 2 * unjittered,
                "attempt {attempts}: {d} ms"
            );
        }
    }

    #[test]
    fn the_default_schedule_keeps_trying_for_more_than_a_day() {
        let s = WebhookSettings::default();
        let mut age = Duration::ZERO;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let next = delay_after(&s, attempts);
            if gives_up(&s, age, next) {
                break;
            }
            age += next;
        }
        assert!(
            age >= Duration::from_secs(24 * 3600),
            "gave up after {age:?}"
        );
        assert!((15..=60).contains(&attempts), "{attempts} attempts");
    }
}
