-- Send and check throttles as GCRA buckets (the algorithm governor uses in
-- process), so every process gives the same answer as one. A key is the
-- SHA-256 of its scope and parts (no phone number or IP address is stored);
-- `tat` is the theoretical arrival time: a bucket whose tat is past is full
-- again, and its row can be pruned.
CREATE TABLE throttle_buckets (
    key  bytea PRIMARY KEY,
    tat  timestamptz NOT NULL
);
CREATE INDEX throttle_buckets_pruning ON throttle_buckets (tat);

-- Takes one cell from every bucket named, or from none: the rows are locked in
-- key order (no deadlock between callers), every bucket is checked, and only
-- when all allow are they all advanced. `emission_secs` is window/count (one
-- cell back every so often), `window_secs` the burst (count cells at once).
-- Returns 0 and 0 when allowed; otherwise the 1-based position of the bucket
-- that needs the longest wait, and that wait in seconds.
CREATE FUNCTION verifyd_throttle_take(keys bytea[], emission_secs float8[], window_secs float8[], at timestamptz)
RETURNS TABLE (refused_by integer, wait_secs float8)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    current timestamptz;
    next_tat timestamptz[] := '{}';
    wait float8;
    worst integer := 0;
    worst_wait float8 := 0;
BEGIN
    FOR i IN SELECT o FROM unnest(keys) WITH ORDINALITY AS u(k, o) ORDER BY k LOOP
        INSERT INTO throttle_buckets (key, tat) VALUES (keys[i], at) ON CONFLICT (key) DO NOTHING;
        SELECT b.tat INTO current FROM throttle_buckets b WHERE b.key = keys[i] FOR UPDATE;
        next_tat[i] := greatest(current, at) + make_interval(secs => emission_secs[i]);
        wait := extract(epoch FROM next_tat[i] - at) - window_secs[i];
        -- A microsecond of slack: timestamps are stored to the microsecond.
        IF wait > 0.000002 AND wait > worst_wait THEN
            worst := i;
            worst_wait := wait;
        END IF;
    END LOOP;
    IF worst = 0 THEN
        FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
            UPDATE throttle_buckets SET tat = next_tat[i] WHERE key = keys[i];
        END LOOP;
    END IF;
    RETURN QUERY SELECT worst, worst_wait;
END
$$;
