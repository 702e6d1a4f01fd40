#!/usr/bin/env python3
"""A hung PostgreSQL must not hang sessions (issue 18): the database is frozen with SIGSTOP on
the postmaster and all its backends (what a stuck host, a lock pile-up or a network black
hole looks like: the kernel still accepts TCP, nothing answers), or stopped (pg_ctl stop -m
immediate). With the postgres auth backend: SMTP AUTH gets 454 4.7.0, POP3 -ERR [SYS/TEMP],
an MX RCPT 451 4.3.0, each within statement_timeout + margin; more sessions than the pool
are all answered; /readyz answers 503 within health.ready_timeout; after SIGCONT (or a
start) logins work again without restarting posternd. With the shared cluster PostgreSQL
(cluster.conninfo) frozen: POP3 logins and an SMTP relay are answered, not hung. Also runs
the C++ deadline tests of server/pg (unit_pg, suite pg_deadline) against this PostgreSQL."""

import concurrent.futures
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from postern_harness import (BUILD_DIR, Postern, TestFailure, check, check_eq, expect,  # noqa: E402
                             free_port, make_message, run_tests, wait_for)
import pg_support as P  # noqa: E402
from backend_support import pop_login, rcpt, smtp_auth as auth_code  # noqa: E402

DOMAIN = "faults.test"
ANN = ("ann@faults.test", "ann-Fault-Secret1")
STATEMENT_TIMEOUT = 2.0   # seconds; set on the pg backend and the cluster pool below
CONNECT_TIMEOUT = 2.0
READY_TIMEOUT = 2.0       # health.ready_timeout
# Longest any single answer may take while PostgreSQL is frozen: a session may wait for a
# pool slot (connect_timeout), then a connection (connect_timeout) or the statement deadline
# (statement_timeout + 0.5 s grace); plus a generous margin for a loaded CI machine.
ANSWER_BOUND = 8.0


def pg():
    return P.shared_server("INSERT INTO domains (name) VALUES ('%s');"
                           "INSERT INTO users (address, domain, password) VALUES ('%s', '%s', '{PLAIN}%s');"
                           % (DOMAIN, ANN[0], DOMAIN, ANN[1]))


# ---- freezing PostgreSQL ---------------------------------------------------------------

def postmaster_pid(s):
    with open(os.path.join(s.data, "postmaster.pid")) as f:
        return int(f.readline().strip())


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


@contextlib.contextmanager
def frozen(s):
    """SIGSTOP on the postmaster first (no new backends), then on every child; SIGCONT to all
    of them afterwards, always."""
    pm = postmaster_pid(s)
    stopped = []
    try:
        os.kill(pm, signal.SIGSTOP)
        stopped.append(pm)
        for c in children(pm):
            try:
                os.kill(c, signal.SIGSTOP)
                stopped.append(c)
            except ProcessLookupError:
                pass
        yield stopped
    finally:
        for p in reversed(stopped):
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass


@contextlib.contextmanager
def stopped(s):
    s.stop(mode="immediate")
    try:
        yield
    finally:
        s.start()


# ---- clients -----------------------------------------------------------------------------

def timed(fn, *args):
    t0 = time.monotonic()
    r = fn(*args)
    return r, time.monotonic() - t0








def readyz(port, timeout=READY_TIMEOUT + 5):
    """(status, body, seconds); urllib with a timeout, so a hang fails the test."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % port, timeout=timeout) as r:
            return r.status, r.read().decode(), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), time.monotonic() - t0


def readyz_503(port, label):
    """Polls /readyz until it says 503; every answer must come within READY_TIMEOUT + 3 s and
    the 503 within that plus a second (the backend probes' answers are cached for 1 s, so the
    first request after the fault may still be answered from before it). (status, body, took)."""
    t0 = time.monotonic()
    while True:
        status, body, took = readyz(port)
        check(took < READY_TIMEOUT + 3, "%s: /readyz answered after %.1f s" % (label, took))
        if status == 503:
            return status, body, time.monotonic() - t0
        check(time.monotonic() - t0 < READY_TIMEOUT + 4, "%s: /readyz still %d %r" % (label, status, body))
        time.sleep(0.2)


def check_answer(got, code, enhanced, took, what):
    check(took < ANSWER_BOUND, "%s: answered after %.1f s (bound %.1f s)" % (what, took, ANSWER_BOUND))
    expect(got, code, enhanced, what=what)


def check_pop_temp(resp, took, what):
    check(took < ANSWER_BOUND, "%s: answered after %.1f s (bound %.1f s)" % (what, took, ANSWER_BOUND))
    check(resp.startswith("-ERR [SYS/TEMP]"), "%s: %r" % (what, resp))


# ---- servers -----------------------------------------------------------------------------

# Settings every posternd here needs, each for a reason; nothing relies on harness defaults.
COMMON = {
    # Every login must reach PostgreSQL, not an answer cached before the freeze.
    "auth.cache.size": "0",
    # Many logins and sessions from 127.0.0.1, some failing: no per-IP connection limits or
    # login penalties may answer in place of the database.
    "connections.allow_networks": "127.0.0.0/8",
    "auth.penalty.max_failures_ip": "0",
    "auth.penalty.max_failures_account": "0",
    "auth.penalty.base_delay": "0s",
    # The readiness answer bound this test asserts.
    "health.ready_timeout": "%ds" % READY_TIMEOUT,
}


def pg_backend_server(pool_size=2):
    health = free_port()
    # The pg backend for every domain but the harness's passwd-file ones: /readyz's check
    # (a lookup of readyz.invalid) then reaches it.
    cfg = {"auth.backends": "local, pg",
           "auth.backend.local.domains": "example.test, example.org",
           "health.address": "127.0.0.1", "health.port": str(health)}
    # Small pool (more sessions than connections below) and short timeouts.
    cfg.update(pg().backend_config(domains="*", extra={
        "auth.backend.pg.pool_size": str(pool_size),
        "auth.backend.pg.connect_timeout": "%ds" % CONNECT_TIMEOUT,
        "auth.backend.pg.statement_timeout": "%ds" % STATEMENT_TIMEOUT}))
    p = Postern(overrides=dict(COMMON), config=cfg, start=False, name="pgfault")
    p.health_port = health
    p.start()
    return p


def warm_up(p):
    """Logins that open the pool's connections, so the freeze hits open connections too."""
    expect(auth_code(p, *ANN), 235, "2.7.0", what="AUTH before the fault")
    check(pop_login(p, *ANN).startswith("+OK"), "POP3 login before the fault")
    expect(rcpt(p, ANN[0]), 250, what="RCPT before the fault")
    check_eq(readyz(p.health_port)[:2], (200, "ok\n"), "/readyz before the fault")


