//! How long jobs really take, per type, for the enqueue answer's `etaSeconds`.
//!
//! The measure is a job's run time, `completed_at - started_at`, over the type's last 50
//! completions (PostgreSQL, one indexed query for all types, refreshed at most every 30 s).
//! It is blended with the catalog's typical duration as if that were [`PRIOR_WEIGHT`]
//! completions, so a handful of samples moves the figure without swinging it, and a type
//! nobody ran yet keeps the catalog's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use gpuq_schemas::catalog::CATALOG;
use gpuq_schemas::JobType;

/// How often the figures are read again.
const REFRESH: Duration = Duration::from_secs(30);
/// Completions per type the mean is taken over.
const WINDOW: i64 = 50;
/// The catalog's typical duration counts as this many completions.
const PRIOR_WEIGHT: f64 = 5.0;

/// One type's measure: completions seen (up to the window) and their mean run time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measured {
    /// Completions the mean is over.
    pub samples: u32,
    /// Their mean run time, seconds.
    pub mean_seconds: f64,
}

/// Per-type service times, cached.
#[derive(Default)]
pub struct ServiceTimes {
    cache: Mutex<Option<(Instant, HashMap<JobType, Measured>)>>,
}

impl ServiceTimes {
    /// Expected run times for an enqueue of `job_type`, seconds: a job of its queue (the
    /// jobs ahead) and one of its own type. One cache read.
    pub async fn estimate(&self, db: &PgPool, job_type: JobType) -> (f64, f64) {
        let measured = self.measured(db).await;
        let own = blend(
            job_type,
            measured.get(&job_type).copied().unwrap_or_default(),
        );
        (queue_mean(&measured, job_type.spec().queue), own)
    }

    /// Expected run time of a job of `queue`, seconds (see [`queue_mean`]).
    pub async fn queue_seconds(&self, db: &PgPool, queue: &str) -> f64 {
        queue_mean(&self.measured(db).await, queue)
    }

    async fn measured(&self, db: &PgPool) -> HashMap<JobType, Measured> {
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, figures)) = cache.as_ref() {
                if at.elapsed() < REFRESH {
                    return figures.clone();
                }
            }
        }
        let figures = match read(db).await {
            Ok(figures) => figures,
            Err(e) => {
                // The catalog's figures stand in until the next refresh: a database that is
                // down must not cost every enqueue and scrape a pool timeout.
                tracing::warn!(error = %e, "service times unavailable; using the catalog's");
                HashMap::new()
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((Instant::now(), figures.clone()));
        }
        figures
    }
}

/// A job of `queue`: its types' figures weighted by how often each completed recently
/// (equally when none did).
fn queue_mean(measured: &HashMap<JobType, Measured>, queue: &str) -> f64 {
    let (mut weighted, mut weights) = (0.0, 0.0);
    for spec in CATALOG.iter().filter(|s| s.queue == queue) {
        let m = measured.get(&spec.job_type).copied().unwrap_or_default();
        let weight = f64::from(m.samples).max(1.0);
        weighted += weight * blend(spec.job_type, m);
        weights += weight;
    }
    if weights > 0.0 {
        weighted / weights
    } else {
        0.0
    }
}

/// The catalog's typical duration, moved toward what was measured.
pub fn blend(job_type: JobType, m: Measured) -> f64 {
    let typical = f64::from(job_type.spec().typical_seconds);
    let n = f64::from(m.samples);
    (n * m.mean_seconds + PRIOR_WEIGHT * typical) / (n + PRIOR_WEIGHT)
}

async fn read(db: &PgPool) -> Result<HashMap<JobType, Measured>, sqlx::Error> {
    let types: Vec<&str> = CATALOG.iter().map(|s| s.job_type.as_str()).collect();
    // Uses jobs_completed_by_type (job_type, completed_at DESC) WHERE status = 'completed'.
    let rows: Vec<(String, i64, Option<f64>)> = sqlx::query_as(
        "SELECT t.job_type, count(r.secs), avg(r.secs) \
         FROM unnest($1::text[]) AS t(job_type) \
         CROSS JOIN LATERAL ( \
             SELECT extract(epoch FROM j.completed_at - j.started_at)::float8 AS secs \
             FROM jobs j \
             WHERE j.job_type = t.job_type AND j.status = 'completed' \
               AND j.started_at IS NOT NULL AND j.completed_at >= j.started_at \
             ORDER BY j.completed_at DESC LIMIT $2) r \
         GROUP BY t.job_type",
    )
    .bind(&types)
    .bind(WINDOW)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(t, n, mean)| {
            Some((
                t.parse().ok()?,
                Measured {
                    samples: u32::try_from(n).ok()?,
                    mean_seconds: mean?,
                },
            ))
        })
        .collect())
}

