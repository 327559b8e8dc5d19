//! `gpuq-dispatcher [serve]`, `gpuq-dispatcher migrate`, or
//! `gpuq-dispatcher mint-token <user-uuid> [ttl-seconds] [role]` (development).

use gpuq_dispatcher::{dev_token, Application, Settings};
use gpuq_service::configuration::Layered;
use gpuq_service::{connection_pool, telemetry, MIGRATOR};

#[global_allocator]
static ALLOCATOR: gpuq_service::Allocator = gpuq_service::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let settings = Settings::load()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("serve") => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await
        }
        Some("migrate") => {
            MIGRATOR.run(&connection_pool(&settings.database)?).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some("mint-token") => {
            let sub = args
                .get(1)
                .ok_or_else(|| anyhow::anyhow!("usage: mint-token <user-uuid> [ttl] [role]"))?;
            let ttl = args.get(2).map(|t| t.parse()).transpose()?.unwrap_or(3600);
            let role = args.get(3).map_or("authenticated", String::as_str);
            println!("{}", dev_token::mint(&settings, sub, ttl, role)?);
            Ok(())
        }
        Some(other) => {
            anyhow::bail!("unknown command {other:?}; expected serve, migrate or mint-token")
        }
    }
}
