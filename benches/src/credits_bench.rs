//! `credits-ab`: what holding a price at enqueue costs (issue #18, ADR 0014). Two release
//! dispatchers run side by side, one with credits off and one with them on (a starting
//! grant that covers every job), each on its own fresh database and Redis namespace.
//! `POST /v1/jobs` goes to them in alternating rounds, which of the two goes first swapping
//! every round. Back-to-back runs on these machines drift by tens of percent within
//! minutes; rounds a few seconds apart see the same machine.
//!
//! Every user sends one job to each dispatcher before the rounds, which creates its
//! account. The figures are steady state: a tenant's first priced request also creates
//! its account and starting grant, once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use crate::figures::Figure;
use crate::http_bench::{burst, start_dispatcher, tokens, Load};

/// Knobs of the `credits-ab` scenario.
#[derive(Args)]
pub struct CreditsArgs {
    /// Rounds per concurrency level (each round: one burst to each dispatcher).
    #[arg(long, default_value_t = 8)]
    rounds: usize,
    /// Requests per burst.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    #[command(flatten)]
    load: Load,
}

/// One dispatcher's totals at one concurrency.
struct Side {
    busy: Duration,
    sent: usize,
    errors: usize,
    hist: hdrhistogram::Histogram<u64>,
    /// Requests/s of each round.
    rates: Vec<f64>,
}

impl Side {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            busy: Duration::ZERO,
            sent: 0,
            errors: 0,
            hist: hdrhistogram::Histogram::new(3)?,
            rates: Vec::new(),
        })
    }
}

/// Runs the scenario.
pub async fn run(redis_url: &str, a: CreditsArgs) -> anyhow::Result<Vec<Figure>> {
    let on_env = [
        ("GPUQ_CREDITS", "true"),
        ("GPUQ_STARTING_CREDITS", "1000000000"),
    ];
    let ns = |side: &str| format!("bench-{side}-{}", uuid::Uuid::new_v4().simple());
    let (off_ns, on_ns) = (ns("off"), ns("on"));
    let off = start_dispatcher(&a.load.dispatcher, redis_url, &off_ns, &[]).await?;
    let on = start_dispatcher(&a.load.dispatcher, redis_url, &on_ns, &on_env).await?;
    let urls = [
        format!("{}/v1/jobs", off.base),
        format!("{}/v1/jobs", on.base),
    ];
    let tokens = Arc::new(tokens(a.load.users));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut scratch = hdrhistogram::Histogram::new(3)?;
    for url in &urls {
        burst(&http, url, &tokens, 0..a.load.users, 16, &mut scratch).await?;
    }
    let mut next = a.load.users;
    let mut figures = Vec::new();
    for &c in &a.load.concurrency {
        let mut sides = [Side::new()?, Side::new()?];
        for round in 0..a.rounds {
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for k in order {
                let side = &mut sides[k];
                let t = Instant::now();
                let ids = next..next + a.requests;
                next += a.requests;
                side.errors += burst(&http, &urls[k], &tokens, ids, c, &mut side.hist).await?;
                let took = t.elapsed();
                side.busy += took;
                side.sent += a.requests;
                side.rates.push(a.requests as f64 / took.as_secs_f64());
            }
        }
        figures.extend(report(&a, c, &sides));
    }
    drop((off, on));
    crate::services::drop_namespace(redis_url, &off_ns).await?;
    crate::services::drop_namespace(redis_url, &on_ns).await?;
    Ok(figures)
}

/// Each side's requests/s and latency percentiles, and on ÷ off over all rounds and as the
/// median of the rounds' ratios.
fn report(a: &CreditsArgs, c: usize, sides: &[Side; 2]) -> Vec<Figure> {
    let params = json!({"rounds": a.rounds, "requests": a.requests, "concurrency": c,
                        "errors": sides[0].errors + sides[1].errors});
    let figure = |metric: String, value: f64, unit: &'static str| Figure {
        scenario: "credits-ab",
        metric,
        value,
        unit,
        params: params.clone(),
    };
    let rate = |s: &Side| s.sent as f64 / s.busy.as_secs_f64();
    let mut out = Vec::new();
    for (name, s) in [("off", &sides[0]), ("on", &sides[1])] {
        out.push(figure(
            format!("credits {name}: requests/s at concurrency {c}"),
            rate(s),
            "req/s",
        ));
        for (q, quantile) in [("p50", 0.5), ("p99", 0.99)] {
            let ms = s.hist.value_at_quantile(quantile) as f64 / 1000.0;
            out.push(figure(
                format!("credits {name}: {q} latency at concurrency {c}"),
                ms,
                "ms",
            ));
        }
    }
    out.push(figure(
        format!("on ÷ off, requests/s at concurrency {c}"),
        rate(&sides[1]) / rate(&sides[0]),
        "ratio",
    ));
    let mut ratios: Vec<f64> = sides[1]
        .rates
        .iter()
        .zip(&sides[0].rates)
        .map(|(on, off)| on / off)
        .collect();
    ratios.sort_by(f64::total_cmp);
    out.push(figure(
        format!("on ÷ off, median of the rounds at concurrency {c}"),
        ratios[ratios.len() / 2],
        "ratio",
    ));
    out
}
