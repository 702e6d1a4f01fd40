#!/usr/bin/env python3
"""posternctl's user commands write PostgreSQL through the postgres plugin's configurable
write queries (auth.backend.<name>.add_user_query, set_password_query, ...), the same
backend posternd reads with its configurable read queries. A table layout unlike
schema/postgres is managed end to end: posternctl writes it, posternd logs the user in from
it, and nothing lands in the default tables. Real PostgreSQL (tests/e2e/pg_support.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import Postern, check, check_eq, plain_ir, run_tests, wait_for  # noqa: E402
import pg_support as P  # noqa: E402

_pg = []


def pg():
    """One PostgreSQL (default schema migrated) plus a custom account table of our own."""
    if not _pg:
        s = P.PgServer()
        s.sql("CREATE TABLE wq_domains (name text PRIMARY KEY);"
              "CREATE TABLE wq_accounts (login text PRIMARY KEY, secret text NOT NULL,"
              " active boolean NOT NULL, maildir text NOT NULL, quota bigint NOT NULL, note text NOT NULL);"
              "INSERT INTO wq_domains VALUES ('wq.test');"
              "GRANT ALL ON wq_domains, wq_accounts TO %s;" % P.APP_USER)
        _pg.append(s)
    return _pg[0]


def config(extra=None):
    b = "auth.backend.pg."
    c = {"auth.backends": "local, pg", "auth.backend.local.domains": "example.test, example.org"}
    c.update(pg().backend_config(domains="wq.test"))
    c.update({
        # Reads: the custom table (no aliases, no extra senders).
        b + "password_query": "SELECT login, secret, active, maildir FROM wq_accounts WHERE login = $1",
        b + "user_query": "SELECT login, active, maildir, quota FROM wq_accounts WHERE login = $1",
        b + "alias_query": "",
        b + "senders_query": "",
        b + "domain_query": "SELECT 1 FROM wq_domains WHERE name = $1",
        # Writes: the same table; the note records which domain the add was for ($2).
        b + "add_user_query": "INSERT INTO wq_accounts (login, secret, active, maildir, quota, note)"
                              " VALUES ($1, $3, $4, $5, $6, 'added for ' || $2::text)",
        b + "add_sender_query": "",
        b + "domain_exists_query": "SELECT 1 FROM wq_domains WHERE name = $1",
        b + "set_password_query": "UPDATE wq_accounts SET secret = $2 WHERE login = $1",
        b + "set_enabled_query": "UPDATE wq_accounts SET active = $2 WHERE login = $1",
        b + "delete_user_query": "DELETE FROM wq_accounts WHERE login = $1",
        b + "list_users_query": "SELECT login, active, maildir, quota FROM wq_accounts"
                                " WHERE $1::text = '' OR split_part(login, '@', 2) = $1 ORDER BY login",
        b + "show_user_query": "SELECT login, active, secret, maildir, quota FROM wq_accounts WHERE login = $1",
        b + "user_aliases_query": "",
    })
    c.update(extra or {})
    return c


OVERRIDES = {
    "auth.cache.size": "0",  # a password change or disable must show at the next login
    # Failed logins on purpose below: no tarpit, no lockout.
    "auth.penalty.base_delay": "0s",
    "auth.penalty.max_failures_ip": "0",
    "auth.penalty.max_failures_account": "0",
}


def ctl(p, *args, password=None):
    return P.posternctl(list(args), p.config_path, input=(password + "\n") if password else "")


def auth_code(p, user, password):
    s = p.smtp("submission", starttls=True)
    try:
        return s.docmd("AUTH", "PLAIN " + plain_ir(user, password))[0]
    finally:
        s.close()


def test_custom_write_queries_are_honoured():
    with Postern(overrides=OVERRIDES, config=config()) as p:
        addr, pw, pw2 = "wendy@wq.test", "wendy-Wq-Secret1", "wendy-Wq-Secret2"
        r = ctl(p, "user", "add", "Wendy@WQ.test", "--mailbox", "wq.test/w", password=pw)
        check_eq(r.returncode, 0, "user add: " + r.stderr)
        check("postgres backend 'pg'" in r.stdout, r.stdout)
        row = pg().sql("SELECT login, active, maildir, quota, note, left(secret, 10) FROM wq_accounts")
        check_eq(row, ["wendy@wq.test|t|wq.test/w|0|added for wq.test|{ARGON2ID}"], "row written by add_user_query")
        check_eq(pg().sql("SELECT count(*) FROM users"), ["0"], "nothing in the default users table")
        wait_for(lambda: auth_code(p, addr, pw) == 235, timeout=10, what="login from the custom table")

        # Exits and messages as with the default schema, from the custom queries.
        r = ctl(p, "user", "add", addr, password=pw)
        check(r.returncode == 73 and "already exists" in r.stderr, "exists: %d %s" % (r.returncode, r.stderr))
        r = ctl(p, "user", "add", "x@nodomain.test", password=pw)
        check(r.returncode == 68 and "unknown domain nodomain.test" in r.stderr, "domain: %d %s" % (r.returncode,
                                                                                                    r.stderr))
        r = ctl(p, "user", "add", "y@wq.test", "--sender", "z@wq.test", password=pw)
        check(r.returncode == 64 and "add_sender_query" in r.stderr, "--sender: %d %s" % (r.returncode, r.stderr))

        r = ctl(p, "user", "passwd", addr, password=pw2)
        check_eq(r.returncode, 0, "user passwd: " + r.stderr)
        wait_for(lambda: auth_code(p, addr, pw2) == 235, timeout=10, what="login with the new password")
        check_eq(auth_code(p, addr, pw), 535, "old password after passwd")

        check_eq(ctl(p, "user", "disable", addr).returncode, 0, "user disable")
        check_eq(pg().sql("SELECT active FROM wq_accounts"), ["f"], "set_enabled_query")
        check_eq(auth_code(p, addr, pw2), 535, "login while disabled")
        r = ctl(p, "user", "list", "wq.test")
        check_eq(r.stdout, addr + "\tdisabled\twq.test/w\n", "list_users_query: " + r.stderr)
        check_eq(ctl(p, "user", "enable", addr).returncode, 0, "user enable")
        r = ctl(p, "user", "show", addr)
        check("enabled: yes" in r.stdout and "scheme: ARGON2ID" in r.stdout and "mailbox: wq.test/w" in r.stdout
              and "$argon2" not in r.stdout, "show_user_query: %r %s" % (r.stdout, r.stderr))
        # The quota as the server enforces it (review finding: -1, PostfixAdmin's "none", was
        # shown as 18446744073709551615).
        for stored, shown in (("-1", "0"), ("2048", "2048")):
            pg().sql("UPDATE wq_accounts SET quota = %s" % stored)
            r = ctl(p, "user", "show", addr)
            check("quota: %s\n" % shown in r.stdout, "quota %s shown: %r" % (stored, r.stdout))

        check_eq(ctl(p, "user", "delete", addr).returncode, 0, "user delete")
        check_eq(pg().sql("SELECT count(*) FROM wq_accounts"), ["0"], "delete_user_query")
        r = ctl(p, "user", "delete", addr)
        check(r.returncode == 67 and "no such user" in r.stderr, "delete again: %d %s" % (r.returncode, r.stderr))


def test_bad_write_query_settings():
    with Postern(overrides=OVERRIDES, config=config()) as p:
        # A write query that ignores the value it stores is refused when the backend is loaded.
        r = ctl(p, "-D", "auth.backend.pg.set_password_query=UPDATE wq_accounts SET secret = 'x' WHERE login = $1",
                "user", "list")
        check(r.returncode == 78 and "set_password_query' must use $2" in r.stderr,
              "bad query: %d %s" % (r.returncode, r.stderr))
        # A table that does not exist: the SQL error, as a configuration problem (78).
        r = ctl(p, "-D", "auth.backend.pg.list_users_query=SELECT login FROM no_such_table WHERE $1::text = ''",
                "user", "list")
        check(r.returncode == 78 and "no_such_table" in r.stderr and "db migrate" in r.stderr,
              "missing table: %d %s" % (r.returncode, r.stderr))
        # A read-only backend (LDAP; the plugin is loaded, nothing connects) says so: 78.
        ldap = ["-D", "auth.backends=local, pg, dir", "-D", "auth.backend.dir.plugin=ldap",
                "-D", "auth.backend.dir.uris=ldap://127.0.0.1:1", "-D", "auth.backend.dir.base=dc=wq,dc=test",
                "--backend", "dir"]
        for args in (["user", "list"], ["user", "disable", "wendy@wq.test"], ["user", "add", "new@wq.test"]):
            r = ctl(p, *(ldap + args), password="x-Pw-1")
            check(r.returncode == 78 and "backend 'dir' (plugin ldap) cannot administer users" in r.stderr,
                  "%s on LDAP: %d %s" % (" ".join(args), r.returncode, r.stderr))


if __name__ == "__main__":
    run_tests(globals())
