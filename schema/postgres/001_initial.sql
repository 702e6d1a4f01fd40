-- 001_initial: mail domains, users (mailboxes), aliases and the sender addresses a user may use.
-- Applied by `posternctl db migrate` inside one transaction and recorded in schema_migrations
-- (the runner adds both; this file holds no BEGIN/COMMIT). 002 is reserved for the shared
-- POP-before-SMTP grants table. Every address and domain is stored lower-cased: the server
-- lower-cases before it asks, so a mixed-case row could never match (the CHECKs refuse it).
-- Each lookup the server makes is served by an index (see the queries at the end).

-- Keeps updated_at true on every UPDATE, whoever makes it (posternctl, an admin panel, psql).
CREATE FUNCTION postern_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Domains we receive mail for (hasDomain). A disabled domain accepts no mail and no logins.
CREATE TABLE domains (
    name        text PRIMARY KEY
                CONSTRAINT domains_name_valid CHECK (
                    name = lower(name)
                    AND length(name) <= 253
                    AND name ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'),
    enabled     boolean     NOT NULL DEFAULT true,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER domains_touch_updated_at BEFORE UPDATE ON domains
    FOR EACH ROW EXECUTE FUNCTION postern_touch_updated_at();

-- Accounts: a login and a mailbox. password is a Dovecot-style "{SCHEME}hash"; the server
-- verifies it (server/auth/PasswordScheme), so any scheme it knows may be stored here.
CREATE TABLE users (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address     text        NOT NULL
                CONSTRAINT users_address_key UNIQUE
                CONSTRAINT users_address_valid CHECK (
                    address = lower(address)
                    AND length(address) <= 320
                    AND address ~ '^[^@[:space:][:cntrl:]]{1,64}@[^@[:space:][:cntrl:]]+$'),
    domain      text        NOT NULL REFERENCES domains (name) ON DELETE CASCADE ON UPDATE CASCADE,
    password    text        NOT NULL
                CONSTRAINT users_password_scheme CHECK (password ~ '^\{[A-Za-z0-9][A-Za-z0-9._-]*\}.'),
    enabled     boolean     NOT NULL DEFAULT true,
    quota_bytes bigint      NOT NULL DEFAULT 0 CHECK (quota_bytes >= 0),  -- 0 = no quota
    -- Maildir location relative to server.mail_root; '' = "<domain>/<local part>".
    mailbox     text        NOT NULL DEFAULT ''
                CONSTRAINT users_mailbox_relative CHECK (mailbox !~ '(^/|(^|/)\.\.(/|$))'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_domain_matches CHECK (split_part(address, '@', 2) = domain)
);
CREATE INDEX users_domain_idx ON users (domain);  -- list per domain; ON DELETE CASCADE
CREATE TRIGGER users_touch_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION postern_touch_updated_at();

-- Aliases: one row per (alias address, destination). A destination is a full address,
-- local or remote; the server resolves it again (bounded depth, loop-safe).
CREATE TABLE aliases (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address     text        NOT NULL
                CONSTRAINT aliases_address_valid CHECK (
                    address = lower(address)
                    AND length(address) <= 320
                    AND address ~ '^[^@[:space:][:cntrl:]]{1,64}@[^@[:space:][:cntrl:]]+$'),
    domain      text        NOT NULL REFERENCES domains (name) ON DELETE CASCADE ON UPDATE CASCADE,
    destination text        NOT NULL
                CONSTRAINT aliases_destination_valid CHECK (
                    destination = lower(destination)
                    AND length(destination) <= 320
                    AND destination ~ '^[^@[:space:][:cntrl:],]+@[^@[:space:][:cntrl:],]+$'),
    enabled     boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT aliases_address_destination_key UNIQUE (address, destination),  -- lookup by address
    CONSTRAINT aliases_domain_matches CHECK (split_part(address, '@', 2) = domain)
);
CREATE INDEX aliases_domain_idx ON aliases (domain);
CREATE INDEX aliases_destination_idx ON aliases (destination);  -- "which aliases point here"
CREATE TRIGGER aliases_touch_updated_at BEFORE UPDATE ON aliases
    FOR EACH ROW EXECUTE FUNCTION postern_touch_updated_at();

-- Extra MAIL FROM addresses a user may send as (the login address itself always may).
CREATE TABLE user_senders (
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address     text        NOT NULL
                CONSTRAINT user_senders_address_valid CHECK (
                    address = lower(address)
                    AND length(address) <= 320
                    AND address ~ '^[^@[:space:][:cntrl:]]+@[^@[:space:][:cntrl:]]+$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, address)
);
CREATE INDEX user_senders_address_idx ON user_senders (address);  -- "who may send as X"

-- The server's lookups (plugins/postgres defaults) and the index each uses:
--   password/user: users WHERE address = $1           -> users_address_key (+ domains pkey)
--   alias:         aliases WHERE address = $1         -> aliases_address_destination_key
--   domain:        domains WHERE name = $1            -> domains_pkey
--   senders:       user_senders WHERE user_id = ...   -> user_senders_pkey
