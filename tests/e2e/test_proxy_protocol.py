#!/usr/bin/env python3
"""PROXY protocol (HAProxy v1/v2) on a single node, raw sockets, no balancer needed.

The node's listeners have proxy_protocol = true and proxy_trusted = 127.0.0.1 (the
"balancer"); clients from 127.0.0.2+ are untrusted. Covered: a header from an untrusted
source is refused and logged once per source with what to fix, while an untrusted client
without a header is served normally; malformed headers from the trusted source (truncated
and oversized v1, wrong v2 signature, bogus v2 lengths, short v2 address block, garbage) are
closed without a byte and without harming the node; a trusted connection without a header
is closed after server.proxy_timeout and logged once; v2 LOCAL (health check) is closed
quietly; v1 and v2 in front of implicit TLS; bytes pipelined after the header stay for the
session; a v2 SSL TLV counts as TLS for AUTH only with proxy_tls_counts = true.
"""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from postern_harness import (DEFAULT_USERS, Postern, check, check_eq, expect, make_message,  # noqa: E402
                             plain_ir, run_tests, split_received, wait_for)
from cluster_support import (V2_SIGNATURE, connect, proxied_raw, proxy_listener_config,  # noqa: E402
                             proxy_v1, proxy_v2, read_all, ssl_tlv)

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
BOB, BOB_PW = "bob@example.test", DEFAULT_USERS["bob@example.test"]["password"]


def node(trusted="127.0.0.1", extra=None, overrides=None, name="proxy"):
    cfg = proxy_listener_config(trusted=trusted)
    cfg.update(extra or {})
    return Postern(config=cfg, overrides=overrides, name=name)


def expect_closed_silently(port, payload, source="127.0.0.1", half_close=False, within=5.0, what=""):
    """Send payload; the node must close without sending a single byte."""
    s = connect(port, source=source)
    t0 = time.monotonic()
    try:
        if payload:
            s.sendall(payload)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        data, how = read_all(s, timeout=within)
    finally:
        s.close()
    check(how in ("eof", "reset"), "%s: connection not closed within %.1fs (got %r)" % (what, within, data))
    check_eq(data, b"", "%s: the node answered a bad PROXY connection" % what)
    return time.monotonic() - t0


def smtp_session_works(p, listener="submission", src="192.0.2.44", version=2):
    hdr = proxy_v2(src=src) if version == 2 else proxy_v1(src=src)
    c = proxied_raw(p.port(listener), hdr, tls=(listener in ("submissions", "pop3s")))
    c.expect_reply(220)
    c.send("EHLO after.example\r\n")
    c.expect_reply(250)
    c.send("QUIT\r\n")
    c.expect_reply(221)
    c.close()
    p.log_contains(r"event=connect svc=smtp listener=%s ip=%s " % (listener, re.escape(src)))


def warnings(p):
    return [l for l in p.log_text().splitlines() if " Warning " in l or " Error " in l]


# ---------------------------------------------------------------------------------------

