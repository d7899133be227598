-- Issue 15: codes by email. A verification goes to a phone number (channels
-- sms and voice) or to an email address (channel email), so its `phone`
-- becomes its `destination`: `+E.164`, or the address with its domain in
-- lowercase ASCII. Which of the two it is follows from the channel, and the
-- database holds it to that.
ALTER TABLE verifications RENAME COLUMN phone TO destination;
ALTER TABLE verifications DROP CONSTRAINT verifications_channel_check;
ALTER TABLE verifications ADD CONSTRAINT verifications_channel_check
    CHECK (channel IN ('sms', 'voice', 'email'));
ALTER TABLE verifications ADD CONSTRAINT verifications_destination_fits_channel
    CHECK ((channel = 'email') = (strpos(destination, '@') > 0));
ALTER TABLE verifications DROP CONSTRAINT verifications_delivery_channel_check;
ALTER TABLE verifications ADD CONSTRAINT verifications_delivery_channel_check
    CHECK (delivery_channel IN ('sms', 'voice', 'email'));
ALTER TABLE dead_letters DROP CONSTRAINT dead_letters_channel_check;
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_channel_check
    CHECK (channel IN ('sms', 'voice', 'email'));
-- A tenant's own email text (the plain-text body; the HTML part is made from it).
ALTER TABLE message_templates DROP CONSTRAINT message_templates_channel_check;
ALTER TABLE message_templates ADD CONSTRAINT message_templates_channel_check
    CHECK (channel IN ('sms', 'voice', 'email'));
