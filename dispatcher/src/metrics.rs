//! Prometheus metrics of the dispatcher, rendered by `GET /metrics` with
//! `prometheus-client`. Queue gauges are refreshed from Redis at scrape time.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels by job type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobTypeLabel {
    /// The job type.
    pub job_type: String,
}

/// Labels by queue and state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueStateLabel {
    /// The queue.
    pub queue: String,
    /// waiting_high, waiting_normal, in_flight, delayed, dead.
    pub state: String,
}

/// Labels by queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// The queue.
    pub queue: String,
}

/// Labels of routed claims (ADR 0020).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoutedClaimLabels {
    /// The queue.
    pub queue: String,
    /// `warm_hit`: the worker had the job's model loaded; `model_load`: it had to load it.
    pub outcome: &'static str,
}

/// Labels of a job sent to a hosted provider's queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoutedLabels {
    /// The job type.
    pub job_type: String,
    /// The provider's queue.
    pub queue: String,
    /// `no_live_worker`, `start_over_limit` or `waited_too_long`.
    pub reason: String,
}

/// Labels by outcome (`delivered`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// What came of it.
    pub outcome: &'static str,
}

/// What the webhook sender records: clones of the registered metrics.
#[derive(Clone)]
pub struct WebhookMetrics {
    attempts: Family<OutcomeLabel, Counter>,
    attempt_seconds: Histogram,
}

impl WebhookMetrics {
    /// One attempt: delivered or not, and how long the POST took.
    pub fn attempt(&self, delivered: bool, took: std::time::Duration) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.attempts.get_or_create(&OutcomeLabel { outcome }).inc();
        self.attempt_seconds.observe(took.as_secs_f64());
    }
}

/// All dispatcher metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Jobs accepted, by type.
    pub enqueued: Family<JobTypeLabel, Counter>,
    /// Jobs sent to a hosted provider's queue (ADR 0017).
    pub routed: Family<RoutedLabels, Counter>,
    /// Enqueue requests refused with 429, by reason.
    pub rejected: Family<JobTypeLabel, Counter>,
    /// Time to handle an accepted enqueue, seconds.
    pub enqueue_seconds: Histogram,
    /// Jobs per queue and state.
    pub queue_jobs: Family<QueueStateLabel, Gauge>,
    /// Live workers per queue.
    pub live_workers: Family<QueueLabel, Gauge>,
    /// Age of the oldest waiting job per queue, seconds.
    pub oldest_wait_seconds: Family<QueueLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Job slots the live workers advertise, per queue.
    pub live_slots: Family<QueueLabel, Gauge>,
    /// GPU time the waiting jobs need, per queue, seconds: what an autoscaler should scale
    /// on (a video waits longer than an image).
    pub backlog_seconds: Family<QueueLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Jobs routed claims took, by whether their model was warm (the queue's own counts).
    pub routed_claims: Family<RoutedClaimLabels, Counter>,
    /// Jobs whose lease expired and were requeued by this replica.
    pub reaped: Counter,
    /// Accounts whose balance differed from their ledger at the last check (must be 0).
    pub credit_violations: Gauge,
    /// Webhook POSTs and their durations.
    pub webhooks: WebhookMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("gpuq")),
            enqueued: Family::default(),
            routed: Family::default(),
            rejected: Family::default(),
            enqueue_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            queue_jobs: Family::default(),
            live_workers: Family::default(),
            oldest_wait_seconds: Family::default(),
            live_slots: Family::default(),
            backlog_seconds: Family::default(),
            routed_claims: Family::default(),
            reaped: Counter::default(),
            credit_violations: Gauge::default(),
            webhooks: WebhookMetrics {
                attempts: Family::default(),
                attempt_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            },
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register(
                "jobs_enqueued",
                "Jobs accepted, by type",
                m.enqueued.clone(),
            );
            r.register(
                "jobs_routed",
                "Jobs sent to a hosted provider's queue instead of their own, by type, queue and reason",
                m.routed.clone(),
            );
            r.register(
                "jobs_rejected",
                "Enqueue requests refused by a limit, by reason",
                m.rejected.clone(),
            );
            r.register(
                "enqueue_duration_seconds",
                "Time to accept a job",
                m.enqueue_seconds.clone(),
            );
            r.register(
                "queue_jobs",
                "Jobs per queue and state",
                m.queue_jobs.clone(),
            );
            r.register(
                "queue_live_workers",
                "Workers seen recently, per queue",
                m.live_workers.clone(),
            );
            r.register(
                "queue_oldest_wait_seconds",
                "Age of the next job to be claimed",
                m.oldest_wait_seconds.clone(),
            );
            r.register(
                "queue_live_slots",
                "Jobs the live workers run at once, as they advertise, per queue",
                m.live_slots.clone(),
            );
            r.register(
                "queue_backlog_seconds",
                "GPU time the waiting jobs need at recent run times, per queue",
                m.backlog_seconds.clone(),
            );
            r.register(
                "queue_routed_claims",
                "Jobs routed claims gave workers, by queue and whether the worker had the job's model loaded (warm_hit) or had to load it (model_load)",
                m.routed_claims.clone(),
            );
            r.register(
                "credit_violations",
                "Credit accounts whose balance differed from their ledger at the last reconcile check (must be 0)",
                m.credit_violations.clone(),
            );
            r.register(
                "webhook_attempts",
                "Webhook POSTs by outcome (delivered: a 2xx; failed: anything else, retried on the schedule)",
                m.webhooks.attempts.clone(),
            );
            r.register(
                "webhook_attempt_duration_seconds",
                "Time a webhook POST took, answered or not",
                m.webhooks.attempt_seconds.clone(),
            );
            r.register(
                "leases_reaped",
                "Expired leases requeued by this replica",
                m.reaped.clone(),
            );
        }
        m
    }
}

impl Metrics {
    /// Records a queue snapshot into the gauges; `seconds_per_job` is the queue's recent
    /// run time per job (`service_times`).
    pub fn observe_queue(&self, s: &gpuq_queue::QueueStats, seconds_per_job: f64) {
        for (state, value) in [
            ("waiting_high", s.waiting_high),
            ("waiting_normal", s.waiting_normal),
            ("in_flight", s.in_flight),
            ("delayed", s.delayed),
            ("dead", s.dead),
        ] {
            let label = QueueStateLabel {
                queue: s.queue.clone(),
                state: state.into(),
            };
            self.queue_jobs.get_or_create(&label).set(value as i64);
        }
        let q = QueueLabel {
            queue: s.queue.clone(),
        };
        self.live_workers
            .get_or_create(&q)
            .set(s.live_consumers as i64);
        self.oldest_wait_seconds
            .get_or_create(&q)
            .set(s.oldest_wait_ms().unwrap_or(0) as f64 / 1000.0);
        self.live_slots.get_or_create(&q).set(s.live_slots as i64);
        self.backlog_seconds
            .get_or_create(&q)
            .set(s.waiting() as f64 * seconds_per_job);
    }

    /// Mirrors a queue's counts of routed claims, which Redis keeps for every replica.
    pub fn observe_routing(&self, queue: &str, claims: gpuq_queue::RoutedClaims) {
        for (outcome, value) in [("warm_hit", claims.warm), ("model_load", claims.cold)] {
            let label = RoutedClaimLabels {
                queue: queue.to_owned(),
                outcome,
            };
            // The count lives in Redis; the counter shows it as it is (a Redis that lost
            // it starts again from 0, which Prometheus reads as a counter reset).
            self.routed_claims
                .get_or_create(&label)
                .inner()
                .store(value, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}
