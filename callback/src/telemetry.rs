//! Logging: `tracing` events to stdout, filtered by `RUST_LOG` (default `info`), as JSON
//! when `GPUQ_LOG_FORMAT=json` (production) and compact text otherwise.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. A second call (tests) is a no-op.
pub fn init_subscriber(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let json = std::env::var("GPUQ_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // `try_init` fails only when a subscriber is already installed.
    let _ = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
