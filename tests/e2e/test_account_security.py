#!/usr/bin/env python3
"""Compromised-account detection and the login log (account_security.*), with real clients.

Cluster: two real posternd nodes on one real PostgreSQL (schema by `posternctl db migrate`),
delivery through a smarthost (an aiosmtpd sink). Logins of one account from several client
addresses (127.0.0.x, bound by the client), spread over both nodes, pass
account_security.max_ips: the account is flagged cluster-wide; a message it submitted just
before stays in the queue (not sent to the sink, not lost); new MAIL FROM gets 451 4.7.1 on
both nodes; the flag is counted in /metrics and logged once; `posternctl user release` lets
the held message go and new mail in; `posternctl user logins` shows the login log (time, IP,
protocol, mechanism, TLS version, result).

Single node (no PostgreSQL): the same detection, kept in <queue_dir>/account-security.state:
a restart (and a SIGKILL between flushes) keeps holding the account and its login log,
`posternctl user logins` reads the file, `posternctl user release` goes through the request
file posternd picks up; a damaged file is kept aside. A held account relays nothing on a
POP-before-SMTP grant, and its POP3 logins make no grant. Cluster: a POP3 login refused by the
penalty (checked in the login statement after the password) is logged as `blocked`.

Username spraying (single node): a few hundred failed SMTP AUTH and POP3 logins with random
user names from several client addresses leave no entry for those names in the state file
(they are counted in postern_events_total{event="account_security",label="untracked_login"}),
while a real account's failures and successes stay in its login log; with
account_security.max_tracked_accounts = 1 a second account's login drops the first one's log.
"""

import base64
import json
import os
import poplib
import random
import re
import smtplib
import string
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from postern_harness import (DEFAULT_USERS, Postern, TestFailure, check, check_eq, expect,  # noqa: E402
                             make_message, run_tests, sleep_until, smtp_auth, wait_for)
from cluster_support import cluster_pg, http_get, metric_value, start_node, new_mail_root  # noqa: E402
from delivery_support import Sink, sink_port  # noqa: E402
import pg_support as P  # noqa: E402

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
BOB, BOB_PW = "bob@example.test", DEFAULT_USERS["bob@example.test"]["password"]
REMOTE = "friend@remote.example"
FLUSH = "300ms"


def detection_overrides(sink_port_number, max_ips="3"):
    return {
        # Fast detection for the test: events are written (and the flag read back) this often.
        "account_security.flush_interval": FLUSH,
        # A single node's state file (login log) at every flush, so the test reads it at once
        # (shipped: at most every minute; the flags file is written at once anyway).
        "account_security.state_write_interval": "0",
        # 4 distinct client IPs with a successful login flag the account (shipped: 20).
        "account_security.max_ips": max_ips,
        # Every 127.0.0.x is one /24: the network count must not interfere (shipped: 10).
        "account_security.max_networks": "0",
        # Outbound mail goes to the sink as smarthost (no DNS), retried every second and the
        # queue rescanned every second, so "held" and "released" show within seconds.
        "delivery.enabled": "true",
        "delivery.relayhost": "127.0.0.1:%d" % sink_port_number,
        "delivery.relayhost_tls": "none",
        "delivery.retry_schedule": "1s",
        "delivery.scan_interval": "1s",
        "delivery.connect_timeout": "3s",
        # Several logins from 127.0.0.x within seconds: keep the connection limits out of it.
        "connections.rate_per_ip": "0",
    }


def submit(node, source, user=ALICE, password=ALICE_PW, to=REMOTE):
    """Submits one message over STARTTLS + AUTH PLAIN from `source`; returns its marker."""
    s = node.submission(user, password, source=source)
    marker, msg = make_message(sender=user, to=to)
    s.sendmail(user, [to], msg)
    s.quit()
    return marker


def quit_quietly(s):
    try:
        s.quit()
    except (smtplib.SMTPException, OSError):
        pass


def mail_from_reply(node, source, user=ALICE, password=ALICE_PW):
    """(code, text) of MAIL FROM in an authenticated submission session from `source`."""
    s = node.submission(user, password, source=source)
    try:
        code, text = s.docmd("MAIL", "FROM:<%s>" % user)
        return code, text.decode("utf-8", "replace")
    finally:
        quit_quietly(s)


def pop_login(node, source, user=ALICE, password=ALICE_PW):
    p = node.pop3_login(user, password, tls="stls", source=source)
    p.quit()


