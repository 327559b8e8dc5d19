//! Quarantine (ADR 0019): consumers that may not claim, because their recent attempts
//! failed across different jobs. The callback service decides and records it in
//! PostgreSQL; the queue enforces it (`claim_jobs.lua` refuses such a consumer with
//! [`QueueError::Quarantined`]). The dispatcher's reconciler makes Redis agree with the
//! record, and an admin releases it.

use crate::{ConsumerName, Queue, QueueError, Result};

/// Where a consumer's quarantine lives: a field of the queue's share-state hash, read by
/// the claim in the call that reads the concurrency caps (prelude.lua, "Quarantine").
const FIELD: &str = "quarantine:";

/// Longest reason kept in Redis (the full evidence is in PostgreSQL).
const MAX_REASON: usize = 300;

/// The marker of a refused claim in Redis's error reply.
const REFUSED: &str = "gpuq: quarantined: ";

impl Queue {
    /// Stops `consumer` from claiming, with `reason` (shortened to 300 characters) as what
    /// its claims are told. Its jobs in flight are left alone.
    pub async fn quarantine(&self, consumer: &ConsumerName, reason: &str) -> Result<()> {
        let reason: String = reason.chars().take(MAX_REASON).collect();
        redis::cmd("HSET")
            .arg(self.keys.vtime())
            .arg(format!("{FIELD}{consumer}"))
            .arg(reason)
            .query_async::<()>(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Lets `consumer` claim again. Returns whether it was quarantined.
    pub async fn release_quarantine(&self, consumer: &ConsumerName) -> Result<bool> {
        let removed: u32 = redis::cmd("HDEL")
            .arg(self.keys.vtime())
            .arg(format!("{FIELD}{consumer}"))
            .query_async(&mut self.conn())
            .await?;
        Ok(removed == 1)
    }

    /// Every quarantined consumer of this queue, with the reason its claims are told.
    pub async fn quarantined(&self) -> Result<Vec<(String, String)>> {
        let mut conn = self.conn();
        let mut cursor = 0u64;
        let mut out = Vec::new();
        loop {
            let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(self.keys.vtime())
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{FIELD}*"))
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            out.extend(page.into_iter().filter_map(|(field, reason)| {
                field.strip_prefix(FIELD).map(|c| (c.to_owned(), reason))
            }));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.sort();
        Ok(out)
    }
}

/// The reason of a claim refused because its consumer is quarantined.
pub(crate) fn refused(e: &redis::RedisError) -> Option<QueueError> {
    let text = e.to_string();
    let at = text.find(REFUSED)?;
    Some(QueueError::Quarantined(
        text[at + REFUSED.len()..].to_owned(),
    ))
}
