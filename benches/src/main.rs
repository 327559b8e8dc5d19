//! `gpuq-bench`: runs one benchmark scenario against real local services and prints one
//! JSON line per figure, then a Markdown table. See `benches/README.md`.

mod figures;
mod http_bench;
mod queue_bench;
mod services;

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let figures = match cli.scenario {
        Scenario::Queue(args) => queue_bench::run_queue(&cli.redis_url, args).await?,
        Scenario::Memory(args) => queue_bench::run_memory(&cli.redis_url, args).await?,
        Scenario::HttpEnqueue(args) => http_bench::run(&cli.redis_url, args).await?,
    };
    figures::print(&figures);
    Ok(())
}