def queued_envelopes(node):
    d = os.path.join(node.queue_dir, "envelope")
    return [f for f in os.listdir(d) if not f.startswith(".")] if os.path.isdir(d) else []


def metrics(node):
    status, body = http_get(node.health_port, "/metrics")
    check_eq(status, 200, "/metrics status")
    return body


def one(pg, sql):
    """The first row of a query ('' when there is none)."""
    rows = pg.sql(sql)
    return rows[0] if rows else ""


def truncate(pg):
    pg.sql("TRUNCATE account_security_ips, account_security_counts, account_flags, account_logins, account_login_activity")


def test_cluster_flag_hold_release_and_login_log():
    pg = cluster_pg()
    truncate(pg)
    port = sink_port()
    o = detection_overrides(port)
    shared = new_mail_root()
    a = start_node(pg, "node-a", shared, overrides=o)
    b = start_node(pg, "node-b", shared, overrides=o)
    try:
        # 1. The sink is not up yet: a message alice submits now waits in node a's queue
        #    (the smarthost refuses connections: a temporary failure, retried every second).
        marker = submit(a, "127.0.0.2")
        wait_for(lambda: queued_envelopes(a), 10, what="message queued on node a")
        check_eq(one(pg, "SELECT count(*) FROM account_flags"), "0", "no flag after one IP")

        # 2. Logins from three more addresses, on both nodes, over SMTP and POP3: four
        #    distinct IPs > max_ips = 3. A failed login does not count as an IP.
        s = a.smtp("submission", source="127.0.0.6", starttls=True)
        s.user, s.password = ALICE, "wrong-password"
        try:
            s.auth("PLAIN", s.auth_plain)  # one attempt (smtplib's login() would try LOGIN too)
            raise TestFailure("a wrong password was accepted")
        except smtplib.SMTPAuthenticationError as e:
            check_eq(e.smtp_code, 535, "wrong password")
        s.close()
        s = a.submission(ALICE, ALICE_PW, source="127.0.0.3")
        s.quit()
        pop_login(b, "127.0.0.4")
        # Not yet past the threshold (3 distinct IPs): nobody is held. (Both nodes have
        # flushed at least once when the logins from .3 and .4 are in PostgreSQL.)
        wait_for(lambda: one(pg, "SELECT count(DISTINCT ip) FROM account_security_ips"
                                " WHERE account = '%s'" % ALICE) == "3", 10,
                 what="three IPs counted in PostgreSQL")
        check_eq(one(pg, "SELECT count(*) FROM account_flags"), "0", "no flag at 3 IPs")
        pop_login(b, "127.0.0.5")

        # 3. Flagged cluster-wide: both nodes hold alice within a flush interval or two.
        wait_for(lambda: one(pg, "SELECT reason || ' ' || value || ' ' || threshold FROM account_flags"
                                " WHERE account = '%s'" % ALICE) == "ips 4 3", 15,
                 what="alice flagged in PostgreSQL")
        for n in (a, b):
            wait_for(lambda n=n: metric_value(metrics(n), "postern_accounts_held") == 1.0, 15,
                     what="%s holds alice" % n.node_id)
        # Counted and logged exactly once in the cluster, by the node that flagged it.
        flagged = sum(metric_value(metrics(n), "postern_accounts_flagged_total", {"reason": "ips"}) or 0
                      for n in (a, b))
        check_eq(flagged, 1.0, "postern_accounts_flagged_total{reason=ips} over both nodes")
        lines = [l for n in (a, b) for l in n.log_text().splitlines() if "event=account.flagged" in l]
        check_eq(len(lines), 1, "account.flagged lines over both nodes")
        for needle in ("user=alice@example.test", "reason=ips", "value=4", "threshold=3"):
            check(needle in lines[0], "%s in %s" % (needle, lines[0]))

        # 4. New submissions from alice: 451 4.7.1 on both nodes; bob is not affected.
        for n, src in ((a, "127.0.0.2"), (b, "127.0.0.3")):
            code, text = mail_from_reply(n, src)
            check_eq(code, 451, "MAIL FROM of a held account on %s (%s)" % (n.node_id, text))
            check(text.startswith("4.7.1"), "enhanced status 4.7.1: %r" % text)
        code, text = mail_from_reply(a, "127.0.0.7", BOB, BOB_PW)
        check_eq(code, 250, "bob's MAIL FROM (%s)" % text)

        # 5. The held message is not sent once the smarthost is up, and not lost: over
        #    several retry and rescan intervals it stays in the queue.
        with Sink("127.0.0.1", port) as sink:
            sleep_until(time.monotonic() + 4.0)  # 4 x delivery.scan_interval / retry_schedule
            check_eq(sink.count(), 0, "messages sent for a held account")
            check(queued_envelopes(a), "the held message is still queued on node a")

            # 6. Release: the flag and alice's counters go; the held message is sent, new
            #    mail is accepted again.
            r = P.posternctl(["user", "release", ALICE], a.config_path)
            check_eq(r.returncode, 0, "posternctl user release: %s%s" % (r.stdout, r.stderr))
            check("released alice@example.test (was held for ips)" in r.stdout, r.stdout)
            got = sink.wait_for(marker, timeout=30)
            check_eq(got[0].mail_from, ALICE, "envelope sender of the released message")
            wait_for(lambda: not queued_envelopes(a), 15, what="queue of node a empty")
            for n in (a, b):
                wait_for(lambda n=n: metric_value(metrics(n), "postern_accounts_held") == 0.0, 15,
                         what="%s released alice" % n.node_id)
            code, text = mail_from_reply(b, "127.0.0.2")
            check_eq(code, 250, "MAIL FROM after the release (%s)" % text)
            # Releasing an account that is not held says so (and succeeds).
            r = P.posternctl(["user", "release", ALICE], a.config_path)
            check_eq(r.returncode, 0, "second release")
            check("was not held" in r.stdout, r.stdout)

        # 7. The login log: newest first, every attempt with IP, protocol, mechanism, TLS
        #    version and result (the failure under the name given).
        def entries():
            r = P.posternctl(["user", "logins", ALICE, "--json", "--limit", "50"], a.config_path)
            check_eq(r.returncode, 0, "posternctl user logins: %s" % r.stderr)
            return json.loads(r.stdout)
        wait_for(lambda: len(entries()) >= 8, 10, what="login log entries written")
        log = entries()
        times = [e["time"] for e in log]
        check_eq(times, sorted(times, reverse=True), "newest first")
        by_ip = {}
        for e in log:
            by_ip.setdefault(e["ip"], []).append(e)
        check(set(by_ip) >= {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}, by_ip.keys())
        pop = by_ip["127.0.0.4"][0]
        check_eq((pop["protocol"], pop["mechanism"], pop["result"], pop["tls"]), ("pop3", "USER", "ok", True),
                 "POP3 login entry")
        check(pop["tls_version"] in ("TLSv1.2", "TLSv1.3"), "TLS version recorded: %r" % pop)
        smtp_ok = [e for e in by_ip["127.0.0.3"] if e["protocol"] == "smtp" and e["result"] == "ok"]
        check(smtp_ok and smtp_ok[0]["mechanism"] == "PLAIN", "SMTP AUTH PLAIN entry: %r" % by_ip["127.0.0.3"])
        failed = by_ip["127.0.0.6"]
        check_eq([e["result"] for e in failed], ["fail"], "the wrong password is logged as a failure")
        # Text output and --limit.
        r = P.posternctl(["user", "logins", ALICE, "--limit", "2"], a.config_path)
        check_eq(r.returncode, 0, "text output")
        rows = [l.split("\t") for l in r.stdout.splitlines()]
        check_eq(len(rows), 2, "--limit 2 rows")
        check_eq(len(rows[0]), 6, "time, ip, protocol, mechanism, tls, result")
        r = P.posternctl(["user", "logins", ALICE, "--limit", "0"], a.config_path)
        check_eq(r.returncode, 65, "--limit 0 is refused")
    finally:
        a.stop()
        b.stop()


