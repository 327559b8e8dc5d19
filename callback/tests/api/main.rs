//! Integration tests of gpuq-callback against the real PostgreSQL and Redis.

mod batches;
mod bounds;
mod credits;
mod failures;
mod fences;
mod health;
mod helpers;
mod hostile;
mod legacy;
mod payloads;
mod races;
mod shapes;
mod signatures;
mod transitions;
mod webhooks;
