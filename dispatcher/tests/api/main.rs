//! Dispatcher integration tests against real PostgreSQL and Redis.

mod admin;
mod auth;
mod browsers;
mod credits;
mod deadlines;
mod enqueue;
mod eta;
mod events;
mod fairness;
mod helpers;
mod hostile;
mod job_webhooks;
mod jobs;
mod legacy;
mod limits;
mod loops;
mod overflow;
mod quarantine;
mod reconcile;
mod recorder;
mod routing;
mod shapes;
mod webhooks;
