#!/usr/bin/env python3
"""Delivery status notifications (RFC 3461 parameters, RFC 3464 reports) end to end: a
real posternd, smtplib with rcpt_options/mail_options, raw sockets for bad syntax, local
SMTP peers (aiosmtpd; one of them offers DSN and records the MAIL/RCPT lines it got) found
through a local dnsmasq. Reports are read back from Maildirs or peers and parsed with
Python's email package, field by field."""

import email
import email.policy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (DEFAULT_USERS, Postern, check, check_eq, expect, make_message,
                             run_tests, wait_for)
from delivery_support import DnsServer, Sink, _Handler, delivery_overrides, sink_port
import postfix_support

from aiosmtpd.controller import Controller  # noqa: E402 (delivery_support set the path)
from aiosmtpd.smtp import SMTP as AioSMTP  # noqa: E402

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
BOB = "bob@example.test"
MX1, MX2 = "127.0.0.10", "127.0.0.11"
DNS_MX = {"a.test": [(10, "mx1.a.test")], "dsn.test": [(10, "mx.dsn.test")],
          "sender.test": [(10, "mx.sender.test")]}
DNS_HOSTS = {"mx1.a.test": MX1, "mx.dsn.test": MX2, "mx.sender.test": MX1}

DSN_MAIL = ["RET=HDRS", "ENVID=abc+2Bdef"]
DSN_RCPT = ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;a+40b"]


# ---------------------------------------------------------------------------------------
# A peer that offers DSN: aiosmtpd knows no DSN parameters, so this one advertises DSN,
# records the MAIL/RCPT argument lines exactly as received and hands aiosmtpd the rest.

class _DsnSMTP(AioSMTP):
    def __init__(self, handler, peer, **kw):
        super().__init__(handler, **kw)
        self._peer = peer

    @staticmethod
    def _strip(arg, keys):
        return " ".join(w for w in arg.split(" ") if w.split("=", 1)[0].upper() not in keys)

    async def smtp_MAIL(self, arg):
        if arg is not None:
            with self._peer.lock:
                self._peer.lines.append("MAIL " + arg)
            arg = self._strip(arg, ("RET", "ENVID"))
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg):
        if arg is not None:
            with self._peer.lock:
                self._peer.lines.append("RCPT " + arg)
            arg = self._strip(arg, ("NOTIFY", "ORCPT"))
        await super().smtp_RCPT(arg)


class _DsnHandler:
    def __init__(self, sink):
        self.inner = _Handler(sink)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd's own list ends with "250 HELP": DSN goes before it.
        session.host_name = hostname
        return responses[:-1] + ["250-DSN"] + responses[-1:]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return await self.inner.handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):
        return await self.inner.handle_DATA(server, session, envelope)


class DsnPeer(Sink):
    """Sink that offers DSN; .lines: the MAIL/RCPT argument texts received."""

    def __init__(self, address, port, **kw):
        super().__init__(address, port, **kw)
        self.lines = []

    def start(self):
        peer = self

        class _Controller(Controller):
            def factory(self):
                return _DsnSMTP(self.handler, peer, hostname="peer-%s" % peer.address)

        self.controller = _Controller(_DsnHandler(self), hostname=self.address, port=self.port)
        self.controller.start()
        return self


# ---------------------------------------------------------------------------------------

def parse_report(raw, third="text/rfc822-headers"):
    """(message, per-message fields, [per-recipient fields], third part) of an RFC 3464
    report, checking its MIME structure."""
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    check_eq(m.get_content_type(), "multipart/report", "report content type")
    check_eq(m.get_param("report-type"), "delivery-status", "report-type")
    parts = m.get_payload()
    check_eq([p.get_content_type() for p in parts], ["text/plain", "message/delivery-status", third],
             "report parts")
    groups = parts[1].get_payload()
    fields = [dict((k.lower(), v) for k, v in g.items()) for g in groups]
    for g in groups:  # every field once per group (RFC 3464 2.1)
        keys = [k.lower() for k in g.keys()]
        check_eq(len(keys), len(set(keys)), "fields of one group are unique: %r" % keys)
    return m, fields[0], fields[1:], parts[2]


