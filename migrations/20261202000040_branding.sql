-- Branding per tenant (issue 13, item 4): a display name shown as the TOTP
-- issuer, named in SMS texts and calls; NULL keeps the slug and
-- `verification.app_name`.
ALTER TABLE tenants ADD COLUMN display_name text
    CHECK (display_name IS NULL OR char_length(display_name) BETWEEN 1 AND 64);

-- A tenant's own SMS and voice texts, per locale (`en`, `pt-BR`). The text is
-- validated when saved; sends read it in the statement that claims the job.
CREATE TABLE message_templates (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel     text NOT NULL CHECK (channel IN ('sms', 'voice')),
    locale      text NOT NULL CHECK (locale ~ '^[a-z]{2}(-[A-Z]{2})?$'),
    body        text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, channel, locale)
);
