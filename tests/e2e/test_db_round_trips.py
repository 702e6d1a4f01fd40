#!/usr/bin/env python3
"""Database round trips per operation (issue 19.1) on two clustered nodes sharing one real
PostgreSQL, with every guarantee of the shared state still in place.

Counting: PostgreSQL logs every statement of the application role (ALTER ROLE ... SET
log_statement = 'all'); each operation is done with real clients (poplib with STLS, smtplib
submission with STARTTLS + AUTH PLAIN, an MX delivery) and the statements it caused are read
from the server log. BEGIN/COMMIT/ROLLBACK and session SETs are not counted, nor the nodes'
background work (sweeps, lease renewals, readiness probes, and the account-security flush:
one batch per node every account_security.flush_interval for all the logins and deliveries of
that interval, whatever their number; docs/capacity.md counts it). A write is an INSERT, UPDATE or
DELETE, or a call of a writing function of schema 005 (postern_pop3_login, postern_rate_take).
Limits (issue 19.1): POP3 login (STLS, USER/PASS, STAT, QUIT) <= 3 statements and <= 2
writes; submission of one message <= 6 statements; MX delivery to one local user <= 2.

Guarantees, each across the two nodes: a failed-login penalty earned on node A blocks on node
B; an outbound rate limit counts messages sent through both; the POP3 maildrop lock held on A
refuses a session on B ([IN-USE]); a POP3 login on A lets that address relay through B
(POP-before-SMTP); and with PostgreSQL stopped, logins get a temporary failure (POP3
-ERR [SYS/TEMP], SMTP 454 4.7.0), never a wrong-password answer.

Clients connect directly to the nodes from 127.0.0.x: untrusted for the PROXY protocol, so
each speaks plain SMTP/POP3 with its own address (see cluster_support).
"""

import contextlib
import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from postern_harness import (POP3Src, TestFailure, check, check_eq, expect, make_message,  # noqa: E402
                             plain_ir, run_tests, tls_context, wait_for)
from cluster_support import new_mail_root, start_node, truncate_cluster_tables  # noqa: E402
from cluster_support import pop_answer as pass_answer  # noqa: E402
import pg_support as P  # noqa: E402

DOMAIN = "rt.test"
PASSWORDS = {n: "%s-Rt-Secret%d" % (n, i) for i, n in enumerate(["ann", "bob", "cat", "dan", "eve", "fay"])}
USERS = {"%s@%s" % (n, DOMAIN): pw for n, pw in PASSWORDS.items()}
ANN, BOB, CAT, DAN, EVE, FAY = ("%s@%s" % (n, DOMAIN) for n in ["ann", "bob", "cat", "dan", "eve", "fay"])
REMOTE = "friend@remote.example"

LIMITS = {"pop3": (3, 2), "submission": (6, None), "mx": (2, None)}   # (statements, writes)
WRITE_FUNCTIONS = ("postern_pop3_login(", "postern_rate_take(")
BACKGROUND = re.compile(r"^(postern_ready|postern_probe|postern_\w*sweep\w*|postern_lease_renew"
                        r"|postern_account_security_\w+)$")
LOG_RE = re.compile(r"LOG:\s+(?:statement|execute ([^:]+)):\s(.*)$")


def q(s):
    return "'" + s.replace("'", "''") + "'"


def pg():
    """The file's PostgreSQL: users in rt.test, and every statement of the application role
    logged (set once; applies to the connections the nodes open afterwards)."""
    fresh = not P._shared
    s = P.shared_server()
    if fresh:
        rows = ", ".join("(%s, %s, %s)" % (q(u), q(DOMAIN), q("{PLAIN}" + pw)) for u, pw in USERS.items())
        s.sql("INSERT INTO domains (name) VALUES (%s);"
              "INSERT INTO users (address, domain, password) VALUES %s;"
              "INSERT INTO user_senders (user_id, address) SELECT id, 'team@rt.test' FROM users WHERE address = %s;"
              "INSERT INTO aliases (address, domain, destination) VALUES ('sales@rt.test', 'rt.test', %s);"
              "ALTER ROLE %s SET log_statement = 'all';"
              % (q(DOMAIN), rows, q(ANN), q(BOB), P.APP_USER))
    if not s.running:
        s.start()
    truncate_cluster_tables(s)
    return s


