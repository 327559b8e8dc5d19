//! [`Figure`]: one measured number, printed as a JSON line and a Markdown table row.

use serde::Serialize;

/// One result of a benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Scenario name.
    pub scenario: &'static str,
    /// What was measured.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// Knobs of the run (job count, concurrency, payload size).
    pub params: serde_json::Value,
}

/// Prints every figure as a JSON line, then a Markdown table.
pub fn print(figures: &[Figure]) {
    for f in figures {
        println!("{}", serde_json::to_string(f).unwrap_or_default());
    }
    println!();
    println!("| scenario | metric | value | unit | params |");
    println!("|---|---|---:|---|---|");
    for f in figures {
        println!(
            "| {} | {} | {:.1} | {} | {} |",
            f.scenario, f.metric, f.value, f.unit, f.params
        );
    }
}
