//! `gpuq-bench`: runs one benchmark scenario against real local services and prints one
//! JSON line per figure, then a Markdown table. See `benches/README.md`.

mod figures;
mod http_bench;
mod queue_bench;
mod services;
mod system_bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "gpuq load generator")]
struct Cli {
    /// Redis to benchmark against.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// The queue crate alone: enqueue and claim+ack throughput.
    Queue(queue_bench::QueueArgs),
    /// Redis memory per waiting job.
    Memory(queue_bench::MemoryArgs),
    /// `POST /v1/jobs` against a release-built dispatcher process.
    HttpEnqueue(http_bench::HttpArgs),
    /// An idle SDK worker: time from enqueue to handler start.
    Pickup(system_bench::PickupArgs),
    /// The callback service completing 3-image jobs.
    Callback(system_bench::CallbackArgs),
    /// The whole system, HTTP to rows.
    E2e(system_bench::E2eArgs),
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let figures = match cli.scenario {
        Scenario::Queue(args) => queue_bench::run_queue(&cli.redis_url, args).await?,
        Scenario::Memory(args) => queue_bench::run_memory(&cli.redis_url, args).await?,
        Scenario::HttpEnqueue(args) => http_bench::run(&cli.redis_url, args).await?,
        Scenario::Pickup(args) => system_bench::run_pickup(&cli.redis_url, args).await?,
        Scenario::Callback(args) => system_bench::run_callback(&cli.redis_url, args).await?,
        Scenario::E2e(args) => system_bench::run_e2e(&cli.redis_url, args).await?,
    };
    figures::print(&figures);
    Ok(())
}