class Cluster:
    """Two nodes on one PostgreSQL and one mail root, users from the postgres backend."""

    def __init__(self, overrides=None):
        self.pg = pg()
        self.mail_root = new_mail_root()
        extra = {
            # Users come from PostgreSQL (the plugin's queries are part of every count);
            # the harness's passwd-file users stay for their own domains.
            "auth.backends": "local, pg",
            "auth.backend.local.domains": "example.test, example.org",
            # POP-before-SMTP grants live long enough for the test to use them on the other node.
            "pop_before_smtp.lifetime": "120s",
            # Sweeps and lease renewals are background work, not part of an operation: keep
            # them rare so the log stays quiet (they are also filtered out by name).
            "cluster.sweep_interval": "1h",
            "cluster.lock_lease": "60s",
        }
        extra.update(self.pg.backend_config(domains=DOMAIN))
        ov = {
            # The uncached worst case: every login asks the backend (the auth cache would
            # answer repeated logins from memory and hide the password query).
            "auth.cache.size": "0",
            # The fixture stores {PLAIN} hashes; the first login of each user would rehash it
            # (one-time: a re-read and an UPDATE, tests/e2e/test_rehash_on_login.py), which is
            # not the steady-state cost of an operation this test counts.
            "auth.rehash_on_login": "false",
            # No tarpit waits (base/max delay 0): the tests check blocks, not delays.
            "auth.penalty.base_delay": "0s",
            "auth.penalty.max_delay": "0s",
            # A block after 3 failures of one account (shipped: more), IP blocks out of the way
            # (each test client has its own address anyway).
            "auth.penalty.max_failures_account": "3",
            "auth.penalty.max_failures_ip": "50",
            # A low per-user message limit to see it shared; the other limits out of the way.
            "limits.user.messages_per_hour": "3",
            "limits.user.recipients_per_hour": "100",
            "limits.ip.messages_per_hour": "100",
            "limits.ip.recipients_per_hour": "100",
        }
        ov.update(overrides or {})
        self.a = start_node(self.pg, "node-a", self.mail_root, extra=extra, overrides=ov)
        self.b = start_node(self.pg, "node-b", self.mail_root, extra=extra, overrides=ov)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        for n in (self.a, self.b):
            if et is None and n.running():
                n.stop()
            else:
                n.kill()
        if et is not None:
            print("---- postgres log (tail)\n" + log_text(self.pg)[-4000:])
        return False


# ------------------------------------------------------------------- statement counting