def test_header_from_untrusted_source_refused_and_logged_once_per_source():
    with node(trusted="127.0.0.5") as p:
        # An untrusted client without a header is an ordinary client, with its own address.
        s = p.smtp("mx", source="127.0.0.1")
        expect(s.docmd("MAIL", "FROM:<x@remote.example>"), 250)
        expect(s.docmd("RCPT", "TO:<%s>" % ALICE), 250)
        s.quit()
        p.log_contains(r"event=connect svc=smtp listener=mx ip=127\.0\.0\.1 ")
        pop = p.pop3_login(BOB, BOB_PW, source="127.0.0.2")
        pop.quit()
        # A header from an untrusted source: refused (closed without a byte), every time.
        # The header is sent right after connect(), as a balancer does.
        attempts = []
        for i in range(3):
            attempts += [("mx", proxy_v1(src="198.51.100.%d" % (i + 1)), "127.0.0.1"),
                         ("submission", proxy_v2(src="198.51.100.9"), "127.0.0.1"),
                         ("pop3", proxy_v2(src="198.51.100.9"), "127.0.0.1")]
        attempts.append(("submission", proxy_v1(src="198.51.100.9"), "127.0.0.2"))
        answered = []
        for listener, hdr, src in attempts:
            sock = connect(p.port(listener), source=src)
            sock.sendall(hdr)
            data, how = read_all(sock, timeout=5)
            sock.close()
            if data or how == "timeout":
                answered.append("%s from %s, header %r -> %s %r" % (listener, src, hdr[:20], how, data))
        # The spoofed addresses were never taken as the client's.
        check_eq(p.log_count(r"ip=198\.51\.100\."), 0, "a spoofed address was used")
        check(not answered, "%d of %d PROXY headers from untrusted sources were served as protocol "
              "input instead of being refused:\n%s" % (len(answered), len(attempts), "\n".join(answered)))
        lines = [l for l in p.log_text().splitlines() if "event=proxy.untrusted" in l]
        check_eq(len(lines), 2, "one line per untrusted source:\n" + "\n".join(lines))
        check(re.search(r"event=proxy\.untrusted listener=mx source=127\.0\.0\.1 fix=\"if this is your "
                        r"balancer, add it to listener\.mx\.proxy_trusted\"", lines[0]), lines[0])
        check("source=127.0.0.2" in lines[1] and "listener.submission.proxy_trusted" in lines[1], lines[1])
        check_eq(p.log_count(r"reason=\"proxy header from untrusted source\""), len(attempts),
                 "every refusal is logged as a disconnect")


