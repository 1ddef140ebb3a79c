-- rampart's shared state in PostgreSQL: rate limits and the blocklist.
-- Every row carries the moment after which it no longer matters (indexed); the store's cleanup
-- job deletes the rows past it. Times are from the database clock.

-- One row per rate-limit key (a policy key, as `ratelimit::policy` builds it).
-- The algorithms are in src/ratelimit/algorithm.rs; `rampart_rate_limit_step` below is their
-- translation, and src/ratelimit/postgres.rs runs it in one INSERT ... ON CONFLICT DO UPDATE.
CREATE TABLE rampart_rate_limits (
    key             text        PRIMARY KEY,
    -- The last check's inputs. Each checked row carries them, so that ON CONFLICT DO UPDATE
    -- reads them from EXCLUDED.
    algorithm       text        NOT NULL CHECK (algorithm IN ('sliding_window', 'token_bucket')),
    lim             bigint      NOT NULL,  -- cost units per window
    window_ms       bigint      NOT NULL CHECK (window_ms > 0),
    burst           bigint      NOT NULL,  -- token bucket: a full bucket
    cost            bigint      NOT NULL,  -- units the last request took
    -- When the last check ran, µs since the Unix epoch. A key's clock never goes backwards:
    -- a check that read the clock before waiting for the row uses this time instead.
    checked_us      bigint      NOT NULL,
    -- Whether the last check was admitted (a refusal leaves the counts as they were).
    allowed         boolean     NOT NULL,
    -- Sliding window (ms): start of the current window, counts of the previous and current one.
    window_start_ms bigint      NOT NULL DEFAULT 0,
    prev_count      bigint      NOT NULL DEFAULT 0,
    cur_count       bigint      NOT NULL DEFAULT 0,
    -- Token bucket (GCRA, µs): the theoretical arrival time.
    tat_us          bigint      NOT NULL DEFAULT 0,
    -- After this the state no longer matters (algorithm::ttl_ms).
    expires_at      timestamptz NOT NULL
);

CREATE INDEX rampart_rate_limits_expires_at ON rampart_rate_limits (expires_at);

-- One check of one key: the state it leaves and whether it admits the request. The arguments
-- old_* are the stored state (NULL for a new key, or one stored by another algorithm). A line-
-- for-line translation of algorithm::sliding_window and algorithm::token_bucket (only the state
-- and the admission; the other Decision fields are computed from these in Rust), in numeric so
-- that no product overflows.
CREATE FUNCTION rampart_rate_limit_step(
    algorithm text, lim bigint, window_ms bigint, burst bigint, cost bigint, now_us bigint,
    old_start_ms bigint, old_prev bigint, old_cur bigint, old_tat_us bigint,
    OUT window_start_ms bigint, OUT prev_count bigint, OUT cur_count bigint, OUT tat_us bigint,
    OUT allowed boolean, OUT expires_at timestamptz)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    now_ms   bigint := now_us / 1000;
    w        numeric := window_ms;
    elapsed  bigint;
    prev     bigint;
    cur      bigint;
    interval_us bigint;
    tat      bigint;
    new_tat  numeric;
    ttl_ms   bigint;
BEGIN
    IF algorithm = 'sliding_window' THEN
        window_start_ms := now_ms - now_ms % window_ms;
        IF old_start_ms = window_start_ms THEN
            prev := old_prev; cur := old_cur;
        ELSIF old_start_ms + window_ms = window_start_ms THEN
            prev := old_cur; cur := 0;
        ELSE
            prev := 0; cur := 0;
        END IF;
        elapsed := now_ms - window_start_ms;
        -- prev × (window − elapsed) + cur × window + cost × window ≤ limit × window
        allowed := prev::numeric * (window_ms - elapsed) + cur::numeric * w + cost::numeric * w
                   <= lim::numeric * w;
        prev_count := prev;
        cur_count := CASE WHEN allowed THEN cur + cost ELSE cur END;
        tat_us := 0;
        -- algorithm::ttl_ms: the state matters until two windows after its start.
        ttl_ms := GREATEST(window_start_ms + 2 * window_ms - now_ms, 1);
    ELSE
        interval_us := GREATEST(window_ms * 1000 / GREATEST(lim, 1), 1);
        tat := GREATEST(COALESCE(old_tat_us, now_us), now_us);
        new_tat := tat::numeric + cost::numeric * interval_us;
        -- max(TAT, now) + cost·T − now ≤ burst·T
        allowed := new_tat - now_us <= burst::numeric * interval_us;
        tat_us := CASE WHEN allowed THEN new_tat::bigint ELSE tat END;
        window_start_ms := 0; prev_count := 0; cur_count := 0;
        -- algorithm::ttl_ms: until the bucket is full again (ms, rounded up).
        ttl_ms := GREATEST((tat_us - now_us + 999) / 1000, 1);
    END IF;
    expires_at := timestamptz 'epoch' + (now_us + ttl_ms * 1000) * interval '1 microsecond';
END
$$;

-- Live blocks: one row per blocked client address, until the block ends. Each instance mirrors
-- these locally.
CREATE TABLE rampart_blocks (
    ip    inet        PRIMARY KEY,
    until timestamptz NOT NULL
);

CREATE INDEX rampart_blocks_until ON rampart_blocks (until);

-- Violations counted per address in a fixed window that starts with the first one. The row is
-- where concurrent violations of one address queue up (its row lock), so it also keeps the end
-- of the address's block: a violation while blocked is not counted.
CREATE TABLE rampart_block_violations (
    ip            inet        PRIMARY KEY,
    count         integer     NOT NULL,
    -- When the counting window ends; while blocked, when the block ends (the row matters
    -- until then; cleanup deletes it after).
    window_ends   timestamptz NOT NULL,
    -- The end of the block this address's violations triggered, if any.
    blocked_until timestamptz,
    -- When the last violation was recorded.
    last_at       timestamptz NOT NULL
);

CREATE INDEX rampart_block_violations_window_ends ON rampart_block_violations (window_ends);
