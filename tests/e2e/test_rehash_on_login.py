#!/usr/bin/env python3
"""Rehash on login (auth.rehash_on_login): a user whose stored hash is in an old scheme
(MD5-CRYPT, SSHA, PLAIN) logs in with real clients (smtplib, poplib) and the backend then holds
an ARGON2ID hash (auth.default_scheme) with which the next login still works: the passwd-file
(rewritten in place, other lines kept) and a real PostgreSQL (one UPDATE, none for a user
already in the target scheme). A wrong password changes nothing. An LDAP backend is left alone
by default."""

import base64
import contextlib
import hashlib
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from postern_harness import (Postern, _root_dir, check, check_eq, expect,  # noqa: E402
                             run_tests, wait_for)
from backend_support import pop_login, smtp_auth  # noqa: E402
import ldap_support as L  # noqa: E402
import pg_support as P  # noqa: E402

PASSWORD = "Old-Scheme-Secret7"
WRONG = "Old-Scheme-Secret8"

# Every test passes the settings it depends on explicitly:
SETTINGS = {
    # The feature under test, and its target scheme (both the shipped defaults).
    "auth.rehash_on_login": "true",
    "auth.default_scheme": "ARGON2ID",
    # Every login must reach the backend (a cached success would not be rehashed again,
    # and a cached failure would not show that a wrong password writes nothing).
    "auth.cache.size": "0",
    # Wrong passwords are tried on purpose: no tarpit or block in the way (the penalty has
    # its own tests in test_abuse.py).
    "auth.penalty.base_delay": "0s",
    "auth.penalty.max_failures_ip": "0",
    "auth.penalty.max_failures_account": "0",
}

REHASH_TIMEOUT = 30.0  # the background thread hashes with Argon2id (tens of ms; CI is slow)


def md5_crypt(password):
    return subprocess.run(["openssl", "passwd", "-1", password], check=True, capture_output=True,
                          text=True).stdout.strip()


def ssha(password, salt=b"pepper!!"):
    return base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


OLD_HASHES = {
    "md5": "{MD5-CRYPT}" + md5_crypt(PASSWORD),
    "ssha": "{SSHA}" + ssha(PASSWORD),
    "plain": "{PLAIN}" + PASSWORD,
}
SCHEME_NAMES = {"md5": "MD5-CRYPT", "ssha": "SSHA", "plain": "PLAIN"}
ARGON2ID_PREFIX = "{ARGON2ID}$argon2id$"


def smtp_auth_login(p, user, password):
    """(code, text) of AUTH LOGIN on the submissions listener (implicit TLS)."""
    s = p.smtp_ssl("submissions")
    try:
        expect(s.docmd("AUTH", "LOGIN"), 334)
        expect(s.docmd(base64.b64encode(user.encode()).decode()), 334)
        code, msg = s.docmd(base64.b64encode(password.encode()).decode())
        return code, msg.decode("utf-8", "replace")
    finally:
        with contextlib.suppress(Exception):
            s.quit()


def login_ok(p, user, password, how):
    if how == "smtp":
        expect(smtp_auth(p, user, password), 235, "2.7.0", what="AUTH PLAIN as " + user)
    elif how == "smtp-login":
        expect(smtp_auth_login(p, user, password), 235, "2.7.0", what="AUTH LOGIN as " + user)
    else:
        got = pop_login(p, user, password)
        check(got.startswith("+OK"), "POP3 login as %s: %s" % (user, got))


def login_fails(p, user, password):
    expect(smtp_auth(p, user, password), 535, "5.7.8", what="AUTH PLAIN as %s (wrong password)" % user)
    got = pop_login(p, user, password)
    check(got.startswith("-ERR"), "POP3 login as %s with a wrong password: %s" % (user, got))


def file_hash(p, user):
    with open(p.passwd_path) as f:
        for line in f:
            if line.startswith(user + ":"):
                return line.split(":")[1]
    return None


# ------------------------------------------------------------------------------------------
# passwd-file

