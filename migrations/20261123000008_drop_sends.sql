-- The send log the first throttles counted rows of. Throttles now keep GCRA
-- buckets keyed by digests (migration 0005), so nothing reads it, and it held
-- every destination number in plain text.
DROP TABLE IF EXISTS sends;