def send(p, sender, rcpts, mail_options=(), rcpt_options=(), listener="submission", **kw):
    """One message; rcpts: [(address, [rcpt options])] or addresses with `rcpt_options`."""
    marker, msg = make_message(sender=sender, to=rcpts[0] if isinstance(rcpts[0], str) else rcpts[0][0],
                               **kw)
    s = p.submission(sender, ALICE_PW) if listener == "submission" else p.smtp(listener)
    try:
        expect(s.mail(sender, list(mail_options)), 250, what="MAIL")
        for r in rcpts:
            addr, opts = (r, list(rcpt_options)) if isinstance(r, str) else r
            expect(s.rcpt(addr, opts), 250, what="RCPT %s" % addr)
        expect(s.data(msg), 250, what="DATA")
    finally:
        s.quit()
    return marker, msg


def reports(p, user, marker, subject):
    return [m for m in p.maildir_find(user, marker) if subject.encode() in m]


# ---------------------------------------------------------------------------------------

def test_ehlo_offers_dsn_and_bad_syntax_is_501_5_5_4():
    with Postern() as p:
        c = p.raw("mx")
        c.expect_reply(220)
        c.send(b"EHLO client.example\r\n")
        code, lines = c.read_reply()
        check_eq(code, 250, "EHLO")
        check("DSN" in [l.strip() for l in lines], "DSN advertised: %r" % lines)
        bad_mail = ["RET=FOO", "RET=FULL RET=HDRS", "ENVID=a+2", "ENVID=a=b",
                    "ENVID=" + "x" * 101, "ENVID=a ENVID=b", "RET"]
        for params in bad_mail:
            c.send(("MAIL FROM:<x@client.example> %s\r\n" % params).encode())
            c.expect_reply(501, "5.5.4", what="MAIL %s" % params)
        c.send(b"MAIL FROM:<x@client.example> RET=FULL ENVID=" + b"x" * 100 + b"\r\n")
        c.expect_reply(250, what="MAIL with a 100-character ENVID")
        bad_rcpt = ["NOTIFY=NEVER,SUCCESS", "NOTIFY=SUCCESS,NEVER", "NOTIFY=SOMETIMES", "NOTIFY=",
                    "NOTIFY=DELAY,DELAY", "NOTIFY=SUCCESS NOTIFY=FAILURE", "ORCPT=a@b",
                    "ORCPT=rfc822;a+zz", "ORCPT=rfc822;a ORCPT=rfc822;b", "ORCPT=rfc822;" + "x" * 494]
        for params in bad_rcpt:
            c.send(("RCPT TO:<%s> %s\r\n" % (BOB, params)).encode())
            c.expect_reply(501, "5.5.4", what="RCPT %s" % params)
        c.send(("RCPT TO:<%s> NOTIFY=success,delay ORCPT=rfc822;%s\r\n" % (BOB, "x" * 493)).encode())
        c.expect_reply(250, what="RCPT with a 500-character ORCPT")
        c.send(("RCPT TO:<%s> ENVID=x\r\n" % BOB).encode())
        c.expect_reply(555, "5.5.4", what="a MAIL parameter on RCPT")
        c.send(b"QUIT\r\n")
        c.close()
        # HELO: every ESMTP parameter is taken as after EHLO, as Postfix does (SIZE, BODY and
        # SMTPUTF8 always were; DSN's got 555), and an unknown one is still 555.
        c = p.raw("mx")
        c.expect_reply(220)
        c.send(b"HELO client.example\r\n")
        c.expect_reply(250)
        c.send(b"MAIL FROM:<x@client.example> RET=FULL\r\n")
        c.expect_reply(250, what="RET after HELO")
        c.send(("RCPT TO:<%s> NOTIFY=NEVER\r\n" % BOB).encode())
        c.expect_reply(250, what="NOTIFY after HELO")
        c.send(b"RSET\r\n")
        c.expect_reply(250)
        c.send(b"MAIL FROM:<x@client.example> FOO=1\r\n")
        c.expect_reply(555, what="an unknown parameter after HELO")
        c.close()