def test_passwd_file_old_schemes_become_argon2id_and_still_log_in():
    p = Postern(overrides=SETTINGS, users={"%s@example.test" % k: {"password": PASSWORD, "scheme": "old", "hash": h}
                                           for k, h in OLD_HASHES.items()})
    # The first login of each user with a different client; the file is re-read by the test.
    for kind, how in (("md5", "smtp"), ("ssha", "pop3"), ("plain", "smtp-login")):
        user = kind + "@example.test"
        check_eq(file_hash(p, user), OLD_HASHES[kind], "hash of %s before its login" % user)
        login_ok(p, user, PASSWORD, how)
        new = wait_for(lambda: (lambda h: h if h and h.startswith(ARGON2ID_PREFIX) else None)(file_hash(p, user)),
                       REHASH_TIMEOUT, what="an ARGON2ID hash for %s in the passwd-file" % user)
        p.log_contains(r"event=auth\.rehash user=%s backend=local from=%s to=ARGON2ID"
                       % (re.escape(user), SCHEME_NAMES[kind]))
        # The next logins (every client) work with the new hash and do not rehash again.
        for again in ("smtp", "pop3", "smtp-login"):
            login_ok(p, user, PASSWORD, again)
        login_fails(p, user, WRONG)
        check_eq(file_hash(p, user), new, "hash of %s after more logins" % user)
        check_eq(p.log_count(r"event=auth\.rehash user=%s " % re.escape(user)), 1, "rehash lines for " + user)
    # The rest of each line is kept (uid/gid/home fields of the harness' format).
    with open(p.passwd_path) as f:
        lines = f.read().splitlines()
    check_eq(len(lines), 3, "lines in the passwd-file")
    check(all(l.count(":") == 7 and l.split(":")[1].startswith(ARGON2ID_PREFIX) for l in lines), lines)
    check(p.metric("postern_events_total", {"event": "auth_rehash", "label": "ok"}) == 3, "auth_rehash ok counter")
    # The password never appears in the log.
    check(PASSWORD not in p.log_text(), "the password is in the log")
    p.stop()


def test_passwd_file_wrong_password_changes_nothing():
    p = Postern(overrides=SETTINGS, users={"md5@example.test": {"password": PASSWORD, "scheme": "old",
                                                                "hash": OLD_HASHES["md5"]},
                                           "plain@example.test": {"password": PASSWORD, "scheme": "old",
                                                                  "hash": OLD_HASHES["plain"]}})
    st = os.stat(p.passwd_path)
    with open(p.passwd_path, "rb") as f:
        before = f.read()
    for _ in range(3):
        login_fails(p, "md5@example.test", WRONG)
        login_fails(p, "plain@example.test", PASSWORD.lower())
        login_fails(p, "plain@example.test", PASSWORD + " ")
    # The failed logins are all answered; nothing was queued for them.
    p.log_contains(r"event=auth\.fail .*user=plain@example\.test .*result=bad_password")
    with open(p.passwd_path, "rb") as f:
        check_eq(f.read(), before, "passwd-file after wrong passwords")
    st2 = os.stat(p.passwd_path)
    check_eq((st2.st_ino, st2.st_mtime_ns), (st.st_ino, st.st_mtime_ns), "passwd-file inode/mtime")
    check_eq(p.log_count(r"event=auth\.rehash"), 0, "rehash log lines")
    # The same server does rehash on the right password: the test above could fail.
    login_ok(p, "md5@example.test", PASSWORD, "pop3")
    wait_for(lambda: file_hash(p, "md5@example.test").startswith(ARGON2ID_PREFIX), REHASH_TIMEOUT,
             what="the rehash after the right password")
    check_eq(file_hash(p, "plain@example.test"), OLD_HASHES["plain"], "the other user's hash")
    p.stop()


