//! Redis connection and key namespaces for tests: never `FLUSHDB`, every test its own
//! prefix, so tests run in parallel against one Redis.

/// `REDIS_URL`, or the local Redis.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh key namespace, `test-<32 hex>`.
pub fn namespace() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}
