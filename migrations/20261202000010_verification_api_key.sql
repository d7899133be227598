-- The API key that asked for a verification (`POST /v1/verifications`, a login
-- or step-up challenge). The phone factor an approval makes is audited with it,
-- as every other change is audited with the key that made it. NULL for a
-- request published on the requests exchange (the broker authenticates those,
-- not a key) and for verifications made before this column.
ALTER TABLE verifications ADD COLUMN api_key_id text;
