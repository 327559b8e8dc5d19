//! A database per test. Each is named `gpuq_test_<host>_<pid>_<32 hex>` (host: a hash of
//! this machine's or container's hostname): the first database a test process creates
//! drops the leftovers of processes of this host that are gone, so the suite cleans up
//! after itself (killed runs included) without a list of prefixes to know. A database
//! with a live connection is never dropped.

use std::hash::{DefaultHasher, Hash, Hasher};
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
        "{PREFIX}{}_{}_{}",
        host_tag(),
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

/// Eight hex digits naming this host (or container): processes of other hosts sharing the
/// PostgreSQL server have their own process ids, which say nothing here.
fn host_tag() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut hasher = DefaultHasher::new();
    host.trim().hash(&mut hasher);
    format!("{:08x}", hasher.finish() as u32)
}

/// Drops the test databases of this host's processes that are no longer running, unless
/// something is still connected to them. Without `/proc` nothing is known to be gone, so
/// nothing is dropped.
pub async fn drop_databases_of_gone_processes(admin: &mut PgConnection) {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let pattern = format!("^{PREFIX}{}_[0-9]+_[0-9a-f]{{32}}$", host_tag());
    let unused: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database d WHERE datname ~ $1 \
         AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
    )
    .bind(pattern)
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    let own = std::process::id().to_string();
    for name in unused {
        // `gpuq_test_<host>_<pid>_<hex>`: the pid is the second field from the end.
        let Some((rest, _hex)) = name.rsplit_once('_') else {
            continue;
        };
        let Some((_, pid)) = rest.rsplit_once('_') else {
            continue;
        };
        if pid == own || std::path::Path::new("/proc").join(pid).exists() {
            continue;
        }
        // No FORCE: a connection that arrived since the query keeps its database.
        let _ = admin
            .execute(format!(r#"DROP DATABASE IF EXISTS "{name}""#).as_str())
            .await;
    }
}