def test_local_delivery_with_notify_success_reports_delivered():
    with Postern() as p:
        marker, msg = send(p, ALICE, [BOB], mail_options=DSN_MAIL, rcpt_options=DSN_RCPT)
        wait_for(lambda: p.maildir_find(BOB, marker), 10, what="message for bob")
        raw = wait_for(lambda: reports(p, ALICE, marker, "Successful Mail Delivery Report"), 10,
                       what="delivered report in alice's Maildir")[0]
        m, per_msg, rcpts, third = parse_report(raw)
        check_eq(m["To"], "<%s>" % ALICE, "report To")
        check_eq(m["From"], "Mail Delivery System <MAILER-DAEMON@mail.example.test>", "report From")
        check_eq(per_msg.get("original-envelope-id"), "abc+def", "Original-Envelope-Id (xtext decoded)")
        check_eq(per_msg.get("reporting-mta"), "dns; mail.example.test", "Reporting-MTA")
        check("arrival-date" in per_msg, "Arrival-Date: %r" % per_msg)
        check_eq(len(rcpts), 1, "recipients in the report")
        r = rcpts[0]
        check_eq(r.get("original-recipient"), "rfc822;a@b", "Original-Recipient")
        check_eq(r.get("final-recipient"), "rfc822; %s" % BOB, "Final-Recipient")
        check_eq(r.get("action"), "delivered", "Action")
        check_eq(r.get("status"), "2.0.0", "Status")
        check_eq(r.get("diagnostic-code"), "X-Postern; delivered to mailbox", "Diagnostic-Code")
        headers = third.get_payload()
        check("X-Test-Marker: %s" % marker in headers, "RET=HDRS: header section attached")
        check("Hello, this is" not in headers, "RET=HDRS: no body")
        p.log_contains(r"event=dsn\.sent kind=delivered to=<alice@example\.test>")
        # Without NOTIFY=SUCCESS: no report.
        marker2, _ = send(p, ALICE, [BOB], rcpt_options=["NOTIFY=FAILURE"])
        wait_for(lambda: p.maildir_find(BOB, marker2), 10, what="second message for bob")
        check_eq(reports(p, ALICE, marker2, "Successful Mail Delivery Report"), [],
                 "no report without NOTIFY=SUCCESS")


def test_delivered_report_goes_from_the_null_sender_to_a_remote_sender():
    port = sink_port((MX1,))
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, Sink(MX1, port) as sender_mx:
        with Postern(overrides=delivery_overrides(dns, port)) as p:
            # MX listener: a remote sender writes to a local user and asks for success.
            marker, _ = send(p, "writer@sender.test", [BOB], listener="mx",
                             mail_options=["RET=FULL", "ENVID=q+3Dw"], rcpt_options=["NOTIFY=SUCCESS"])
            got = sender_mx.wait_for(marker, timeout=30)[0]
            check(got.mail_from in ("", "<>"), "report envelope sender is <>: %r" % got.mail_from)
            check_eq(got.rcpt_tos, ["writer@sender.test"], "report recipient")
            _, per_msg, rcpts, third = parse_report(got.content, third="message/rfc822")
            check_eq(per_msg.get("original-envelope-id"), "q=w", "Original-Envelope-Id")
            check_eq(rcpts[0].get("action"), "delivered", "Action")
            check("original-recipient" not in rcpts[0], "no ORCPT, no Original-Recipient")
            inner = third.get_payload()[0]
            check_eq(inner["X-Test-Marker"], marker, "RET=FULL: the message is attached")
            check("Hello, this is %s" % marker in inner.get_payload(), "RET=FULL: with its body")


