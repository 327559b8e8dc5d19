//! The queue protocol against a real Redis (one node, or a cluster when `REDIS_URL` is a
//! `redis+cluster://` URL); every test has its own key namespace.

mod acks;
mod capacity;
mod caps;
mod deadlines;
mod events;
mod fairness;
mod helpers;
mod library;
mod quarantine;
mod routing;
mod transitions;
