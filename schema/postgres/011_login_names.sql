-- 011_login_names: the addresses a login *name* logged in from, when it is not its account's
-- name (a directory that answers the uid "jdoe" with the account john.doe@example.com). The
-- failed-login penalty counts a blocked account's failures under the name the client gave,
-- and lets addresses that name logged in from before through (auth.penalty.
-- known_address_failures); the login log and the detection IPs know only the account's name,
-- so without this such users got no exemption. Written by the account-security flush (only
-- for such names), read by the known-address check, pruned with the login log
-- (account_security.login_log_max_age). login: core::canonicalLogin of the name given.
CREATE TABLE account_login_names (
    login       text        NOT NULL CONSTRAINT account_login_names_login_valid CHECK (length(login) BETWEEN 1 AND 320),
    ip          inet        NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (login, ip)
);
CREATE INDEX account_login_names_last_seen_idx ON account_login_names (last_seen);  -- prune
