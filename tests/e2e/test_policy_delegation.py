#!/usr/bin/env python3
"""Policy delegation (Postfix check_policy_service protocol, policy.* keys).

The policy server is the test's own peer: a small threaded socketserver in this file that
speaks the real protocol (name=value lines, an empty line; answers action=... and an empty
line), keeps every request it got with the TCP connection it came on, and answers with an
action the test chooses per request. posternd is the real daemon; clients are smtplib.

Checked: the attributes a policy server sees (authenticated submission: sasl_username,
sasl_method; client_address, helo_name, sender, recipient, server_port, one instance for all
RCPTs of a transaction and a new one for the next); REJECT / DEFER_IF_PERMIT / 4NN / 5NN texts
reach the client; unknown actions get the default action, FILTER is DUNNO; PREPEND shows in
the stored message; DISCARD accepts and stores nothing; HOLD leaves the queued copy on hold;
a silent server -> 451 4.3.5 within policy.timeout + margin; a server that is down -> the
default action (and DUNNO as default fails open); several sessions share one connection;
policy.roles limits who is asked.
"""

import os
import re
import socket
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (Postern, DEFAULT_USERS, check, check_eq, expect, free_port,
                             make_message, run_tests, split_return_path, wait_for)

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
BOB = "bob@example.test"
# Allowed for the checks of this test: how long past policy.timeout an answer may come.
MARGIN = 5.0


