//! The configuration layers, on the shared sections.

use secrecy::ExposeSecret;
use serde::Deserialize;

use gpuq_service::configuration::{
    defaults, load, ConfigurationError, Environment, ServiceDefaults,
};
use gpuq_service::testkit::ConfigFiles;
use gpuq_service::{ApplicationSettings, DatabaseSettings, QueueSettings, RedisSettings};

#[derive(Debug, Deserialize)]
struct Shared {
    application: ApplicationSettings,
    database: DatabaseSettings,
    redis: RedisSettings,
    queue: QueueSettings,
}

const SERVICE: ServiceDefaults = ServiceDefaults {
    host: "127.0.0.1",
    port: 8080,
    max_body_bytes: 1024,
    pool_size: 7,
    acquire_timeout_ms: 3000,
};

fn load_with(pairs: &[(&str, &str)]) -> Result<Shared, ConfigurationError> {
    load(
        defaults(SERVICE)?,
        &Environment::from_pairs(pairs.iter().copied()),
    )
}

#[test]
fn defaults_are_the_services_own_where_they_differ() {
    let s = load_with(&[]).unwrap();
    assert_eq!(
        (s.application.host.as_str(), s.application.port),
        ("127.0.0.1", 8080)
    );
    assert_eq!(s.database.max_connections, 7);
    assert_eq!(s.redis.namespace, "gpuq");
    assert!(s.database.migrate);
}

#[test]
fn each_layer_overrides_the_one_before() {
    let files = ConfigFiles::new(
        "redis: {namespace: from-file}\nqueue: {lease_ms: 1, backoff_base_ms: 1, backoff_max_ms: 1}\ndatabase: {max_connections: 1}\n",
        "queue: {lease_ms: 2, backoff_base_ms: 2}\ndatabase: {max_connections: 2}\n",
    );
    let base = files.base();
    let s = load_with(&[
        ("GPUQ_CONFIG", base.as_str()),
        ("GPUQ_ENVIRONMENT", "staging"),
        ("GPUQ__QUEUE__BACKOFF_BASE_MS", "3"),
        ("GPUQ__DATABASE__MAX_CONNECTIONS", "3"),
        ("GPUQ__REDIS__NAMESPACE", "nested"),
        ("GPUQ_REDIS_NAMESPACE", "flat"),
    ])
    .unwrap();
    assert_eq!(s.queue.backoff_max_ms, 1, "file");
    assert_eq!(s.queue.lease_ms, 2, "environment file over file");
    assert_eq!(s.queue.backoff_base_ms, 3, "nested over environment file");
    assert_eq!(
        s.database.max_connections, 3,
        "nested over environment file"
    );
    assert_eq!(s.redis.namespace, "flat", "flat over nested");
}

#[test]
fn a_named_environment_without_its_file_is_an_error() {
    let files = ConfigFiles::new("{}", "{}");
    let base = files.base();
    let err = load_with(&[("GPUQ_CONFIG", base.as_str()), ("GPUQ_ENVIRONMENT", "prod")]);
    assert!(err.is_err());
}

#[test]
fn every_flat_name_sets_its_setting() {
    let s = load_with(&[
        ("DATABASE_URL", "postgres://a@db/x"),
        ("REDIS_URL", "redis://r:1"),
        ("GPUQ_LISTEN", "[::1]:9000"),
        ("GPUQ_REDIS_NAMESPACE", "ns"),
        ("GPUQ_MIGRATE", "false"),
        ("GPUQ_BODY_TIMEOUT_MS", "2000"),
    ])
    .unwrap();
    assert_eq!(s.database.url.expose_secret(), "postgres://a@db/x");
    assert_eq!(s.redis.url.expose_secret(), "redis://r:1");
    assert_eq!(
        (s.application.host.as_str(), s.application.port),
        ("::1", 9000)
    );
    assert_eq!(s.redis.namespace, "ns");
    assert!(!s.database.migrate);
    assert_eq!(s.application.body_timeout_ms, 2000);
}

#[test]
fn names_of_earlier_releases_still_work_and_current_names_win() {
    let s = load_with(&[
        ("GPUQ__HTTP__HEADER_TIMEOUT_MS", "111"),
        ("GPUQ__REDIS__BACKOFF_MAX_MS", "222"),
        ("GPUQ__HTTP__MAX_CONNECTIONS", "1"),
        ("GPUQ__APPLICATION__MAX_CONNECTIONS", "2"),
    ])
    .unwrap();
    assert_eq!(s.application.header_timeout_ms, 111);
    assert_eq!(s.queue.backoff_max_ms, 222);
    assert_eq!(s.application.max_connections, 2);
}

#[test]
fn bad_values_are_errors_naming_the_setting() {
    let listen = load_with(&[("GPUQ_LISTEN", "8080")]).unwrap_err();
    assert!(listen.to_string().contains("GPUQ_LISTEN"), "{listen}");
    let migrate = load_with(&[("GPUQ_MIGRATE", "maybe")]).unwrap_err();
    assert!(migrate.to_string().contains("migrate"), "{migrate}");
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let s = load_with(&[("DATABASE_URL", "postgres://u:hunter2@db/x")]).unwrap();
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn blank_variables_count_as_unset() {
    let s = load_with(&[("GPUQ_REDIS_NAMESPACE", "  ")]).unwrap();
    assert_eq!(s.redis.namespace, "gpuq");
}
