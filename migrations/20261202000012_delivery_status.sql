-- A verification knows its latest delivery job (the one a create, a resend, a
-- voice fallback or a dead-letter replay queued last): its delivery state is
-- read from that job's attempts, and only that job's permanent failure ends
-- the verification, in the terminal status `failed`. Rows from before this
-- migration have no job recorded: their state is read from their latest attempt.
ALTER TABLE verifications
    ADD COLUMN delivery_job_id  uuid,
    ADD COLUMN delivery_channel text CHECK (delivery_channel IN ('sms', 'voice'));
ALTER TABLE verifications DROP CONSTRAINT verifications_status_check;
ALTER TABLE verifications ADD CONSTRAINT verifications_status_check
    CHECK (status IN ('pending', 'approved', 'expired', 'max_attempts_reached', 'canceled', 'failed'));
-- "Was this job dead-lettered?", asked when a backend reads a delivery state.
CREATE INDEX dead_letters_job ON dead_letters (job_id) WHERE job_id IS NOT NULL;
