//! Integration tests of gpuq-callback against the real PostgreSQL and Redis.

mod failures;
mod health;
mod helpers;
mod payloads;
mod races;
mod signatures;
mod transitions;
