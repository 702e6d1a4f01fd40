-- 002_cluster: the state clustered nodes share through PostgreSQL (DESIGN.md "Cluster"):
-- POP-before-SMTP grants, failed-login counters, outbound rate counters and POP3 maildrop
-- leases. Applied by `posternctl db migrate` in one transaction (no BEGIN/COMMIT here).
-- Every row here expires; each node deletes expired rows in small batches (sweep()), so the
-- tables stay as small as the traffic of one window.
--
-- Logged, not UNLOGGED (all four tables). UNLOGGED would save the WAL of each write, but an
-- UNLOGGED table is not replicated to standbys and is truncated after a crash. Nodes connect
-- with a multi-host conninfo and target_session_attrs=read-write, so after a failover they
-- carry on against the promoted standby within seconds - where UNLOGGED tables would be
-- empty. For grants that means every POP-before-SMTP user is refused relaying (a 5xx the
-- mail client shows) until their next POP3 check; for leases, two nodes could open one
-- maildrop at once; for penalties and rate limits, an attacker's counters start again from
-- zero. The write volume is small (one upsert per POP3 login, one per failed login, one per
-- message, one lease renewal per POP3 session every lease/3), so WAL is a cheap price for
-- state that survives a crash and a failover. With asynchronous replication a failover can
-- still lose the last moments of writes; every table tolerates that (a grant is re-earned by
-- the next POP3 login, a lease then simply expires, a counter undercounts briefly).

-- (a) POP-before-SMTP: a POP3 login from `key` lets that address relay until `expires`.
-- key: the client address as server/grants/GrantKey.h writes it: "192.0.2.7", "2001:db8::1"
-- or a masked IPv6 prefix "2001:db8:1:2::/64" (pop_before_smtp.ipv6_prefix). A newer login
-- from the same key replaces the row (upsert). Lookups: key = $1 AND expires > now().
CREATE TABLE pop_before_smtp_grants (
    key         text        PRIMARY KEY
                CONSTRAINT pop_before_smtp_grants_key_valid CHECK (
                    length(key) <= 64 AND key ~ '^[0-9a-f.:]+(/[0-9]{1,3})?$'),
    user_name   text        NOT NULL
                CONSTRAINT pop_before_smtp_grants_user_valid CHECK (
                    length(user_name) BETWEEN 1 AND 320 AND user_name !~ '[[:space:][:cntrl:]]'),
    created     timestamptz NOT NULL DEFAULT now(),  -- the login that made (or renewed) it
    expires     timestamptz NOT NULL,
    last_used   timestamptz,                         -- last relay allowed by it (at most ~1/min)
    senders     text        NOT NULL DEFAULT '',     -- the user's MAIL FROM addresses, one per line
    CONSTRAINT pop_before_smtp_grants_lifetime CHECK (expires > created)
) WITH (fillfactor = 80);  -- free room per page: last_used (not indexed) is updated in place (HOT)
CREATE INDEX pop_before_smtp_grants_expires_idx ON pop_before_smtp_grants (expires);  -- sweep
CREATE INDEX pop_before_smtp_grants_user_idx ON pop_before_smtp_grants (user_name);   -- revoke a user

-- (b) Failed-login counters (server/abuse AuthPenalty): `failures` since the counter was last
-- empty; it is forgotten `window` after its latest failure. key: "ip:<address key>" or
-- "user:<login>" as AuthPenalty builds it. One atomic upsert per failure (PgPenaltyStore).
CREATE TABLE auth_penalties (
    key         text        PRIMARY KEY CONSTRAINT auth_penalties_key_valid CHECK (length(key) BETWEEN 1 AND 400),
    failures    integer     NOT NULL CONSTRAINT auth_penalties_failures_positive CHECK (failures > 0),
    expires     timestamptz NOT NULL
);
CREATE INDEX auth_penalties_expires_idx ON auth_penalties (expires);  -- sweep

-- (c) Outbound rate counters (server/abuse RateLimiter): one row per key and 5-minute bucket
-- (bucket_start aligned to the epoch). "Last hour" is the sum of the 13 newest 5-minute
-- buckets, "last day" the sum of the buckets from the start of the hour 24 hours before the
-- current one - the same buckets MemoryRateStore's SlidingWindow counts (12+1 of 5 minutes,
-- 24+1 of one hour), so a limit is never exceeded within any hour or day. A request over
-- several keys is checked and added all-or-nothing in one transaction under per-key
-- transaction advisory locks (PgRateStore). Rows older than 25 hours count for nothing.
CREATE TABLE rate_counters (
    key          text        NOT NULL CONSTRAINT rate_counters_key_valid CHECK (length(key) BETWEEN 1 AND 400),
    bucket_start timestamptz NOT NULL,
    count        bigint      NOT NULL CONSTRAINT rate_counters_count_nonnegative CHECK (count >= 0),
    PRIMARY KEY (key, bucket_start)  -- sums per key over a time range
);
CREATE INDEX rate_counters_bucket_start_idx ON rate_counters (bucket_start);  -- sweep

-- (d) POP3 maildrop leases (RFC 1939 exclusive access across nodes on a shared mail root):
-- the node holding a mailbox's row with expires > now() has it. Taken with
-- INSERT ... ON CONFLICT (mailbox) DO UPDATE ... WHERE expires < now(), renewed every lease/3
-- while the session lives, deleted by token at the end. A crashed node's lease lapses by
-- itself within one lease time (pop3.lock_lease).
CREATE TABLE maildrop_leases (
    mailbox     text        PRIMARY KEY CONSTRAINT maildrop_leases_mailbox_valid CHECK (length(mailbox) BETWEEN 1 AND 1024),
    node_id     text        NOT NULL CONSTRAINT maildrop_leases_node_valid CHECK (length(node_id) BETWEEN 1 AND 255),
    token       uuid        NOT NULL,  -- the holder's proof for renew and release
    acquired    timestamptz NOT NULL DEFAULT now(),
    expires     timestamptz NOT NULL,
    CONSTRAINT maildrop_leases_expiry CHECK (expires > acquired)
);
CREATE INDEX maildrop_leases_expires_idx ON maildrop_leases (expires);  -- sweep

-- The server's statements and the index each uses:
--   grant lookup:  pop_before_smtp_grants WHERE key = $1          -> pkey
--   grant sweep:   ... WHERE expires <= now() LIMIT n SKIP LOCKED   -> expires_idx
--   revoke user:   ... WHERE user_name = $1                        -> user_idx
--   penalty:       auth_penalties ON CONFLICT (key)                -> pkey
--   rate:          rate_counters WHERE key = $1 AND bucket_start >= $2 -> pkey
--   lease:         maildrop_leases ON CONFLICT (mailbox); renew/release by mailbox + token -> pkey
