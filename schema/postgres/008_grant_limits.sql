-- 008_grant_limits: a POP-before-SMTP grant carries its user's own outbound limits (the
-- backend attributes messages_per_hour, recipients_per_hour, messages_per_day,
-- recipients_per_day), so a relay on the grant counts against them as the user's AUTH relay
-- would; before, it counted against the limits.user.* defaults, and a user whose limits were
-- lowered (an account under watch) could send past them from any address it had polled from.
-- limits: "name=value" lines ('' = the defaults).
ALTER TABLE pop_before_smtp_grants ADD COLUMN limits text NOT NULL DEFAULT '';

-- postern_pop3_login (005_round_trips.sql) with the grant's limits (p_limits). The 13-argument
-- version stays, so a node not yet upgraded goes on working (its grants carry no limits).
CREATE FUNCTION postern_pop3_login(p_ip_key text, p_user_key text, p_now_us bigint,
                                   p_max_ip integer, p_max_user integer,
                                   p_mailbox text, p_node text, p_token uuid, p_lease_ms bigint,
                                   p_grant_key text, p_grant_user text, p_grant_lifetime_s bigint,
                                   p_senders text, p_limits text,
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
        INSERT INTO pop_before_smtp_grants AS g (key, user_name, created, expires, last_used, senders, limits)
        VALUES (p_grant_key, p_grant_user, now(), now() + p_grant_lifetime_s * interval '1 second', NULL,
                coalesce(p_senders, ''), coalesce(p_limits, ''))
        ON CONFLICT (key) DO UPDATE SET user_name = EXCLUDED.user_name, created = EXCLUDED.created,
            senders = EXCLUDED.senders, limits = EXCLUDED.limits, expires = EXCLUDED.expires, last_used = NULL;
    END IF;
    outcome := 'ok';
END;
$$;

-- The 13-argument version now calls the one above: one implementation of the login step.
CREATE OR REPLACE FUNCTION postern_pop3_login(p_ip_key text, p_user_key text, p_now_us bigint,
                                              p_max_ip integer, p_max_user integer,
                                              p_mailbox text, p_node text, p_token uuid, p_lease_ms bigint,
                                              p_grant_key text, p_grant_user text, p_grant_lifetime_s bigint,
                                              p_senders text,
                                              OUT outcome text, OUT ip_failures integer, OUT ip_expires_us bigint,
                                              OUT user_failures integer, OUT user_expires_us bigint)
LANGUAGE sql VOLATILE AS $$
    SELECT * FROM postern_pop3_login(p_ip_key, p_user_key, p_now_us, p_max_ip, p_max_user, p_mailbox, p_node,
                                     p_token, p_lease_ms, p_grant_key, p_grant_user, p_grant_lifetime_s,
                                     p_senders, ''::text);
$$;
