//! Admin endpoints (`/admin/*`, admin token or `service_role` only): queue depth, the
//! dead-letter set, live workers, recent failures, tenants' fair-share weights and
//! credits, usage; webhook endpoints and their deliveries.

pub(crate) mod credits;
pub(crate) mod dead;
pub(crate) mod queues;
pub(crate) mod tenants;
pub(crate) mod webhooks;
pub(crate) mod workers;
