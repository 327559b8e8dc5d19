//! A database per test. Each is named `gpuq_test_<pid>_<32 hex>`: the first database a test
//! process creates drops those of processes that are gone, so the suite cleans up after
//! itself (killed runs included) without a list of prefixes to know.

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{Connection, Executor, PgConnection};

use crate::MIGRATOR;

/// The prefix of every test database.
pub const PREFIX: &str = "gpuq_test_";

static SWEPT: AtomicBool = AtomicBool::new(false);

/// `DATABASE_URL`, or the local PostgreSQL.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    let base = database_url();
    let mut admin = PgConnection::connect(&base)
        .await
        .expect("PostgreSQL must be running (DATABASE_URL)");
    if !SWEPT.swap(true, Ordering::SeqCst) {
        drop_databases_of_gone_processes(&mut admin).await;
    }
    let name = format!(
        "{PREFIX}{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    admin
        .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("CREATE DATABASE");
    let cut = base.rfind('/').expect("DATABASE_URL names a database");
    format!("{}/{name}", &base[..cut])
}

/// Creates a database with every migration applied and returns its URL.
pub async fn migrated_database() -> String {
    let url = fresh_database().await;
    let mut conn = PgConnection::connect(&url).await.expect("test database");
    MIGRATOR.run(&mut conn).await.expect("migrations apply");
    url
}

/// Drops the test databases of processes no longer running (best effort: one still in
/// use by a live connection stays until a later run).
pub async fn drop_databases_of_gone_processes(admin: &mut PgConnection) {
    let pattern = format!("^{PREFIX}[0-9]+_[0-9a-f]{{32}}$");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname ~ $1")
            .bind(pattern)
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name[PREFIX.len()..].split('_').next().unwrap_or("");
        if std::path::Path::new("/proc").join(pid).exists() {
            continue;
        }
        let drop = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
        let _ = admin.execute(drop.as_str()).await;
    }
}
