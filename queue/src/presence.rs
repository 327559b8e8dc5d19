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
