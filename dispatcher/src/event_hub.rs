//! [`EventHub`]: one Redis subscription per dispatcher process wakes every open event
//! stream. Publishers announce each new event's job id on
//! [`gpuq_queue::events_channel`]; the hub bumps that job's watch; a woken stream reads
//! what is new from the job's Redis Stream on the shared connection. So open streams cost
//! memory, not Redis connections (one connection per process, whatever the number of
//! streams).
//!
//! Pub/Sub may drop messages (a reconnect, a slow subscriber): the stream stays the
//! record, every stream also looks on its own every few seconds, and after a reconnect the
//! hub wakes every stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use gpuq_queue::RedisConn;
use gpuq_schemas::JobId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Wakes event streams when their job has news.
#[derive(Debug, Default)]
pub struct EventHub {
    watchers: Mutex<HashMap<JobId, watch::Sender<u64>>>,
}

/// A stream's subscription to its job's news; dropping it unsubscribes.
pub struct JobWatch {
    hub: Arc<EventHub>,
    job: JobId,
    /// Taken (and dropped) under the hub's lock when the watch ends, so the last one out
    /// always sees no receivers left.
    rx: Option<watch::Receiver<u64>>,
}

impl EventHub {
    /// A hub whose subscriber task follows `channel` on the Redis at `url` until `stop`;
    /// `conn` publishes the subscription's own heartbeats.
    pub fn start(
        url: String,
        channel: String,
        conn: RedisConn,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let hub = Arc::new(Self::default());
        tokio::spawn(Arc::clone(&hub).subscribe(url, channel, conn, stop));
        hub
    }

    /// Watches `job`: [`JobWatch::changed`] resolves when news may have arrived.
    pub fn watch(self: &Arc<Self>, job: JobId) -> JobWatch {
        let mut watchers = self.lock();
        let rx = watchers
            .entry(job)
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe();
        JobWatch {
            hub: Arc::clone(self),
            job,
            rx: Some(rx),
        }
    }

    /// Jobs being watched now.
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, watch::Sender<u64>>> {
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self, job: Option<JobId>) {
        let watchers = self.lock();
        match job {
            Some(job) => {
                if let Some(tx) = watchers.get(&job) {
                    tx.send_modify(|n| *n += 1);
                }
            }
            None => watchers.values().for_each(|tx| tx.send_modify(|n| *n += 1)),
        }
    }

    /// The subscriber: (re)connects with backoff (to the next cluster seed each time),
    /// and wakes every stream after each (re)connect, since messages published meanwhile
    /// were lost.
    async fn subscribe(
        self: Arc<Self>,
        url: String,
        channel: String,
        conn: RedisConn,
        stop: CancellationToken,
    ) {
        let mut wait = Duration::from_millis(100);
        for attempt in 0usize.. {
            let lost = match self.follow(&url, attempt, &channel, &conn, &stop).await {
                Ok(()) => return,
                Err(lost) => lost,
            };
            if lost.subscribed {
                wait = Duration::from_millis(100);
            }
            tracing::warn!(error = %lost.error, retry_in_ms = wait.as_millis() as u64, "event subscription lost; reconnecting");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Follows the channel until `stop` (Ok) or the subscription is lost (Err). Every
    /// [`HEARTBEAT`] it publishes a token on its own channel: a subscription that has not
    /// heard it back by the next beat is dead (a connection gone without a reset).
    async fn follow(
        &self,
        url: &str,
        attempt: usize,
        channel: &str,
        conn: &RedisConn,
        stop: &CancellationToken,
    ) -> Result<(), Lost> {
        let lost = |subscribed| move |error: redis::RedisError| Lost { subscribed, error };
        let silent = |what: &'static str| redis::RedisError::from((redis::ErrorKind::Io, what));
        let client = gpuq_queue::pubsub_client(url, attempt).map_err(lost(false))?;
        let mut pubsub = client.get_async_pubsub().await.map_err(lost(false))?;
        pubsub.subscribe(channel).await.map_err(lost(false))?;
        self.wake(None);
        let mut messages = pubsub.on_message();
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut awaited: Option<String> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = beat.tick() => {
                    if awaited.is_some() {
                        return Err(lost(true)(silent("the subscription did not hear its heartbeat")));
                    }
                    let token = format!("heartbeat-{}", uuid::Uuid::new_v4().simple());
                    let publish = redis::cmd("PUBLISH")
                        .arg(channel)
                        .arg(&token)
                        .query_async::<i64>(&mut conn.clone())
                        .await;
                    // A failed publish says nothing about the subscription: try next beat.
                    awaited = publish.is_ok().then_some(token);
                }
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        return Err(lost(true)(silent("subscription closed")));
                    };
                    let payload = msg.get_payload::<String>().unwrap_or_default();
                    if awaited.as_deref() == Some(payload.as_str()) {
                        awaited = None;
                    } else if let Ok(job) = payload.parse() {
                        self.wake(Some(job));
                    }
                }
            }
        }
    }
}

impl JobWatch {
    /// Marks what is known as seen: news after this call makes [`Self::changed`] resolve.
    pub fn seen(&mut self) {
        if let Some(rx) = self.rx.as_mut() {
            rx.borrow_and_update();
        }
    }

    /// Resolves when news arrived since [`Self::seen`].
    pub async fn changed(&mut self) {
        let Some(rx) = self.rx.as_mut() else {
            return std::future::pending().await;
        };
        if rx.changed().await.is_err() {
            // The sender is never dropped while a watch exists; wait forever rather than spin.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        let mut watchers = self.hub.lock();
        drop(self.rx.take());
        if watchers
            .get(&self.job)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            watchers.remove(&self.job);
        }
    }
}

/// How often the subscription checks itself (see [`EventHub::follow`]).
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Why a subscription ended: whether it had subscribed (then the backoff starts over).
struct Lost {
    subscribed: bool,
    error: redis::RedisError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watch_wakes_on_news_for_its_job_only_and_is_forgotten_when_dropped() {
        let hub = Arc::new(EventHub::default());
        let (a, b) = (JobId::new(), JobId::new());
        let mut wa = hub.watch(a);
        let wb = hub.watch(b);
        wa.seen();
        hub.wake(Some(b));
        let early = tokio::time::timeout(Duration::from_millis(50), wa.changed()).await;
        assert!(early.is_err(), "news for another job does not wake it");
        hub.wake(Some(a));
        tokio::time::timeout(Duration::from_secs(1), wa.changed())
            .await
            .expect("woken");
        let wa2 = hub.watch(a);
        drop(wa);
        assert_eq!(hub.watched(), 2, "a second watcher keeps the job watched");
        drop((wa2, wb));
        assert_eq!(hub.watched(), 0);
    }
}