/// What a job costs its tenant's fair share, GPU milliseconds: its type's expected run time
/// (`own`, seconds), scaled by its image count against the type's default (the runs the
/// measure comes from mostly had the default count).
pub fn cost_ms(job_type: JobType, own: f64, images: u32) -> u64 {
    let default = job_type.spec().defaults.num_images.max(1);
    (own * 1000.0 * f64::from(images.max(1)) / f64::from(default)).round() as u64
}

/// Admission for a start deadline: how many jobs may be ahead of one for it to start within
/// `within` seconds, the jobs ahead sharing `slots`, each taking `per_job_ahead`. None when
/// no worker is live (a pool scaled to zero cannot be predicted; the deadline still holds).
pub fn max_ahead(within: u64, slots: u64, per_job_ahead: f64) -> Option<u64> {
    (slots > 0 && per_job_ahead > 0.0)
        .then(|| (within as f64 * slots as f64 / per_job_ahead).floor() as u64)
}

/// Seconds until a job `ahead` places back finishes: the jobs ahead share `slots`, each
/// taking `per_job_ahead`, then the job's own `own` run. For a job whose work ahead is not
/// known (see [`eta_from_work`]).
pub fn eta_seconds(ahead: u64, slots: u64, per_job_ahead: f64, own: f64) -> u64 {
    let waiting = ahead as f64 / slots.max(1) as f64 * per_job_ahead;
    (waiting + own).ceil().max(0.0) as u64
}

/// Seconds until a job finishes, from the work ahead of it under the fair share: the GPU
/// milliseconds of its lane's jobs ahead (each costed by its type's measured run time at its
/// enqueue) and `high_jobs` of the high lane (each `per_job_ahead`), shared by `slots`, then
/// its own `own` run (0 for its start).
pub fn eta_from_work(gpu_ms: u64, high_jobs: u64, slots: u64, per_job_ahead: f64, own: f64) -> u64 {
    let ahead = gpu_ms as f64 / 1000.0 + high_jobs as f64 * per_job_ahead;
    (ahead / slots.max(1) as f64 + own).ceil().max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unmeasured_type_keeps_the_catalogs_figure_and_samples_pull_toward_the_measure() {
        let t = JobType::VideoHigh;
        assert_eq!(blend(t, Measured::default()), 280.0);
        let fast = Measured {
            samples: 45,
            mean_seconds: 80.0,
        };
        assert_eq!(blend(t, fast), (45.0 * 80.0 + 5.0 * 280.0) / 50.0);
    }

    #[test]
    fn a_job_costs_its_types_run_time_scaled_by_its_images() {
        let t = JobType::SdxlImageFast;
        assert_eq!(cost_ms(t, 0.6, t.spec().defaults.num_images), 600);
        assert_eq!(cost_ms(t, 0.6, 4 * t.spec().defaults.num_images), 2_400);
    }

    #[test]
    fn a_deadline_admits_as_many_jobs_ahead_as_the_slots_finish_in_time() {
        // Two slots, 10 s per job: 60 s lets 12 jobs ahead start first.
        assert_eq!(max_ahead(60, 2, 10.0), Some(12));
        assert_eq!(max_ahead(5, 1, 10.0), Some(0));
        assert_eq!(
            max_ahead(60, 0, 10.0),
            None,
            "no live worker: no prediction"
        );
    }

    #[test]
    fn waiting_jobs_share_the_live_slots() {
        // The case: 48 video_high ahead, two slots.
        assert_eq!(eta_seconds(48, 2, 280.0, 280.0), 24 * 280 + 280);
        assert_eq!(eta_seconds(0, 2, 280.0, 280.0), 280);
        assert_eq!(eta_seconds(5, 0, 10.0, 1.5), 52);
    }

    #[test]
    fn the_work_ahead_counts_by_what_it_costs_not_by_how_many_jobs_it_is() {
        // 10 cheap jobs (0.6 s each) and 2 videos (280 s each) ahead, two slots.
        let gpu_ms = 10 * 600 + 2 * 280_000;
        assert_eq!(eta_from_work(gpu_ms, 0, 2, 50.0, 0.0), 283);
        // Plus three high-lane jobs of the queue's mean run time.
        assert_eq!(eta_from_work(gpu_ms, 3, 2, 50.0, 0.6), 283 + 75 + 1);
        assert_eq!(
            eta_from_work(0, 0, 0, 50.0, 0.6),
            1,
            "no live slot counts as one"
        );
    }
}
