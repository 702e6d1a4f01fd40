-- 012_login_activity: each account's most recent login log entry. The account cap
-- (account_security.max_tracked_accounts: past it the least recently active accounts lose
-- their login log) read "which accounts are the least recently active" with an aggregate
-- over the whole login log, every ten minutes on every node: tens of millions of rows at an
-- ISP's bounds, where it met statement_timeout and the cap was never applied. It now reads
-- one row per account, in last_at order, from this table. Written by the account-security
-- flush with the login log rows, pruned with them (account_security.login_log_max_age).
CREATE TABLE account_login_activity (
    account     text        PRIMARY KEY CONSTRAINT account_login_activity_account_valid CHECK (length(account) BETWEEN 1 AND 320),
    last_at     timestamptz NOT NULL
);
CREATE INDEX account_login_activity_last_at_idx ON account_login_activity (last_at, account);  -- the cap, prune
INSERT INTO account_login_activity (account, last_at)
    SELECT account, max(at) FROM account_logins GROUP BY account;