def test_cluster_login_log_is_bounded_per_account():
    pg = cluster_pg()
    truncate(pg)
    o = detection_overrides(sink_port(), max_ips="0")
    # Only the 3 newest entries per account are kept (shipped: 100).
    o["account_security.login_log_max_entries"] = "3"
    node = start_node(pg, "node-a", new_mail_root(), overrides=o)
    try:
        for i in range(2, 8):
            pop_login(node, "127.0.0.%d" % i, BOB, BOB_PW)
        wait_for(lambda: one(pg, "SELECT string_agg(host(ip), ',' ORDER BY at DESC) FROM account_logins"
                                " WHERE account = '%s'" % BOB) == "127.0.0.7,127.0.0.6,127.0.0.5",
                 15, what="bob's login log trimmed to the 3 newest")
        check_eq(one(pg, "SELECT count(*) FROM account_flags"), "0", "max_ips = 0 flags nobody")
    finally:
        node.stop()


def read_state(node):
    """The single node's state file, checked complete: header, records, `end N`."""
    path = os.path.join(node.queue_dir, "account-security.state")
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    lines = text.split("\n")
    check_eq(lines[0], "postern-account-security 1", "state file header")
    check_eq(lines[-1], "", "state file ends with a newline")
    check_eq(lines[-2], "end %d" % (len(lines) - 3), "state file end record counts its records")
    return lines[1:-2]


