-- Abuse defences (issue 5): geo permissions per tenant, and the SMS-pumping
-- guard's per-prefix counts and blocks.

-- A tenant's allow-list of destination countries (ISO 3166-1 alpha-2) per
-- channel. NULL for a channel: the configured default applies
-- (abuse.default_countries); an empty array: nothing may be sent by it.
CREATE TABLE geo_permissions (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    sms         text[],
    voice       text[],
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Verifications sent to a destination prefix (`+447911`) and how many of them
-- were approved, per minute they were sent in. Written in the transaction of
-- the send and of the approval; rows older than the window are pruned.
CREATE TABLE prefix_stats (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix      text NOT NULL,
    minute      timestamptz NOT NULL,
    sent        integer NOT NULL DEFAULT 0,
    approved    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, prefix, minute)
);
CREATE INDEX prefix_stats_pruning ON prefix_stats (minute);

-- The latest block of a prefix for a tenant: in force while lifted_at is NULL
-- and blocked_until is ahead. One row per (tenant, prefix), written with
-- ON CONFLICT so that processes deciding at once block once.
CREATE TABLE prefix_blocks (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix        text NOT NULL,
    country       text,
    blocked_at    timestamptz NOT NULL,
    blocked_until timestamptz NOT NULL,
    lifted_at     timestamptz,
    -- the counts that led to the block
    sent          integer NOT NULL,
    approved      integer NOT NULL,
    PRIMARY KEY (tenant_id, prefix)
);
