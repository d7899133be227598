-- A backend may call a pending verification off: `canceled` is a terminal status.
ALTER TABLE verifications DROP CONSTRAINT verifications_status_check;
ALTER TABLE verifications ADD CONSTRAINT verifications_status_check
    CHECK (status IN ('pending', 'approved', 'expired', 'max_attempts_reached', 'canceled'));
