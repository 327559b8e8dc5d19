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
        "limits: {burst: 1, requests_per_second: 1, max_active_jobs_per_user: 1}\nauth: {audience: file, jwt_secret: file-secret}\napplication: {port: 9001}\n",
        "limits: {burst: 2, requests_per_second: 2}\nauth: {audience: staging}\n",
    );
    let base = files.base();
    let s = load_with(&[
        ("GPUQ_CONFIG", base.as_str()),
        ("GPUQ_ENVIRONMENT", "staging"),
        ("GPUQ__LIMITS__BURST", "3"),
        ("GPUQ__AUTH__JWT_SECRET", "nested-secret"),
        ("GPUQ_JWT_SECRET", "flat-secret"),
        ("GPUQ_LISTEN", "0.0.0.0:9002"),
    ]);
    assert_eq!(s.limits.max_active_jobs_per_user, 1, "file");
    assert_eq!(s.limits.requests_per_second, 2.0, "environment file");
    assert_eq!(s.auth.audience, "staging", "environment file");
    assert_eq!(s.limits.burst, 3, "nested");
    let secret = s
        .auth
        .jwt_secret
        .as_ref()
        .map(|k| k.expose_secret().to_owned());
    assert_eq!(secret.as_deref(), Some("flat-secret"), "flat");
    assert_eq!(
        (s.application.host.as_str(), s.application.port),
        ("0.0.0.0", 9002)
    );
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = Settings::defaults().unwrap();
    assert_eq!(
        (s.application.host.as_str(), s.application.port),
        ("127.0.0.1", 8080)
    );
    assert_eq!(s.application.max_body_bytes, 64 * 1024);
    assert_eq!(s.database.max_connections, 32);
    assert_eq!(s.limits.max_active_jobs_per_user, 20);
    assert_eq!(s.queue.max_depth, 100_000);
    assert_eq!(s.auth.audience, "authenticated");
    assert!(s.auth.jwt_secret.is_none() && s.enqueue.reference_hosts.is_empty());
}

#[test]
fn every_documented_flat_name_is_read() {
    let s = load_with(&[
        ("DATABASE_URL", "postgres://a@db/x"),
        ("REDIS_URL", "redis://r:1"),
        ("GPUQ_REDIS_NAMESPACE", "ns"),
        ("GPUQ_MIGRATE", "false"),
        ("GPUQ_JWKS_URL", "https://auth.example.com/jwks"),
        ("GPUQ_ADMIN_TOKEN", "admin"),
        ("GPUQ_REFERENCE_HOSTS", "a.example.com, b.example.com,"),
        ("GPUQ_BODY_TIMEOUT_MS", "2000"),
        ("GPUQ_CALLBACK_SECRET", "accepted-and-unused"),
    ]);
    assert_eq!(s.database.url.expose_secret(), "postgres://a@db/x");
    assert_eq!(s.redis.url.expose_secret(), "redis://r:1");
    assert_eq!(s.redis.namespace, "ns");
    assert!(!s.database.migrate);
    assert_eq!(
        s.auth.jwks_url.as_deref(),
        Some("https://auth.example.com/jwks")
    );
    assert!(s.auth.admin_token.is_some());
    assert_eq!(
        s.enqueue.reference_hosts,
        ["a.example.com", "b.example.com"]
    );
    assert_eq!(s.application.body_timeout_ms, 2000);
}

#[test]
fn the_earlier_http_section_name_still_works() {
    let s = load_with(&[("GPUQ__HTTP__HEADER_TIMEOUT_MS", "2000")]);
    assert_eq!(s.application.header_timeout_ms, 2000);
}

#[test]
fn per_type_start_deadlines_load_and_a_bad_type_or_figure_refuses_the_configuration() {
    let ok = ConfigFiles::new("enqueue: {start_within_secs: {video_high: 600}}\n", "");
    let s = load_with(&[("GPUQ_CONFIG", ok.base().as_str())]);
    assert_eq!(s.enqueue.start_within(JobType::VideoHigh), Some(600));
    assert_eq!(s.enqueue.start_within(JobType::VideoFast), None);
    for bad in [
        "enqueue: {start_within_secs: {video_high: 0}}\n",
        "enqueue: {start_within_secs: {video_high: 86401}}\n",
        "enqueue: {start_within_secs: {video_huge: 60}}\n",
    ] {
        let files = ConfigFiles::new(bad, "");
        let env = Environment::from_pairs([("GPUQ_CONFIG", files.base().as_str())]);
        let err = Settings::load_from(&env).expect_err(bad).to_string();
        assert!(
            err.contains("start") || err.contains("video_huge"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_per_tenant_concurrency_cap_loads_from_its_flat_name_and_a_bad_one_refuses_the_configuration() {
    assert_eq!(load_with(&[]).enqueue.max_in_flight_per_tenant, None);
    let s = load_with(&[("GPUQ_MAX_IN_FLIGHT_PER_TENANT", "4")]);
    assert_eq!(s.enqueue.max_in_flight_per_tenant.map(|m| m.get()), Some(4));
    for bad in ["0", "100001", "four"] {
        let env = Environment::from_pairs([("GPUQ_MAX_IN_FLIGHT_PER_TENANT", bad)]);
        let err = Settings::load_from(&env).expect_err(bad).to_string();
        assert!(err.contains("max_in_flight_per_tenant"), "{bad}: {err}");
    }
}

#[test]
fn checkpoint_and_lora_lists_load_from_a_variable_and_a_name_no_worker_can_advertise_refuses_the_configuration(
) {
    let s = load_with(&[(
        "GPUQ__ENQUEUE__CHECKPOINTS__SDXL_IMAGE_FAST",
        "sdxl-base-1.0, juggernaut-xl-v9",
    )]);
    assert_eq!(
        s.enqueue.checkpoints[&gpuq_schemas::JobType::SdxlImageFast],
        ["sdxl-base-1.0", "juggernaut-xl-v9"]
    );
    let s = load_with(&[("GPUQ__ENQUEUE__LORAS__SDXL_IMAGE_FAST", "film-grain,detail")]);
    assert_eq!(
        s.enqueue.loras[&gpuq_schemas::JobType::SdxlImageFast],
        ["film-grain", "detail"]
    );
    let env = Environment::from_pairs([("GPUQ__ENQUEUE__LORAS__SDXL_IMAGE_FAST", "a b")]);
    let err = Settings::load_from(&env).unwrap_err().to_string();
    assert!(err.contains("\"a b\""), "{err}");
    let env = Environment::from_pairs([("GPUQ__ENQUEUE__LORAS__IMAGE_FAST", "grain,lustify_sdxl")]);
    let err = Settings::load_from(&env).unwrap_err().to_string();
    assert!(
        err.contains("\"lustify_sdxl\" is also the name of a model"),
        "{err}"
    );
    let env = Environment::from_pairs([("GPUQ__ENQUEUE__CHECKPOINTS__SDXL_IMAGE_FAST", "a,b*c")]);
    let err = Settings::load_from(&env).unwrap_err().to_string();
    assert!(
        err.contains("\"b*c\"") && err.contains("sdxl_image_fast"),
        "{err}"
    );
}
