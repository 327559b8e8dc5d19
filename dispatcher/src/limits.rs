//! Per-user request rate: a token bucket in Redis (`lua/take_token.lua`), so every
//! dispatcher replica draws from the same bucket.

use std::sync::LazyLock;

use redis::Script;

use gpuq_queue::RedisConn;
use gpuq_schemas::UserId;

use crate::configuration::LimitSettings;
use crate::ApiError;

static TAKE_TOKEN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/take_token.lua")));

/// Takes one token from `user`'s bucket, or answers 429 `rate_limited` with `Retry-After`.
pub async fn take_token(
    conn: &mut RedisConn,
    namespace: &str,
    user: UserId,
    limits: &LimitSettings,
) -> Result<(), ApiError> {
    let key = format!("{namespace}:ratelimit:{{{user}}}");
    let (allowed, wait_ms): (i64, u64) = TAKE_TOKEN
        .key(key)
        .arg(limits.requests_per_second)
        .arg(limits.burst)
        .invoke_async(conn)
        .await
        .map_err(gpuq_queue::QueueError::from)?;
    if allowed == 1 {
        return Ok(());
    }
    Err(ApiError::TooManyRequests {
        code: "rate_limited",
        message: format!(
            "too many requests; at most {} per second",
            limits.requests_per_second
        ),
        retry_after: wait_ms.div_ceil(1000).max(1),
    })
}
