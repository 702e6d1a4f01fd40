-- 009_rate_counts: postern_rate_take (005_round_trips.sql) also returns each key's counts
-- after an add (hours[i], days[i] for p_keys[i]; NULL when limited). A node remembers them,
-- so that while this database cannot answer it counts on from the shared counts it last
-- saw instead of from zero: a full pool or an outage must not hand a spammer a fresh hour of
-- outbound limits on every node. The OUT columns change, so the function is replaced; a
-- node not yet upgraded selects outcome, idx and win by name and goes on working.
DROP FUNCTION postern_rate_take(text[], bigint[], bigint[], bigint[], bigint, bigint, bigint);

CREATE FUNCTION postern_rate_take(p_keys text[], p_amounts bigint[], p_per_hour bigint[], p_per_day bigint[],
                                  p_bucket_us bigint, p_hour_start_us bigint, p_day_start_us bigint,
                                  OUT outcome text, OUT idx integer, OUT win text,
                                  OUT hours bigint[], OUT days bigint[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n integer := coalesce(array_length(p_keys, 1), 0);
    i integer;
    j integer;
    amt bigint;
    have_hour bigint;
    have_day bigint;
BEGIN
    outcome := 'added'; idx := 0; win := ''; hours := '{}'; days := '{}';
    IF n = 0 THEN
        RETURN;
    END IF;
    PERFORM count(pg_advisory_xact_lock(1918989413, s.h))
       FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(p_keys) AS t(k) ORDER BY h OFFSET 0) s;
    FOR i IN 1 .. n LOOP
        amt := 0;
        FOR j IN 1 .. i LOOP
            IF p_keys[j] = p_keys[i] THEN
                amt := amt + p_amounts[j];
            END IF;
        END LOOP;
        SELECT coalesce(sum(c.count) FILTER (WHERE c.bucket_start >= 'epoch'::timestamptz + p_hour_start_us * interval '1 microsecond'), 0),
               coalesce(sum(c.count), 0)
          INTO have_hour, have_day
          FROM rate_counters c
         WHERE c.key = p_keys[i]
           AND c.bucket_start >= 'epoch'::timestamptz + p_day_start_us * interval '1 microsecond';
        IF p_per_hour[i] > 0 AND have_hour + amt > p_per_hour[i] THEN
            outcome := 'limited'; idx := i - 1; win := 'hour'; hours := NULL; days := NULL;
            RETURN;
        END IF;
        IF p_per_day[i] > 0 AND have_day + amt > p_per_day[i] THEN
            outcome := 'limited'; idx := i - 1; win := 'day'; hours := NULL; days := NULL;
            RETURN;
        END IF;
        -- The counts once this request is added (a key named twice: its whole amount so far).
        hours := hours || (have_hour + amt);
        days := days || (have_day + amt);
    END LOOP;
    -- One row per key (ON CONFLICT may touch a row only once).
    INSERT INTO rate_counters AS c (key, bucket_start, count)
    SELECT k, 'epoch'::timestamptz + p_bucket_us * interval '1 microsecond', sum(a)
      FROM unnest(p_keys, p_amounts) AS t(k, a) GROUP BY k
    ON CONFLICT (key, bucket_start) DO UPDATE SET count = c.count + EXCLUDED.count;
END;
$$;
