//! `gpuq-provider-worker`: serves a queue by running its jobs as predictions of a hosted
//! provider (Replicate) and storing the outputs like any worker. Configured like the
//! services (files, `GPUQ__SECTION__FIELD`, flat names); see
//! [`gpuq_worker_sdk::provider::ProviderConfig`].

use gpuq_service::telemetry;
use gpuq_worker_sdk::provider::ProviderConfig;
use gpuq_worker_sdk::settings::run_binary;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    telemetry::init();
    let worker = ProviderConfig::from_env()
        .map_err(|e| e.to_string())
        .and_then(|c| c.build_worker().map_err(|e| e.to_string()));
    run_binary(worker).await
}