def test_single_node_hold_survives_restart_and_kill():
    port = sink_port()
    o = detection_overrides(port, max_ips="2")
    with Postern(overrides=o) as p:
        # 1. The smarthost is down: alice's message waits in the queue. Logins from two more
        #    addresses (3 distinct IPs > max_ips = 2) flag her.
        marker = submit(p, "127.0.0.2")
        wait_for(lambda: queued_envelopes(p), 10, what="message queued")
        for src in ("127.0.0.3", "127.0.0.4"):
            s = p.submission(ALICE, ALICE_PW, source=src)
            s.quit()
        wait_for(lambda: mail_from_reply(p, "127.0.0.2")[0] == 451, 15, what="alice held (451 at MAIL)")
        code, text = mail_from_reply(p, "127.0.0.2")
        check(text.startswith("4.7.1"), "enhanced status: %r" % text)
        check_eq(p.log_count(r"event=account\.flagged user=alice@example\.test reason=ips value=3 threshold=2"), 1,
                 "account.flagged logged once")
        status, body = http_get(p.health_port, "/metrics")
        check_eq(metric_value(body, "postern_accounts_flagged_total", {"reason": "ips"}), 1.0, "flag counted")
        # The flag is in the state file in the queue directory (written at the flush).
        wait_for(lambda: "flag alice@example.test ips 3 2" in read_state(p), 10, what="flag in the state file")

        # 2. A restart keeps holding: 451 right after the start, and the queued message is
        #    not sent once the smarthost is up, over several retry and rescan intervals.
        p.restart()
        p.log_contains(r"event=account_security\.state_loaded .*held=1", timeout=5)
        code, text = mail_from_reply(p, "127.0.0.2")
        check_eq(code, 451, "MAIL FROM of a held account after a restart (%s)" % text)
        with Sink("127.0.0.1", port) as sink:
            sleep_until(time.monotonic() + 4.0)  # 4 x delivery.scan_interval / retry_schedule
            check_eq(sink.count(), 0, "messages sent for a held account after a restart")
            check(queued_envelopes(p), "the held message is still queued")

            # 3. The login log on a single node: posternctl reads the state file.
            def entries():
                r = P.posternctl(["user", "logins", ALICE, "--json", "--limit", "50"], p.config_path)
                check_eq(r.returncode, 0, "posternctl user logins: %s" % r.stderr)
                return json.loads(r.stdout)
            log = entries()
            times = [e["time"] for e in log]
            check_eq(times, sorted(times, reverse=True), "newest first")
            check({e["ip"] for e in log} >= {"127.0.0.2", "127.0.0.3", "127.0.0.4"}, log)
            e = [e for e in log if e["ip"] == "127.0.0.3"][0]
            check_eq((e["protocol"], e["mechanism"], e["result"], e["tls"]), ("smtp", "PLAIN", "ok", True),
                     "SMTP login entry")
            r = P.posternctl(["user", "logins", ALICE, "--limit", "2"], p.config_path)
            check_eq(r.returncode, 0, "text output: %s" % r.stderr)
            rows = [l.split("\t") for l in r.stdout.splitlines()]
            check_eq(len(rows), 2, "--limit 2 rows")
            check_eq(len(rows[0]), 6, "time, ip, protocol, mechanism, tls, result")

            # 4. SIGKILL between flushes: what was flushed before is kept, the file is always
            #    complete (replaced atomically), and the account is still held.
            for i, src in enumerate(("127.0.0.5", "127.0.0.6", "127.0.0.7")):
                pop_login(p, src)
                # At most one flush interval (300 ms) later the login is in the file.
                wait_for(lambda src=src: any(l.startswith("login alice@example.test ") and (" %s pop3 " % src) in l
                                             for l in read_state(p)), 10, what="login from %s in the file" % src)
                p.kill()
                read_state(p)  # complete after the kill
                p.start(keep_ports=True)
                code, text = mail_from_reply(p, "127.0.0.2")
                check_eq(code, 451, "held after kill %d (%s)" % (i + 1, text))
                check(src in {e["ip"] for e in entries()}, "login from %s kept across the kill" % src)
            check_eq(sink.count(), 0, "nothing sent across the kills")
            check_eq(p.log_count(r"event=account_security\.state_corrupt"), 0, "no corrupt state file")

            # 5. Release (a request file, applied at the next flush): the held message is sent,
            #    new mail is accepted, and a restart does not hold alice again.
            r = P.posternctl(["user", "release", ALICE], p.config_path)
            check_eq(r.returncode, 0, "posternctl user release: %s%s" % (r.stdout, r.stderr))
            got = sink.wait_for(marker, timeout=30)
            check_eq(got[0].mail_from, ALICE, "envelope sender of the released message")
            wait_for(lambda: mail_from_reply(p, "127.0.0.2")[0] == 250, 15, what="alice released")
            p.log_contains(r"event=account\.released user=alice@example\.test", timeout=5)
            check(not os.listdir(os.path.join(p.queue_dir, "account-release")), "the request file is consumed")
            check(not any(l.startswith("flag ") for l in read_state(p)), "no flag in the state file")
            p.restart()
            code, text = mail_from_reply(p, "127.0.0.2")
            check_eq(code, 250, "MAIL FROM after release and restart (%s)" % text)
            marker2 = submit(p, "127.0.0.2")
            sink.wait_for(marker2, timeout=30)


