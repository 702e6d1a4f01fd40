-- 007_mta_sts: MTA-STS policies (RFC 8461) fetched by any cluster node, shared so that every
-- node enforces the same policy and a policy survives the loss of the node that fetched it.
-- Written by posternd after each successful fetch (upsert), read when a node has no policy
-- of its own for a domain. policy_id is the id of the _mta-sts TXT record when it was fetched;
-- mx holds the policy's patterns, comma-separated ('-' when there is none, mode none).
CREATE TABLE mta_sts_policies (
    domain    text        PRIMARY KEY
              CONSTRAINT mta_sts_policies_domain_valid CHECK (length(domain) BETWEEN 1 AND 253),
    policy_id text        NOT NULL CONSTRAINT mta_sts_policies_id_valid CHECK (policy_id ~ '^[A-Za-z0-9]{1,32}$'),
    mode      text        NOT NULL CONSTRAINT mta_sts_policies_mode_valid CHECK (mode IN ('enforce', 'testing', 'none')),
    max_age   integer     NOT NULL CONSTRAINT mta_sts_policies_max_age_valid CHECK (max_age BETWEEN 0 AND 31557600),
    mx        text        NOT NULL,
    fetched   timestamptz NOT NULL,
    expires   timestamptz NOT NULL
);
CREATE INDEX mta_sts_policies_expires ON mta_sts_policies (expires);
