use gpuq_service::configuration::Environment;
use gpuq_service::testkit::ConfigFiles;
use secrecy::ExposeSecret;

use super::*;

fn load_with(pairs: &[(&str, &str)]) -> Settings {
    Settings::load_from(&Environment::from_pairs(pairs.iter().copied())).expect("loads")
}

#[test]
fn file_then_environment_file_then_nested_then_flat_names_win() {
    let files = ConfigFiles::new(
        "auth: {window_secs: 1}\nqueue: {backoff_base_ms: 1, backoff_max_ms: 1}\nstorage: {buckets: [from-file]}\n",
        "auth: {window_secs: 2}\nqueue: {backoff_base_ms: 2}\nstorage: {buckets: [from-staging]}\n",
    );
    let base = files.base();
    let s = load_with(&[
        ("GPUQ_CONFIG", base.as_str()),
        ("GPUQ_ENVIRONMENT", "staging"),
        ("GPUQ__QUEUE__BACKOFF_BASE_MS", "3"),
        ("GPUQ__STORAGE__BUCKETS", "nested-a,nested-b"),
        ("GPUQ_STORAGE_BUCKETS", "flat"),
    ]);
    assert_eq!(s.queue.backoff_max_ms, 1, "file");
    assert_eq!(s.auth.window_secs, 2, "environment file");
    assert_eq!(s.queue.backoff_base_ms, 3, "nested");
    assert_eq!(s.storage.buckets, ["flat"], "flat");
}

#[test]
fn nested_lists_are_split_on_commas() {
    let s = load_with(&[("GPUQ__AUTH__SECRETS", "k1,k2")]);
    let secrets: Vec<&str> = s.auth.secrets.iter().map(|k| k.expose_secret()).collect();
    assert_eq!(secrets, ["k1", "k2"]);
}

#[test]
fn defaults_know_every_bucket_and_no_secret() {
    let s = Settings::defaults().unwrap();
    assert_eq!(s.storage.buckets.len(), 12);
    assert!(s.auth.secrets.is_empty());
    assert!(s.database.migrate);
    assert_eq!(s.redis.namespace, "gpuq");
    assert_eq!(
        (s.application.host.as_str(), s.application.port),
        ("0.0.0.0", 8081)
    );
    assert_eq!(s.application.max_body_bytes, 256 * 1024);
}

#[test]
fn every_documented_flat_name_is_read() {
    let s = load_with(&[
        ("DATABASE_URL", "postgres://a@db/x"),
        ("REDIS_URL", "redis://r:1"),
        ("GPUQ_LISTEN", "[::1]:9000"),
        ("GPUQ_CALLBACK_SECRET", "k1, k2,,"),
        ("GPUQ_STORAGE_HOST", "https://proj.supabase.co"),
        ("GPUQ_STORAGE_BUCKETS", "a,b"),
        ("GPUQ_REDIS_NAMESPACE", "ns"),
        ("GPUQ_MIGRATE", "false"),
        ("GPUQ_BODY_TIMEOUT_MS", "2000"),
    ]);
    assert_eq!(s.database.url.expose_secret(), "postgres://a@db/x");
    assert_eq!(s.redis.url.expose_secret(), "redis://r:1");
    assert_eq!(
        (s.application.host.as_str(), s.application.port),
        ("::1", 9000)
    );
    let secrets: Vec<&str> = s.auth.secrets.iter().map(|k| k.expose_secret()).collect();
    assert_eq!(secrets, ["k1", "k2"]);
    assert_eq!(s.storage.host.as_deref(), Some("https://proj.supabase.co"));
    assert_eq!(s.storage.buckets, ["a", "b"]);
    assert_eq!(s.redis.namespace, "ns");
    assert!(!s.database.migrate);
    assert_eq!(s.application.body_timeout_ms, 2000);
}

#[test]
fn earlier_nested_names_still_work() {
    let s = load_with(&[("GPUQ__REDIS__BACKOFF_BASE_MS", "77")]);
    assert_eq!(s.queue.backoff_base_ms, 77);
}

#[test]
fn bad_flat_values_are_errors_and_secrets_stay_out_of_debug() {
    let bad = Settings::load_from(&Environment::from_pairs([("GPUQ_LISTEN", "8080")]));
    assert!(bad.is_err());
    let bad = Settings::load_from(&Environment::from_pairs([("GPUQ_MIGRATE", "maybe")]));
    assert!(bad.is_err());
    let s = load_with(&[("GPUQ_CALLBACK_SECRET", "hunter2")]);
    assert!(!format!("{s:?}").contains("hunter2"));
    assert!(!format!("{s:?}").contains("postgres:postgres"));
}

#[test]
fn health_settings_under_which_no_worker_could_be_quarantined_refuse_the_configuration() {
    let s = load_with(&[
        ("GPUQ__HEALTH__QUARANTINE_AFTER", "4"),
        ("GPUQ__HEALTH__QUARANTINE_MIN_JOBS", "4"),
    ]);
    assert_eq!(s.health.quarantine_min_jobs, 4);
    let env = Environment::from_pairs([("GPUQ__HEALTH__QUARANTINE_AFTER", "2")]);
    let err = Settings::load_from(&env).unwrap_err().to_string();
    assert!(
        err.contains("quarantine_min_jobs (3) may not exceed health.quarantine_after (2)"),
        "{err}"
    );
    // Quarantine off: the span does not matter.
    load_with(&[("GPUQ__HEALTH__QUARANTINE_AFTER", "0")]);
}