def relay_rcpt_reply(node, source, sender=ALICE, to=REMOTE):
    """(code, text) of RCPT TO a remote address on the MX port without AUTH from `source`:
    only a POP-before-SMTP grant of that address can relay."""
    s = node.smtp("mx", source=source)
    try:
        s.ehlo("client.example")
        code, _ = s.docmd("MAIL", "FROM:<%s>" % sender)
        check_eq(code, 250, "MAIL FROM on the MX port")
        code, text = s.docmd("RCPT", "TO:<%s>" % to)
        return code, text.decode("utf-8", "replace")
    finally:
        quit_quietly(s)


def test_single_node_flag_survives_a_kill_before_the_state_file_is_rewritten():
    """The shipped account_security.state_write_interval (1 min): the state file is written at
    the first flush, then not again within the minute; a flag set meanwhile is in the flags
    file at once, so a SIGKILL right after it and a restart still hold the account."""
    o = detection_overrides(sink_port(), max_ips="2")
    del o["account_security.state_write_interval"]  # the shipped interval, for this test
    with Postern(overrides=o) as p:
        pop_login(p, "127.0.0.2")
        state = os.path.join(p.queue_dir, "account-security.state")
        wait_for(lambda: os.path.exists(state) and any(" 127.0.0.2 pop3 " in l for l in read_state(p)), 10,
                 what="the first state write")
        for src in ("127.0.0.3", "127.0.0.4"):
            pop_login(p, src)
        wait_for(lambda: mail_from_reply(p, "127.0.0.2")[0] == 451, 15, what="alice held (451 at MAIL)")
        flags = os.path.join(p.queue_dir, "account-security.state.flags")
        wait_for(lambda: "flag alice@example.test ips 3 2" in open(flags).read(), 10, what="the flag in the flags file")
        check(not any(l.startswith("flag ") for l in read_state(p)), "the state file is not rewritten within the minute")
        p.kill()
        p.start(keep_ports=True)
        p.log_contains(r"event=account_security\.flags_loaded .*held=1", timeout=5)
        code, text = mail_from_reply(p, "127.0.0.2")
        check_eq(code, 451, "held after the kill (%s)" % text)