class PolicyServer:
    """A Postfix-protocol policy server on a free loopback port. `decide(attrs)` returns the
    action for each request (default DUNNO); `delay` seconds are waited before answering
    (interrupted when the server stops)."""

    def __init__(self, decide=None, delay=0.0, port=0):
        self.decide = decide or (lambda attrs: "DUNNO")
        self.delay = delay
        self.requests = []      # (connection number, {name: value})
        self.connections = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sockets = []       # accepted connections, closed by close() (a real restart)
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                with outer.lock:
                    outer.connections += 1
                    conn = outer.connections
                    outer.sockets.append(self.connection)
                attrs = {}
                while not outer.stopping.is_set():
                    line = self.rfile.readline()
                    if not line:
                        return  # the client closed the connection
                    line = line.rstrip(b"\n").decode("utf-8", "replace")
                    if line:
                        name, _, value = line.partition("=")
                        attrs[name] = value
                        continue
                    with outer.lock:
                        outer.requests.append((conn, attrs))
                    action = outer.decide(attrs)
                    if outer.delay and outer.stopping.wait(outer.delay):
                        return
                    self.wfile.write(("action=%s\n\n" % action).encode())
                    self.wfile.flush()
                    attrs = {}

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def service(self):
        return "inet:127.0.0.1:%d" % self.port

    def seen(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for sock in self.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def policy_overrides(service, **extra):
    o = {
        # The policy server under test; every other policy.* key is the shipped default
        # unless the test names it.
        "policy.service": service,
    }
    o.update(extra)
    return o


def by_sender(table, default="DUNNO"):
    """Action chosen by the MAIL FROM local part."""
    return lambda attrs: table.get(attrs.get("sender", "").split("@")[0], default)


def test_attributes_of_an_authenticated_submission():
    with PolicyServer() as ps, Postern(overrides=policy_overrides(ps.service)) as p:
        s = p.submission(ALICE, ALICE_PW)
        expect(s.docmd("MAIL", "FROM:<%s> SIZE=1000" % ALICE), 250)
        expect(s.rcpt("x@remote.example"), 250)
        expect(s.rcpt("y@remote.example"), 250)
        marker, msg = make_message(sender=ALICE, to="x@remote.example")
        expect(s.data(msg), 250)
        expect(s.docmd("MAIL", "FROM:<%s>" % ALICE), 250)
        expect(s.rcpt("z@remote.example"), 250)
        expect(s.docmd("RSET"), 250)
        s.quit()
        reqs = [a for _, a in ps.seen()]
        check_eq(len(reqs), 3, "one request per RCPT")
        first, second, third = reqs
        for a in reqs:
            check_eq(a["request"], "smtpd_access_policy", "request")
            check_eq(a["protocol_state"], "RCPT", "protocol_state")
            check_eq(a["protocol_name"], "ESMTP", "protocol_name")
            check_eq(a["helo_name"], "client.example", "helo_name")
            check_eq(a["sender"], ALICE, "sender")
            check_eq(a["client_address"], "127.0.0.1", "client_address")
            check_eq(a["sasl_username"], ALICE, "sasl_username")
            check_eq(a["sasl_method"], "PLAIN", "sasl_method")
            check_eq(a["server_address"], "127.0.0.1", "server_address")
            check_eq(a["server_port"], str(p.port("submission")), "server_port")
            check_eq(a["policy_context"], "submission", "policy_context")
            check_eq(a["client_name"], "unknown", "client_name (no reverse lookups)")
            check_eq(a["queue_id"], "", "queue_id (not known at RCPT)")
            check(a["instance"] != "", "instance empty")
            # Review finding: these were empty on TLS sessions too, so a policy rejecting
            # submission in clear text rejected everything.
            check_eq(a["encryption_protocol"], "TLSv1.3", "encryption_protocol (STARTTLS)")
            check(a["encryption_cipher"].startswith("TLS_"), "encryption_cipher: %r" % a["encryption_cipher"])
            check(int(a["encryption_keysize"]) >= 128, "encryption_keysize: %r" % a["encryption_keysize"])
        check_eq([a["recipient"] for a in reqs],
                 ["x@remote.example", "y@remote.example", "z@remote.example"], "recipients")
        check_eq(first["size"], "1000", "size from MAIL FROM SIZE=")
        check_eq(first["instance"], second["instance"], "one instance for one transaction")
        check(third["instance"] != first["instance"], "the next transaction has a new instance")


def test_mx_attributes_without_auth():
    # By name: "inet:localhost:port" goes through the bounded host-name lookup.
    with PolicyServer() as ps, Postern(overrides=policy_overrides(ps.service.replace("127.0.0.1", "localhost"))) as p:
        s = p.smtp("mx", source="127.0.0.2", helo_name="sender.example")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example>"), 250)
        expect(s.rcpt(ALICE), 250)
        s.quit()
        (conn, a), = ps.seen()
        check_eq(a["client_address"], "127.0.0.2", "client_address")
        check_eq(a["helo_name"], "sender.example", "helo_name")
        check_eq(a["recipient"], ALICE, "recipient")
        check_eq(a["sasl_username"], "", "sasl_username unauthenticated")
        check_eq(a["sasl_method"], "", "sasl_method unauthenticated")
        check_eq(a["policy_context"], "mx", "policy_context")
        check_eq(a["server_port"], str(p.port("mx")), "server_port")
        check_eq((a["encryption_protocol"], a["encryption_cipher"], a["encryption_keysize"]), ("", "", "0"),
                 "no TLS: empty, as Postfix sends it")


def test_refusals_reach_the_client():
    table = {
        "rej": "REJECT Over quota",
        "defer": "DEFER_IF_PERMIT Greylisted, try again",
        "four": "450 4.2.0 Greylisted by test",
        "five": "554 5.7.26 Unauthenticated mail refused",
        "bare": "554 Go away",
        "nonsense": "BLAH something",
        "filter": "FILTER smtp:[127.0.0.1]:10025",
        "ok": "OK",
        # A leading enhanced code is the refusal's own (postfwd, policyd-spf answer so);
        # before, the client read "550 5.7.1 5.7.23 SPF fail".
        "spf": "REJECT 5.7.23 SPF fail",
        "grey": "DEFER_IF_PERMIT 4.2.0 Greylisted",
    }
    with PolicyServer(by_sender(table)) as ps, Postern(overrides=policy_overrides(ps.service)) as p:
        s = p.smtp("mx")

        def rcpt_as(local):
            expect(s.docmd("MAIL", "FROM:<%s@remote.example>" % local), 250)
            r = s.rcpt(ALICE)
            expect(s.docmd("RSET"), 250)
            return r

        r = expect(rcpt_as("rej"), 550, "5.7.1", what="REJECT")
        check(b"Over quota" in r[1], "REJECT text: %r" % (r[1],))
        r = expect(rcpt_as("defer"), 450, "4.7.1", what="DEFER_IF_PERMIT")
        check(b"Greylisted, try again" in r[1], "DEFER text: %r" % (r[1],))
        r = expect(rcpt_as("four"), 450, "4.2.0", what="450 with an enhanced code")
        check(b"Greylisted by test" in r[1], "4NN text: %r" % (r[1],))
        r = expect(rcpt_as("five"), 554, "5.7.26", what="554 with an enhanced code")
        check(b"Unauthenticated mail refused" in r[1], "5NN text: %r" % (r[1],))
        r = expect(rcpt_as("bare"), 554, "5.7.1", what="5NN without an enhanced code")
        check(b"Go away" in r[1], "5NN text: %r" % (r[1],))
        r = expect(rcpt_as("nonsense"), 451, "4.3.5", what="unknown action -> default action")
        check(b"Server configuration problem" in r[1], "default text: %r" % (r[1],))
        expect(rcpt_as("filter"), 250, what="FILTER is unsupported: DUNNO")
        expect(rcpt_as("ok"), 250, what="OK")
        r = expect(rcpt_as("spf"), 550, "5.7.23", what="REJECT with an enhanced code")
        check_eq(r[1], b"5.7.23 SPF fail", "REJECT's text after its own code")
        r = expect(rcpt_as("grey"), 450, "4.2.0", what="DEFER_IF_PERMIT with an enhanced code")
        check_eq(r[1], b"4.2.0 Greylisted", "DEFER's text after its own code")
        s.quit()
        p.log_contains(r"event=policy\.unsupported .*action=FILTER\\x20")
        p.log_contains(r"event=policy\.bad_action .*action=BLAH\\x20something ")
        p.log_contains(r"event=rcpt\.reject .*reason=policy policy_action=REJECT\\x20Over\\x20quota ")
        check_eq(len(ps.seen()), len(table), "one request each")


def test_prepend_is_stored_above_received():
    with PolicyServer(lambda a: "PREPEND X-Policy-Test: checked for %s" % a["sender"]) as ps, \
            Postern(overrides=policy_overrides(ps.service)) as p:
        s = p.smtp("mx")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example>"), 250)
        expect(s.rcpt(ALICE), 250)
        expect(s.rcpt(BOB), 250)
        marker, msg = make_message(sender="someone@remote.example", to=ALICE)
        expect(s.data(msg), 250)
        s.quit()
        for user in (ALICE, BOB):
            stored, = p.maildir_find(user, marker)
            head = stored.split(b"\r\n\r\n", 1)[0]
            check_eq(head.count(b"X-Policy-Test: checked for someone@remote.example\r\n"), 1,
                     "PREPEND header once in %s's copy (two RCPTs asked for it)" % user)
            sender, stored = split_return_path(stored)
            check_eq(sender, "someone@remote.example", "Return-Path of final delivery")
            check(stored.startswith(b"X-Policy-Test: "), "PREPEND above Received: %r" % stored[:200])
            check(b"\r\nReceived: from client.example" in head, "Received still there")
        check_eq(len(ps.seen()), 2, "requests")


def test_discard_accepts_and_stores_nothing():
    with PolicyServer(lambda a: "DISCARD spam run") as ps, \
            Postern(overrides=policy_overrides(ps.service)) as p:
        s = p.submission(ALICE, ALICE_PW)
        expect(s.docmd("MAIL", "FROM:<%s>" % ALICE), 250)
        expect(s.rcpt("x@remote.example"), 250)
        expect(s.rcpt(BOB), 250)
        marker, msg = make_message(sender=ALICE, to=BOB)
        expect(s.data(msg), 250, what="DISCARD: the client is told it was accepted")
        s.quit()
        p.log_contains(r"event=message\.discard .*reason=spam\\x20run")
        check_eq(p.maildir_find(BOB, marker), [], "discarded message stored")
        check_eq([f for f in p.queue_files() if "/envelope/" in f], [], "discarded message queued")
        # The same over BDAT: the discard line gives the message's size (it said size=0).
        s = p.submission(ALICE, ALICE_PW)
        expect(s.docmd("MAIL", "FROM:<%s>" % ALICE), 250)
        expect(s.rcpt(BOB), 250)
        marker, msg = make_message(sender=ALICE, to=BOB)
        msg += b"a line more: a size no other message of this test has\r\n"
        s.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        expect(s.getreply(), 250, what="BDAT LAST, discarded")
        s.quit()
        p.log_contains(r"event=message\.discard .*size=%d reason=spam" % len(msg))
        check_eq(p.maildir_find(BOB, marker), [], "discarded BDAT message stored")


def test_hold_keeps_the_queued_copy_on_hold():
    with PolicyServer(by_sender({"alice": "HOLD review"})) as ps, \
            Postern(overrides=policy_overrides(ps.service)) as p:
        s = p.submission(ALICE, ALICE_PW)
        expect(s.docmd("MAIL", "FROM:<%s>" % ALICE), 250)
        expect(s.rcpt("x@remote.example"), 250)
        marker, msg = make_message(sender=ALICE, to="x@remote.example")
        expect(s.data(msg), 250)
        s.quit()
        p.log_contains(r"event=message\.hold .*held=1 local_delivered=0 reason=review")
        envelopes = [f for f in p.queue_files() if "/envelope/" in f]
        check_eq(len(envelopes), 1, "queued envelopes")
        with open(envelopes[0]) as f:
            text = f.read()
        check(re.search(r"(?m)^hold 1$", text), "envelope not on hold:\n" + text)
        check(re.search(r"(?m)^recipient x@remote\.example$", text), "recipient:\n" + text)


def test_silent_server_gets_the_default_action_within_the_timeout():
    timeout = 2.0
    with PolicyServer(delay=60) as ps, \
            Postern(overrides=policy_overrides(ps.service, **{"policy.timeout": "2s"})) as p:
        s = p.smtp("mx")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example>"), 250)
        t0 = time.monotonic()
        expect(s.rcpt(ALICE), 451, "4.3.5", what="policy server never answers")
        took = time.monotonic() - t0
        check(took >= timeout - 0.1, "answered before the timeout: %.2fs" % took)
        check(took < timeout + MARGIN, "answered after %.2fs (timeout %.1fs)" % (took, timeout))
        # The session is still usable and the next RCPT is bounded the same way.
        t0 = time.monotonic()
        expect(s.rcpt(BOB), 451, "4.3.5")
        check(time.monotonic() - t0 < timeout + MARGIN, "second RCPT too slow")
        s.quit()
        p.log_contains(r"event=policy\.fail .*error=timeout .*result=default_action")


def test_server_down_gets_the_default_action():
    port = free_port()  # nothing listens there
    with Postern(overrides=policy_overrides("inet:127.0.0.1:%d" % port)) as p:
        s = p.smtp("mx")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example>"), 250)
        t0 = time.monotonic()
        expect(s.rcpt(ALICE), 451, "4.3.5", what="policy server down")
        check(time.monotonic() - t0 < MARGIN, "refused connection took too long")
        s.quit()
        p.log_contains(r"event=policy\.fail .*error=connect:.* tries=2 ")
    # DUNNO as the default action fails open.
    with Postern(overrides=policy_overrides("inet:127.0.0.1:%d" % port,
                                            **{"policy.default_action": "DUNNO"})) as p:
        s = p.smtp("mx")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example>"), 250)
        expect(s.rcpt(ALICE), 250, what="default action DUNNO")
        s.quit()


def test_server_restart_and_connection_reuse():
    with PolicyServer() as ps, Postern(overrides=policy_overrides(ps.service)) as p:
        for i in range(3):
            s = p.smtp("mx")
            for j in range(2):
                expect(s.docmd("MAIL", "FROM:<s%d-%d@remote.example>" % (i, j)), 250)
                expect(s.rcpt(ALICE), 250)
                expect(s.docmd("RSET"), 250)
            s.quit()
        seen = ps.seen()
        check_eq(len(seen), 6, "requests")
        check_eq(ps.connections, 1, "TCP connections to the policy server (reuse)")
        check_eq(len({a["instance"] for _, a in seen}), 6, "a new instance per transaction")
        # The policy server restarts on the same port: the pooled connection is stale (the
        # old server closed it); the next request goes over a new one, nothing is refused.
        ps.close()
        with PolicyServer(lambda a: "REJECT restarted", port=ps.port) as ps2:
            s = p.smtp("mx")
            expect(s.docmd("MAIL", "FROM:<after@remote.example>"), 250)
            expect(s.rcpt(ALICE), 550, "5.7.1", what="answered by the restarted server")
            s.quit()
            check_eq(ps2.connections, 1, "connections to the restarted server")
            check_eq(len(ps2.seen()), 1, "requests to the restarted server")


def test_roles_limit_who_is_asked():
    with PolicyServer(lambda a: "REJECT not you") as ps, \
            Postern(overrides=policy_overrides(ps.service, **{"policy.roles": "submission"})) as p:
        s = p.smtp("mx")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example>"), 250)
        expect(s.rcpt(ALICE), 250, what="mx not consulted")
        s.quit()
        check_eq(ps.seen(), [], "requests from mx")
        s = p.submission(ALICE, ALICE_PW)
        expect(s.docmd("MAIL", "FROM:<%s>" % ALICE), 250)
        expect(s.rcpt("x@remote.example"), 550, "5.7.1", what="submission consulted")
        s.quit()


def test_bad_configuration_fails_at_start():
    p = Postern(overrides={"policy.service": "inet:127.0.0.1:1",
                           "policy.default_action": "MAYBE"}, start=False)
    try:
        p.start()
    except AssertionError:
        pass
    else:
        raise AssertionError("posternd started with policy.default_action = MAYBE")
    check("policy.default_action" in p.log_text(), "error names the key:\n" + p.tail())


if __name__ == "__main__":
    run_tests(globals())
