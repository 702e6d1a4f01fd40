-- 003_app_passwords: per-account app passwords (mail clients get their own password, scoped
-- to SMTP and/or POP3, with an optional expiry and allowed networks, revocable one by one) and
-- a per-account flag that refuses the main password for SMTP AUTH and POP3.
-- Applied by `posternctl db migrate` (one transaction, recorded in schema_migrations).
--
-- The password handed to the client is "<public_id>-<secret>" (8 + 24 characters of base32).
-- public_id is stored in clear so a login fetches the one row to verify (the plugin's single
-- password_query LEFT JOINs it by (user_id, public_id)); password holds the slow hash
-- (auth.default_scheme, ARGON2ID by default) of the whole string.

-- The account refuses its main password for mail protocols (535 5.7.8 / -ERR [AUTH]).
ALTER TABLE users ADD COLUMN require_app_password boolean NOT NULL DEFAULT false;

CREATE TABLE app_passwords (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    public_id    text        NOT NULL CONSTRAINT app_passwords_public_id_valid CHECK (public_id ~ '^[a-z2-7]{8}$'),
    label        text        NOT NULL DEFAULT ''
                 CONSTRAINT app_passwords_label_valid CHECK (label ~ '^[A-Za-z0-9._@+-]{0,64}$'),
    password     text        NOT NULL
                 CONSTRAINT app_passwords_password_scheme CHECK (password ~ '^\{[A-Za-z0-9][A-Za-z0-9._-]*\}.'),
    scopes       text[]      NOT NULL
                 CONSTRAINT app_passwords_scopes_valid CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['smtp', 'pop3']),
    expires_at   timestamptz,                       -- NULL = never
    networks     cidr[]      NOT NULL DEFAULT '{}', -- empty = any client address
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Written by posternd after a login only when it changes materially: older than
    -- auth.app_password_last_used_interval, or another client IP.
    last_used_at timestamptz,
    last_used_ip inet,
    revoked_at   timestamptz,                       -- NULL = live; kept for the record
    -- The login's lookup (password_query) and revoke by (user, public_id).
    CONSTRAINT app_passwords_user_public_id_key UNIQUE (user_id, public_id)
);
