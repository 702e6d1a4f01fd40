-- 006_dkim: DKIM signing keys every clustered node signs with (dkim.keys_in_database = true),
-- read by posternd at start-up and on SIGHUP, written by `posternctl dkim keygen DOMAIN --db`.
-- One row per (domain, selector): the DNS name selector._domainkey.domain publishes its public
-- key. private_key is the PKCS#8 PEM (RSA 2048 or Ed25519); whoever can read this table can
-- sign mail as the domain, so grant SELECT to the server's role only.
CREATE TABLE dkim_keys (
    domain      text        NOT NULL
                CONSTRAINT dkim_keys_domain_valid CHECK (
                    length(domain) BETWEEN 3 AND 253 AND domain ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$'),
    selector    text        NOT NULL
                CONSTRAINT dkim_keys_selector_valid CHECK (
                    length(selector) BETWEEN 1 AND 63 AND selector ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'),
    algorithm   text        NOT NULL CONSTRAINT dkim_keys_algorithm_valid CHECK (algorithm IN ('rsa', 'ed25519')),
    private_key text        NOT NULL,
    created     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, selector)
);
