-- Issue 4: routing with failover, delivery receipts, channel fallback.

-- A provider may refuse a message for a reason of its own (its account, geo
-- permissions, filters): the job goes on to the next provider and that
-- attempt is recorded as `refused` (not final: several per job are fine).
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_outcome_check;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_outcome_check
    CHECK (outcome IN ('sent', 'retryable_error', 'permanent_error', 'skipped', 'refused'));
-- Every dispatch asks which providers refused its job: the partial index on
-- final outcomes cannot answer that, and this one stays tiny.
CREATE INDEX delivery_attempts_refused ON delivery_attempts (job_id) WHERE outcome = 'refused';

-- What the provider's delivery receipt (status callback) says about a sent
-- message: queued/sent → delivered, or undelivered/failed with the carrier's
-- error code. `receipt_at` is when verifyd received the latest receipt.
ALTER TABLE delivery_attempts
    ADD COLUMN receipt_status     text CHECK (receipt_status IN ('queued', 'sent', 'delivered', 'undelivered', 'failed')),
    ADD COLUMN receipt_error_code text,
    ADD COLUMN receipt_at         timestamptz;
-- Receipts name the message by the provider's id.
CREATE INDEX delivery_attempts_provider_message
    ON delivery_attempts (provider, provider_message_id) WHERE provider_message_id IS NOT NULL;

-- Set when an undelivered SMS made verifyd send the same code by the fallback
-- channel (voice): at most once per verification.
ALTER TABLE verifications ADD COLUMN fallback_at timestamptz;
