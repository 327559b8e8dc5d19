//! The Lua scripts, one atomic transition each, compiled into the binary and run as one
//! Redis Functions library (ADR 0013).
//!
//! `prelude.lua` (shared helpers) is defined once, when the library loads, instead of at the
//! start of every call as `EVAL` of `prelude.lua` + script would: that halves what a claim
//! and an ack cost Redis. Each script file becomes one function whose body is the file, with
//! `KEYS` and `ARGV` set on entry, so the very same files also run as `EVAL` scripts (how
//! workers in other languages speak the protocol, docs/protocol.md). The library and its
//! functions are named after the hash of their text, so processes of different releases
//! sharing a Redis each call their own. A Redis that lost the library (a restart) answers
//! "Function not found"; the call loads it (on every primary of a cluster) and runs again.
//! Only the services may load code into Redis (a library runs with its caller's rights, so
//! code a worker planted would run with a service's): a worker whose load is refused runs
//! the same file as a script (`EVALSHA`) until a service has loaded the library.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, RedisError, RedisResult, ToRedisArgs};

/// The script files, in the order the library registers them.
const FILES: [(&str, &str); 18] = [
    ("enqueue_job", include_str!("../lua/enqueue_job.lua")),
    ("claim_jobs", include_str!("../lua/claim_jobs.lua")),
    ("extend_lease", include_str!("../lua/extend_lease.lua")),
    ("ack_job", include_str!("../lua/ack_job.lua")),
    ("ack_jobs", include_str!("../lua/ack_jobs.lua")),
    ("fail_job", include_str!("../lua/fail_job.lua")),
    ("release_job", include_str!("../lua/release_job.lua")),
    ("cancel_job", include_str!("../lua/cancel_job.lua")),
    ("reap_expired", include_str!("../lua/reap_expired.lua")),
    ("promote_due", include_str!("../lua/promote_due.lua")),
    ("requeue_dead", include_str!("../lua/requeue_dead.lua")),
    ("discard_dead", include_str!("../lua/discard_dead.lua")),
    ("queue_stats", include_str!("../lua/queue_stats.lua")),
    ("read_claim", include_str!("../lua/read_claim.lua")),
    (
        "expire_unstarted",
        include_str!("../lua/expire_unstarted.lua"),
    ),
    ("job_position", include_str!("../lua/job_position.lua")),
    ("set_caps", include_str!("../lua/set_caps.lua")),
    (
        "withdraw_unstarted",
        include_str!("../lua/withdraw_unstarted.lua"),
    ),
];

/// The library's code and the suffix of its names (`gpuq_<suffix>`, `<script>_<suffix>`).
struct Library {
    code: String,
    suffix: String,
}

static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    let mut body = String::from("local KEYS, ARGV\n");
    body.push_str(include_str!("../lua/prelude.lua"));
    for (name, file) in FILES {
        body.push_str(&format!(
            "redis.register_function{{function_name = '{name}_@', flags = {{{}}},\n\
             callback = function(keys, args)\nKEYS, ARGV = keys, args\n{file}\nend}}\n",
            flags(name)
        ));
    }
    // The hash of the text with a placeholder for the names it determines.
    let suffix = redis::Script::new(&body).get_hash()[..16].to_owned();
    let code = format!(
        "#!lua name=gpuq_{suffix}\n{}",
        body.replace("_@'", &format!("_{suffix}'"))
    );
    Library { code, suffix }
});

/// A function's flags. Functions run as writes unless flagged, and Redis refuses writes
/// when it is out of memory (`maxmemory`): the transitions that move or remove jobs may run
/// then (as their scripts could: those only delete or move), so a full Redis still drains;
/// enqueue may not. The reads may also run on a replica.
fn flags(name: &str) -> &'static str {
    match name {
        "enqueue_job" => "",
        "queue_stats" | "job_position" | "read_claim" => "'no-writes'",
        _ => "'allow-oom'",
    }
}

/// One function of the library.
pub(crate) struct Function {
    name: &'static str,
}

/// How long a process that may not load the library runs scripts before trying the
/// library again.
const SCRIPTS_FOR: Duration = Duration::from_secs(10);
/// Until when (ms since the epoch) this process runs scripts instead of the library.
static SCRIPTS_UNTIL: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `prelude.lua` + the file, as the `EVAL` script of the same transition.
static AS_SCRIPTS: LazyLock<Vec<redis::Script>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(_, file)| {
            redis::Script::new(&format!("{}{file}", include_str!("../lua/prelude.lua")))
        })
        .collect()
});

/// All scripts of the protocol.
pub(crate) struct Scripts {
    pub enqueue: Function,
    pub claim: Function,
    pub extend_lease: Function,
    pub ack: Function,
    pub ack_many: Function,
    pub fail: Function,
    pub release: Function,
    pub cancel: Function,
    pub reap: Function,
    pub promote: Function,
    pub requeue_dead: Function,
    pub discard_dead: Function,
    pub stats: Function,
    pub read_claim: Function,
    pub expire_unstarted: Function,
    pub position: Function,
    pub set_caps: Function,
    pub withdraw_unstarted: Function,
}

const fn function(name: &'static str) -> Function {
    Function { name }
}

