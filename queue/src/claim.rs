//! Claim: lease waiting jobs to a consumer, at once ([`Queue::claim`]) or waiting for work
//! without polling ([`Claimer::claim`]).

use std::time::Duration;

use gpuq_schemas::{JobEnvelope, JobId};

use crate::scripts::SCRIPTS;
use crate::{ConsumerName, Fence, Queue, QueueError, RedisConn, Result};

/// A job leased to a consumer. Keep it alive with [`Queue::heartbeat`]; finish it with
/// [`Queue::ack`], [`Queue::fail`] or [`Queue::release`].
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// The job.
    pub id: JobId,
    /// This delivery's attempt number, from 1.
    pub attempt: u32,
    /// The envelope exactly as enqueued (its `attempt` field is 0; use [`Self::envelope`]).
    pub payload: String,
    /// The claim's token: with the attempt, the fence every report of this delivery
    /// carries ([`Self::fence`]).
    pub token: String,
}

impl ClaimedJob {
    /// Decodes the envelope and sets its attempt number. A job whose payload does not
    /// decode should be failed as not retryable.
    pub fn envelope(&self) -> Result<JobEnvelope> {
        let mut env: JobEnvelope = serde_json::from_str(&self.payload)?;
        env.attempt = self.attempt;
        Ok(env)
    }

    /// This delivery's fence.
    pub fn fence(&self) -> Fence {
        Fence {
            attempt: self.attempt,
            token: self.token.clone(),
        }
    }
}

/// What a worker tells a claim about its models (ADR 0020): among the next jobs in fair
/// order it gets only ones it can run, those whose model it has loaded first, and any job
/// that waited past `max_wait` before all others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route {
    /// Checkpoints and LoRAs loaded now (a job's model is its envelope's `model`, else
    /// `model_variant`; its LoRAs are its envelope's `loras`).
    pub warm: Vec<String>,
    /// The models it can run at all; None: any.
    pub runnable: Option<Vec<String>>,
    /// A job that waited this long goes to any worker that can run it; zero: never.
    pub max_wait: Duration,
    /// The worker's GPU memory, GiB: a job whose envelope needs more (`vram_gb`) is never
    /// given to it. None: not said, any job fits.
    pub vram_gb: Option<u32>,
}

/// Whether `name` can be a model name of a [`Route`]: 1 to 128 bytes without commas,
/// whitespace or `*` (a claim receives the names comma-separated, `*` meaning any). The one
/// rule the SDK's worker settings and the dispatcher's checkpoint lists also apply.
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.contains(|c: char| c == ',' || c.is_whitespace() || c == '*')
}

impl Route {
    /// Checks the model names ([`valid_model_name`]) and that some model is runnable (a
    /// worker that runs none would take wake-ups it cannot use).
    fn check(&self) -> Result<()> {
        if self.runnable.as_ref().is_some_and(Vec::is_empty) {
            return Err(QueueError::InvalidModel(
                "(none: a routed worker runs at least one model, or any)".into(),
            ));
        }
        let names = self.warm.iter().chain(self.runnable.iter().flatten());
        match names.into_iter().find(|n| !valid_model_name(n)) {
            Some(bad) => Err(QueueError::InvalidModel(bad.chars().take(64).collect())),
            None => Ok(()),
        }
    }

    /// ARGV[7..10] of claim_jobs.lua.
    fn args(&self) -> [String; 4] {
        [
            self.warm.join(","),
            self.runnable
                .as_ref()
                .map_or_else(|| "*".to_owned(), |r| r.join(",")),
            self.max_wait.as_millis().to_string(),
            self.vram_gb.unwrap_or(0).to_string(),
        ]
    }
}

impl Queue {
    /// Leases up to `max` waiting jobs (high lane first) to `consumer`, without waiting,
    /// under a fresh fence token.
    pub async fn claim(&self, consumer: &ConsumerName, max: usize) -> Result<Vec<ClaimedJob>> {
        self.claim_routed(consumer, max, None, None).await
    }

    /// [`Self::claim`] by a consumer that runs `slots` jobs at once (its concurrency), which
    /// it advertises for the queue's capacity ([`crate::QueueStats::live_slots`]).
    pub async fn claim_as(
        &self,
        consumer: &ConsumerName,
        max: usize,
        slots: Option<u32>,
    ) -> Result<Vec<ClaimedJob>> {
        self.claim_routed(consumer, max, slots, None).await
    }

