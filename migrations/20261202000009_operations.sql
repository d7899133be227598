-- Issue 11: what operators see and act on. Dead letters as records, deployment
-- operator keys and console sessions, process reports, and per-minute delivery
-- statistics shared by every process.

-- Every message verifyd gave up on, recorded by the dead-letter keeper (each
-- process consumes `<prefix>dead_letters` into this table), so that operators
-- list, open, replay and discard them without draining or reordering a queue.
-- `letter_key` is the `x-verifyd-dead-letter-id` header (or a digest of a letter
-- without one), so a redelivered letter is recorded once.
CREATE TABLE dead_letters (
    id               uuid PRIMARY KEY,
    letter_key       text NOT NULL UNIQUE,
    tenant_id        uuid REFERENCES tenants (id) ON DELETE CASCADE,
    verification_id  uuid,
    job_id           uuid,
    channel          text CHECK (channel IN ('sms', 'voice')),
    source_queue     text NOT NULL,
    reason_kind      text NOT NULL CHECK (reason_kind IN ('retries_exhausted', 'malformed', 'unknown_verification',
                         'sealed_code', 'unknown_tenant', 'invalid_request', 'too_large', 'idempotency_conflict',
                         'other')),
    reason           text NOT NULL,
    -- The message as it was (dispatch jobs carry ids only; a request carries
    -- what the backend published), at most 64 KiB.
    body             bytea NOT NULL,
    content_type     text,
    dead_lettered_at timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'replayed', 'discarded')),
    resolved_at      timestamptz,
    resolved_by      text,
    resolution       text,
    replay_job_id    uuid,
    CHECK ((status = 'dead') = (resolved_at IS NULL))
);
CREATE INDEX dead_letters_listing ON dead_letters (status, dead_lettered_at DESC, id);
CREATE INDEX dead_letters_tenant ON dead_letters (tenant_id, status, dead_lettered_at DESC);

-- Deployment operator keys: not tied to a tenant, they reach only the
-- operator endpoints (`/v1/ops/…`) and the console. `vo_<12 hex>.<secret>`;
-- the secret is stored as its SHA-256 only, as for tenant keys.
CREATE TABLE operator_keys (
    key_id        text PRIMARY KEY CHECK (key_id ~ '^vo_[0-9a-f]{12}$'),
    secret_hash   bytea NOT NULL,
    label         text,
    allowed_cidrs text[] NOT NULL DEFAULT '{}' CHECK (allowed_cidrs::cidr[] IS NOT NULL),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);

-- Console sessions: the cookie holds a random token, stored here as its
-- SHA-256 only; the key that signed in is re-checked on every request.
CREATE TABLE console_sessions (
    token_hash  bytea PRIMARY KEY,
    key_id      text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX console_sessions_pruning ON console_sessions (expires_at);

-- Operator actions are audited too, also those on no tenant's data (a
-- malformed letter, an operator key): the tenant is then NULL.
ALTER TABLE audit_log ALTER COLUMN tenant_id DROP NOT NULL;
CREATE INDEX audit_log_operations ON audit_log (id) WHERE action LIKE 'dead_letter.%' OR action LIKE 'operator_key.%';

-- What each running process knows and no other can: its consumers and its
-- providers' circuits. Written every `runtime.report_interval_ms` and when a
-- circuit changes; read by the overview of any process.
CREATE TABLE processes (
    id          uuid PRIMARY KEY,
    role        text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    version     text NOT NULL,
    started_at  timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL,
    stopped_at  timestamptz,
    report      jsonb NOT NULL
);
CREATE INDEX processes_seen ON processes (seen_at);

-- Per queue, the publication time of the newest message any consumer has
-- taken from it: messages still waiting were published after it, so the
-- oldest of them is at most `now - newest_taken_at` old.
CREATE TABLE queue_marks (
    queue            text PRIMARY KEY,
    newest_taken_at  timestamptz NOT NULL,
    taken_at         timestamptz NOT NULL
);

-- Provider calls per minute, tenant, provider and channel, added up by every
-- process from memory every report interval: `errors` counts per error kind,
-- `latency` per latency bucket (bounds in `actors/src/ops/stats.rs`).
CREATE TABLE provider_minutes (
    minute     timestamptz NOT NULL,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider   text NOT NULL,
    channel    text NOT NULL,
    calls      integer NOT NULL,
    accepted   integer NOT NULL,
    errors     integer[] NOT NULL,
    latency    integer[] NOT NULL,
    PRIMARY KEY (minute, tenant_id, provider, channel)
);

-- Verifications started and approved per minute, tenant, channel and
-- destination country ('' for numbers outside any country).
CREATE TABLE conversion_minutes (
    minute     timestamptz NOT NULL,
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel    text NOT NULL,
    country    text NOT NULL,
    sent       integer NOT NULL,
    approved   integer NOT NULL,
    PRIMARY KEY (minute, tenant_id, channel, country)
);

-- Element-wise sums of counter arrays, for the rollups above.
CREATE FUNCTION verifyd_add_counts(a bigint[], b integer[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a IS NULL THEN b::bigint[]
        ELSE ARRAY(SELECT coalesce(x, 0) + coalesce(y, 0) FROM unnest(a, b) AS t(x, y)) END
$$;
CREATE AGGREGATE verifyd_sum_counts(integer[]) (SFUNC = verifyd_add_counts, STYPE = bigint[]);
CREATE FUNCTION verifyd_merge_counts(a integer[], b integer[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY(SELECT (coalesce(x, 0) + coalesce(y, 0))::integer FROM unnest(a, b) AS t(x, y))
$$;

-- An attempt's error kind (timeout, unreachable, throttled, invalid_number, …),
-- and when the message it delivered was asked for (request → delivered times).
ALTER TABLE delivery_attempts
    ADD COLUMN error_kind   text,
    ADD COLUMN requested_at timestamptz;
-- Recent failures, newest first, for the console; only failures are indexed.
CREATE INDEX delivery_attempts_failures ON delivery_attempts (created_at DESC) WHERE outcome <> 'sent';