def test_single_node_held_account_cannot_relay_on_a_pop_before_smtp_grant():
    """A stolen password held at SMTP MAIL must not relay through POP-before-SMTP instead
    (pop_before_smtp.lifetime is on in the shipped configuration): a grant made before the
    hold stops relaying (451 4.7.1), and a POP3 login of the held account still reads its
    mail but makes no grant (pop3.grant_refused reason=account_held)."""
    o = detection_overrides(sink_port(), max_ips="2")
    with Postern(overrides=o) as p:
        pop_login(p, "127.0.0.2")  # grant for 127.0.0.2
        code, text = relay_rcpt_reply(p, "127.0.0.2")
        check_eq(code, 250, "relay on alice's grant before the hold (%s)" % text)
        for src in ("127.0.0.3", "127.0.0.4"):  # 3 distinct IPs > max_ips = 2: flagged
            s = p.submission(ALICE, ALICE_PW, source=src)
            s.quit()
        wait_for(lambda: mail_from_reply(p, "127.0.0.3")[0] == 451, 15, what="alice held (451 at MAIL)")
        code, text = relay_rcpt_reply(p, "127.0.0.2")
        check_eq(code, 451, "relay on the grant of a held account (%s)" % text)
        check(text.startswith("4.7.1"), "enhanced status: %r" % text)
        p.log_contains(r"event=rcpt\.reject .*reason=account_held")
        # Local mail from that address is no relay: still accepted.
        code, text = relay_rcpt_reply(p, "127.0.0.2", to=BOB)
        check_eq(code, 250, "local recipient from the granted address (%s)" % text)
        # A new POP3 login of the held account: mail is readable, no grant is made.
        pop_login(p, "127.0.0.5")
        p.log_contains(r"event=pop3\.grant_refused user=alice@example\.test ip=127\.0\.0\.5 reason=account_held")
        code, text = relay_rcpt_reply(p, "127.0.0.5")
        check_eq(code, 554, "no grant for the held account's new address (%s)" % text)


def test_single_node_corrupt_state_file_is_kept_aside():
    with Postern(overrides={
            # Writes the state file quickly for the test (shipped: 5s).
            "account_security.flush_interval": FLUSH}, start=False) as p:
        os.makedirs(p.queue_dir, exist_ok=True)
        path = os.path.join(p.queue_dir, "account-security.state")
        with open(path, "w") as f:
            f.write("postern-account-security 1\nflag alice@example.test ips 3 2\n")  # cut short
        p.start()
        p.log_contains(r"event=account_security\.state_corrupt path=\S+ error=", timeout=5)
        check(os.path.exists(path + ".corrupt"), "the damaged file is kept aside")
        wait_for(lambda: os.path.exists(path), 10, what="a valid state file written")
        read_state(p)
        code, text = mail_from_reply(p, "127.0.0.2")
        check_eq(code, 250, "nobody held after a corrupt file (%s)" % text)


def test_single_node_unreadable_state_file_refuses_to_start():
    # Starting without the flags would send held mail: a state file that exists but cannot
    # be read (here a directory in its place: unreadable even as root) stops posternd.
    with Postern(start=False) as p:
        os.makedirs(os.path.join(p.queue_dir, "account-security.state"))
        try:
            p.start()
            raise AssertionError("posternd started without its account security state")
        except TestFailure:
            pass
        check(p.start_failure not in (None, 0), "exit code %r" % p.start_failure)
        check(re.search(r"event=startup\.fail .*account-security\.state", p.log_text()), p.log_text()[-2000:])


def test_cluster_pop3_login_refused_by_the_penalty_is_logged_blocked():
    pg = cluster_pg()
    truncate(pg)
    pg.sql("DELETE FROM auth_penalties")
    o = detection_overrides(sink_port(), max_ips="0")
    # Two failures for an account block it (shipped: 20); short delays keep the test fast.
    o["auth.penalty.max_failures_account"] = "2"
    o["auth.penalty.base_delay"] = "100ms"
    o["auth.penalty.max_delay"] = "200ms"
    node = start_node(pg, "node-a", new_mail_root(), overrides=o)
    try:
        # Bob logs in once first: failures are logged only for an account with a login log
        # (a name that never logged in is not tracked: username spraying).
        pop_login(node, "127.0.0.4", BOB, BOB_PW)
        wait_for(lambda: one(pg, "SELECT count(*) FROM account_logins WHERE account = '%s'" % BOB) == "1", 15,
                 what="bob's successful login logged")
        for _ in range(2):
            try:
                node.pop3_login(BOB, "wrong-password", tls="stls", source="127.0.0.2").quit()
                raise TestFailure("a wrong password was accepted")
            except TestFailure:
                raise
            except Exception:
                pass
        # The right password from another address: the password check passes, then the one
        # POP3 login statement (postern_pop3_login) refuses it for the account's failures.
        try:
            node.pop3_login(BOB, BOB_PW, tls="stls", source="127.0.0.3").quit()
            raise TestFailure("a blocked account logged in")
        except TestFailure:
            raise
        except Exception as e:
            check("Too many failed logins" in str(e), "refusal: %r" % e)
        node.log_contains(r"event=auth\.blocked svc=pop3 ip=127\.0\.0\.3 user=bob@example\.test", timeout=5)
        wait_for(lambda: one(pg, "SELECT string_agg(result, ',' ORDER BY at) FROM account_logins"
                                 " WHERE account = '%s' AND ip = '127.0.0.3'" % BOB) == "blocked", 15,
                 what="the refused login logged as blocked")
        check_eq(one(pg, "SELECT string_agg(result, ',') FROM account_logins WHERE account = '%s'"
                         " AND ip = '127.0.0.2'" % BOB), "fail,fail", "the failures")
        check_eq(one(pg, "SELECT count(*) FROM account_security_ips WHERE account = '%s'"
                         " AND ip = '127.0.0.3'" % BOB), "0",
                 "a blocked login does not count as a login from that address")
    finally:
        node.stop()
        pg.sql("DELETE FROM auth_penalties")


