-- Fair-share weights (docs/adr/0012-fair-share.md): a tenant of weight 3 gets three times
-- the GPU time of a tenant of weight 1 while both have jobs waiting. A tenant without a row
-- has weight 1. Set through PUT /admin/tenants/{tenant}; the dispatcher caches the table.
CREATE TABLE tenant_weights (
    tenant text PRIMARY KEY CHECK (tenant ~ '^[A-Za-z0-9._:@-]{1,128}$'),
    weight integer NOT NULL CHECK (weight BETWEEN 1 AND 1000),
    updated_at timestamptz NOT NULL DEFAULT now()
);