def test_malformed_headers_from_trusted_source_closed_without_harm():
    v4 = socket.inet_aton("192.0.2.1") + socket.inet_aton("192.0.2.2") + b"\x9c\x40\x00\x19"
    cases = [
        ("v1 missing the ports", b"PROXY TCP4 192.0.2.1 192.0.2.2\r\n", False),
        ("v1 truncated, then EOF", b"PROXY TCP4 192.0.2.1 192.", True),
        ("v1 longer than 107 bytes", b"PROXY TCP4 " + b"1" * 120, False),
        ("v1 longer than 107 bytes with CRLF",
         b"PROXY TCP6 " + b"2001:db8::1 " * 10 + b"1 2\r\n", False),
        ("v1 bad address", b"PROXY TCP4 999.1.1.1 192.0.2.2 1 2\r\n", False),
        ("v1 LF only", b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n", False),
        ("v2 wrong signature", b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + v4, False),
        ("v2 bad version", V2_SIGNATURE + b"\x31\x11\x00\x0c" + v4, False),
        ("v2 bad command", V2_SIGNATURE + b"\x2f\x11\x00\x0c" + v4, False),
        ("v2 length 65535 (above the cap)", proxy_v2(length=0xFFFF), False),
        ("v2 length beyond the data, then EOF", proxy_v2(length=200), True),
        ("v2 address block too short for INET", proxy_v2(address_block=b"\xc0\x00\x02\x01", family=0x11), False),
        ("v2 INET6 with an INET-sized block", proxy_v2(address_block=v4, family=0x21), False),
        ("v2 TLV overrunning the block", proxy_v2(tlvs=b"\x20\x00\x40abc"), False),
        ("v2 truncated fixed part, then EOF", V2_SIGNATURE + b"\x21", True),
        ("garbage", b"\x00\xff\x13\x37garbage\r\n", False),
        ("an SMTP command", b"EHLO client.example\r\n", False),
        ("a TLS ClientHello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40, False),
    ]
    with node(overrides={"server.proxy_timeout": "3s"}) as p:
        for listener in ("mx", "submissions", "pop3"):
            for what, payload, half_close in cases:
                took = expect_closed_silently(p.port(listener), payload, half_close=half_close,
                                              what="%s on %s" % (what, listener))
                check(took < 2.5, "%s on %s: closed only after %.1fs (an invalid header should be refused at "
                      "once, not after server.proxy_timeout)" % (what, listener, took))
        check(p.running(), "the node survived")
        # One log line for the misconfigured balancer, naming what to fix.
        lines = [l for l in p.log_text().splitlines() if "event=proxy.invalid" in l]
        check_eq(len(lines), 1, "logged once per source:\n" + "\n".join(lines[:5]))
        check(re.search(r"event=proxy\.invalid listener=mx balancer=127\.0\.0\.1 error=\"v1: [^\"]+\" "
                        r"fix=\"enable send-proxy-v2", lines[0]), lines[0])
        check_eq(p.log_count(r"reason=\"proxy header invalid\""), 3 * len(cases), "each refusal as a disconnect")
        # Normal proxied sessions still work on every kind of listener.
        smtp_session_works(p, "mx", src="192.0.2.44", version=1)
        smtp_session_works(p, "submissions", src="192.0.2.45", version=2)
        c = proxied_raw(p.port("pop3"), proxy_v2(src="192.0.2.46"))
        check(c.read_pop().startswith("+OK"), "POP3 greeting after the bad headers")
        c.send("QUIT\r\n")
        check(c.read_pop().startswith("+OK"), "POP3 QUIT")
        c.close()


def test_trusted_source_without_header_closed_after_timeout_logged_once():
    with node(overrides={"server.proxy_timeout": "1s"}) as p:
        for listener in ("mx", "pop3", "submissions"):
            took = expect_closed_silently(p.port(listener), b"", within=6.0, what="no header on %s" % listener)
            check(0.8 <= took <= 3.0, "closed %.2fs after connecting (proxy_timeout 1s)" % took)
        # A header that starts but never finishes is cut at the same deadline.
        took = expect_closed_silently(p.port("mx"), b"PROXY TCP4 192.0.2.1 ", within=6.0, what="stalled v1")
        check(0.8 <= took <= 3.0, "stalled header closed after %.2fs" % took)
        lines = [l for l in p.log_text().splitlines() if "event=proxy.invalid" in l]
        check_eq(len(lines), 1, "logged once:\n" + "\n".join(lines))
        check(re.search(r"event=proxy\.invalid listener=mx balancer=127\.0\.0\.1 error=\"no header in time\" "
                        r"fix=\"enable send-proxy-v2 \(or send-proxy\) for this server on the balancer\"",
                        lines[0]), lines[0])
        smtp_session_works(p, "mx", src="192.0.2.50")


def test_v2_local_command_closed_quietly():
    with node() as p:
        for listener in ("mx", "submissions", "pop3s"):
            expect_closed_silently(p.port(listener), proxy_v2(command=0), what="v2 LOCAL on %s" % listener)
        # LOCAL with an address block and TLVs (the block is ignored).
        expect_closed_silently(p.port("pop3"), proxy_v2(command=0, address_block=b"\x00" * 12 + b"\x04\x00\x01x",
                                                        family=0x11),
                               what="v2 LOCAL with a block")
        check_eq(warnings(p), [], "health checks are not problems")
        check_eq(p.log_count(r"reason=\"proxy local \(health check\)\""), 4, "disconnect reason")
        check(p.running(), "node alive")
        smtp_session_works(p, "submission", src="192.0.2.60")


def test_v1_and_v2_before_implicit_tls():
    with node() as p:
        # v1 + TLS on 465: AUTH and a message; the Received header names the header's client.
        c = proxied_raw(p.port("submissions"), proxy_v1(src="203.0.113.7", dport=465), tls=True)
        c.expect_reply(220)
        c.send("EHLO tls-client.example\r\n")
        c.expect_reply(250)
        c.send("AUTH PLAIN %s\r\n" % plain_ir(ALICE, ALICE_PW))
        c.expect_reply(235, "2.7.0")
        marker, data = make_message(sender=ALICE, to=BOB)
        c.send("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (ALICE, BOB))
        c.expect_reply(250)
        c.expect_reply(250)
        c.expect_reply(354)
        c.send(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        c.expect_reply(250)
        c.send("QUIT\r\n")
        c.expect_reply(221)
        c.close()
        stored = wait_for(lambda: p.maildir_find(BOB, marker), timeout=5, what="stored message")[0]
        received, _ = split_received(stored)
        check(b"([203.0.113.7])" in received, "Received: %r" % received)
        check(b"ESMTPSA" in received, "protocol keyword: %r" % received)
        p.log_contains(r"event=connect svc=smtp listener=submissions ip=203\.0\.113\.7 ")
        # v2 (IPv6 client) + TLS on 995.
        c = proxied_raw(p.port("pop3s"), proxy_v2(src="2001:db8::7", dst="2001:db8::1", dport=995), tls=True)
        check(c.read_pop().startswith("+OK"), "POP3S greeting")
        c.send("USER %s\r\n" % BOB)
        check(c.read_pop().startswith("+OK"), "USER")
        c.send("PASS %s\r\n" % BOB_PW)
        check(c.read_pop().startswith("+OK"), "PASS")
        c.send("QUIT\r\n")
        check(c.read_pop().startswith("+OK"), "QUIT")
        c.close()
        p.log_contains(r"event=pop3\.login user=%s ip=2001:db8::7 " % BOB)
        # Header and the first commands in one segment: nothing after the header is lost.
        c = proxied_raw(p.port("submission"), proxy_v2(src="192.0.2.70") + b"EHLO piped.example\r\nNOOP\r\n")
        c.expect_reply(220)
        c.expect_reply(250)
        c.expect_reply(250)
        c.send("QUIT\r\n")
        c.expect_reply(221)
        c.close()
        p.log_contains(r"event=connect svc=smtp listener=submission ip=192\.0\.2\.70 ")
        check_eq(warnings(p), [], "no warnings")


def test_full_implicit_tls_listener_behind_the_balancer_answers_over_tls():
    """Behind a balancer every connection starts with a PROXY header, before the ClientHello.
    Review finding: the refusal of a full 995/465 (threads and queue taken) began its
    handshake on that header, failed, and closed silently. Test changes: listener.pop3s
    max_threads = 1 and max_queued = 1, to fill it with two clients."""
    with node(overrides={"listener.pop3s.max_threads": "1", "listener.pop3s.max_queued": "1"}) as p:
        port = p.port("pop3s")
        first = proxied_raw(port, proxy_v2(src="192.0.2.81", dport=995), tls=True)
        check(first.read_pop().startswith("+OK"), "the first client holds the one thread")
        queued = connect(port)  # waits for it
        time.sleep(0.5)
        third = proxied_raw(port, proxy_v2(src="192.0.2.83", dport=995), tls=True)
        line = third.read_pop()
        check(line.startswith("-ERR [SYS/TEMP] Too many connections"), "the refusal over TLS: %r" % line)
        third.close()
        p.log_contains(r"event=overload listener=pop3s ")
        first.close()
        queued.close()


def _auth_over_proxied_plain(p, header):
    c = proxied_raw(p.port("submission"), header)
    c.expect_reply(220)
    c.send("EHLO lb-tls.example\r\n")
    ehlo = c.expect_reply(250)
    c.send("AUTH PLAIN %s\r\n" % plain_ir(ALICE, ALICE_PW))
    code, lines = c.read_reply()
    c.send("QUIT\r\n")
    c.close()
    return ehlo, code, " ".join(lines)


def test_policy_service_gets_the_address_the_client_connected_to():
    """Review finding: behind the balancer the policy service (and milters' {daemon_addr})
    got the node's own end of the balancer's connection as server_address/server_port. Now
    the PROXY header's destination, as Postfix's smtpd_peer_from_haproxy does (test change:
    policy.service = a policy server of the test)."""
    from test_policy_delegation import PolicyServer
    with PolicyServer() as ps, node(overrides={"policy.service": ps.service}, name="dst") as p:
        c = proxied_raw(p.port("mx"), proxy_v2(src="192.0.2.90", dst="203.0.113.25", dport=25))
        c.expect_reply(220)
        c.send("EHLO client.example\r\nMAIL FROM:<someone@remote.example>\r\nRCPT TO:<%s>\r\n" % BOB)
        c.expect_reply(250)
        c.expect_reply(250)
        c.expect_reply(250)
        c.send("QUIT\r\n")
        c.expect_reply(221)
        c.close()
        attrs = [a for _, a in ps.seen()]
        check_eq(len(attrs), 1, "policy requests")
        check_eq((attrs[0]["client_address"], attrs[0]["server_address"], attrs[0]["server_port"]),
                 ("192.0.2.90", "203.0.113.25", "25"), "client and server address from the header")


def test_ssl_tlv_counts_as_tls_only_with_proxy_tls_counts():
    with node(extra={"listener.submission.proxy_tls_counts": "true"}, name="tlscounts") as p:
        ehlo, code, text = _auth_over_proxied_plain(p, proxy_v2(src="192.0.2.80", dport=587, tlvs=ssl_tlv()))
        check(any(l.startswith("AUTH") for l in ehlo), "AUTH advertised when the balancer terminated TLS: %r" % ehlo)
        check_eq((code, text.split()[0]), (235, "2.7.0"), "AUTH with the SSL TLV: %s" % text)
        # No SSL TLV, or one saying the client did not use TLS: plaintext, AUTH refused.
        for hdr, what in ((proxy_v2(src="192.0.2.81"), "no TLV"),
                          (proxy_v2(src="192.0.2.82", tlvs=ssl_tlv(client=0)), "TLV without PP2_CLIENT_SSL"),
                          (proxy_v1(src="192.0.2.83"), "v1 (no TLVs)")):
            _, code, text = _auth_over_proxied_plain(p, hdr)
            check_eq((code, text.split()[0]), (538, "5.7.11"), "AUTH with %s: %s" % (what, text))
    with node(name="notlscounts") as p:
        ehlo, code, text = _auth_over_proxied_plain(p, proxy_v2(src="192.0.2.84", dport=587, tlvs=ssl_tlv()))
        check(not any(l.startswith("AUTH") for l in ehlo), "AUTH not advertised: %r" % ehlo)
        check_eq((code, text.split()[0]), (538, "5.7.11"), "SSL TLV without proxy_tls_counts: %s" % text)



def _pop3_login_over_proxied_plain(p, header):
    c = proxied_raw(p.port("pop3"), header)
    greeting = c.read_line()
    c.send("USER %s\r\n" % ALICE)
    user = c.read_line()
    c.send("PASS %s\r\n" % ALICE_PW)
    pw = c.read_line()
    c.send("QUIT\r\n")
    c.close()
    return greeting, user, pw


def test_ssl_tlv_counts_as_tls_for_pop3_too():
    """listener.pop3.proxy_tls_counts = true (test change). Review finding: the POP3 listeners
    ignored the key, so behind a balancer that terminates TLS for 995 every POP3 login got
    "-ERR [AUTH] Plaintext authentication disallowed"."""
    with node(extra={"listener.pop3.proxy_tls_counts": "true"}, name="poptls") as p:
        greeting, user, pw = _pop3_login_over_proxied_plain(p, proxy_v2(src="192.0.2.90", dport=995, tlvs=ssl_tlv()))
        check(greeting.startswith(b"+OK") and user.startswith(b"+OK"), "USER with the SSL TLV: %r %r" % (greeting, user))
        check(pw.startswith(b"+OK"), "POP3 login with the SSL TLV: %r" % pw)
        # Without the TLV it is a plaintext session: no login.
        _, user, _ = _pop3_login_over_proxied_plain(p, proxy_v2(src="192.0.2.91"))
        check(user.startswith(b"-ERR [AUTH]"), "USER without the TLV: %r" % user)
    with node(name="nopoptls") as p:
        _, user, _ = _pop3_login_over_proxied_plain(p, proxy_v2(src="192.0.2.92", dport=995, tlvs=ssl_tlv()))
        check(user.startswith(b"-ERR [AUTH]"), "SSL TLV without proxy_tls_counts: %r" % user)


if __name__ == "__main__":
    run_tests(globals())