def test_passwd_file_des_crypt_is_not_rehashed_from_a_longer_password():
    """Traditional DES crypt reads only the first 8 characters, so "Sunshine2011" matches a
    hash of "Sunshine2010" (an old laptop with a mistyped password that always worked). A
    rehash on that login stored a new hash of "Sunshine2011": the owner's real password
    stopped working on every other client, whose failures then blocked the account. A
    password as long as DES reads (8 characters; bcrypt: 72 octets) or longer now never
    rehashes ("Sunshine" matches too and may be a prefix); a shorter one, all of which DES
    checked, still does. Changed for the test: two users with DES hashes (users), and
    SETTINGS."""
    des = "{CRYPT}abJhAb938FFjw"  # crypt(3) DES of "Sunshine2010" with salt "ab"
    short = "{CRYPT}abeEMpGl/JNzA"  # crypt(3) DES of "Sunshin" with salt "ab"
    p = Postern(overrides=SETTINGS, users={"des@example.test": {"password": "Sunshine2010", "scheme": "old",
                                                                "hash": des},
                                           "short@example.test": {"password": "Sunshin", "scheme": "old",
                                                                  "hash": short}})
    login_ok(p, "des@example.test", "Sunshine2011", "pop3")  # DES: the first 8 characters match
    login_ok(p, "des@example.test", "Sunshine", "pop3")
    login_ok(p, "des@example.test", "Sunshine2010", "smtp")
    # The rehash queue is worked in order: once the later login's rehash is done, any of the
    # earlier ones would be too.
    login_ok(p, "short@example.test", "Sunshin", "pop3")
    wait_for(lambda: file_hash(p, "short@example.test").startswith(ARGON2ID_PREFIX), REHASH_TIMEOUT,
             what="the rehash of the 7-character password")
    check_eq(file_hash(p, "des@example.test"), des, "the DES hash after logins with longer passwords")
    check_eq(p.log_count(r"event=auth\.rehash user=des@example\.test "), 0, "rehash lines for des@")
    for pw in ("Sunshine2010", "Sunshine2011"):
        login_ok(p, "des@example.test", pw, "smtp")
    login_ok(p, "short@example.test", "Sunshin", "smtp")
    p.stop()


def test_passwd_file_rehash_off_keeps_old_hashes():
    settings = dict(SETTINGS)
    settings["auth.rehash_on_login"] = "false"  # what this test is about
    p = Postern(overrides=settings, users={"md5@example.test": {"password": PASSWORD, "scheme": "old",
                                                                "hash": OLD_HASHES["md5"]}})
    p.log_contains(r"event=backend\.loaded name=local plugin=passwd-file .*rehash_on_login=false")
    login_ok(p, "md5@example.test", PASSWORD, "smtp")
    login_ok(p, "md5@example.test", PASSWORD, "pop3")
    check_eq(file_hash(p, "md5@example.test"), OLD_HASHES["md5"], "hash with rehash_on_login = false")
    check_eq(p.log_count(r"event=auth\.rehash"), 0, "rehash log lines")
    p.stop()


def test_passwd_file_directory_not_writable_warns_once_and_logins_work():
    if os.geteuid() != 0:
        print("  (not root: cannot switch users)")
        return
    users = {"md5@example.test": {"password": PASSWORD, "scheme": "old", "hash": OLD_HASHES["md5"]},
             "ssha@example.test": {"password": PASSWORD, "scheme": "old", "hash": OLD_HASHES["ssha"]}}
    p = Postern(overrides=SETTINGS, users=users, start=False)
    # The passwd-file in a directory of its own that the server user may read but not write
    # (root's, mode 0755), as a packaged /etc/postern is; the rest as test_privileges_tls sets it up.
    users_dir = os.path.join(p.dir, "users")
    os.makedirs(users_dir, mode=0o755)
    passwd = os.path.join(users_dir, "users.passwd")
    os.rename(p.passwd_path, passwd)
    os.chmod(passwd, 0o644)
    p.prepare_unprivileged("nobody")
    p.overrides.update({
        "server.allow_root": "false",           # serve as nobody, as in production
        "server.user": "nobody",
        "auth.backend.local.path": passwd,      # the read-only directory above
    })
    with open(passwd, "rb") as f:
        before = f.read()
    with p.start():
        for user in users:
            login_ok(p, user, PASSWORD, "smtp")
        wait_for(lambda: p.metric("postern_events_total", {"event": "auth_rehash", "label": "failed"}) == 2, REHASH_TIMEOUT,
                 what="both rehashes tried and failed")
        line = p.log_contains(r"event=auth\.rehash_failed user=\S+ backend=local from=\S+ to=ARGON2ID "
                              r"status=io_error detail=\"cannot create a temporary file next to %s: "
                              r"Permission denied; the old hash stays" % re.escape(passwd)).group(0)
        check(line, "warning line")
        check_eq(p.log_count(r"event=auth\.rehash_failed"), 1, "warnings for one unwritable passwd-file")
        with open(passwd, "rb") as f:
            check_eq(f.read(), before, "the passwd-file")
        for user in users:  # still served, with the old hashes
            login_ok(p, user, PASSWORD, "pop3")
        check_eq(p.log_count(r"event=auth\.rehash "), 0, "successful rehash lines")


