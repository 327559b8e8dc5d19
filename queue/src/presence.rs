//! Presence checks for reconciliation: which jobs Redis still knows, and which it holds.

use gpuq_schemas::JobId;

use crate::{Queue, Result};

impl Queue {
    /// For each id, whether Redis holds the job (waiting, in flight, delayed or dead).
    /// One `HMGET` of the job-body hash; O(number of ids).
    pub async fn known(&self, ids: &[JobId]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = ids.iter().map(JobId::to_string).collect();
        let bodies: Vec<Option<redis::Value>> = redis::cmd("HMGET")
            .arg(self.keys.jobs())
            .arg(&fields)
            .query_async(&mut self.conn())
            .await?;
        Ok(bodies.into_iter().map(|b| b.is_some()).collect())
    }

    /// For each id, whether it is in flight (leased to a consumer now): `ZMSCORE` of the
    /// leases.
    pub async fn leased(&self, ids: &[JobId]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = ids.iter().map(JobId::to_string).collect();
        let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
            .arg(self.keys.leases())
            .arg(&fields)
            .query_async(&mut self.conn())
            .await?;
        Ok(scores.into_iter().map(|s| s.is_some()).collect())
    }

    /// One page of the ids Redis holds, by `HSCAN` of the job-body hash: pass the returned
    /// cursor back in; a cursor of 0 means the scan is complete. (Plain `HSCAN`, not
    /// `NOVALUES`, which needs Redis 7.4.)
    pub async fn scan_ids(&self, cursor: u64, count: usize) -> Result<(u64, Vec<JobId>)> {
        let (next, pairs): (u64, Vec<(String, redis::Value)>) = redis::cmd("HSCAN")
            .arg(self.keys.jobs())
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn())
            .await?;
        Ok((
            next,
            pairs.iter().filter_map(|(id, _)| id.parse().ok()).collect(),
        ))
    }
}

/// A job in flight, for admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The job.
    pub id: JobId,
    /// Its holder.
    pub consumer: String,
    /// The attempt being run.
    pub attempt: u32,
    /// When the holder claimed it (ms since epoch).
    pub since_ms: u64,
    /// When its lease runs out unless renewed (ms since epoch).
    pub lease_until_ms: u64,
}

/// A consumer seen recently, for admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Its name.
    pub name: String,
    /// When it last claimed or heartbeated (ms since epoch).
    pub last_seen_ms: u64,
}

impl Queue {
    /// Up to `limit` jobs in flight, soonest lease expiry first.
    pub async fn in_flight(&self, limit: usize) -> Result<Vec<InFlight>> {
        let mut conn = self.conn();
        let leases: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.keys.leases())
            .arg(0)
            .arg(limit.max(1) as i64 - 1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = leases.iter().map(|(id, _)| id.as_str()).collect();
        let metas: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.meta())
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        Ok(leases
            .iter()
            .zip(metas)
            .filter_map(|((id, until), meta)| {
                let meta = meta?;
                let mut parts = meta.split('|');
                let attempt = parts.next()?.parse().ok()?;
                let _lane = parts.next()?;
                let consumer = parts.next()?.to_owned();
                let since_ms = parts.next()?.parse().ok()?;
                Some(InFlight {
                    id: id.parse().ok()?,
                    consumer,
                    attempt,
                    since_ms,
                    lease_until_ms: *until as u64,
                })
            })
            .collect())
    }

    /// Consumers seen within the liveness window, most recent first.
    pub async fn live_consumers(&self) -> Result<Vec<Consumer>> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let min = now_ms.saturating_sub(self.config.consumer_ttl.as_millis() as u64);
        let seen: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.keys.consumers())
            .arg("+inf")
            .arg(min)
            .arg("BYSCORE")
            .arg("REV")
            .arg("WITHSCORES")
            .query_async(&mut self.conn())
            .await?;
        Ok(seen
            .into_iter()
            .map(|(name, at)| Consumer {
                name,
                last_seen_ms: at as u64,
            })
            .collect())
    }
}

impl Queue {
    /// For each id, `Some(last error)` when it sits in the dead-letter set (`ZMSCORE`,
    /// Redis 6.2+, and the errors hash, in one round trip), `None` otherwise.
    pub async fn dead_reasons(&self, ids: &[JobId]) -> Result<Vec<Option<String>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = ids.iter().map(JobId::to_string).collect();
        let (scores, errors): (Vec<Option<f64>>, Vec<Option<String>>) = redis::pipe()
            .cmd("ZMSCORE")
            .arg(self.keys.dead())
            .arg(&fields)
            .cmd("HMGET")
            .arg(self.keys.errors())
            .arg(&fields)
            .query_async(&mut self.conn())
            .await?;
        Ok(scores
            .into_iter()
            .zip(errors)
            .map(|(score, error)| {
                score.map(|_| error.unwrap_or_else(|| "dead-lettered in the queue".into()))
            })
            .collect())
    }
}
