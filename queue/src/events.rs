//! Job event streams: one capped Redis Stream per job, so a reader can resume from the last
//! event id it saw (SSE `Last-Event-ID`) without losing what happened meanwhile.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use gpuq_schemas::{JobEvent, JobId};

use crate::{RedisConn, Result};

/// Events kept per job; a job has a handful of status changes and throttled progress.
const MAX_EVENTS: usize = 200;
/// A job's stream is dropped this long after its last event.
const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Where a job's events live: `<namespace>:events:{<job id>}`, a STREAM whose entries have
/// one field, `e`, holding the [`JobEvent`] JSON.
pub fn events_key(namespace: &str, job: JobId) -> String {
    format!("{namespace}:events:{{{job}}}")
}

/// The channel on which every new event's job id is published: readers learn of new
/// events from one subscription per process and read them from the stream (the stream is
/// the record, resumable; the channel is only a wake-up and may drop messages).
pub fn events_channel(namespace: &str) -> String {
    format!("{namespace}:events")
}

/// Appends `event` to its job's stream and announces it on [`events_channel`]; returns the
/// entry id (the SSE event id). One round trip on a single node: the pipeline runs in order,
/// so the entry exists before a woken reader looks for it.
pub async fn publish_event(
    conn: &mut RedisConn,
    namespace: &str,
    event: &JobEvent,
) -> Result<String> {
    let key = events_key(namespace, event.job_id);
    let body = serde_json::to_string(event)?;
    let mut append = redis::pipe();
    append
        .cmd("XADD")
        .arg(&key)
        .arg("MAXLEN")
        .arg("~")
        .arg(MAX_EVENTS)
        .arg("*")
        .arg("e")
        .arg(body)
        .cmd("EXPIRE")
        .arg(&key)
        .arg(RETENTION.as_secs())
        .ignore();
    let mut announce = redis::cmd("PUBLISH");
    announce
        .arg(events_channel(namespace))
        .arg(event.job_id.to_string());
    if conn.is_cluster() {
        // A cluster sends a pipeline to the node of its keys' one slot; the channel is one
        // name for every job, so it goes on its own, after the entry exists.
        let (id,): (String,) = append.query_async(conn).await?;
        let _: i64 = announce.query_async(conn).await?;
        return Ok(id);
    }
    append.add_command(announce).ignore();
    let (id,): (String,) = append.query_async(conn).await?;
    Ok(id)
}

/// The event with entry id `id` in the job's stream, if it is there.
pub async fn read_event<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    namespace: &str,
    job: JobId,
    id: &str,
) -> Result<Option<JobEvent>> {
    let range: StreamRangeReply = conn
        .xrange_count(events_key(namespace, job), id, id, 1)
        .await?;
    match range.ids.first().and_then(|e| e.get::<String>("e")) {
        Some(raw) => Ok(Some(serde_json::from_str(&raw)?)),
        None => Ok(None),
    }
}

/// The id of the job's last event, if its stream exists.
pub async fn last_event_id<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    namespace: &str,
    job: JobId,
) -> Result<Option<String>> {
    let last: StreamRangeReply = conn
        .xrevrange_count(events_key(namespace, job), "+", "-", 1)
        .await?;
    Ok(last.ids.into_iter().next().map(|e| e.id))
}

/// Events after `after` (an entry id; `"0"` for all), waiting up to `block` for the first
/// one when there are none yet. `block` of zero does not wait. Use a connection of its own
/// when blocking.
pub async fn read_events<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    namespace: &str,
    job: JobId,
    after: &str,
    block: Duration,
) -> Result<Vec<(String, JobEvent)>> {
    let key = events_key(namespace, job);
    let reply: Option<StreamReadReply> = if block.is_zero() {
        let range: StreamRangeReply = conn
            .xrange_count(&key, format!("({after}"), "+", MAX_EVENTS)
            .await?;
        Some(StreamReadReply {
            keys: vec![redis::streams::StreamKey {
                key: key.clone(),
                ids: range.ids,
            }],
        })
    } else {
        let opts = StreamReadOptions::default()
            .block(block.as_millis() as usize)
            .count(MAX_EVENTS);
        conn.xread_options(&[&key], &[after], &opts).await?
    };
    let mut out = Vec::new();
    for stream in reply.map(|r| r.keys).unwrap_or_default() {
        for entry in stream.ids {
            if let Some(raw) = entry.get::<String>("e") {
                out.push((entry.id.clone(), serde_json::from_str(&raw)?));
            }
        }
    }
    Ok(out)
}