# ------------------------------------------------------------------------------------------
# PostgreSQL

def pg_setup():
    rows = ["('%s@pg.test', 'pg.test', '%s')" % (k, h) for k, h in OLD_HASHES.items()]
    return P.shared_server(
        "INSERT INTO domains (name) VALUES ('pg.test');"
        "INSERT INTO users (address, domain, password) VALUES %s;" % ", ".join(rows))


def pg_hash(pg, user):
    rows = pg.sql("SELECT password FROM users WHERE address = '%s'" % user)
    return rows[0] if rows else None


def pg_version(pg, user):
    """The row version: any UPDATE (even one writing the same value) changes xmin."""
    return pg.sql("SELECT xmin::text FROM users WHERE address = '%s'" % user)[0]


def pg_postern(pg, extra_settings=None):
    cfg = {"auth.backends": "local, pg", "auth.backend.local.domains": "example.test, example.org"}
    cfg.update(pg.backend_config(domains="pg.test"))
    settings = dict(SETTINGS)
    settings.update(extra_settings or {})
    return Postern(overrides=settings, config=cfg, name="pg")


def test_postgres_old_schemes_become_argon2id_and_still_log_in():
    pg = pg_setup()
    p = pg_postern(pg)
    p.log_contains(r"event=backend\.loaded name=pg plugin=postgres .*rehash_on_login=true")
    for kind, how in (("md5", "pop3"), ("ssha", "smtp"), ("plain", "smtp-login")):
        user = kind + "@pg.test"
        check_eq(pg_hash(pg, user), OLD_HASHES[kind], "stored hash of %s" % user)
        version = pg_version(pg, user)
        login_fails(p, user, WRONG)
        check_eq(pg_hash(pg, user), OLD_HASHES[kind], "stored hash of %s after a wrong password" % user)
        check_eq(pg_version(pg, user), version, "row version of %s after a wrong password" % user)
        login_ok(p, user, PASSWORD, how)
        new = wait_for(lambda: (lambda h: h if h and h.startswith(ARGON2ID_PREFIX) else None)(pg_hash(pg, user)),
                       REHASH_TIMEOUT, what="an ARGON2ID hash for %s in PostgreSQL" % user)
        p.log_contains(r"event=auth\.rehash user=%s backend=pg from=%s to=ARGON2ID"
                       % (re.escape(user), SCHEME_NAMES[kind]))
        # Now in the target scheme: logins work and write nothing (the row version stays).
        version = pg_version(pg, user)
        for again in ("smtp", "pop3", "smtp-login"):
            login_ok(p, user, PASSWORD, again)
        login_fails(p, user, WRONG)
        check_eq(pg_hash(pg, user), new, "stored hash of %s after more logins" % user)
        check_eq(pg_version(pg, user), version, "row version of %s after logins in the target scheme" % user)
    check(p.metric("postern_events_total", {"event": "auth_rehash", "label": "ok"}) == 3, "auth_rehash ok counter")
    # The passwd-file users of the same server are untouched (no login there).
    check(file_hash(p, "alice@example.test").startswith("{PLAIN}"), "alice's hash")
    p.stop()


