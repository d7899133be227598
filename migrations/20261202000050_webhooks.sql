-- Issue 13, item 3: event webhooks. A tenant's endpoints, and one delivery row
-- per (endpoint, event), made in the transaction that writes the event to the
-- outbox (a trigger on `outbox`), so an event is delivered to every endpoint it
-- matched when it happened, or to none. See docs/webhooks.md.

CREATE TABLE webhook_endpoints (
    id                   uuid PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                  text NOT NULL CHECK (length(url) BETWEEN 8 AND 2048),
    -- `*`, an event name (`verification.approved`) or a family (`factor.*`).
    event_types          text[] NOT NULL CHECK (cardinality(event_types) > 0),
    enabled              boolean NOT NULL DEFAULT true,
    -- Why it was turned off: `manual`, or `gone` (the receiver answered 410).
    disabled_reason      text CHECK (disabled_reason IN ('manual', 'gone')),
    -- The signing secret, AES-256-GCM sealed with `secrets.encryption_key`,
    -- bound to the endpoint's id; the previous one signs too until it expires.
    secret_sealed        bytea NOT NULL,
    previous_sealed      bytea,
    previous_expires_at  timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK (enabled = (disabled_reason IS NULL)),
    CHECK ((previous_sealed IS NULL) = (previous_expires_at IS NULL))
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, created_at);

-- One event to one endpoint. `id` is the `webhook-id` header: the same on
-- every attempt. `lane` is what the order holds within (a verification, else
-- an account, else the tenant); `seq` the order itself.
CREATE TABLE webhook_deliveries (
    id             uuid PRIMARY KEY,
    seq            bigserial NOT NULL UNIQUE,
    endpoint_id    uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_id       uuid NOT NULL,
    event_type     text NOT NULL,
    lane           text NOT NULL,
    payload        jsonb NOT NULL,
    status         text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'delivered', 'dead', 'skipped')),
    attempts       integer NOT NULL DEFAULT 0,
    claimed_until  timestamptz,
    last_status    integer,
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    UNIQUE (endpoint_id, event_id)
);
-- The head of a lane: its pending row of lowest seq.
CREATE INDEX webhook_deliveries_lane ON webhook_deliveries (endpoint_id, lane, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (created_at) WHERE status = 'pending';
-- What the reporter prunes: finished deliveries by age.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE status <> 'pending';

-- Work for the webhook consumers goes through the outbox too.
ALTER TABLE outbox DROP CONSTRAINT outbox_target_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_target_check CHECK (target IN ('event', 'dispatch', 'reply', 'webhook'));

-- Webhook letters: the delivery they hold, and two reasons of their own.
ALTER TABLE dead_letters ADD COLUMN webhook_delivery_id uuid;
CREATE INDEX dead_letters_webhook_delivery ON dead_letters (webhook_delivery_id) WHERE webhook_delivery_id IS NOT NULL;
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_reason_kind_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_reason_kind_check
    CHECK (reason_kind IN ('retries_exhausted', 'malformed', 'unknown_verification', 'sealed_code',
        'unknown_tenant', 'invalid_request', 'too_large', 'idempotency_conflict', 'receiver_refused', 'other'));

-- Every event row written to the outbox (whatever wrote it) fans out to the
-- tenant's enabled endpoints whose filter matches, with a `webhook` outbox row
-- per delivery for the relay to publish to `<prefix>webhooks`.
CREATE FUNCTION webhook_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH made AS (
        INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, lane, payload)
        SELECT gen_random_uuid(), e.id, e.tenant_id, (NEW.payload->>'event_id')::uuid, NEW.payload->>'event',
               CASE WHEN NEW.payload ? 'verification_id' THEN 'verification:' || (NEW.payload->>'verification_id')
                    WHEN coalesce(NEW.payload->>'account_id', '') <> '' THEN 'account:' || (NEW.payload->>'account_id')
                    ELSE 'tenant' END,
               NEW.payload
        FROM webhook_endpoints e JOIN tenants t ON t.id = e.tenant_id
        WHERE t.name = NEW.payload->>'tenant' AND e.enabled
          AND ('*' = ANY (e.event_types) OR (NEW.payload->>'event') = ANY (e.event_types)
               OR (split_part(NEW.payload->>'event', '.', 1) || '.*') = ANY (e.event_types))
        ORDER BY e.created_at, e.id
        ON CONFLICT (endpoint_id, event_id) DO NOTHING
        RETURNING id
    )
    INSERT INTO outbox (target, routing_key, payload)
    SELECT 'webhook', '', jsonb_build_object('delivery_id', made.id) FROM made;
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_webhook_fan_out AFTER INSERT ON outbox
    FOR EACH ROW WHEN (NEW.target = 'event') EXECUTE FUNCTION webhook_fan_out();
