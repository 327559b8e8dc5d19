//! The SDK against the real Redis, with a signature-checking callback receiver standing in
//! for the callback service: delivery, leases, the demo handler, the provider worker, storage backends.

mod delivery;
mod demo;
mod fake_replicate;
mod helpers;
mod leases;
mod misconfig;
mod provider;
mod routing;
mod run_limits;
mod storage;