def test_postgres_password_changed_during_the_rehash_is_kept():
    """The rehash's write is a compare-and-set (replace_password_query): a password changed
    after the login, while the new hash is made, is kept, not overwritten with a hash of the
    old password. The change is an UPDATE in an open transaction (the ISP's own tool); it
    commits once the rehash's write waits for that row (pg_stat_activity). A plain UPDATE by
    address (set_password_query, as before) then overwrote the new password."""
    pg = pg_setup()
    user = "race@pg.test"
    pg.sql("INSERT INTO users (address, domain, password) VALUES ('%s', 'pg.test', '%s')" % (user, OLD_HASHES["md5"]))
    p = pg_postern(pg)
    psql = subprocess.Popen(P._as_server_user() + ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                                   "-h", pg.sockdir, "-p", str(pg.port), "-U", P.SUPERUSER,
                                                   "-d", P.DATABASE],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        psql.stdin.write("BEGIN; UPDATE users SET password = '{PLAIN}changed-by-the-isp' WHERE address = '%s';"
                         " SELECT 'held';\n" % user)
        psql.stdin.flush()
        check_eq(psql.stdout.readline().strip(), "held", "the row held by the open transaction")
        login_ok(p, user, PASSWORD, "pop3")  # checked against the committed MD5-CRYPT hash
        wait_for(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                " AND query LIKE 'UPDATE users SET password%'") == ["1"],
                 REHASH_TIMEOUT, what="the rehash's write waiting for the row")
        psql.stdin.write("COMMIT;\n")
        psql.stdin.close()
        check_eq(psql.wait(timeout=30), 0, "psql")
    finally:
        if psql.poll() is None:
            psql.kill()
    wait_for(lambda: p.metric("postern_events_total", {"event": "auth_rehash", "label": "skipped"}) == 1,
             REHASH_TIMEOUT, what="the rehash skipped")
    check_eq(pg_hash(pg, user), "{PLAIN}changed-by-the-isp", "the stored hash after the rehash")
    check_eq(p.log_count(r"event=auth\.rehash user=%s " % re.escape(user)), 0, "rehash lines")
    login_ok(p, user, "changed-by-the-isp", "smtp")
    login_fails(p, user, PASSWORD)
    p.stop()


# ------------------------------------------------------------------------------------------
# LDAP

def test_ldap_is_left_alone_by_default():
    users = {"ann": {"password": "{SSHA}" + ssha("ann-Ldap-Secret1"), "mail": ["ann@ldap.test"]}}
    with L.Slapd(_root_dir(), "rehash", users=users, aliases={}) as slapd:
        secret = L.write_secret(_root_dir(), name="rehash-secret-%d" % os.getpid())
        cfg = L.ldap_backend_config([slapd.uri], secret)
        # No auth.backend.ldap.rehash_on_login: the default for an ldap backend is what is tested.
        p = Postern(overrides=SETTINGS, config=cfg, name="ldap")
        p.log_contains(r"event=backend\.loaded name=ldap plugin=ldap .*rehash_on_login=false")

        def stored():
            r = subprocess.run(["ldapsearch", "-x", "-LLL", "-o", "ldif-wrap=no", "-H", slapd.uri,
                                "-D", L.ROOT_DN, "-w", L.ROOT_PW, "-b", L.SUFFIX, "(uid=ann)", "userPassword"],
                               capture_output=True, text=True, timeout=30)
            check_eq(r.returncode, 0, "ldapsearch: " + r.stderr)
            return [l for l in r.stdout.splitlines() if l.startswith("userPassword")]

        before = stored()
        check(len(before) == 1, before)
        login_ok(p, "ann@ldap.test", "ann-Ldap-Secret1", "smtp")
        login_ok(p, "ann@ldap.test", "ann-Ldap-Secret1", "pop3")
        login_fails(p, "ann@ldap.test", "ann-Ldap-Secret2")
        check_eq(stored(), before, "the LDAP entry's userPassword")
        check_eq(p.log_count(r"event=auth\.rehash"), 0, "rehash log lines")
        # The passwd-file backend of the same server still rehashes (on by default there).
        p.log_contains(r"event=backend\.loaded name=local plugin=passwd-file .*rehash_on_login=true")
        p.stop()


if __name__ == "__main__":
    run_tests(globals())
