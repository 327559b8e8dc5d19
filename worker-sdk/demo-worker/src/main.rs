//! `gpuq-demo-worker`: a worker that makes real, deterministic outputs without a GPU.
//! Configured like the services (files, `GPUQ__SECTION__FIELD`, flat names); see
//! [`gpuq_worker_sdk::demo::DemoConfig`].

use gpuq_service::telemetry;
use gpuq_worker_sdk::demo::DemoConfig;
use gpuq_worker_sdk::settings::run_binary;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    telemetry::init();
    let worker = DemoConfig::from_env()
        .map_err(|e| e.to_string())
        .and_then(|c| c.build_worker().map_err(|e| e.to_string()));
    run_binary(worker).await
}