def check_temp_failures(p, label):
    times = []
    got, took = timed(auth_code, p, *ANN)
    times.append(took)
    check_answer(got, 454, "4.7.0", took, "%s: AUTH PLAIN with the right password" % label)
    resp, took = timed(pop_login, p, *ANN)
    times.append(took)
    check_pop_temp(resp, took, "%s: POP3 login" % label)
    got, took = timed(rcpt, p, ANN[0])
    times.append(took)
    check_answer(got, 451, "4.3.0", took, "%s: MX RCPT to a local user" % label)
    status, body, took = readyz_503(p.health_port, label)
    times.append(took)
    print("  %s: AUTH %.1f s, POP3 %.1f s, RCPT %.1f s, /readyz %.1f s (%s)"
          % ((label,) + tuple(times) + (body.strip(),)))


def check_recovery(p, label):
    # No fixed sleep: the first logins after the database is back may still meet a
    # connection libpq has not yet seen die; poll until a login works, then demand it.
    wait_for(lambda: auth_code(p, *ANN)[0] == 235, timeout=30, what="%s: AUTH works again" % label)
    expect(auth_code(p, *ANN), 235, "2.7.0", what="%s: AUTH after recovery" % label)
    check(pop_login(p, *ANN).startswith("+OK"), "%s: POP3 login after recovery" % label)
    expect(rcpt(p, ANN[0]), 250, what="%s: RCPT after recovery" % label)
    wait_for(lambda: readyz(p.health_port)[0] == 200, timeout=20, what="%s: /readyz 200 again" % label)
    check(p.running(), "posternd kept running")


# ---------------------------------------------------------------------------------------

def test_cpp_deadline_tests_against_postgres():
    path = os.path.join(BUILD_DIR, "tests", "unit_pg")
    if not os.access(path, os.X_OK):
        raise TestFailure("unit_pg not built at %s" % path)
    env = dict(os.environ, POSTERN_TEST_PG_CONNINFO=pg().conninfo() + " password=" + P.APP_PASSWORD)
    r = subprocess.run([path, "--run_test=pg_deadline", "--report_level=short", "--color_output=no",
                        "--log_level=message"], capture_output=True, text=True, env=env, timeout=300)
    out = r.stdout + r.stderr
    check(r.returncode == 0, "unit_pg --run_test=pg_deadline exited %d\n%s" % (r.returncode, out[-6000:]))
    m = re.search(r"(\d+) test cases? out of (\d+) passed", out)
    # All eight ran and passed (none skipped for want of a database; the "skipped" count of
    # the report is the other suites, filtered out).
    check(m and int(m.group(1)) == 8, "pg_deadline cases:\n" + out[-3000:])


def test_frozen_auth_database_gives_temporary_failures_and_recovers():
    s = pg()
    with pg_backend_server() as p:
        warm_up(p)
        with frozen(s) as pids:
            check(len(pids) >= 3, "postmaster and backends stopped: %r" % pids)
            # /readyz first, while the pool still holds open connections: its check waits on
            # one (statement deadline 2.5 s), longer than health.ready_timeout.
            status, body, took = readyz_503(p.health_port, "frozen, first /readyz")
            print("  frozen, first /readyz: %d %r after %.1f s" % (status, body.strip(), took))
            check_temp_failures(p, "frozen")
            check("event=pg.down" in p.log_text(), "the outage is logged\n" + p.tail(20))
        check_recovery(p, "after SIGCONT")


