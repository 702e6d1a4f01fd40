-- 004_account_security: compromised-account detection and the per-account login log
-- (server/abuse AccountSecurity, PgAccountSecurityStore; README "Compromised accounts").
-- Applied by `posternctl db migrate` in one transaction (no BEGIN/COMMIT here).
--
-- Nodes never write here per login or per delivery: each node records events in memory and
-- writes them every account_security.flush_interval in ONE multi-row statement (data-modifying
-- CTEs over unnest()ed arrays), then evaluates the thresholds of the accounts it touched in a
-- second statement and reads the flagged set back in a third. A flag set by any node holds the
-- account on every node within that node's next flush.

-- (a) Distinct client IPs with a successful login, per account: one row per (account, ip),
-- last_seen moved forward by each flush that saw the IP. "Distinct IPs in the window" is
-- count(*) WHERE last_seen > now - window; networks are the distinct /24 (IPv4) or /48
-- (IPv6) of those rows. Rows older than the window are pruned by the nodes.
CREATE TABLE account_security_ips (
    account     text        NOT NULL CONSTRAINT account_security_ips_account_valid CHECK (length(account) BETWEEN 1 AND 320),
    ip          inet        NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (account, ip)
);
CREATE INDEX account_security_ips_last_seen_idx ON account_security_ips (last_seen);  -- prune

-- (b) Delivery outcomes of an account's mail per flush (bucket = the flushing node's clock,
-- truncated to the minute; nodes add into the same minute's row): recipients refused by
-- remote servers with a 5xx, and bounces generated.
CREATE TABLE account_security_counts (
    account     text        NOT NULL CONSTRAINT account_security_counts_account_valid CHECK (length(account) BETWEEN 1 AND 320),
    bucket      timestamptz NOT NULL,
    rejected    bigint      NOT NULL DEFAULT 0 CONSTRAINT account_security_counts_rejected_nonneg CHECK (rejected >= 0),
    bounces     bigint      NOT NULL DEFAULT 0 CONSTRAINT account_security_counts_bounces_nonneg CHECK (bounces >= 0),
    PRIMARY KEY (account, bucket)
);
CREATE INDEX account_security_counts_bucket_idx ON account_security_counts (bucket);  -- prune

-- (c) Flagged (held) accounts: their queued outbound mail is not sent and MAIL from them gets
-- 451 4.7.1 until `posternctl user release` deletes the row (and the account's rows in (a)
-- and (b), so the next flush does not flag it again at once). Only the INSERT that created
-- the row logs event=account.flagged (ON CONFLICT DO NOTHING ... RETURNING).
CREATE TABLE account_flags (
    account     text        PRIMARY KEY CONSTRAINT account_flags_account_valid CHECK (length(account) BETWEEN 1 AND 320),
    reason      text        NOT NULL,  -- ips | networks | remote_rejected | bounces
    value       bigint      NOT NULL,
    threshold   bigint      NOT NULL,
    flagged_at  timestamptz NOT NULL DEFAULT now(),
    node_id     text        NOT NULL DEFAULT ''
);

-- (d) The login log (posternctl user logins): one row per login attempt, bounded per account
-- by account_security.login_log_max_entries (trimmed by the flush that wrote the account's
-- rows) and by account_security.login_log_max_age (pruned about once a minute).
CREATE TABLE account_logins (
    id          bigserial   PRIMARY KEY,
    account     text        NOT NULL CONSTRAINT account_logins_account_valid CHECK (length(account) BETWEEN 1 AND 320),
    at          timestamptz NOT NULL,
    ip          inet        NOT NULL,
    protocol    text        NOT NULL,  -- smtp | pop3
    mechanism   text        NOT NULL,  -- PLAIN, LOGIN, USER, APOP, ...
    tls         text        NOT NULL,  -- '' = no TLS, else the version (TLSv1.3) or 'yes'
    result      text        NOT NULL   -- ok | fail | blocked | tempfail
);
CREATE INDEX account_logins_account_at_idx ON account_logins (account, at DESC, id DESC);  -- list, trim
CREATE INDEX account_logins_at_idx ON account_logins (at);  -- prune by age
