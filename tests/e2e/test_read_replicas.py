#!/usr/bin/env python3
"""Read replicas (issue 19.2): lookups that only read (users, domains, aliases, senders,
grants) go to a streaming standby (auth.backend.pg.read_conninfo, cluster.read_conninfo),
writes to the primary; a miss on a standby that lags more than replica_max_lag is re-asked on
the primary (a grant just written is honoured at once); a stopped standby costs nothing but
its load moving to the primary. A real primary and a real hot standby (pg_basebackup -R)
are started by the test; pg_stat_statements on each tells who ran what."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import Postern, check, check_eq, expect, run_tests, wait_for  # noqa: E402
import pg_support as P  # noqa: E402
import replica_support as R  # noqa: E402
from backend_support import pop_login, rcpt  # noqa: E402
from cluster_support import http_get, metric_value  # noqa: E402

ANN = ("ann@rr.test", "ann-Rr-Secret1")
REMOTE = "friend@remote.example"
MAX_LAG_MS = 1000

# Statement text fragments (pg_stat_statements keeps the text the server was sent).
PASSWORD_Q = "SELECT u.address, u.password"
USER_Q = "SELECT u.address, u.enabled AND d.enabled"
GRANT_REPLICA_Q = ("FROM pop_before_smtp_grants WHERE key", "last_used IS NULL OR last_used <")
GRANT_UPSERT = "INSERT INTO pop_before_smtp_grants"

_servers = []


def q(s):
    return "'" + s.replace("'", "''") + "'"


def servers():
    """(primary, standby) for the whole file: schema migrated on the primary, one domain and
    one user, pg_stat_statements created, then the standby cloned from it."""
    if not _servers:
        primary = R.PrimaryPg()
        primary.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements;"
                    "INSERT INTO domains (name) VALUES ('rr.test');"
                    "INSERT INTO users (address, domain, password) VALUES (%s, 'rr.test', %s);"
                    % (q(ANN[0]), q("{PLAIN}" + ANN[1])))
        standby = R.StandbyPg(primary)
        wait_for(standby.streaming, timeout=30, what="standby streaming from the primary")
        _servers.extend([primary, standby])
    primary, standby = _servers
    if not standby.running:
        standby.start()
    standby.sql("SELECT pg_wal_replay_resume()", db="postgres")
    wait_for(standby.streaming, timeout=30, what="standby streaming from the primary")
    # A commit for the standby to replay: its replay timestamp is known from here on (the
    # paused-standby test then measures a real lag, not "unknown").
    primary.sql("CREATE TABLE IF NOT EXISTS rr_tick (at timestamptz); INSERT INTO rr_tick VALUES (now())")
    standby.wait_replayed(primary)
    return primary, standby


def node(primary, standby):
    cfg = {"auth.backends": "local, pg", "auth.backend.local.domains": "example.test, example.org"}
    cfg.update(primary.backend_config(domains="rr.test", extra={
        # The lookups of the backend on the standby; writes stay on conninfo (the primary).
        "auth.backend.pg.read_conninfo": standby.conninfo(),
        "auth.backend.pg.replica_max_lag": "%dms" % MAX_LAG_MS,
    }))
    cfg.update({
        # Grants, counters and leases in the primary; grant lookups on the standby.
        "cluster.conninfo": primary.conninfo(),
        "cluster.password_file": primary.password_file,
        "cluster.read_conninfo": standby.conninfo(),
        "cluster.replica_max_lag": "%dms" % MAX_LAG_MS,
        "cluster.connect_timeout": "2s",
        "cluster.statement_timeout": "2s",
        # Every grant lookup asks the database (the test counts where it ran).
        "cluster.grant_cache_ttl": "0s",
    })
    overrides = {
        # Every login asks the backend (no answer from the auth cache).
        "auth.cache.size": "0",
    }
    return Postern(config=cfg, overrides=overrides, name="rr")


def relay(p, source, sender=ANN[0]):
    """RCPT reply to a remote address on MX from `source` (a grant is needed to relay)."""
    s = p.smtp("mx", source=source)
    try:
        expect(s.mail(sender), 250)
        return s.rcpt(REMOTE)
    finally:
        s.quit()


def pop_from(p, source, user=ANN[0], password=ANN[1]):
    c = p.pop3_ssl(source=source)
    c.user(user)
    resp = c.pass_(password).decode()
    c.quit()
    return resp


def test_lookups_on_the_standby_writes_on_the_primary():
    primary, standby = servers()
    with node(primary, standby) as p:
        R.reset_stats(primary, standby)
        check(pop_from(p, "127.0.0.2").startswith("+OK"), "POP3 login")
        standby.wait_replayed(primary)  # the grant is on the standby
        expect(rcpt(p, ANN[0]), 250, what="RCPT to a user of the pg backend")
        # The grant's first use stamps last_used on the primary; once the standby has that
        # stamp, uses within a minute are answered by the standby alone.
        expect(relay(p, "127.0.0.2"), 250, what="relay on the grant of the POP3 login")
        standby.wait_replayed(primary)
        expect(relay(p, "127.0.0.2"), 250, what="second relay on the grant")

        check(R.calls(standby, PASSWORD_Q) >= 1, "password_query not run on the standby")
        check(R.calls(standby, USER_Q) >= 1, "user_query not run on the standby")
        check(R.calls(standby, *GRANT_REPLICA_Q) >= 1, "grant lookup not run on the standby")
        check_eq(R.calls(primary, PASSWORD_Q), 0, "password_query calls on the primary")
        check_eq(R.calls(primary, USER_Q), 0, "user_query calls on the primary")
        check(R.calls(primary, GRANT_UPSERT) >= 1, "the grant was not written on the primary")
        check_eq(R.calls(standby, GRANT_UPSERT), 0, "writes on the standby")
        p.log_contains(r"event=grant.use ip=127.0.0.2 user=ann@rr.test src=replica")
        check_eq(p.log_count("pg.replica_fallback"), 0, "fallbacks while the standby is fine")
        status, body = http_get(p.health_port, "/metrics")
        check_eq(status, 200, "/metrics")
        check((metric_value(body, "postern_cluster_replica_reads") or 0) >= 1, "replica reads metric")


def test_paused_standby_fresh_grant_and_new_user_from_the_primary():
    primary, standby = servers()
    with node(primary, standby) as p:
        standby.sql("SELECT pg_wal_replay_pause()", db="postgres")
        # The standby's last replayed commit must be older than the bound, else a lag below
        # it is what the operator allowed (a miss then trusted).
        wait_for(lambda: standby.sql(
            # NULL: no commit replayed since the standby started (the router counts that as unknown lag)
            "SELECT coalesce(now() - pg_last_xact_replay_timestamp() > interval '%d milliseconds', true)"
            % (MAX_LAG_MS + 500),
            db="postgres") == ["t"], timeout=30, what="standby behind by more than the bound")
        # A user created on the primary now: the standby does not know it.
        primary.sql("INSERT INTO users (address, domain, password) VALUES ('new@rr.test', 'rr.test', %s)"
                    % q("{PLAIN}new-Rr-Secret2"))
        check(pop_from(p, "127.0.0.4", "new@rr.test", "new-Rr-Secret2").startswith("+OK"),
              "login of a user the paused standby has not replayed")
        check_eq(standby.sql("SELECT count(*) FROM users WHERE address = 'new@rr.test'"), ["0"],
                 "the standby has the new user (not paused?)")
        # The POP3 login's grant: not on the standby, honoured at once via the primary.
        check_eq(standby.sql("SELECT count(*) FROM pop_before_smtp_grants WHERE key = '127.0.0.4'"), ["0"],
                 "the standby has the new grant (not paused?)")
        expect(relay(p, "127.0.0.4", "new@rr.test"), 250, what="relay right after the POP3 login, standby paused")
        expect(rcpt(p, "new@rr.test"), 250, what="RCPT to the user the standby lacks")
        p.log_contains(r"event=pg.replica_fallback pool=cluster reason=lag")
        p.log_contains(r"event=pg.replica_fallback pool=auth.postgres reason=lag")
        # An address that exists nowhere is still unknown (asked on the primary too).
        expect(rcpt(p, "nobody@rr.test"), 550, what="unknown address")
        # Replay resumes: the standby answers again.
        standby.sql("SELECT pg_wal_replay_resume()", db="postgres")
        standby.wait_replayed(primary)
        check(pop_from(p, "127.0.0.5", "new@rr.test", "new-Rr-Secret2").startswith("+OK"), "login after resume")
        # The router re-measures the lag only when a read comes (at most every max_lag / 2): a
        # login right after the resume may still use the last "lagging" measurement, so keep
        # logging in until a read finds the standby caught up.
        wait_for(lambda: pop_from(p, "127.0.0.5", "new@rr.test", "new-Rr-Secret2").startswith("+OK")
                 and re.search(r"event=pg.replica_ok pool=auth.postgres", p.log_text()) is not None,
                 timeout=20, what="the standby answering again after the resume")
    primary.sql("DELETE FROM users WHERE address = 'new@rr.test'")


def test_rehash_never_puts_back_a_password_changed_on_the_primary():
    """Rehash on login with the operator's own password_query (no compare-and-set: the hash
    is read again right before the plain set_password_query) and a read replica. The user
    changes the password on the primary while the standby, within replica_max_lag, still
    shows the old hash; a client with the old password logs in there (the documented
    staleness). Before, the rehasher's read-again came from the same standby, so it wrote a
    hash of the old password to the primary: the change was undone for good. That read now
    goes to the primary, which shows the change: no write. Changed for the test: a custom
    password_query, replica_max_lag = 60s (the paused standby is trusted), rehash on."""
    primary, standby = servers()
    user, old_pw, new_pw = "rex@rr.test", "Rex-Old-Secret1", "Rex-New-Secret2"
    old_hash = "{PLAIN}" + old_pw  # an old scheme: the login queues a rehash
    new_hash = "{PLAIN}" + new_pw
    primary.sql("DELETE FROM users WHERE address = %s; INSERT INTO users (address, domain, password) "
                "VALUES (%s, 'rr.test', %s)" % (q(user), q(user), q(old_hash)))
    standby.wait_replayed(primary)
    cfg = {"auth.backends": "local, pg", "auth.backend.local.domains": "example.test, example.org"}
    cfg.update(primary.backend_config(domains="rr.test", extra={
        "auth.backend.pg.read_conninfo": standby.conninfo(),
        "auth.backend.pg.replica_max_lag": "60s",
        # The operator's own schema (here: the same table, a shorter query): no CAS.
        "auth.backend.pg.password_query": "SELECT u.address, u.password, u.enabled AND d.enabled, u.mailbox "
                                          "FROM users u JOIN domains d ON d.name = u.domain WHERE u.address = $1",
        "auth.backend.pg.rehash_on_login": "true",
    }))
    with Postern(config=cfg, overrides={"auth.cache.size": "0", "auth.rehash_on_login": "true"}, name="rr") as p:
        standby.sql("SELECT pg_wal_replay_pause()", db="postgres")
        try:
            primary.sql("UPDATE users SET password = %s WHERE address = %s" % (q(new_hash), q(user)))
            check(pop_login(p, user, old_pw).startswith("+OK"), "the old password on the stale standby")
            wait_for(lambda: p.metric("postern_events_total", {"event": "auth_rehash", "label": "skipped"}) >= 1,
                     30, what="the rehash skipped (the primary shows the change)")
            check_eq(primary.sql("SELECT password FROM users WHERE address = %s" % q(user)), [new_hash],
                     "the primary's hash after the login with the old password")
        finally:
            standby.sql("SELECT pg_wal_replay_resume()", db="postgres")
        standby.wait_replayed(primary)
        check(pop_login(p, user, new_pw).startswith("+OK"), "the new password works")


def test_a_new_password_refused_by_a_stale_standby_is_not_remembered_as_wrong():
    """The user changes the password on the primary and logs in with the new one at once,
    while the standby (within replica_max_lag) still shows the old hash: that login fails
    (the documented staleness). Review finding: the mismatch was stored in the negative
    auth cache, so the new password stayed refused for auth.cache.negative_ttl after the
    standby caught up; now for at most replica_max_lag. Changed for the test:
    replica_max_lag = 3s (the standby paused just after a commit is trusted that long); the
    auth cache is the shipped one (on)."""
    primary, standby = servers()
    user, old_pw, new_pw = "sal@rr.test", "Sal-Old-Secret1", "Sal-New-Secret2"
    primary.sql("DELETE FROM users WHERE address = %s; INSERT INTO users (address, domain, password) "
                "VALUES (%s, 'rr.test', %s)" % (q(user), q(user), q("{PLAIN}" + old_pw)))
    standby.wait_replayed(primary)
    cfg = {"auth.backends": "local, pg", "auth.backend.local.domains": "example.test, example.org"}
    cfg.update(primary.backend_config(domains="rr.test", extra={
        "auth.backend.pg.read_conninfo": standby.conninfo(),
        "auth.backend.pg.replica_max_lag": "3s",
    }))
    with Postern(config=cfg, name="rr") as p:
        primary.sql("INSERT INTO rr_tick VALUES (now())")  # the standby's last replayed commit: now
        standby.wait_replayed(primary)
        standby.sql("SELECT pg_wal_replay_pause()", db="postgres")
        try:
            primary.sql("UPDATE users SET password = %s WHERE address = %s" % (q("{PLAIN}" + new_pw), q(user)))
            check(pop_login(p, user, new_pw).startswith("-ERR"), "the new password on the stale standby")
            failed_at = time.monotonic()
        finally:
            standby.sql("SELECT pg_wal_replay_resume()", db="postgres")
        standby.wait_replayed(primary)
        time.sleep(max(0.0, failed_at + 3.5 - time.monotonic()))  # the failure's bound (replica_max_lag)
        answer = pop_login(p, user, new_pw)
        check(answer.startswith("+OK"), "the new password once the standby caught up: %r" % answer)
        p.log_contains(r"event=auth\.fail .*user=sal@rr\.test .*result=bad_password")


def test_stopped_standby_logins_and_grants_via_the_primary():
    primary, standby = servers()
    with node(primary, standby) as p:
        standby.stop()
        R.reset_stats(primary)
        check(pop_from(p, "127.0.0.6").startswith("+OK"), "POP3 login with the standby stopped")
        expect(relay(p, "127.0.0.6"), 250, what="relay with the standby stopped")
        expect(rcpt(p, ANN[0]), 250, what="RCPT with the standby stopped")
        expect(rcpt(p, "nobody@rr.test"), 550, what="unknown address with the standby stopped")
        p.log_contains(r"event=pg.replica_fallback pool=cluster reason=down")
        p.log_contains(r"event=pg.replica_fallback pool=auth.postgres reason=down")
        check(R.calls(primary, PASSWORD_Q) >= 1, "password_query not run on the primary")
        check(R.calls(primary, USER_Q) >= 1, "user_query not run on the primary")
        status, body = http_get(p.health_port, "/metrics")
        check((metric_value(body, "postern_cluster_replica_fallbacks") or 0) >= 1, "fallback metric")
        # The standby comes back: lookups return to it without a restart. The down replica
        # pool retries at most once per connect_timeout, so poll.
        standby.start()
        wait_for(standby.streaming, timeout=30, what="standby streaming again")
        standby.wait_replayed(primary)

        def back():
            pop_from(p, "127.0.0.6")
            return "pool=auth.postgres" in "".join(
                l for l in p.log_text().splitlines() if "event=pg.replica_ok" in l)
        wait_for(back, timeout=20, interval=0.5, what="auth lookups back on the standby")


def test_primary_down_is_a_temporary_failure():
    primary, standby = servers()
    with node(primary, standby) as p:
        primary.stop()
        try:
            # The standby alone never answers for long: its lag grows past the bound (its WAL
            # receiver is gone), then every lookup needs the primary -> "try later".
            wait_for(lambda: standby.sql(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver)", db="postgres") == ["t"],
                timeout=30, what="standby lost its primary")
            def tempfail():
                r = pop_from_raw(p, "127.0.0.7")
                return r.startswith("-ERR [SYS/TEMP]") or r.startswith("-ERR [IN-USE]")
            wait_for(tempfail, timeout=MAX_LAG_MS / 1000 + 15, interval=0.5,
                     what="POP3 login answers try-later with the primary down")
            code, _ = rcpt(p, "nobody@rr.test")
            check_eq(code, 451, "unknown address with the primary down (never 550)")
        finally:
            primary.start()


def pop_from_raw(p, source):
    import poplib
    c = p.pop3_ssl(source=source)
    try:
        c.user(ANN[0])
        return c.pass_(ANN[1]).decode()
    except poplib.error_proto as e:
        return e.args[0].decode("utf-8", "replace") if isinstance(e.args[0], bytes) else str(e)
    finally:
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    run_tests(globals())
