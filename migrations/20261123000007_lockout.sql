-- Per-account lockout with backoff for wrong verification codes: `failures` wrong
-- codes in a row (over all the account's verifications) lock its checks until
-- `locked_until`; each lockout doubles the next (`lockouts`), and a correct code
-- clears both.
CREATE TABLE account_lockouts (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id    text NOT NULL,
    failures      integer NOT NULL DEFAULT 0,
    lockouts      integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, account_id)
);
