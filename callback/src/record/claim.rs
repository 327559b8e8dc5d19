//! Which reports count: a report changes a job only when it is about the job's current
//! claim in Redis (the fence, `docs/protocol.md`). A stale report (an earlier attempt, a
//! claim that already failed or was reaped, another worker) is answered `ignored` with the
//! reason and changes nothing in PostgreSQL or Redis.

use gpuq_queue::{Fence, Holding, Queue};
use gpuq_schemas::{CallbackShape, ParsedCallback};

use super::{redis_error, RecordError, Recorder, REDIS_TIMEOUT};

/// Why a report was ignored. The text is the answer's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// The job had already finished.
    Finished,
    /// A canonical report without `workerId` or `attempt`.
    NoFence,
    /// The job is not in flight (waiting, delayed, dead or gone from Redis).
    NotInFlight,
    /// Another claim holds the job: a later attempt, or another worker.
    NotCurrentClaim,
    /// The same signed request was applied before.
    Replayed,
}

impl Stale {
    /// The answer's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Finished => "job_finished",
            Self::NoFence => "no_fence",
            Self::NotInFlight => "not_in_flight",
            Self::NotCurrentClaim => "stale_fence",
            Self::Replayed => "replayed",
        }
    }
}

/// The claim a canonical report names (worker, attempt, token; a report without a token
/// names a claim made without one), or why it names none.
pub(super) fn named_fence(cb: &ParsedCallback) -> Result<(&str, Fence), Stale> {
    match (&cb.worker_id, cb.attempt) {
        (Some(worker), Some(attempt)) if !worker.is_empty() => {
            let fence = Fence {
                attempt,
                token: cb.fence.clone().unwrap_or_default(),
            };
            Ok((worker.as_str(), fence))
        }
        _ => Err(Stale::NoFence),
    }
}

impl Recorder {
    /// The claim `cb` is about, if it is the job's current one. Canonical reports must
    /// name it exactly (worker, attempt, token); legacy shapes, which carry no fence, count
    /// for whoever holds the job now (the worker they name, when they name one).
    pub(super) async fn current_claim(
        &self,
        queue: &Queue,
        cb: &ParsedCallback,
    ) -> Result<Result<Holding, Stale>, RecordError> {
        let named = match cb.shape {
            CallbackShape::Canonical => match named_fence(cb) {
                Ok(named) => Some(named),
                Err(stale) => return Ok(Err(stale)),
            },
            CallbackShape::Legacy => None,
        };
        let holding =
            redis_error(tokio::time::timeout(REDIS_TIMEOUT, queue.holding(cb.job_id)).await)?;
        let Some(holding) = holding else {
            return Ok(Err(Stale::NotInFlight));
        };
        let current = match (named, &cb.worker_id) {
            (Some((worker, fence)), _) => holding.is(worker, &fence),
            (None, Some(worker)) => holding.consumer == *worker,
            (None, None) => true,
        };
        Ok(if current {
            Ok(holding)
        } else {
            Err(Stale::NotCurrentClaim)
        })
    }
}

/// When a claim of `job` was made (Redis' `since_ms`), as a time: the start of its attempt,
/// whether or not its worker reported `processing` (or reported it a moment later). Never
/// before the job existed: Redis' clock may run behind PostgreSQL's.
pub(super) fn claimed_at(
    since_ms: Option<u64>,
    job: &super::job::Job,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let at = chrono::DateTime::from_timestamp_millis(i64::try_from(since_ms?).ok()?)?;
    Some(at.max(job.created_at))
}
