//! HTTP routes, one file per resource.

mod callback;
mod health;

pub use callback::{callback, CallbackError};
pub use health::{healthz, metrics, readyz};