def test_relay_failure_never_and_relayed_reports_obey_notify_and_ret():
    port = sink_port((MX1,))
    rcpt = {"bad@a.test": "550 5.1.1 <bad@a.test>: no such user",
            "never@a.test": "550 5.1.1 <never@a.test>: no such user"}
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, Sink(MX1, port, rcpt=rcpt) as sink:
        with Postern(overrides=delivery_overrides(dns, port)) as p:
            marker, _ = send(p, ALICE, [("bad@a.test", ["NOTIFY=FAILURE", "ORCPT=rfc822;Bad+40a.test"]),
                                        ("never@a.test", ["NOTIFY=NEVER"]),
                                        ("ok@a.test", ["NOTIFY=SUCCESS"])],
                             mail_options=["RET=FULL", "ENVID=env-1"])
            sink.wait_for(marker)
            check_eq(sink.find(marker)[0].rcpt_tos, ["ok@a.test"], "accepted at the peer")
            failed = wait_for(lambda: reports(p, ALICE, marker, "Undelivered Mail Returned"), 20,
                              what="failure report")
            _, per_msg, rcpts, third = parse_report(failed[0], third="message/rfc822")
            check_eq(per_msg.get("original-envelope-id"), "env-1", "Original-Envelope-Id")
            check_eq([r.get("final-recipient") for r in rcpts], ["rfc822; bad@a.test"],
                     "only the NOTIFY=FAILURE recipient; NEVER gets no report")
            r = rcpts[0]
            check_eq(r.get("original-recipient"), "rfc822;Bad@a.test", "Original-Recipient")
            check_eq(r.get("action"), "failed", "Action")
            check_eq(r.get("status"), "5.1.1", "Status")
            check_eq(r.get("remote-mta"), "dns; mx1.a.test", "Remote-MTA")
            check_eq(r.get("diagnostic-code"), "smtp; 550 5.1.1 <bad@a.test>: no such user", "Diagnostic-Code")
            inner = third.get_payload()[0]
            check_eq(inner["X-Test-Marker"], marker, "RET=FULL: whole message returned")
            # The peer offers no DSN: NOTIFY=SUCCESS turns into a "relayed" report from us.
            relayed = wait_for(lambda: reports(p, ALICE, marker, "Successful Mail Delivery Report"), 20,
                               what="relayed report")
            _, per_msg, rcpts, _ = parse_report(relayed[0], third="message/rfc822")
            check_eq([(r.get("final-recipient"), r.get("action"), r.get("status"), r.get("remote-mta"))
                      for r in rcpts], [("rfc822; ok@a.test", "relayed", "2.0.0", "dns; mx1.a.test")],
                     "relayed report")
            check(rcpts[0].get("diagnostic-code", "").startswith("smtp; 250"), "Diagnostic-Code of the relay")
            p.log_contains(r"event=dsn\.skip kind=bounce reason=notify recipients=1", timeout=10)
            check_eq(len(reports(p, ALICE, marker, "Undelivered Mail Returned")), 1, "one failure report")


