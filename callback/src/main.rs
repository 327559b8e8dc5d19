//! The `gpuq-callback` binary: telemetry → configuration → [`Application::build`] → run.

use anyhow::Context;
use gpuq_callback::{Application, Settings};
use gpuq_service::configuration::Layered;
use gpuq_service::telemetry;

#[global_allocator]
static ALLOCATOR: gpuq_service::Allocator = gpuq_service::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let settings = Settings::load().context("loading configuration")?;
    let application = Application::build(settings)
        .await
        .context("starting gpuq-callback")?;
    application.run_until_stopped().await?;
    Ok(())
}