def test_frozen_database_more_sessions_than_the_pool_all_answered():
    s = pg()
    with pg_backend_server(pool_size=2) as p:
        warm_up(p)
        with frozen(s):
            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(max_workers=7) as ex:
                auths = [ex.submit(timed, auth_code, p, *ANN) for _ in range(4)]
                pops = [ex.submit(timed, pop_login, p, *ANN) for _ in range(3)]
                # A session may wait for a slot, then for a connection: twice the single bound.
                for f in auths:
                    got, took = f.result(timeout=60)
                    check(took < 2 * ANSWER_BOUND, "AUTH answered after %.1f s" % took)
                    expect(got, 454, "4.7.0", what="concurrent AUTH on a frozen database")
                for f in pops:
                    resp, took = f.result(timeout=60)
                    check(took < 2 * ANSWER_BOUND, "POP3 answered after %.1f s" % took)
                    check(resp.startswith("-ERR [SYS/TEMP]"), "concurrent POP3 login: %r" % resp)
            total = time.monotonic() - t0
            check(total < 2 * ANSWER_BOUND + 4, "7 sessions over a pool of 2 took %.1f s" % total)
        check_recovery(p, "after SIGCONT")


def test_stopped_auth_database_gives_temporary_failures_and_recovers():
    s = pg()
    with pg_backend_server() as p:
        warm_up(p)
        with stopped(s):
            check_temp_failures(p, "stopped")
        check_recovery(p, "after start")


def test_frozen_cluster_database_does_not_hang_pop3_or_relay():
    s = pg()
    health = free_port()
    cfg = {
        "cluster.conninfo": s.conninfo(),
        "cluster.password_file": s.password_file,
        "cluster.node_id": "n1",
        "cluster.pool_size": "2",
        "cluster.connect_timeout": "%ds" % CONNECT_TIMEOUT,
        "cluster.statement_timeout": "%ds" % STATEMENT_TIMEOUT,
        "health.address": "127.0.0.1",
        "health.port": str(health),
    }
    ov = dict(COMMON)
    # The per-user rate counters live in the shared PostgreSQL: a relayed message asks it.
    ov.update({"limits.user.recipients_per_hour": "1000", "limits.user.messages_per_hour": "1000"})
    user, password = "alice@example.test", "alice-Secret1"   # passwd-file user of the harness
    with Postern(overrides=ov, config=cfg, name="clfault") as p:
        p.health_port = health
        # Before: a POP3 session (maildrop lease in PostgreSQL) and a relay work.
        c = p.pop3_login(user, password)
        c.quit()
        sub = p.submission(user, password)
        expect(sub.docmd("MAIL", "FROM:<%s>" % user), 250)
        expect(sub.docmd("RCPT", "TO:<someone@remote.example>"), 250, what="relay before the fault")
        sub.quit()
        check_eq(readyz(health)[:2], (200, "ok\n"), "/readyz before the fault")

        with frozen(s):
            # Without its maildrop lease the session is read-only (+OK, store.lease_unavailable),
            # or refused for now: either way answered, not hung.
            resp, took = timed(pop_login, p, user, password)
            check(took < ANSWER_BOUND, "cluster frozen: POP3 login answered after %.1f s" % took)
            check(resp.startswith("+OK") or resp.startswith("-ERR [SYS/TEMP]"),
                  "cluster frozen: POP3 login: %r" % resp)
            # A second one finds the pool down and does not wait out the timeouts again.
            resp, took = timed(pop_login, p, user, password)
            check(took < ANSWER_BOUND, "cluster frozen: second POP3 login answered after %.1f s" % took)

            def relay():
                sub = p.submission(user, password)
                try:
                    expect(sub.docmd("MAIL", "FROM:<%s>" % user), 250)
                    code, msg = sub.docmd("RCPT", "TO:<someone@remote.example>")
                    return code, msg.decode("utf-8", "replace")
                finally:
                    with contextlib.suppress(Exception):
                        sub.quit()
            got, took = timed(relay)
            check(took < ANSWER_BOUND, "cluster frozen: relay answered after %.1f s" % took)
            # The rate counters fall back to this node (store.degraded) or the RCPT is deferred.
            check(got[0] == 250 or 400 <= got[0] < 500, "cluster frozen: relay RCPT: %r" % (got,))
            check("event=rate.store_fail" in p.log_text(), "the relay asked the frozen database\n" + p.tail(20))
            readyz_503(health, "cluster frozen")

        # Recovery without a restart.
        wait_for(lambda: pop_login(p, user, password).startswith("+OK"), timeout=30,
                 what="POP3 login after SIGCONT")
        wait_for(lambda: readyz(health)[0] == 200, timeout=20, what="/readyz 200 after SIGCONT")
        sub = p.submission(user, password)
        expect(sub.docmd("MAIL", "FROM:<%s>" % user), 250)
        expect(sub.docmd("RCPT", "TO:<someone@remote.example>"), 250, what="relay after recovery")
        sub.quit()


if __name__ == "__main__":
    run_tests(globals())
