-- 005_round_trips: server-side functions that do one operation's cluster-state work in ONE
-- statement (issue 19.1, "fewer database round trips per operation"). Applied by
-- `posternctl db migrate` in one transaction (no BEGIN/COMMIT here). No table changes: the
-- functions work on the tables of 002_cluster.sql with exactly the semantics the separate
-- statements had (see server/abuse/PgRateStore.cpp, server/app/ClusterPop3Login.cpp).
--
-- Why functions and not pipelining: each operation here is read-decide-write (a rate check
-- that adds only if under the limit; a login that takes the lease only if the penalty does
-- not block). A pipeline still sends the write before the read's answer is known, so the
-- decision would have to move into SQL anyway; a function keeps it in one place, runs it in
-- one snapshot, and needs no libpq pipeline state on pooled connections. Instants are bound
-- by the caller as microseconds since the epoch (PgTime.h) where the host's clock decides
-- (penalties, rate buckets), and taken from now() where the database's clock always did
-- (leases, grants).

-- Outbound rate limits (RateStore::tryAdd, all or nothing). p_keys[i] gets p_amounts[i] if,
-- afterwards, its count since p_hour_start_us is at most p_per_hour[i] and since
-- p_day_start_us at most p_per_day[i] (0 = no limit); amounts of one key add up in request
-- order, exactly as MemoryRateStore compares. Per-key transaction advisory locks in one
-- fixed (hash) order serialise concurrent callers on overlapping keys without deadlock; they
-- are held until the caller's transaction ends. Returns one row:
--   ('added', 0, '')            every amount was added to the bucket starting at p_bucket_us
--   ('limited', i, 'hour'|'day') request i (0-based) would exceed that window; nothing added
CREATE FUNCTION postern_rate_take(p_keys text[], p_amounts bigint[], p_per_hour bigint[], p_per_day bigint[],
                                  p_bucket_us bigint, p_hour_start_us bigint, p_day_start_us bigint,
                                  OUT outcome text, OUT idx integer, OUT win text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n integer := coalesce(array_length(p_keys, 1), 0);
    i integer;
    j integer;
    amt bigint;
    have_hour bigint;
    have_day bigint;
BEGIN
    outcome := 'added'; idx := 0; win := '';
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
            outcome := 'limited'; idx := i - 1; win := 'hour';
            RETURN;
        END IF;
        IF p_per_day[i] > 0 AND have_day + amt > p_per_day[i] THEN
            outcome := 'limited'; idx := i - 1; win := 'day';
            RETURN;
        END IF;
    END LOOP;
    -- One row per key (ON CONFLICT may touch a row only once).
    INSERT INTO rate_counters AS c (key, bucket_start, count)
    SELECT k, 'epoch'::timestamptz + p_bucket_us * interval '1 microsecond', sum(a)
      FROM unnest(p_keys, p_amounts) AS t(k, a) GROUP BY k
    ON CONFLICT (key, bucket_start) DO UPDATE SET count = c.count + EXCLUDED.count;
END;
$$;

-- A successful POP3 login in a cluster, after the host verified the password: the failed-
-- login penalty (the check the host used to make before verifying), clearing the account's
-- counter, the maildrop lease and the POP-before-SMTP grant - one statement instead of five.
--   p_ip_key / p_user_key: auth_penalties keys ("ip:...", "user:..."); NULL = not checked
--     (an exempt client: auth.penalty.allow_networks)
--   p_now_us: the host's clock (the penalty counters' clock, as PgPenaltyStore)
--   p_max_ip / p_max_user: auth.penalty.max_failures_ip / _account (0 = never block)
--   p_mailbox, p_node, p_token, p_lease_ms: the lease (PgMaildropLock's acquire statement)
--   p_grant_key: pop_before_smtp_grants key; NULL = no grant (POP-before-SMTP off)
-- Returns one row: outcome 'blocked' (nothing changed: answered like a wrong password, no
-- oracle), 'in_use' (another session holds a live lease; the account's counter was cleared,
-- no grant), or 'ok' (lease taken with p_token, grant upserted); and the live counters read
-- (failures 0 when none) for the log. The account's counter is deleted only when one exists:
-- no write where nothing changes.
CREATE FUNCTION postern_pop3_login(p_ip_key text, p_user_key text, p_now_us bigint,
                                   p_max_ip integer, p_max_user integer,
                                   p_mailbox text, p_node text, p_token uuid, p_lease_ms bigint,
                                   p_grant_key text, p_grant_user text, p_grant_lifetime_s bigint,
                                   p_senders text,
                                   OUT outcome text, OUT ip_failures integer, OUT ip_expires_us bigint,
                                   OUT user_failures integer, OUT user_expires_us bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    host_now timestamptz := 'epoch'::timestamptz + p_now_us * interval '1 microsecond';
    got uuid;
BEGIN
    ip_failures := 0; ip_expires_us := 0; user_failures := 0; user_expires_us := 0;
    SELECT p.failures, (extract(epoch FROM p.expires) * 1000000)::bigint INTO ip_failures, ip_expires_us
      FROM auth_penalties p WHERE p.key = p_ip_key AND p.expires > host_now;
    SELECT p.failures, (extract(epoch FROM p.expires) * 1000000)::bigint INTO user_failures, user_expires_us
      FROM auth_penalties p WHERE p.key = p_user_key AND p.expires > host_now;
    ip_failures := coalesce(ip_failures, 0); ip_expires_us := coalesce(ip_expires_us, 0);
    user_failures := coalesce(user_failures, 0); user_expires_us := coalesce(user_expires_us, 0);
    IF (p_max_ip > 0 AND ip_failures >= p_max_ip) OR (p_max_user > 0 AND user_failures >= p_max_user) THEN
        outcome := 'blocked';
        RETURN;
    END IF;
    IF user_failures > 0 THEN
        DELETE FROM auth_penalties WHERE key = p_user_key;
    END IF;
    -- "OR l.token = EXCLUDED.token": a retry of this very call finds its own row.
    INSERT INTO maildrop_leases AS l (mailbox, node_id, token, acquired, expires)
    VALUES (p_mailbox, p_node, p_token, now(), now() + p_lease_ms * interval '1 millisecond')
    ON CONFLICT (mailbox) DO UPDATE SET node_id = EXCLUDED.node_id, token = EXCLUDED.token,
        acquired = EXCLUDED.acquired, expires = EXCLUDED.expires
     WHERE l.expires < now() OR l.token = EXCLUDED.token
    RETURNING l.token INTO got;
    IF got IS NULL THEN
        outcome := 'in_use';
        RETURN;
    END IF;
    IF p_grant_key IS NOT NULL THEN
        INSERT INTO pop_before_smtp_grants AS g (key, user_name, created, expires, last_used, senders)
        VALUES (p_grant_key, p_grant_user, now(), now() + p_grant_lifetime_s * interval '1 second', NULL,
                coalesce(p_senders, ''))
        ON CONFLICT (key) DO UPDATE SET user_name = EXCLUDED.user_name, created = EXCLUDED.created,
            senders = EXCLUDED.senders, expires = EXCLUDED.expires, last_used = NULL;
    END IF;
    outcome := 'ok';
END;
$$;
