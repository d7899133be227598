-- A delivery receipt can arrive before the attempt naming its message is
-- committed: a provider may call back while verifyd is still recording the
-- send its API just answered. Such a receipt is parked here, and applied (in
-- the transaction that deletes it) once the attempt exists; one that no
-- attempt claims within ten minutes is dropped as another system's.
CREATE TABLE parked_receipts (
    provider text NOT NULL,
    provider_message_id text NOT NULL,
    status text NOT NULL,
    error_code text,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (provider, provider_message_id, status)
);
CREATE INDEX parked_receipts_received ON parked_receipts (received_at);
