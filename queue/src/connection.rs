//! Reaching Redis, single node or Cluster: [`RedisTarget`] (where, from a URL) and
//! [`RedisConn`] (a connection to it that every command, script and pipeline runs on).
//!
//! One URL picks the deployment:
//!
//! - `redis://[user:password@]host:port[/db]` (or `rediss://`, `unix://`): one node.
//! - `redis+cluster://[user:password@]host:port[,host:port...]`: a Redis Cluster, given by
//!   one or more seed nodes (the rest of the topology is discovered with `CLUSTER SLOTS`).
//!   Credentials apply to every node; a query string (`?protocol=resp3`) is passed on to
//!   each seed. Only database 0 exists on a cluster.
//!
//! The protocol is cluster-safe by construction: every key of a queue carries the queue's
//! hash tag, every script declares its keys, and every pipeline stays within one slot, so
//! the cluster connection routes each call to the one node owning that slot. (On a single
//! node only, a job event's entry and its Pub/Sub announcement share one pipeline:
//! `publish_event`.)

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::Result;

/// The URL scheme naming a Redis Cluster by its seed nodes.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one command may take on a shared connection; generous, as a cancel may `LREM`
/// a long list.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts to reconnect (single node) or to retry a failed request (cluster) before the
/// error reaches the caller, whose own loop then backs off.
const RETRIES: usize = 3;

/// Where Redis is: one node, or a cluster. Opens [`RedisConn`]s; cheap to clone.
#[derive(Clone)]
pub enum RedisTarget {
    /// A single Redis server.
    Single(Client),
    /// A Redis Cluster (boxed: the client is twice the size of a single-node one).
    Cluster(Box<ClusterClient>),
}

impl std::fmt::Debug for RedisTarget {
    // Says which kind only: the URL may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisTarget::Single(_) => "RedisTarget::Single",
            RedisTarget::Cluster(_) => "RedisTarget::Cluster",
        })
    }
}

impl From<Client> for RedisTarget {
    fn from(client: Client) -> Self {
        RedisTarget::Single(client)
    }
}

impl RedisTarget {
    /// Parses `url` (see the [module docs](self) for the forms). Connects to nothing yet.
    pub fn open(url: &str) -> RedisResult<Self> {
        match url.strip_prefix(CLUSTER_SCHEME) {
            Some(rest) => Ok(RedisTarget::Cluster(Box::new(
                ClusterClient::builder(cluster_seeds(rest)?)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .retries(RETRIES as u32)
                    .min_retry_wait(100)
                    .max_retry_wait(2_000)
                    .build()?,
            ))),
            None => Ok(RedisTarget::Single(Client::open(url)?)),
        }
    }

    /// True for a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisTarget::Cluster(_))
    }

    /// A connection of its own with no response timeout, for commands that block on the
    /// server (`BLPOP`, `XREAD BLOCK`): blocking must neither stall the shared connection
    /// other tasks pipeline on, nor be cut short by a timeout meant for quick commands.
    pub async fn blocking_connection(&self) -> Result<RedisConn> {
        Ok(match self {
            RedisTarget::Single(client) => {
                let config = manager_config().set_response_timeout(None);
                RedisConn::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
            }
            // A fresh cluster connection opens fresh connections to the nodes. No response
            // timeout is set on the client, so none applies per attempt or overall.
            RedisTarget::Cluster(client) => RedisConn::Cluster(
                client
                    .get_async_connection_with_config(ClusterConfig::new())
                    .await?,
            ),
        })
    }
}

/// A client for Pub/Sub on the Redis named by `url`: the node itself, or one of a
/// cluster's seed nodes, the next one on each `attempt` (a cluster delivers every
/// `PUBLISH` to subscribers on any node; a seed that is down is skipped on the next try).
pub fn pubsub_client(url: &str, attempt: usize) -> RedisResult<Client> {
    match url.strip_prefix(CLUSTER_SCHEME) {
        Some(rest) => {
            let seeds = cluster_seeds(rest)?;
            let seed = seeds.get(attempt % seeds.len().max(1)).ok_or_else(|| {
                RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "redis+cluster:// URL without a node",
                ))
            })?;
            Client::open(seed.as_str())
        }
        None => Client::open(url),
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(RETRIES)
}

/// Opens the shared, self-reconnecting connection all non-blocking operations use: any
/// number of tasks clone it and pipeline on it at once.
pub async fn connect(target: &RedisTarget) -> Result<RedisConn> {
    Ok(match target {
        RedisTarget::Single(client) => {
            let config = manager_config().set_response_timeout(Some(RESPONSE_TIMEOUT));
            RedisConn::Single(ConnectionManager::new_with_config(client.clone(), config).await?)
        }
        RedisTarget::Cluster(client) => {
            let config = ClusterConfig::new().set_response_timeout(RESPONSE_TIMEOUT);
            RedisConn::Cluster(client.get_async_connection_with_config(config).await?)
        }
    })
}

/// A connection to a [`RedisTarget`]. Use it wherever a `redis::aio::ConnectionLike` goes
/// (`query_async`, `invoke_async`, pipelines); cheap to clone, clones share the connection.
/// Both kinds reconnect by themselves after a failure.
#[derive(Clone)]
pub enum RedisConn {
    /// To a single node.
    Single(ConnectionManager),
    /// To a cluster: each command goes to the node owning its keys' slot; keyless
    /// administrative commands (`SCRIPT FLUSH`, `PING`) go to every primary.
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// True for a cluster connection: a pipeline there goes to the one node of its keys'
    /// slot, so a command on an unrelated name (a Pub/Sub channel) is sent on its own.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// The seed node URLs of a `redis+cluster://` URL, given without its scheme.
fn cluster_seeds(rest: &str) -> RedisResult<Vec<String>> {
    let invalid = |detail: &str| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "invalid redis+cluster:// URL",
            detail.to_owned(),
        ))
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, format!("?{query}")),
        None => (rest, String::new()),
    };
    // Hosts cannot hold an `@`, so the last one ends the credentials.
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), rest),
    };
    let (hosts, db) = rest.split_once('/').unwrap_or((rest, ""));
    if !(db.is_empty() || db == "0") {
        return Err(invalid("a cluster has only database 0"));
    }
    let seeds: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| format!("redis://{credentials}{host}{query}"))
        .collect();
    if seeds.is_empty() {
        return Err(invalid("no seed node (expected host:port[,host:port...])"));
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_become_one_seed_url_per_node_with_the_credentials() {
        assert_eq!(
            cluster_seeds("u:p%40ss@127.0.0.1:7000, 127.0.0.1:7001/0?protocol=resp3").unwrap(),
            [
                "redis://u:p%40ss@127.0.0.1:7000?protocol=resp3",
                "redis://u:p%40ss@127.0.0.1:7001?protocol=resp3",
            ]
        );
        assert_eq!(cluster_seeds("h:1").unwrap(), ["redis://h:1"]);
    }

    #[test]
    fn cluster_urls_without_nodes_or_with_a_database_are_refused() {
        assert!(cluster_seeds("").is_err());
        assert!(cluster_seeds("u:p@,").is_err());
        assert!(cluster_seeds("h:1/2").is_err());
    }

    #[test]
    fn the_scheme_picks_single_node_or_cluster() {
        assert!(!RedisTarget::open("redis://127.0.0.1:6379")
            .unwrap()
            .is_cluster());
        let cluster = RedisTarget::open("redis+cluster://:secret@127.0.0.1:7000,127.0.0.1:7001");
        assert!(cluster.unwrap().is_cluster());
        assert!(RedisTarget::open("redis+cluster://").is_err());
    }
}
