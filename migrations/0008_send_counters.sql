-- sesame: postgres only
-- (SQLite records this migration without running it: its store counts a
-- send in a loop of the same statements, see store/limits.rs.)
--
-- A send's counters in one round trip (issue 14). `sesame_count_sends` does
-- what the store otherwise does one statement at a time: refuse while either
-- lock holds, then count each key in turn (a fixed window per key that starts
-- at its first event) and stop at the first count over its limit, leaving the
-- keys after it uncounted. It runs in its caller's transaction; the store
-- commits it at once, so the counter rows are locked only for the call.
-- It waits at most 50 ms for a row another transaction holds (then the
-- store counts one statement at a time, each committing on its own), so one
-- held row does not hold up every send that shares the rows counted before
-- it. Every send counts its keys in the same order, so two calls cannot
-- deadlock. PL/pgSQL, plain statements, no advisory lock: see the README on
-- CockroachDB and YugabyteDB.
--
-- Out: o_locked_until when a lock holds (and nothing is counted); else
-- o_step, the 1-based key over its limit (0: none), with its count and
-- window start.
CREATE FUNCTION sesame_count_sends(
    lock_key TEXT,
    lock_other TEXT,
    now_s BIGINT,
    keys TEXT[],
    windows BIGINT[],
    limits BIGINT[],
    OUT o_locked_until BIGINT,
    OUT o_step BIGINT,
    OUT o_count BIGINT,
    OUT o_window_start BIGINT
)
LANGUAGE plpgsql AS $$
DECLARE
    i INT := 1;
    setting TEXT;
BEGIN
    -- (An assignment, not PERFORM, which CockroachDB's PL/pgSQL lacks.)
    setting := set_config('lock_timeout', '50ms', true);
    o_step := 0;
    SELECT l.locked_until INTO o_locked_until FROM otp_locks l
     WHERE l.ident_key IN (lock_key, lock_other) AND l.locked_until > now_s
     ORDER BY l.locked_until DESC LIMIT 1;
    IF o_locked_until IS NOT NULL THEN
        RETURN;
    END IF;
    WHILE i <= coalesce(array_length(keys, 1), 0) LOOP
        INSERT INTO rate_counters AS c (key, window_start, count) VALUES (keys[i], now_s, 1)
        ON CONFLICT (key) DO UPDATE SET
            count = CASE WHEN c.window_start <= now_s - windows[i] THEN 1 ELSE c.count + 1 END,
            window_start = CASE WHEN c.window_start <= now_s - windows[i] THEN now_s ELSE c.window_start END
        RETURNING c.count, c.window_start INTO o_count, o_window_start;
        IF o_count > limits[i] THEN
            o_step := i;
            RETURN;
        END IF;
        i := i + 1;
    END LOOP;
    RETURN;
END
$$;
