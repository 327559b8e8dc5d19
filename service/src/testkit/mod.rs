//! The dev-only test kit (feature `testkit`): what every crate's tests need to run against
//! the real PostgreSQL and Redis in parallel — each test its own database and key
//! namespace — plus builders for envelopes and tokens, and raw-socket clients.
//!
//! # Layout
//!
//! - [`config_files`]: YAML files for tests of the configuration layers.
//! - [`database`]: [`fresh_database`] / [`migrated_database`], named so the kit finds and
//!   drops its own leftovers.
//! - [`ids`]: [`namespace`], [`redis_url`].
//! - [`envelope`]: [`envelope`](envelope::envelope) of a job type with the catalog's defaults.
//! - [`token`]: HS256 tokens as the app's auth server issues them.
//! - [`shapes`]: the answers every service gives alike, checked alike.
//! - [`raw_http`]: hostile clients over raw TCP and a service binary run as a child process.
//! - [`redis_server`]: [`private_redis`], a redis-server of a test's own.

pub mod config_files;
pub mod database;
pub mod envelope;
pub mod ids;
pub mod raw_http;
pub mod redis_server;
pub mod shapes;
pub mod token;

pub use config_files::ConfigFiles;
pub use database::{database_url, fresh_database, migrated_database};
pub use envelope::envelope;
pub use ids::{namespace, redis_url};
pub use redis_server::private_redis;
pub use token::{token_for, token_with, JWT_SECRET};
