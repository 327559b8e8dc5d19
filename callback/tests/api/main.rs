//! Integration tests of gpuq-callback against the real PostgreSQL and Redis.

mod failures;
mod health;
mod helpers;
mod hostile;
// Raw-socket clients and the child-process runner, shared with the dispatcher's tests.
#[path = "../../../dispatcher/tests/api/hostile_io.rs"]
mod hostile_io;
mod payloads;
mod races;
mod signatures;
mod transitions;
