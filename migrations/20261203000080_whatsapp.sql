-- Issue 15: codes by WhatsApp, to a phone. The channel is allowed where
-- channels are listed, a phone verified by WhatsApp can be a factor of that
-- kind, and a tenant's geo permissions get a WhatsApp list of their own
-- (NULL: the configured default applies).
ALTER TABLE verifications DROP CONSTRAINT verifications_channel_check;
ALTER TABLE verifications ADD CONSTRAINT verifications_channel_check
    CHECK (channel IN ('sms', 'voice', 'email', 'whatsapp'));
ALTER TABLE verifications DROP CONSTRAINT verifications_delivery_channel_check;
ALTER TABLE verifications ADD CONSTRAINT verifications_delivery_channel_check
    CHECK (delivery_channel IN ('sms', 'voice', 'email', 'whatsapp'));
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_channel_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_channel_check
    CHECK (channel IN ('sms', 'voice', 'email', 'whatsapp'));
ALTER TABLE factors DROP CONSTRAINT factors_kind_check;
ALTER TABLE factors ADD CONSTRAINT factors_kind_check CHECK (kind IN ('sms', 'voice', 'totp', 'email', 'whatsapp'));
ALTER TABLE geo_permissions ADD COLUMN whatsapp text[];
