-- Issue 15: an email address as a second factor. A factor that receives
-- codes holds where they go: a phone (kinds sms, voice) or an email address
-- (kind email), so `factors.phone` becomes `destination`; an authenticator
-- holds none, as before.
ALTER TABLE factors RENAME COLUMN phone TO destination;
ALTER TABLE factors DROP CONSTRAINT factors_kind_check;
ALTER TABLE factors ADD CONSTRAINT factors_kind_check CHECK (kind IN ('sms', 'voice', 'totp', 'email'));
ALTER TABLE factors ADD CONSTRAINT factors_destination_fits_kind
    CHECK ((kind = 'email') = (strpos(coalesce(destination, ''), '@') > 0));
