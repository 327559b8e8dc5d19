-- Per-tenant concurrency caps (docs/adr/0012-fair-share.md, "Concurrency caps"): at most
-- this many of the tenant's jobs in flight at once in a queue. NULL: the configured default
-- (`enqueue.max_in_flight_per_tenant`), which may be none. Set through
-- PUT /admin/tenants/{tenant} with `maxInFlight`; the dispatcher copies the caps into Redis
-- (`set_caps.lua`) at once and on every reconcile period.
ALTER TABLE tenant_weights
    ADD COLUMN max_in_flight integer CHECK (max_in_flight BETWEEN 1 AND 100000);
