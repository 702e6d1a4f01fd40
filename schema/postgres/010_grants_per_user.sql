-- 010_grants_per_user: one POP-before-SMTP grant per (address, user). Before, the address was
-- the key and a newer login from it replaced the grant: behind a NAT address shared by many
-- subscribers (a carrier-grade NAT, an office), only the last one to poll could relay on it
-- (pop_before_smtp.own_senders_only refused the others' MAIL FROM). Now each keeps its own,
-- and a relay goes on the grant its MAIL FROM belongs to.
--
-- Upgrade: run this before upgrading the nodes. A node not yet upgraded goes on making grants
-- through postern_pop3_login (replaced below), but its other grant writes (a login that falls
-- back when the one-statement login fails, a write-behind grant written through) name the old
-- key and fail (the grant stays on that node), and its lookup answers 451 4.7.1 for an
-- address where two users hold grants, until it is upgraded.
ALTER TABLE pop_before_smtp_grants DROP CONSTRAINT pop_before_smtp_grants_pkey,
    ADD CONSTRAINT pop_before_smtp_grants_pkey PRIMARY KEY (key, user_name);
-- The user index (revoke a user) stays: the primary key leads with key.

-- postern_pop3_login (008_grant_limits.sql) with the new conflict target; the 13-argument
-- version calls this one.
CREATE OR REPLACE FUNCTION postern_pop3_login(p_ip_key text, p_user_key text, p_now_us bigint,
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
        ON CONFLICT (key, user_name) DO UPDATE SET created = EXCLUDED.created,
            senders = EXCLUDED.senders, limits = EXCLUDED.limits, expires = EXCLUDED.expires, last_used = NULL;
    END IF;
    outcome := 'ok';
END;
$$;

-- A revocation (posternctl grant revoke|flush, user disable|passwd|delete, domain delete)
-- also leaves a row here, so that a grant a node held through an outage of this database
-- (written back later with the time of its login) is not written back after the revocation:
-- before, it came back to life for the rest of its lifetime. key '' = every address;
-- user_name '' = every user, '@example.com' = every user of that domain. The nodes' grant
-- sweep deletes rows older than twice a grant lifetime, at least a day (no held grant can be
-- that old).
CREATE TABLE pop_before_smtp_revocations (
    key         text        NOT NULL CONSTRAINT pop_before_smtp_revocations_key_valid CHECK (length(key) <= 64),
    user_name   text        NOT NULL CONSTRAINT pop_before_smtp_revocations_user_valid CHECK (length(user_name) <= 320),
    revoked     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key, user_name)
);
