-- API key security: scopes, a source CIDR allow-list, rotation and last use.
--
-- `scopes`: what a key may call (verify, enrol, admin, ops). Keys that existed
-- before this migration get all four, so an upgrade breaks no caller; the
-- default is then dropped, so every new key states its scopes.
-- `allowed_cidrs`: source networks the key is accepted from; empty = anywhere.
-- Text, normalised by the service; the CHECK makes PostgreSQL parse each one.
-- `expires_at`: set when the key is rotated (now + grace); after it the key is
-- refused like an unknown one. NULL = no expiry.
-- `last_used_at`: refreshed at most once per key cache period per process.
ALTER TABLE api_keys
    ADD COLUMN scopes text[] NOT NULL DEFAULT ARRAY['verify', 'enrol', 'admin', 'ops']
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['verify', 'enrol', 'admin', 'ops']),
    ADD COLUMN allowed_cidrs text[] NOT NULL DEFAULT '{}'
        CHECK (allowed_cidrs::cidr[] IS NOT NULL),
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN last_used_at timestamptz;

ALTER TABLE api_keys ALTER COLUMN scopes DROP DEFAULT;
