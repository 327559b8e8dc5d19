//! HTTP routes, one file per resource.

mod callback;
mod metrics;

pub use callback::{callback, legacy_callback, CallbackError};
pub use metrics::metrics;