def _random_name(rng):
    local = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(12))
    return "spray-%s@%s" % (local, rng.choice(["example.test", "other.example"]))


def _spray_smtp(p, source, names, results):
    """Failed AUTH PLAIN for each name (wrong passwords), several per STARTTLS session,
    reconnecting when the server hangs up (smtp.max_errors, or the per-IP block)."""
    todo = list(names)
    while todo:
        try:
            s = p.smtp("submission", source=source, starttls=True)
        except (smtplib.SMTPException, OSError) as e:
            results.append(("connect", repr(e)))
            todo.pop(0)
            continue
        try:
            for _ in range(8):
                if not todo:
                    break
                name = todo.pop(0)
                blob = base64.b64encode(("\0%s\0wrong-%s" % (name, name)).encode()).decode()
                code, _ = s.docmd("AUTH", "PLAIN " + blob)
                results.append(("smtp", code))
                if code == 454:  # blocked: the server hangs up
                    break
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass
        except (smtplib.SMTPException, OSError) as e:
            results.append(("smtp-drop", repr(e)))


def _spray_pop3(p, source, names, results):
    """Failed USER/PASS for each name over POP3S, one name per connection."""
    for name in names:
        try:
            c = p.pop3_ssl(source=source)
        except (poplib.error_proto, OSError) as e:
            results.append(("connect", repr(e)))
            continue
        try:
            c.user(name)
            c.pass_("wrong-" + name)
            results.append(("pop3", "accepted"))
        except poplib.error_proto as e:
            results.append(("pop3", e.args[0][:12] if e.args else b""))
        except OSError as e:
            results.append(("pop3-drop", repr(e)))
        try:
            c.close()
        except OSError:
            pass


