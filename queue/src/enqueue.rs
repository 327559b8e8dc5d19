//! Enqueue: add a job behind its tenant's waiting jobs in a lane, with its fair-share
//! charge, idempotency and a depth limit.

use std::time::Duration;

use gpuq_schemas::{JobEnvelope, JobId, Tenant};

use crate::scripts::{query_pipeline, Call, SCRIPTS};
use crate::{Lane, Queue, QueueError, Result, WorkAhead};

/// Options of one enqueue.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// The priority lane.
    pub lane: Lane,
    /// With a key, a second enqueue within the window returns the first job's id and adds
    /// nothing. Scope it yourself (the dispatcher prefixes the user id).
    pub idempotency_key: Option<String>,
    /// Deliveries the job already had: the first claim is attempt `attempts_used + 1`.
    /// Zero for new jobs; a job restored after Redis lost it keeps its count, so it never
    /// runs more often than its `max_attempts`.
    pub attempts_used: u32,
    /// The job's expected GPU time, ms: what it costs its tenant's share. Jobs of unknown
    /// cost (0) count as 1 ms, so tenants' jobs of unknown cost alternate one for one.
    pub cost_ms: u64,
    /// The tenant's weight: a tenant of weight 3 gets three times the GPU time of one of
    /// weight 1 while both have jobs waiting. Zero counts as 1.
    pub weight: u32,
    /// The job fails unless a consumer claims it within this ([`Queue::expire_unstarted_once`]).
    pub start_within: Option<Duration>,
    /// Admission: refuse the job ([`EnqueueOutcome::WouldStartLate`]) when more jobs than
    /// this are expected to start before it.
    pub max_ahead: Option<u64>,
}

impl EnqueueOptions {
    /// What the job advances its tenant's virtual clock by: cost / weight, rounded up, at
    /// least 1.
    pub fn charge(&self) -> u64 {
        self.cost_ms.div_ceil(u64::from(self.weight.max(1))).max(1)
    }
}

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// The job is waiting.
    Enqueued {
        /// Jobs expected to start before it under the fair share (its tenant's earlier jobs,
        /// the other tenants' jobs whose start tags come first, and the high lane's backlog
        /// for a normal job), at enqueue time.
        position: u64,
        /// Waiting jobs in both lanes, this one included.
        waiting: u64,
        /// The work ahead of it, for its ETA.
        work: WorkAhead,
    },
    /// The idempotency key was already used; nothing was added.
    Duplicate {
        /// The job the key belongs to.
        existing: JobId,
    },
    /// The queue holds its maximum of waiting jobs; nothing was added.
    QueueFull {
        /// Waiting jobs.
        waiting: u64,
    },
    /// A job with this id is already in the queue; nothing was added.
    AlreadyExists,
    /// More jobs than [`EnqueueOptions::max_ahead`] would start before it; nothing was added.
    WouldStartLate {
        /// Jobs expected to start before it.
        position: u64,
        /// Their work, for the predicted wait.
        work: WorkAhead,
    },
}

/// A job ready to enqueue: the validated envelope, already serialized.
struct Prepared {
    id: JobId,
    body: String,
    idem_key: Option<String>,
    lane: Lane,
    attempts_used: u32,
    tenant: Tenant,
    charge: u64,
    start_within_ms: u64,
    max_ahead: i64,
}

