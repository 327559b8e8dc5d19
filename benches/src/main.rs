//! `gpuq-bench`: runs one benchmark scenario against real local services and prints one
//! JSON line per figure, then a Markdown table. See `benches/README.md`.

mod affinity_bench;
mod chaos;
mod credits_bench;
mod fairness_bench;
mod fairness_eta;
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
    /// Credits off against on: two dispatchers, alternating rounds of `POST /v1/jobs`
    CreditsAb(credits_bench::CreditsArgs),
    /// An idle SDK worker: time from enqueue to handler start.
    Pickup(system_bench::PickupArgs),
    /// The callback service completing 3-image jobs.
    Callback(system_bench::CallbackArgs),
    /// The whole system, HTTP to rows.
    E2e(system_bench::E2eArgs),
    /// The fair share on the real services: a lone job under a flood, weighted shares.
    Fairness(fairness_bench::FairnessArgs),
    /// Model routing against plain fair order: model loads, throughput, longest wait.
    Affinity(affinity_bench::AffinityArgs),
    /// Faults injected into the whole system: nothing lost, nothing doubled.
    Chaos(chaos::ChaosArgs),
    /// Every benchmark scenario above (not `chaos`), each with its default knobs, and one
    /// table of all figures.
    All,
}

/// The scenarios `all` runs, in order.
const ALL: [&str; 6] = [
    "queue",
    "memory",
    "pickup",
    "http-enqueue",
    "callback",
    "e2e",
];

async fn run(redis_url: &str, scenario: Scenario) -> anyhow::Result<Vec<figures::Figure>> {
    Ok(match scenario {
        Scenario::Queue(args) => queue_bench::run_queue(redis_url, args).await?,
        Scenario::Memory(args) => queue_bench::run_memory(redis_url, args).await?,
        Scenario::HttpEnqueue(args) => http_bench::run(redis_url, args).await?,
        Scenario::CreditsAb(args) => credits_bench::run(redis_url, args).await?,
        Scenario::Pickup(args) => system_bench::run_pickup(redis_url, args).await?,
        Scenario::Callback(args) => system_bench::run_callback(redis_url, args).await?,
        Scenario::E2e(args) => system_bench::run_e2e(redis_url, args).await?,
        Scenario::Fairness(args) => fairness_bench::run(redis_url, args).await?,
        Scenario::Affinity(args) => affinity_bench::run(redis_url, args).await?,
        Scenario::Chaos(args) => chaos::run(args).await?,
        Scenario::All => {
            let mut all = Vec::new();
            for name in ALL {
                eprintln!("gpuq-bench: running {name}");
                let cli = Cli::try_parse_from(["gpuq-bench", name])?;
                all.extend(Box::pin(run(redis_url, cli.scenario)).await?);
            }
            all
        }
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let figures = run(&cli.redis_url, cli.scenario).await?;
    figures::print(&figures);
    Ok(())
}
