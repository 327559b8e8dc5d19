//! Replays: the same signed request applied twice changes nothing. Every signature is
//! remembered in Redis for twice the signature window (a request older than the window is
//! refused as stale anyway): `pending` while its request is applied, `done` once it was.
//! A signature seen `done` is answered `ignored` with reason `replayed`; one still
//! `pending` gets a 503, so a retry (signed afresh) goes through the fence like any report
//! and a copy that raced a failing first request is never answered as delivered. The SDK
//! signs every retry afresh, so its own retries are never taken for replays.

use std::time::Duration;

use gpuq_schemas::JobId;

use super::{ignored, redis_error, RecordError, Recorded, Recorder, Stale, REDIS_TIMEOUT};

/// What [`Recorder::first_sight`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sight {
    /// Never seen: apply it.
    First,
    /// Seen, and still being applied by the first copy.
    Pending,
    /// Seen and applied.
    Done,
}

const PENDING: &str = "pending";
const DONE: &str = "done";

impl Recorder {
    /// Remembers `signature` as `pending` unless it was seen before; answers what was
    /// seen (`SET NX GET`, Redis 7).
    pub async fn first_sight(&self, signature: &str, keep: Duration) -> Result<Sight, RecordError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.seen_key(signature))
            .arg(PENDING)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(keep.as_secs().max(1));
        let set = cmd.query_async::<Option<String>>(&mut conn);
        let before = redis_error(tokio::time::timeout(REDIS_TIMEOUT, set).await)?;
        Ok(match before.as_deref() {
            None => Sight::First,
            Some(PENDING) => Sight::Pending,
            Some(_) => Sight::Done,
        })
    }

    /// Marks `signature` applied. Not awaited by the answer: should it be lost, a copy
    /// sent later gets a 503 instead of `replayed`, and its retry meets the fence.
    pub fn applied(&self, signature: &str) {
        let mut conn = self.conn.clone();
        let key = self.seen_key(signature);
        tokio::spawn(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(DONE).arg("XX").arg("KEEPTTL");
            let set = cmd.query_async::<Option<String>>(&mut conn);
            if let Err(e) = redis_error(tokio::time::timeout(REDIS_TIMEOUT, set).await) {
                tracing::warn!(error = %e, "marking a callback signature applied failed");
            }
        });
    }

    /// Forgets `signature` after its request could not be recorded (a 4xx or 5xx), so the
    /// same bytes may be sent again. Best effort: a leftover mark only makes the resent
    /// request `ignored`, and the worker's next retry is signed afresh.
    pub async fn forget_sight(&self, signature: &str) {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.seen_key(signature));
        let del = cmd.query_async::<i64>(&mut conn);
        if let Err(e) = redis_error(tokio::time::timeout(REDIS_TIMEOUT, del).await) {
            tracing::warn!(error = %e, "forgetting a callback signature failed");
        }
    }

    /// The answer to a replay: the job as it is, nothing changed.
    pub async fn replayed(&self, job: JobId) -> Result<Recorded, RecordError> {
        Ok(ignored(&self.peek(job).await?, Stale::Replayed))
    }

    /// One key per signature, whatever case or padding the header used.
    fn seen_key(&self, signature: &str) -> String {
        let signature = signature.trim();
        let hex = signature.strip_prefix("sha256=").unwrap_or(signature);
        format!(
            "{}:callbacks:seen:{}",
            self.namespace,
            hex.to_ascii_lowercase()
        )
    }
}
