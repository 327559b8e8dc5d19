//! The SDK against the real Redis, with a signature-checking callback receiver standing in
//! for the callback service: delivery, leases, the demo handler, storage backends.

mod delivery;
mod demo;
mod helpers;
mod leases;
mod misconfig;
mod storage;
