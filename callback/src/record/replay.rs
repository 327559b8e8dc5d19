//! Replays: the same signed request applied twice changes nothing. Every accepted
//! signature is remembered in Redis for twice the signature window (a request older than
//! the window is refused as stale anyway); a signature seen before is answered `ignored`
//! with reason `replayed`. The SDK signs every retry afresh, so its own retries are never
//! taken for replays.

use std::time::Duration;

use gpuq_schemas::JobId;

use super::{ignored, job, redis_error, RecordError, Recorded, Recorder, Stale, REDIS_TIMEOUT};

impl Recorder {
    /// Remembers `signature`; `false` when it was already remembered (a replay).
    pub async fn first_sight(&self, signature: &str, keep: Duration) -> Result<bool, RecordError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.seen_key(signature))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(keep.as_secs().max(1));
        let set = cmd.query_async::<Option<String>>(&mut conn);
        let reply = redis_error(tokio::time::timeout(REDIS_TIMEOUT, set).await)?;
        Ok(reply.is_some())
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
        Ok(ignored(&job::peek(&self.pool, job).await?, Stale::Replayed))
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