def test_relayed_report_of_a_fully_delivered_message_returns_it():
    # Every recipient delivered: the message leaves the queue with the last record, before
    # the "relayed" report is made; the report still returns it (RET=FULL) from memory.
    port = sink_port((MX1,))
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, Sink(MX1, port) as sink:
        with Postern(overrides=delivery_overrides(dns, port)) as p:
            marker, _ = send(p, ALICE, [("ok@a.test", ["NOTIFY=SUCCESS"])], mail_options=["RET=FULL"])
            sink.wait_for(marker)
            relayed = wait_for(lambda: reports(p, ALICE, marker, "Successful Mail Delivery Report"), 20,
                               what="relayed report")
            _, _, rcpts, third = parse_report(relayed[0], third="message/rfc822")
            check_eq([r.get("action") for r in rcpts], ["relayed"], "relayed report")
            check_eq(third.get_payload()[0]["X-Test-Marker"], marker, "RET=FULL: the message returned")
            # A message over 1 MiB is not held in memory; the file is gone when the report is
            # made (review finding: its header section was empty). The head is read first.
            big, _ = send(p, ALICE, [("ok@a.test", ["NOTIFY=SUCCESS"])], body=("y" * 76 + "\r\n") * 16000)
            sink.wait_for(big)
            relayed = wait_for(lambda: reports(p, ALICE, big, "Successful Mail Delivery Report"), 20,
                               what="relayed report of a 1.2 MB message")
            _, _, rcpts, third = parse_report(relayed[0], third="text/rfc822-headers")
            check_eq([r.get("action") for r in rcpts], ["relayed"], "relayed report")
            check("X-Test-Marker: %s" % big in third.get_payload(), "its header section: %r" % third.get_payload()[:200])


def test_ret_full_of_a_message_over_bounce_size_limit_returns_its_headers():
    # Shipped delivery.bounce_size_limit (50000, Postfix's): a 60 KB message asked back with
    # RET=FULL is returned as its header section only, so the report fits the sender's
    # server; a small one is still returned whole (the tests above).
    port = sink_port((MX1,))
    rcpt = {"bad@a.test": "550 5.1.1 <bad@a.test>: no such user"}
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, Sink(MX1, port, rcpt=rcpt):
        with Postern(overrides=delivery_overrides(dns, port)) as p:
            body = ("x" * 76 + "\r\n") * 800  # about 62 KB
            marker, _ = send(p, ALICE, ["bad@a.test"], mail_options=["RET=FULL"], body=body)
            failed = wait_for(lambda: reports(p, ALICE, marker, "Undelivered Mail Returned"), 20,
                              what="failure report")
            _, _, rcpts, third = parse_report(failed[0], third="text/rfc822-headers")
            check_eq(rcpts[0].get("status"), "5.1.1", "Status")
            check("X-Test-Marker: %s" % marker in third.get_payload(), "the header section is returned")
            check(len(failed[0]) < 20000, "the report is small: %d octets" % len(failed[0]))
            p.log_contains(r"event=dsn\.headers_only kind=bounce reason=bounce_size_limit limit=50000")


def test_delay_report_only_for_notify_delay():
    port = sink_port((MX1,))
    rcpt = {"slow1@a.test": "451 4.3.0 try later", "slow2@a.test": "451 4.3.0 try later"}
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, Sink(MX1, port, rcpt=rcpt):
        # delay_warning 1s: the first retry after a second sends the warning.
        with Postern(overrides=delivery_overrides(dns, port, delivery__delay_warning="1s")) as p:
            marker, _ = send(p, ALICE, [("slow1@a.test", ["NOTIFY=DELAY"]),
                                        ("slow2@a.test", ["NOTIFY=FAILURE"])])
            raw = wait_for(lambda: reports(p, ALICE, marker, "Delayed Mail"), 30, what="delay report")[0]
            _, per_msg, rcpts, _ = parse_report(raw)
            check("original-envelope-id" not in per_msg, "no ENVID, no Original-Envelope-Id")
            check_eq([(r.get("final-recipient"), r.get("action"), r.get("status")) for r in rcpts],
                     [("rfc822; slow1@a.test", "delayed", "4.3.0")], "only NOTIFY=DELAY is warned")
            check("will-retry-until" in rcpts[0], "Will-Retry-Until")


