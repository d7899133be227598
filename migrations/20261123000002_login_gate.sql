-- The login gate (issue 3): a default factor per account, organisation policy,
-- the organisations an account logs into, login and step-up challenges, and
-- the audit trail of security-relevant changes.

-- One default factor per account: where a login challenge sends its code.
ALTER TABLE factors ADD COLUMN is_default boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX factors_one_default ON factors (tenant_id, account_id) WHERE is_default;
CREATE INDEX factors_account ON factors (tenant_id, account_id);

-- Two-factor policy of an organisation (a customer of the tenant). No row means
-- `optional` with SSO allowed. `required` and `mandatory` turn SSO off.
CREATE TABLE organisations (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    organisation_id text NOT NULL,
    policy          text NOT NULL CHECK (policy IN ('optional', 'required', 'mandatory')),
    sso_enabled     boolean NOT NULL,
    updated_at      timestamptz NOT NULL,
    updated_by      text NOT NULL,
    PRIMARY KEY (tenant_id, organisation_id),
    CHECK (policy = 'optional' OR NOT sso_enabled)
);

-- Which organisations an account has logged into through the gate: deleting
-- the last factor is refused while any of them is `mandatory`.
CREATE TABLE memberships (
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    organisation_id text NOT NULL,
    account_id      text NOT NULL,
    last_login_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, account_id, organisation_id)
);

-- A login or step-up challenge. An SMS/voice code goes out as a verification
-- (`verification_id`, to the phone of `sent_factor_id`); an authenticator code,
-- a backup code or the recovery code answers without one. A passed challenge
-- is what a proof refers to; an admin reset deletes the account's challenges,
-- so proofs issued before it stop working.
CREATE TABLE challenges (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id      text NOT NULL,
    organisation_id text NOT NULL,
    purpose         text NOT NULL CHECK (purpose IN ('login', 'step_up')),
    status          text NOT NULL CHECK (status IN ('pending', 'passed', 'failed', 'expired')),
    verification_id uuid REFERENCES verifications (id) ON DELETE SET NULL,
    sent_factor_id  uuid,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    passed_via      text,
    passed_factor_id uuid,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    completed_at    timestamptz
);
CREATE INDEX challenges_account ON challenges (tenant_id, account_id, created_at);
CREATE INDEX challenges_pending_deadline ON challenges (expires_at) WHERE status = 'pending';
CREATE INDEX challenges_pruning ON challenges (created_at);

-- Every security-relevant change: what happened to which account or
-- organisation, who did it (the person, as the backend names them, and the API
-- key it called with), and when. Never a code or a secret.
CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id      text,
    organisation_id text,
    action          text NOT NULL,
    actor           text NOT NULL,
    api_key_id      text,
    detail          jsonb NOT NULL DEFAULT '{}',
    occurred_at     timestamptz NOT NULL
);
CREATE INDEX audit_log_account ON audit_log (tenant_id, account_id, id);
CREATE INDEX audit_log_organisation ON audit_log (tenant_id, organisation_id, id) WHERE organisation_id IS NOT NULL;
