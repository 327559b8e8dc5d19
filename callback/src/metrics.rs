//! Prometheus metrics of the callback service, rendered by `GET /metrics`: callback
//! outcomes, finished jobs by type, GPU-seconds of attempts by type and outcome, the
//! wait-time and run-time histograms, and attempts and run times by queue (how a hosted
//! provider's queue shows its errors and latency), and failed attempts by code.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::record::Recorded;

/// Labels of a callback outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `recorded`, `ignored`, or the error code of a rejection.
    pub outcome: String,
}

/// Labels of a finished job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishedLabels {
    /// The job type.
    pub job_type: String,
    /// `completed`, `failed` or `cancelled`.
    pub status: String,
}

/// Labels of an attempt's GPU time.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// The job type.
    pub job_type: String,
    /// How the attempt ended: `completed`, `failed`, `retried` or `cancelled`.
    pub outcome: String,
}

/// Labels of an attempt's end in a queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueAttemptLabels {
    /// The queue (a GPU queue, or a hosted provider's).
    pub queue: String,
    /// How the attempt ended: `completed`, `failed`, `retried` or `cancelled`.
    pub outcome: String,
}

/// Labels of a failed attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The queue.
    pub queue: String,
    /// The failure's code (`execution_timeout`, `poison_job`, ...), `none` without one.
    pub code: &'static str,
}

/// Labels by queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The queue.
    pub queue: String,
}

/// All callback-service metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    callbacks: Family<OutcomeLabels, Counter>,
    finished: Family<FinishedLabels, Counter>,
    gpu_seconds: Family<AttemptLabels, Counter<f64>>,
    wait: Histogram,
    run: Histogram,
    queue_attempts: Family<QueueAttemptLabels, Counter>,
    queue_run: Family<QueueLabels, Histogram>,
    poison: Family<QueueLabels, Counter>,
    quarantined: Family<QueueLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
}

/// 0.1 s .. ~ 55 min: SDXL images take seconds, WAN videos minutes.
fn run_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("gpuq")),
            callbacks: Family::default(),
            finished: Family::default(),
            gpu_seconds: Family::default(),
            wait: run_buckets(),
            run: run_buckets(),
            queue_attempts: Family::default(),
            queue_run: Family::new_with_constructor(run_buckets),
            poison: Family::default(),
            quarantined: Family::default(),
            failures: Family::default(),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register(
                "callbacks",
                "Callbacks received, by outcome",
                m.callbacks.clone(),
            );
            r.register(
                "jobs_finished",
                "Jobs that reached a terminal status, by type",
                m.finished.clone(),
            );
            r.register(
                "gpu_seconds",
                "GPU time of the attempts workers reported ended, by type and outcome",
                m.gpu_seconds.clone(),
            );
            r.register(
                "job_wait_seconds",
                "Time from acceptance to first start",
                m.wait.clone(),
            );
            r.register(
                "job_run_seconds",
                "Time from first start to the terminal report",
                m.run.clone(),
            );
            r.register(
                "queue_attempts",
                "Attempts ended, by queue and outcome (a provider's queue: its errors)",
                m.queue_attempts.clone(),
            );
            r.register(
                "queue_job_run_seconds",
                "Time from first start to the terminal report, by queue (a provider's queue: its latency)",
                m.queue_run.clone(),
            );
            r.register(
                "poison_jobs",
                "Jobs dead-lettered as poison: they failed on several different healthy workers",
                m.poison.clone(),
            );
            r.register(
                "attempt_failures",
                "Attempts that failed, by queue and code (execution_timeout: stopped at its run limit)",
                m.failures.clone(),
            );
            r.register(
                "workers_quarantined",
                "Workers quarantined after their recent attempts failed across different jobs",
                m.quarantined.clone(),
            );
        }
        m
    }
}

impl Metrics {
    /// Counts an accepted callback and what it changed.
    pub fn recorded(&self, r: &Recorded) {
        let outcome = if r.ignored.is_some() {
            "ignored"
        } else {
            "recorded"
        };
        self.callbacks
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
        if r.ignored.is_some() {
            return;
        }
        let queue = || QueueLabels {
            queue: r.queue.clone(),
        };
        if r.poison {
            self.poison.get_or_create(&queue()).inc();
        }
        if r.quarantined {
            self.quarantined.get_or_create(&queue()).inc();
        }
        if let Some(code) = r.failure_code {
            let labels = FailureLabels {
                queue: r.queue.clone(),
                code,
            };
            self.failures.get_or_create(&labels).inc();
        }
        if let Some(w) = r.wait_seconds {
            self.wait.observe(w);
        }
        if let Some((secs, outcome)) = r.attempt {
            self.queue_attempts
                .get_or_create(&QueueAttemptLabels {
                    queue: r.queue.clone(),
                    outcome: outcome.into(),
                })
                .inc();
            let labels = AttemptLabels {
                job_type: r.job_type.to_string(),
                outcome: outcome.into(),
            };
            self.gpu_seconds
                .get_or_create(&labels)
                .inc_by(secs.max(0.0));
        }
        if r.status.is_terminal() {
            let labels = FinishedLabels {
                job_type: r.job_type.to_string(),
                status: r.status.to_string(),
            };
            self.finished.get_or_create(&labels).inc();
            if let Some(run) = r.run_seconds {
                self.run.observe(run);
                self.queue_run
                    .get_or_create(&QueueLabels {
                        queue: r.queue.clone(),
                    })
                    .observe(run);
            }
        }
    }

    /// Counts a refused callback by its error code.
    pub fn rejected(&self, code: &str) {
        self.callbacks
            .get_or_create(&OutcomeLabels {
                outcome: code.into(),
            })
            .inc();
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