def test_parameters_survive_a_restart_and_go_to_a_dsn_peer():
    port = sink_port((MX2,))
    with DnsServer(DNS_MX, DNS_HOSTS) as dns:
        # The peer is down at first: the message waits in the queue.
        with Postern(overrides=delivery_overrides(dns, port)) as p:
            marker, msg = send(p, ALICE, ["far@dsn.test"], mail_options=DSN_MAIL, rcpt_options=DSN_RCPT)
            p.log_contains(r"event=delivery\.defer to=<far@dsn\.test>", timeout=20)
            env = [f for f in p.queue_files() if "/envelope/" in f and not os.path.basename(f).startswith(".")]
            check_eq(len(env), 1, "queued envelopes")
            text = open(env[0]).read()
            for line in ("dsn-ret HDRS\n", "dsn-envid abc+2Bdef\n",
                         "dsn-rcpt 0 notify=SUCCESS,FAILURE orcpt=rfc822;a@b\n"):
                check(line in text, "%r in the envelope:\n%s" % (line, text))
            p.stop()
            with DsnPeer(MX2, port) as peer:
                p.start(keep_ports=True)
                got = peer.wait_for(marker, timeout=30)[0]
                check_eq(got.rcpt_tos, ["far@dsn.test"], "RCPT at the DSN peer")
                lines = [l for l in peer.lines]
                mail = [l for l in lines if l.startswith("MAIL")]
                rcpt = [l for l in lines if l.startswith("RCPT")]
                check(mail and "RET=HDRS" in mail[-1].split() and "ENVID=abc+2Bdef" in mail[-1].split(),
                      "RET/ENVID passed on: %r" % mail)
                check(rcpt and "NOTIFY=SUCCESS,FAILURE" in rcpt[-1].split() and
                      "ORCPT=rfc822;a@b" in rcpt[-1].split(), "NOTIFY/ORCPT passed on: %r" % rcpt)
                p.log_contains(r"event=delivery\.ok to=<far@dsn\.test>", timeout=10)
            # The peer took over the success report: none from us.
            check_eq(reports(p, ALICE, marker, "Successful Mail Delivery Report"), [],
                     "no relayed report after a DSN peer")
            check_eq(p.log_count(r"event=dsn\.sent kind=relayed"), 0, "relayed reports sent")


def test_relay_to_postfix_passes_dsn_parameters():
    """A real Postfix as the next hop (delivery.relayhost, test change): it records the
    DSN parameters it received in its queue file (read with postcat)."""
    if not postfix_support.available():
        raise AssertionError("needs root and the postfix package (scripts/test installs it)")
    with postfix_support.PostfixPeer() as pf:
        o = {"delivery.enabled": "true",  # test change: outbound delivery on
             "delivery.relayhost": "127.0.0.1:%d" % pf.port,  # test change: the Postfix peer
             "delivery.relayhost_tls": "none",  # test change: the peer offers no STARTTLS
             "delivery.scan_interval": "1s"}
        with Postern(overrides=o) as p:
            marker, msg = send(p, ALICE, ["far@remote.test"], mail_options=["RET=FULL", "ENVID=env+2Bid-1"],
                               rcpt_options=["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;orig+40remote.test"])
            held = pf.wait_held(lambda m: marker in m.text)
            p.log_contains(r"event=delivery\.ok to=<far@remote\.test>", timeout=20)
            r = held.records
            check_eq(r.get("sender"), ALICE, "envelope sender at Postfix:\n" + held.text)
            check_eq(held.all("recipient"), ["far@remote.test"], "recipient at Postfix")
            check_eq(r.get("envelope_id"), "env+id-1", "ENVID decoded by Postfix")
            check_eq(r.get("dsn_orig_rcpt"), "rfc822;orig@remote.test", "ORCPT at Postfix")
            # Postfix's notify bits: SUCCESS = 2, FAILURE = 4, DELAY = 8; RET: FULL = 1, HDRS = 2.
            check_eq(r.get("notify_flags"), "10", "NOTIFY=SUCCESS,DELAY at Postfix")
            check_eq(r.get("ret_flags"), "1", "RET=FULL at Postfix")
        # The next hop offered DSN: the success report is its job, not ours.
        check_eq(p.log_count(r"event=dsn\.sent kind=relayed"), 0, "no relayed report from Postern")


if __name__ == "__main__":
    run_tests(globals())