impl Queue {
    fn prepare(&self, envelope: &JobEnvelope, opts: &EnqueueOptions) -> Result<Prepared> {
        if envelope.queue != self.name.as_str() {
            return Err(QueueError::WrongQueue {
                envelope: envelope.queue.clone(),
                queue: self.name.to_string(),
            });
        }
        if let Some(key) = &opts.idempotency_key {
            if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
                return Err(QueueError::InvalidIdempotencyKey);
            }
        }
        let body = serde_json::to_string(envelope)?;
        if body.len() > self.config.max_payload_bytes {
            return Err(QueueError::PayloadTooLarge {
                size: body.len(),
                max: self.config.max_payload_bytes,
            });
        }
        Ok(Prepared {
            id: envelope.job_id,
            body,
            idem_key: opts
                .idempotency_key
                .as_deref()
                .map(|k| self.keys.idempotency(k)),
            lane: opts.lane,
            attempts_used: opts.attempts_used,
            // The envelope names it, so the scripts that find a waiting job from its body
            // (cancel) agree with this one.
            tenant: envelope
                .tenant
                .clone()
                .unwrap_or_else(|| envelope.user_id.into()),
            charge: opts.charge(),
            // A deadline under a millisecond still is one (0 would mean none).
            start_within_ms: opts
                .start_within
                .map_or(0, |d| (d.as_millis() as u64).max(1)),
            max_ahead: opts
                .max_ahead
                .map_or(-1, |m| i64::try_from(m).unwrap_or(i64::MAX)),
        })
    }

    fn invocation(&self, job: &Prepared) -> Call {
        let k = &self.keys;
        let mut inv = SCRIPTS.enqueue.prepare_invoke();
        inv.key(&k.lanes()[..])
            .key(k.finish(Lane::High))
            .key(k.finish(Lane::Normal))
            .key(k.jobs())
            .key(k.signal())
            .key(k.meta())
            .key(k.deadlines());
        if let Some(key) = &job.idem_key {
            inv.key(key);
        }
        inv.arg(job.id.to_string())
            .arg(&job.body)
            .arg(self.config.max_depth.unwrap_or(0))
            .arg(self.config.idempotency_window.as_secs().max(1))
            .arg(self.config.signal_cap)
            .arg(job.attempts_used)
            .arg(job.lane.as_str())
            .arg(job.tenant.as_str())
            .arg(job.charge)
            .arg(job.start_within_ms)
            .arg(job.max_ahead);
        inv
    }

    /// Adds one job. Input errors (wrong queue, oversized payload, bad key) are returned
    /// before anything reaches Redis.
    pub async fn enqueue(
        &self,
        envelope: &JobEnvelope,
        opts: &EnqueueOptions,
    ) -> Result<EnqueueOutcome> {
        let job = self.prepare(envelope, opts)?;
        let reply: Reply = self.invocation(&job).invoke_async(&mut self.conn()).await?;
        outcome(reply)
    }

    /// Adds many jobs in one round trip (a pipeline of the same atomic script). Each job
    /// gets its own outcome; validation of all of them happens before any is sent.
    pub async fn enqueue_batch(
        &self,
        jobs: &[(JobEnvelope, EnqueueOptions)],
    ) -> Result<Vec<EnqueueOutcome>> {
        let prepared = jobs
            .iter()
            .map(|(e, o)| self.prepare(e, o))
            .collect::<Result<Vec<_>>>()?;
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for job in &prepared {
            pipe.add_command(self.invocation(job).cmd());
        }
        let replies: Vec<Reply> = query_pipeline(&pipe, &mut self.conn()).await?;
        replies.into_iter().map(outcome).collect()
    }
}

/// The reply of `enqueue_job.lua`.
type Reply = (i64, String, u64, u64, Vec<String>);

fn outcome((code, id, ahead, waiting, work): Reply) -> Result<EnqueueOutcome> {
    Ok(match code {
        1 => EnqueueOutcome::Enqueued {
            position: ahead,
            waiting: waiting + 1,
            work: WorkAhead::parse("enqueue_job", work)?,
        },
        2 => EnqueueOutcome::Duplicate {
            existing: id.parse().map_err(|_| QueueError::Protocol {
                script: "enqueue_job",
                detail: format!("bad id {id:?}"),
            })?,
        },
        3 => EnqueueOutcome::QueueFull { waiting },
        4 => EnqueueOutcome::AlreadyExists,
        5 => EnqueueOutcome::WouldStartLate {
            position: ahead,
            work: WorkAhead::parse("enqueue_job", work)?,
        },
        other => {
            return Err(QueueError::Protocol {
                script: "enqueue_job",
                detail: format!("code {other}"),
            })
        }
    })
}