    /// [`Self::claim_as`] by a worker that routes by model ([`Route`]).
    pub async fn claim_routed(
        &self,
        consumer: &ConsumerName,
        max: usize,
        slots: Option<u32>,
        route: Option<&Route>,
    ) -> Result<Vec<ClaimedJob>> {
        if let Some(route) = route {
            route.check()?;
        }
        let k = &self.keys;
        let token = Fence::new_token();
        let mut script = SCRIPTS.claim.prepare_invoke();
        script
            .key(&k.lanes()[..])
            .key(k.jobs())
            .key(k.meta())
            .key(k.leases())
            .key(k.consumers())
            .key(k.signal())
            .key(k.slots())
            .arg(consumer.as_str())
            .arg(self.config.lease.as_millis() as u64)
            .arg(max.max(1))
            .arg(self.config.signal_cap)
            .arg(&token);
        match slots {
            // claim_jobs.lua refuses a figure out of range; a worker must still claim.
            Some(slots) => script.arg(slots.clamp(1, 100_000)),
            None => script.arg(""),
        };
        if let Some(route) = route {
            for arg in route.args() {
                script.arg(arg);
            }
        }
        let reply: Vec<(String, u32, String)> = script
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| crate::quarantine::refused(&e).unwrap_or(e.into()))?;
        parse_claims(reply, &token)
    }

    /// A claimer for `consumer` with its own connection: blocking on Redis must not stall
    /// the shared multiplexed connection other tasks pipeline on.
    pub async fn claimer(&self, consumer: ConsumerName) -> Result<Claimer> {
        let conn = self.target.blocking_connection().await?;
        Ok(Claimer {
            queue: self.clone(),
            consumer,
            slots: None,
            route: None,
            conn: Some(conn),
        })
    }
}

fn parse_claims(reply: Vec<(String, u32, String)>, token: &str) -> Result<Vec<ClaimedJob>> {
    reply
        .into_iter()
        .map(|(id, attempt, payload)| {
            let id = id.parse().map_err(|_| QueueError::Protocol {
                script: "claim_jobs",
                detail: format!("bad id {id:?}"),
            })?;
            Ok(ClaimedJob {
                id,
                attempt,
                payload,
                token: token.to_owned(),
            })
        })
        .collect()
}

/// Claims for one consumer, sleeping on Redis (`BLPOP` on the queue's signal list) while
/// there is nothing to do. A new job wakes an idle claimer within one round trip.
pub struct Claimer {
    queue: Queue,
    consumer: ConsumerName,
    /// Advertised with each claim ([`Queue::claim_as`]).
    slots: Option<u32>,
    /// Sent with each claim when set ([`Queue::claim_routed`]).
    route: Option<Route>,
    /// Dropped after an error and reopened on the next call.
    conn: Option<RedisConn>,
}

impl Claimer {
    /// The consumer this claimer leases jobs to.
    pub fn consumer(&self) -> &ConsumerName {
        &self.consumer
    }

    /// Advertises that this consumer runs `slots` jobs at once (its concurrency).
    pub fn with_slots(mut self, slots: u32) -> Self {
        self.slots = Some(slots);
        self
    }

    /// Routes the next claims by model ([`Route`]); None: plain fair order.
    pub fn set_route(&mut self, route: Option<Route>) {
        self.route = route;
    }

    /// Leases up to `max` jobs, waiting at most `wait` for the first one. Returns an empty
    /// list when the wait ran out. Cancel-safe: dropping the future loses no job (a job is
    /// only leased inside the claim script, whose reply is then returned at once).
    pub async fn claim(&mut self, max: usize, wait: Duration) -> Result<Vec<ClaimedJob>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let jobs = self
                .queue
                .claim_routed(&self.consumer, max, self.slots, self.route.as_ref())
                .await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !jobs.is_empty() || left.is_zero() {
                return Ok(jobs);
            }
            self.wait_for_signal(left).await?;
        }
    }

    async fn wait_for_signal(&mut self, left: Duration) -> Result<()> {
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self
                .conn
                .insert(self.queue.target.blocking_connection().await?),
        };
        // BLPOP's timeout has 1 ms resolution; cap a single block so a lost token (a
        // consumer that died between BLPOP and claim) costs at most a few seconds.
        let secs = left.min(Duration::from_secs(5)).as_secs_f64().max(0.001);
        let signal = self.queue.keys.signal();
        let res: redis::RedisResult<Option<(String, String)>> = redis::cmd("BLPOP")
            .arg(signal)
            .arg(secs)
            .query_async(conn)
            .await;
        if let Err(e) = res {
            self.conn = None;
            return Err(e.into());
        }
        Ok(())
    }
}