pub(crate) static SCRIPTS: Scripts = Scripts {
    enqueue: function("enqueue_job"),
    claim: function("claim_jobs"),
    extend_lease: function("extend_lease"),
    ack: function("ack_job"),
    ack_many: function("ack_jobs"),
    fail: function("fail_job"),
    release: function("release_job"),
    cancel: function("cancel_job"),
    reap: function("reap_expired"),
    promote: function("promote_due"),
    requeue_dead: function("requeue_dead"),
    discard_dead: function("discard_dead"),
    stats: function("queue_stats"),
    read_claim: function("read_claim"),
    expire_unstarted: function("expire_unstarted"),
    position: function("job_position"),
    set_caps: function("set_caps"),
    withdraw_unstarted: function("withdraw_unstarted"),
};

impl Function {
    /// A call with its first key.
    pub fn key<T: ToRedisArgs>(&self, key: T) -> Call {
        let mut call = self.prepare_invoke();
        call.key(key);
        call
    }

    /// A call without keys or arguments yet.
    pub fn prepare_invoke(&self) -> Call {
        Call {
            name: self.name,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// One call of a function: `FCALL <name> <key count> <keys> <args>`.
pub(crate) struct Call {
    name: &'static str,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl Call {
    /// Adds a key (or several, from a slice).
    pub fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        self.keys.extend(key.to_redis_args());
        self
    }

    /// Adds an argument.
    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.args.extend(arg.to_redis_args());
        self
    }

    /// The command, for a pipeline (see [`query_pipeline`]).
    pub fn cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(format!("{}_{}", self.name, LIBRARY.suffix))
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }

    /// Runs the call, loading the library first if Redis does not have it (nothing ran
    /// then: a missing function fails before any script starts), or as a script when this
    /// process may not load it.
    pub async fn invoke_async<T: FromRedisValue, C: ConnectionLike>(
        &self,
        conn: &mut C,
    ) -> RedisResult<T> {
        if now_ms() < SCRIPTS_UNTIL.load(Ordering::Relaxed) {
            return self.as_script(conn).await;
        }
        let cmd = self.cmd();
        match cmd.query_async(conn).await {
            // An ACL granted before the library existed, without `+fcall`.
            Err(e) if is_refused(&e) => self.as_script_for_a_while(conn).await,
            Err(e) if is_missing(&e) => match load(conn).await {
                Ok(()) => cmd.query_async(conn).await,
                Err(e) if is_refused(&e) => self.as_script_for_a_while(conn).await,
                Err(e) => Err(e),
            },
            other => other,
        }
    }

    /// This process may not use the library: scripts for [`SCRIPTS_FOR`].
    async fn as_script_for_a_while<T: FromRedisValue, C: ConnectionLike>(
        &self,
        conn: &mut C,
    ) -> RedisResult<T> {
        SCRIPTS_UNTIL.store(now_ms() + SCRIPTS_FOR.as_millis() as u64, Ordering::Relaxed);
        self.as_script(conn).await
    }

    async fn as_script<T: FromRedisValue, C: ConnectionLike>(
        &self,
        conn: &mut C,
    ) -> RedisResult<T> {
        let index = FILES.iter().position(|(name, _)| *name == self.name);
        let script = &AS_SCRIPTS[index.unwrap_or_default()];
        let mut call = script.prepare_invoke();
        for key in &self.keys {
            call.key(key);
        }
        for arg in &self.args {
            call.arg(arg);
        }
        call.invoke_async(conn).await
    }
}

/// Runs a pipeline of [`Call::cmd`]s, loading the library first if Redis does not have it
/// (then none of them ran). Only the services pipeline calls; they may load it.
pub(crate) async fn query_pipeline<T: FromRedisValue, C: ConnectionLike>(
    pipe: &redis::Pipeline,
    conn: &mut C,
) -> RedisResult<T> {
    match pipe.query_async(conn).await {
        Err(e) if is_missing(&e) => {
            load(conn).await?;
            pipe.query_async(conn).await
        }
        other => other,
    }
}

/// Loads the library (`FUNCTION LOAD REPLACE`: on every primary of a cluster).
async fn load<C: ConnectionLike>(conn: &mut C) -> RedisResult<()> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&LIBRARY.code)
        .query_async::<redis::Value>(conn)
        .await
        .map(drop)
}

fn is_missing(e: &RedisError) -> bool {
    e.to_string().contains("Function not found")
}

fn is_refused(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_a_function_of_the_library_named_after_its_text() {
        let lib = &*LIBRARY;
        assert!(lib
            .code
            .starts_with(&format!("#!lua name=gpuq_{}\n", lib.suffix)));
        for (name, _) in FILES {
            let registered = format!("function_name = '{name}_{}'", lib.suffix);
            assert!(lib.code.contains(&registered), "{name}");
        }
        assert!(!lib.code.contains("_@'"));
        let s = &SCRIPTS;
        let functions = [
            &s.enqueue,
            &s.claim,
            &s.extend_lease,
            &s.ack,
            &s.ack_many,
            &s.fail,
            &s.release,
            &s.cancel,
            &s.reap,
            &s.promote,
            &s.requeue_dead,
            &s.discard_dead,
            &s.stats,
            &s.read_claim,
            &s.expire_unstarted,
            &s.position,
            &s.set_caps,
            &s.withdraw_unstarted,
        ];
        for f in functions {
            // `as_script` finds each function's file by its name.
            assert!(FILES.iter().any(|(name, _)| *name == f.name), "{}", f.name);
        }
        assert_eq!(lib.suffix.len(), 16);
    }
}