def read_log(pgs, offset=0):
    """The server log from byte `offset` on."""
    with open(pgs.logfile, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def log_text(pgs):
    try:
        return read_log(pgs)
    except FileNotFoundError:
        return ""


def statements_since(pgs, offset):
    """[(name, sql)] of the application's statements logged after byte `offset`."""
    out = []
    for line in read_log(pgs, offset).splitlines():
        m = LOG_RE.search(line)
        if not m:
            continue
        name, sql = (m.group(1) or "").strip(), m.group(2).strip()
        head = sql.split(None, 1)[0].upper().rstrip(";") if sql else ""
        if head in ("BEGIN", "COMMIT", "ROLLBACK", "SET", "SHOW"):
            continue
        if BACKGROUND.match(name):
            continue
        out.append((name, sql))
    return out


def is_write(sql):
    s = sql.lstrip().upper()
    if s.startswith(("INSERT", "UPDATE", "DELETE")):
        return True
    if s.startswith("WITH") and re.search(r"\b(INSERT|UPDATE|DELETE)\b", s):
        return True
    return any(fn in sql for fn in WRITE_FUNCTIONS)


def measure(pgs, operation):
    """Runs operation(); returns its statements once the log has been quiet for a second
    (a POP3 lease is released after QUIT's answer, by the session's end)."""
    offset = os.path.getsize(pgs.logfile)
    operation()
    state = {"n": -1, "since": time.monotonic()}

    def quiet():
        n = len(statements_since(pgs, offset))
        if n != state["n"]:
            state["n"], state["since"] = n, time.monotonic()
            return False
        return time.monotonic() - state["since"] >= 1.0
    wait_for(quiet, timeout=20, interval=0.1, what="statement log quiet")
    return statements_since(pgs, offset)


def report(what, stmts):
    writes = [s for s in stmts if is_write(s[1])]
    print("  %-11s %d statements, %d writes" % (what, len(stmts), len(writes)), flush=True)
    for name, sql in stmts:
        print("    %s %-28s %s" % ("W" if is_write(sql) else " ", name or "-", sql[:110]), flush=True)
    return len(stmts), len(writes)


# ------------------------------------------------------------------- client operations

def pop_session(node, user, source, stls=True):
    p = POP3Src("127.0.0.1", node.port("pop3"), source=source)
    if stls:
        p.stls(context=tls_context())
    p.user(user)
    p.pass_(USERS[user])
    return p


def pop_login_stat_quit(node, user, source):
    p = pop_session(node, user, source)
    p.stat()
    p.quit()


def pop_answer(node, user, password, source):
    """'+OK ...' or the -ERR line of PASS (after STLS); the session is closed afterwards."""
    p = POP3Src("127.0.0.1", node.port("pop3"), source=source)
    try:
        p.stls(context=tls_context())
    except BaseException:
        p.close()
        raise
    return pass_answer(p, user, password)


@contextlib.contextmanager
def smtp_session(node, listener, source, **kw):
    """An SMTP session on the node's `listener`, closed (QUIT, errors ignored) at the end."""
    s = node.smtp(listener, source=source, **kw)
    try:
        yield s
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass


def send_data(s, sender, rcpt, subject):
    """DATA's content (a test message) and the end of data; returns the reply."""
    _, data = make_message(sender=sender, to=rcpt, subject=subject)
    s.send(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
    return s.getreply()


def auth_code(node, user, password, source):
    with smtp_session(node, "submission", source, starttls=True) as s:
        code, msg = s.docmd("AUTH", "PLAIN " + plain_ir(user, password))
        return code, msg.decode("utf-8", "replace")


def submit(node, user, rcpt, source, marker="round-trips"):
    """AUTH + one message to rcpt; returns the reply to the end of DATA (or the first
    refusal as (code, text))."""
    with smtp_session(node, "submission", source, starttls=True) as s:
        expect(s.docmd("AUTH", "PLAIN " + plain_ir(user, USERS[user])), 235, what="AUTH as %s" % user)
        code, msg = s.docmd("MAIL", "FROM:<%s>" % user)
        if code != 250:
            return code, msg.decode("utf-8", "replace")
        code, msg = s.docmd("RCPT", "TO:<%s>" % rcpt)
        if code != 250:
            return code, msg.decode("utf-8", "replace")
        expect(s.docmd("DATA"), 354, what="DATA")
        code, msg = send_data(s, user, rcpt, marker)
        return code, msg.decode("utf-8", "replace")


def mx_deliver(node, rcpt, source):
    with smtp_session(node, "mx", source) as s:
        expect(s.docmd("MAIL", "FROM:<%s>" % REMOTE), 250, what="MX MAIL")
        expect(s.docmd("RCPT", "TO:<%s>" % rcpt), 250, what="MX RCPT %s" % rcpt)
        expect(s.docmd("DATA"), 354, what="MX DATA")
        expect(send_data(s, REMOTE, rcpt, "mx round trips"), 250, what="MX end of DATA")


# ------------------------------------------------------------------- tests

def test_statements_per_operation_within_limits():
    with Cluster() as c:
        print("statements per operation (node A, PostgreSQL statement log):", flush=True)
        results = {}
        stmts = measure(c.pg, lambda: pop_login_stat_quit(c.a, ANN, "127.0.0.2"))
        results["pop3"] = report("pop3", stmts)
        # The login did its work: a grant for the client (POP-before-SMTP), no lease left.
        check_eq(c.pg.sql("SELECT user_name FROM pop_before_smtp_grants WHERE key = '127.0.0.2'"), [ANN],
                 "grant written by the POP3 login")
        check_eq(c.pg.sql("SELECT count(*) FROM maildrop_leases"), ["0"], "lease released at QUIT")

        stmts = measure(c.pg, lambda: expect(submit(c.a, ANN, BOB, "127.0.0.3"), 250, what="submission"))
        results["submission"] = report("submission", stmts)
        check(c.pg.sql("SELECT sum(count) FROM rate_counters WHERE key LIKE 'msg:user:%'") == ["1"],
              "the message was counted once for the user")

        stmts = measure(c.pg, lambda: mx_deliver(c.a, BOB, "127.0.0.4"))
        results["mx"] = report("mx", stmts)

        # An alias to a mailbox of its own domain: the domain, the alias's row (user and
        # aliases in one statement) and the destination's row; the domain is not asked again.
        stmts = measure(c.pg, lambda: mx_deliver(c.b, "sales@rt.test", "127.0.0.4"))
        results["mx alias"] = report("mx alias", stmts)

        for op, (max_stmts, max_writes) in LIMITS.items():
            n, w = results[op]
            check(n <= max_stmts, "%s: %d statements, at most %d allowed" % (op, n, max_stmts))
            if max_writes is not None:
                check(w <= max_writes, "%s: %d writes, at most %d allowed" % (op, w, max_writes))
        check(results["mx alias"][0] <= 3, "mx to an alias: %d statements, at most 3" % results["mx alias"][0])
        # A login without failures to clear writes nothing to auth_penalties.
        check(not any("auth_penalties" in s and s.lstrip().upper().startswith("DELETE")
                      for _, s in statements_since(c.pg, 0)),
              "no DELETE FROM auth_penalties where nothing was to clear")


def test_penalty_shared_between_nodes():
    with Cluster() as c:
        src = "127.0.0.11"
        for i in range(3):
            a = pop_answer(c.a, DAN, "wrong-password-%d" % i, src)
            check(a.startswith("-ERR [AUTH]"), "failure %d on node A: %r" % (i + 1, a))
        # Node B knows: the correct password is refused as blocked (same answer as a wrong one).
        a = pop_answer(c.b, DAN, USERS[DAN], "127.0.0.12")
        check(a.startswith("-ERR") and "[AUTH]" not in a and "Too many" in a,
              "POP3 on node B with the right password after 3 failures on A: %r" % a)
        # No oracle: a wrong password gets exactly the same answer, and is not counted.
        w = pop_answer(c.b, DAN, "yet-another-wrong-one", "127.0.0.12")
        check_eq(w, a, "blocked POP3 answer with a wrong password = with the right one")
        code, msg = auth_code(c.b, DAN, USERS[DAN], "127.0.0.13")
        check(code == 454 or code == 535, "SMTP AUTH on node B blocked too: %d %s" % (code, msg))
        check(code != 235, "SMTP AUTH on node B must not succeed while blocked")
        # Nothing was cleared by the blocked attempts: the counter is still there.
        check_eq(c.pg.sql("SELECT failures FROM auth_penalties WHERE key = 'user:%s'" % DAN), ["3"],
                 "account counter after the blocked attempts")
        # After the window (cleared by hand here) the right password works and clears it.
        c.pg.sql("UPDATE auth_penalties SET failures = 1 WHERE key = 'user:%s'" % DAN)
        a = pop_answer(c.b, DAN, USERS[DAN], "127.0.0.12")
        check(a.startswith("+OK"), "login once below the limit: %r" % a)
        check_eq(c.pg.sql("SELECT count(*) FROM auth_penalties WHERE key = 'user:%s'" % DAN), ["0"],
                 "a successful login clears the account's counter")


def test_rate_limit_shared_between_nodes():
    with Cluster() as c:
        for i, node in enumerate([c.a, c.b, c.a]):
            expect(submit(node, CAT, BOB, "127.0.0.21", marker="rate %d" % i), 250, what="message %d" % (i + 1))
        code, msg = submit(c.b, CAT, BOB, "127.0.0.22", marker="rate 4")
        check(code in (450, 451) and "4.7.1" in msg, "4th message (limit 3 per hour) via node B: %d %s" % (code, msg))
        code, msg = submit(c.a, CAT, BOB, "127.0.0.23", marker="rate 5")
        check(code in (450, 451) and "4.7.1" in msg, "5th message via node A: %d %s" % (code, msg))
        check_eq(c.pg.sql("SELECT sum(count) FROM rate_counters WHERE key = 'msg:user:%s'" % CAT), ["3"],
                 "refused messages are not counted")


def test_maildrop_lock_shared_between_nodes():
    with Cluster() as c:
        held = pop_session(c.a, EVE, "127.0.0.31")
        try:
            a = pop_answer(c.b, EVE, USERS[EVE], "127.0.0.32")
            check(a.startswith("-ERR [IN-USE]"), "second session on node B while A holds it: %r" % a)
            check_eq(c.pg.sql("SELECT node_id FROM maildrop_leases"), ["node-a"], "lease row of node A")
            check_eq(c.pg.sql("SELECT count(*) FROM pop_before_smtp_grants WHERE key = '127.0.0.32'"), ["0"],
                     "no grant for a refused ([IN-USE]) login")
        finally:
            held.quit()
        wait_for(lambda: c.pg.sql("SELECT count(*) FROM maildrop_leases") == ["0"], timeout=10,
                 what="lease released after QUIT on A")
        a = pop_answer(c.b, EVE, USERS[EVE], "127.0.0.32")
        check(a.startswith("+OK"), "node B after A quit: %r" % a)


def test_grant_from_node_a_relays_through_node_b():
    with Cluster() as c:
        src = "127.0.0.41"
        # Before any POP3 login the address may not relay.
        s = c.b.smtp("mx", source=src)
        try:
            expect(s.docmd("MAIL", "FROM:<%s>" % FAY), 250)
            code, _ = s.docmd("RCPT", "TO:<%s>" % REMOTE)
            check(code >= 500, "relay refused before the POP3 login: %d" % code)
        finally:
            s.quit()
        pop_login_stat_quit(c.a, FAY, src)
        s = c.b.smtp("mx", source=src)
        try:
            expect(s.docmd("MAIL", "FROM:<%s>" % FAY), 250)
            expect(s.docmd("RCPT", "TO:<%s>" % REMOTE), 250, what="relay through B after POP3 on A")
        finally:
            s.quit()


def test_database_down_is_a_temporary_failure():
    with Cluster() as c:
        pop_login_stat_quit(c.a, ANN, "127.0.0.51")   # pools warm, then the database goes away
        c.pg.stop()
        try:
            a = pop_answer(c.a, ANN, USERS[ANN], "127.0.0.52")
            check(a.startswith("-ERR [SYS/TEMP]"), "POP3 login with PostgreSQL down: %r" % a)
            a = pop_answer(c.b, EVE, "a-wrong-password", "127.0.0.53")
            check(a.startswith("-ERR [SYS/TEMP]"), "POP3 wrong password with PostgreSQL down: %r" % a)
            code, msg = auth_code(c.b, ANN, USERS[ANN], "127.0.0.54")
            check(code == 454 and "4.7.0" in msg, "SMTP AUTH with PostgreSQL down: %d %s" % (code, msg))
        finally:
            c.pg.start()
        # Back without restarting the nodes.
        wait_for(lambda: pop_answer(c.a, ANN, USERS[ANN], "127.0.0.52").startswith("+OK"), timeout=20,
                 interval=0.5, what="POP3 login after PostgreSQL is back")


if __name__ == "__main__":
    run_tests(globals())
