//! `gpuq-dispatcher`: serve the API (default) or `gpuq-dispatcher migrate`.

use gpuq_dispatcher::{startup, telemetry, Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let settings = Settings::load()?;
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        let db = startup::pg_pool(&settings)?;
        startup::migrate(&db).await?;
        tracing::info!("migrations applied");
        return Ok(());
    }
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "gpuq-dispatcher listening");
    app.run_until_stopped().await
}