def test_single_node_username_spraying_leaves_no_per_name_state():
    with Postern(overrides={
            # Writes the state file quickly for the test (shipped: 5s, and the state file at
            # most every minute).
            "account_security.flush_interval": FLUSH,
            "account_security.state_write_interval": "0",
            # The shipped tarpit (1s doubling to 8s per failing IP) would make a few hundred
            # failures take minutes; 10 ms keeps it on but short.
            "auth.penalty.base_delay": "10ms",
            "auth.penalty.max_delay": "20ms",
            # Past 40 failures an IP is blocked (shipped: 100): some of the spray is then
            # refused as "blocked", which must not create per-name state either.
            "auth.penalty.max_failures_ip": "40",
            # Many short sessions from each 127.0.0.x within seconds.
            "connections.rate_per_ip": "0"}) as p:
        # A real account: one success, then one wrong password (a tracked name: logged).
        p.submission(ALICE, ALICE_PW, source="127.0.0.2").quit()
        s = p.smtp("submission", source="127.0.0.3", starttls=True)
        code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(("\0%s\0wrong" % ALICE).encode()).decode())
        check_eq(code, 535, "alice's wrong password")
        s.quit()

        rng = random.Random(20261205)
        smtp_sources = ["127.0.0.%d" % i for i in range(10, 15)]  # 5 addresses x 50 names
        pop_sources = ["127.0.0.%d" % i for i in range(20, 23)]   # 3 addresses x 30 names
        jobs, names, results = [], [], []
        for src in smtp_sources:
            batch = [_random_name(rng) for _ in range(50)]
            names += batch
            jobs.append(threading.Thread(target=_spray_smtp, args=(p, src, batch, results)))
        for src in pop_sources:
            batch = [_random_name(rng) for _ in range(30)]
            names += batch
            jobs.append(threading.Thread(target=_spray_pop3, args=(p, src, batch, results)))
        started = time.monotonic()
        for j in jobs:
            j.start()
        for j in jobs:
            j.join(60)
        check(not any(j.is_alive() for j in jobs), "spray finished within 60 s")
        smtp_codes = [r[1] for r in results if r[0] == "smtp"]
        pop_answers = [r[1] for r in results if r[0] == "pop3"]
        check("accepted" not in pop_answers, "no sprayed POP3 login accepted")
        check(235 not in smtp_codes, "no sprayed SMTP login accepted")
        check(smtp_codes.count(535) >= 150, "SMTP failures answered 535: %d (%r)" % (smtp_codes.count(535),
                                                                                   results[:5]))
        check(smtp_codes.count(454) >= 1, "some IP was blocked (max_failures_ip = 40): %r" % sorted(set(smtp_codes)))
        check(len(pop_answers) >= 60, "POP3 failures answered: %d" % len(pop_answers))
        attempts = len(smtp_codes) + len(pop_answers)

        # The attempts are in the log (one event=auth.fail line each) and counted, after a
        # flush, as untracked logins.
        wait_for(lambda: p.metric("postern_events_total", {"event": "account_security",
                                                           "label": "untracked_login"}) >= attempts, 15,
                 what="untracked logins counted (%d attempts)" % attempts)
        check(p.log_count(r"event=auth\.fail .*user=spray-") >= 150, "auth.fail lines for the spray")

        # The state file after that flush: no entry names a sprayed user; alice's are there.
        state = read_state(p)
        sprayed = set(names)
        leaked = [l for l in state if any(w in sprayed for w in l.split(" "))]
        check_eq(leaked, [], "state file entries for sprayed names")
        check(not any("spray-" in l for l in state), "no spray- name in the state file")
        alice_lines = [l for l in state if l.startswith("login %s " % ALICE)]
        check_eq(len(alice_lines), 2, "alice's two login entries in the state file: %r" % alice_lines)
        check(len(state) < 20, "the state file stays small: %d records" % len(state))

        r = P.posternctl(["user", "logins", ALICE, "--json"], p.config_path)
        check_eq(r.returncode, 0, "posternctl user logins: %s" % r.stderr)
        log = json.loads(r.stdout)
        check_eq([(e["ip"], e["result"]) for e in log], [("127.0.0.3", "fail"), ("127.0.0.2", "ok")],
                 "alice's login log, newest first")
        r = P.posternctl(["user", "logins", names[0], "--json"], p.config_path)
        check_eq((r.returncode, json.loads(r.stdout or "[]")), (0, []),
                 "a sprayed name has no login log (%s)" % r.stderr)
        check(time.monotonic() - started < 60, "spray and checks within 60 s")


def state_logins(node, user):
    """The login records of `user` in the state file ([] before the first write)."""
    if not os.path.exists(os.path.join(node.queue_dir, "account-security.state")):
        return []
    return [l for l in read_state(node) if l.startswith("login %s " % user)]


def test_single_node_max_tracked_accounts_drops_the_least_recent_log():
    with Postern(overrides={
            # Writes the state file quickly for the test (shipped: 5s, and the state file at
            # most every minute).
            "account_security.flush_interval": FLUSH,
            "account_security.state_write_interval": "0",
            # One account keeps a login log (shipped: 100000): bob's login evicts alice's log.
            "account_security.max_tracked_accounts": "1"}) as p:
        p.submission(ALICE, ALICE_PW, source="127.0.0.2").quit()
        wait_for(lambda: state_logins(p, ALICE), 10, what="alice's login in the state file")
        pop_login(p, "127.0.0.3", BOB, BOB_PW)
        wait_for(lambda: state_logins(p, BOB), 10, what="bob's login in the state file")
        check_eq(state_logins(p, ALICE), [], "alice's (least recently active) login log is dropped")
        p.log_contains(r"event=account_security\.login_logs_evicted accounts=1 max_tracked_accounts=1", timeout=5)
        check_eq(p.metric("postern_events_total", {"event": "account_security", "label": "login_log_evicted"}), 1.0,
                 "eviction counted")


if __name__ == "__main__":
    run_tests(globals())
