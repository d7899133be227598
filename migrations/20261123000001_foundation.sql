-- verifyd foundation: tenants and their API keys, phone verifications, delivery
-- attempts, verified phone factors, send log for throttling, and the outbox.
-- Every tenant-owned row carries tenant_id; every lookup filters on it.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API keys: the secret part is stored as SHA-256 only (keys are 256-bit random,
-- so a fast hash is enough); `key_id` is the public part used for lookup.
CREATE TABLE api_keys (
    key_id      text PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    secret_hash bytea NOT NULL,
    label       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Lifecycle: pending -> approved | expired | max_attempts_reached.
-- The code is kept twice, never in plaintext: `code_mac` (HMAC-SHA256 with the
-- server key) is what a check compares against; `code_sealed` (AES-256-GCM, the
-- verification id as associated data) lets a delivery worker in any process
-- resend the same code.
CREATE TABLE verifications (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id      text NOT NULL,
    phone           text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('sms', 'voice')),
    locale          text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'approved', 'expired', 'max_attempts_reached')),
    code_mac        bytea NOT NULL,
    code_sealed     bytea NOT NULL,
    code_length     smallint NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    sends           integer NOT NULL DEFAULT 1,
    idempotency_key text,
    reply_to        text,
    correlation_id  text,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    last_sent_at    timestamptz NOT NULL,
    completed_at    timestamptz,
    -- set when account state has recorded the approved phone as a factor
    factor_recorded boolean NOT NULL DEFAULT false,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX verifications_pending_deadline ON verifications (expires_at) WHERE status = 'pending';
CREATE INDEX verifications_unrecorded ON verifications (completed_at) WHERE status = 'approved' AND NOT factor_recorded;

-- One row per code sent (create and resend), for throttles that must hold across
-- processes: counted under a per-key advisory lock.
CREATE TABLE sends (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    phone       text NOT NULL,
    account_id  text NOT NULL,
    sent_at     timestamptz NOT NULL
);
CREATE INDEX sends_phone ON sends (tenant_id, phone, sent_at);
CREATE INDEX sends_account ON sends (tenant_id, account_id, sent_at);
CREATE INDEX sends_pruning ON sends (sent_at);

-- A delivery job is claimed before its provider is called, so two copies of one
-- job (a relay republish, a redelivery) never both send. A claim whose holder
-- died expires at `claimed_until` and can be taken over, unless the job reached
-- a final attempt (delivery_attempts) meanwhile.
CREATE TABLE dispatch_claims (
    job_id        uuid PRIMARY KEY,
    claimed_until timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dispatch_claims_pruning ON dispatch_claims (created_at);

-- Each time dispatch handed a job to a provider (or gave up on it).
CREATE TABLE delivery_attempts (
    id                  uuid PRIMARY KEY,
    job_id              uuid NOT NULL,
    verification_id     uuid NOT NULL REFERENCES verifications (id) ON DELETE CASCADE,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel             text NOT NULL,
    provider            text,
    provider_message_id text,
    outcome             text NOT NULL CHECK (outcome IN ('sent', 'retryable_error', 'permanent_error', 'skipped')),
    error               text,
    latency_ms          integer,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_attempts_verification ON delivery_attempts (verification_id);
CREATE UNIQUE INDEX delivery_attempts_job_done ON delivery_attempts (job_id) WHERE outcome IN ('sent', 'permanent_error', 'skipped');

-- Second factors, owned by the account-state actor: verified phones (sms,
-- voice) and authenticator apps (totp). A factor is `pending` until its first
-- correct code. A TOTP secret is kept only sealed (AES-256-GCM, the factor id as
-- associated data); `totp_last_step` is the last time step accepted, so a code
-- is accepted once (RFC 6238 §5.2).
CREATE TABLE factors (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id       text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('sms', 'voice', 'totp')),
    phone            text,
    label            text,
    status           text NOT NULL CHECK (status IN ('pending', 'active')),
    totp_sealed      bytea,
    totp_last_step   bigint,
    confirm_attempts integer NOT NULL DEFAULT 0,
    verified_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'totp') = (totp_sealed IS NOT NULL)),
    CHECK ((kind = 'totp') = (phone IS NULL)),
    UNIQUE (tenant_id, account_id, kind, phone)
);

-- Backup codes (a set of 10 per account) and the recovery code (one per account):
-- each stored as an HMAC under the server key with its set's id (`generation`),
-- single use (`used_at`). A new set of a kind replaces the old one.
CREATE TABLE backup_codes (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id  text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('backup', 'recovery')),
    generation  uuid NOT NULL,
    code_mac    bytea NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, account_id, kind, code_mac)
);

-- Transactional outbox: written in the same transaction as the state it reports,
-- published (with publisher confirms) and deleted by the relay.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    target         text NOT NULL CHECK (target IN ('event', 'dispatch', 'reply')),
    routing_key    text NOT NULL,
    payload        jsonb NOT NULL,
    correlation_id text,
    created_at     timestamptz NOT NULL DEFAULT now()
);
