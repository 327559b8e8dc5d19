//! The Lua scripts, one atomic transition each, compiled into the binary.
//!
//! Each file in `queue/lua/` is prefixed with `prelude.lua` (shared helpers) and loaded
//! once; `redis::Script` sends `EVALSHA` and falls back to loading on `NOSCRIPT`, so a
//! restarted Redis needs nothing from us.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("../lua/prelude.lua"),
            include_str!(concat!("../lua/", $file))
        ))
    };
}

/// All scripts of the protocol.
pub(crate) struct Scripts {
    pub enqueue: Script,
    pub claim: Script,
    pub extend_lease: Script,
    pub ack: Script,
    pub fail: Script,
    pub release: Script,
    pub cancel: Script,
    pub reap: Script,
    pub promote: Script,
    pub requeue_dead: Script,
    pub discard_dead: Script,
    pub stats: Script,
    pub read_claim: Script,
    pub expire_unstarted: Script,
    pub position: Script,
    pub set_caps: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: script!("enqueue_job.lua"),
    claim: script!("claim_jobs.lua"),
    extend_lease: script!("extend_lease.lua"),
    ack: script!("ack_job.lua"),
    fail: script!("fail_job.lua"),
    release: script!("release_job.lua"),
    cancel: script!("cancel_job.lua"),
    reap: script!("reap_expired.lua"),
    promote: script!("promote_due.lua"),
    requeue_dead: script!("requeue_dead.lua"),
    discard_dead: script!("discard_dead.lua"),
    stats: script!("queue_stats.lua"),
    read_claim: script!("read_claim.lua"),
    expire_unstarted: script!("expire_unstarted.lua"),
    position: script!("job_position.lua"),
    set_caps: script!("set_caps.lua"),
});
