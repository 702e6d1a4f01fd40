#!/usr/bin/env python3
"""SMTPUTF8 (RFC 6531/6532) and REQUIRETLS (RFC 8689) end to end, with real clients and
real peers: smtplib with mail_options=['SMTPUTF8'] to a UTF-8 local part read back byte for
byte from the Maildir and over POP3 RETR; non-ASCII refused without SMTPUTF8 (553 5.6.7);
invalid UTF-8 refused (501); U-label and A-label domains are one domain (IDNA2008);
relaying through the outbound queue to aiosmtpd peers with and without SMTPUTF8 /
REQUIRETLS / TLS (parameters seen by the peer, 5.6.7 and 5.7.30 bounces parsed with
Python's email package); "TLS-Required: No"; a UTF-8 user in PostgreSQL."""

import email
import email.policy
import os
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (DEFAULT_USERS, Postern, _root_dir, assert_stored_equals, check,
                             check_eq, expect, make_test_cert, plain_ir, pop_find, received_protocol,
                             run_tests, smtp_auth, wait_for)
from delivery_support import DnsServer, Sink, _Handler, delivery_overrides, sink_port
import postfix_support
from aiosmtpd.controller import Controller  # noqa: E402  (path set up by delivery_support)
from aiosmtpd.smtp import SMTP  # noqa: E402

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
JOERG, JOERG_PW = "j\u00f6rg@example.test", "j\u00f6rg-Secret7"          # UTF-8 local part
BUECHER_U = "user@b\u00fccher.example"                                    # stored as U-label
BUECHER_A = "user@xn--bcher-kva.example"
CAFE_A, CAFE_U = "anna@xn--caf-dma.example", "anna@caf\u00e9.example"     # stored as A-label

USERS = dict(DEFAULT_USERS)
USERS[JOERG] = {"password": JOERG_PW}
USERS[BUECHER_U] = {"password": "buecher-Secret8"}
USERS[CAFE_A] = {"password": "cafe-Secret9"}

MX1, MX2 = "127.0.0.10", "127.0.0.11"
DNS_MX = {"a.test": [(10, "mx1.a.test")], "b.test": [(10, "mx2.b.test")]}
DNS_HOSTS = {"mx1.a.test": MX1, "mx2.b.test": MX2, "localhost": "127.0.0.1"}


def utf8_message(marker, sender, to, extra=""):
    """A message with UTF-8 header fields (RFC 6532) and body, as bytes."""
    # Date and Message-ID present: submission would add them (RFC 6409 8).
    return ("Date: Fri, 27 Nov 2026 12:00:00 +0000\r\n"
            "Message-ID: <%s@client.example>\r\n"
            "From: J\u00f6rg M\u00fcller <%s>\r\n"
            "To: <%s>\r\n"
            "Subject: Gr\u00fc\u00dfe aus K\u00f6ln \u2013 %s\r\n"
            "X-Test-Marker: %s\r\n"
            "%s"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n"
            "K\u00e4se, \u00e9t\u00e9, \u65e5\u672c\u8a9e, \U0001F600.\r\n"
            ".leading dot\r\n" % (marker, sender, to, marker, marker, extra)).encode("utf-8")


_n = [0]


def new_marker(tag):
    _n[0] += 1
    return "u8-%s-%d-%d" % (tag, os.getpid(), _n[0])


# --------------------------------------------------------------------------------------
# Peers: aiosmtpd with or without SMTPUTF8, with or without TLS; REQUIRETLS added by a
# small subclass (aiosmtpd has no REQUIRETLS of its own; the SMTP server is still aiosmtpd).

class _RequireTlsSMTP(SMTP):
    def _getparams(self, params):
        result = super()._getparams(params)
        # RFC 8689 4: REQUIRETLS takes no value; accept it (it stays in mail_options).
        if result is not None and result.get("REQUIRETLS") is True:
            del result["REQUIRETLS"]
        return result


class _Controller(Controller):
    def __init__(self, *a, require_tls_keyword=False, **kw):
        self.require_tls_keyword = require_tls_keyword
        super().__init__(*a, **kw)

    def factory(self):
        cls = _RequireTlsSMTP if self.require_tls_keyword else SMTP
        return cls(self.handler, **self.SMTP_kwargs)


class _PeerHandler(_Handler):
    def __init__(self, sink, offer_requiretls):
        super().__init__(sink)
        self.offer_requiretls = offer_requiretls

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # REQUIRETLS only on a TLS session (RFC 8689 4).
        if self.offer_requiretls and session.ssl is not None:
            responses.insert(len(responses) - 1, "250-REQUIRETLS")
        return responses


class Peer(Sink):
    """delivery_support.Sink with aiosmtpd's SMTPUTF8 switch and an optional REQUIRETLS offer."""

    def __init__(self, address, port, smtputf8=False, requiretls=False, tls=False, cert=None):
        super().__init__(address, port, tls=tls)
        self.smtputf8 = smtputf8
        self.requiretls = requiretls
        self.peer_cert = cert  # (cert, key) files; None: the harness's test certificate

    def start(self):
        kwargs = {"enable_SMTPUTF8": self.smtputf8}
        if self.tls:
            cert, key = self.peer_cert or make_test_cert(_root_dir())
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            kwargs["tls_context"] = ctx
        self.controller = _Controller(_PeerHandler(self, self.requiretls), hostname=self.address,
                                      port=self.port, server_hostname="peer-%s" % self.address,
                                      require_tls_keyword=self.requiretls, **kwargs)
        self.controller.start()
        return self


def parse_dsn(raw, global_report=False):
    """(message, per-message fields, [per-recipient field dicts]) of an RFC 3464 report; with
    global_report, of an RFC 6533 one (message/global-delivery-status, UTF-8 addresses).
    Python's email package parses message/delivery-status into field groups but treats
    message/global-delivery-status as one embedded message: its groups are split here."""
    m = email.message_from_bytes(raw, policy=email.policy.compat32)
    check_eq(m.get_content_type(), "multipart/report", "DSN content type")
    check_eq(m.get_param("report-type"), "delivery-status", "DSN report-type")
    parts = m.get_payload()
    want = "message/global-delivery-status" if global_report else "message/delivery-status"
    check_eq(parts[1].get_content_type(), want, "DSN second part")
    if not global_report:
        groups = parts[1].get_payload()
        fields = [dict((k.lower(), v) for k, v in g.items()) for g in groups]
        return m, fields[0], fields[1:]
    boundary = m.get_boundary().encode()
    body = raw.split(b"--" + boundary)[2].split(b"\r\n\r\n", 1)[1]
    fields = []
    for block in body.decode("utf-8").strip("\r\n").split("\r\n\r\n"):
        fields.append(dict((k.lower(), v) for k, v in
                           email.message_from_string(block + "\r\n\r\n", policy=email.policy.compat32).items()))
    return m, fields[0], fields[1:]


def bounce_for(p, user, marker, timeout=30.0):
    msgs = wait_for(lambda: p.maildir_find(user, marker), timeout,
                    what="bounce with %r in %s's Maildir" % (marker, user))
    return msgs[0]


def submission_utf8(p, user, password):
    """Submission with STARTTLS and AUTH PLAIN of a UTF-8 user name (RFC 4616 is UTF-8;
    smtplib's auth() encodes as ASCII, so the initial response is built here)."""
    s = p.smtp("submission", starttls=True)
    expect(s.docmd("AUTH", "PLAIN " + plain_ir(user, password)), 235, "2.7.0", what="AUTH as %r" % user)
    return s


def relay(p, sender, password, rcpts, msg, options=("SMTPUTF8",)):
    """Submit with STARTTLS + AUTH and the given MAIL parameters."""
    s = submission_utf8(p, sender, password)
    try:
        s.sendmail(sender, rcpts, msg, mail_options=list(options))
    finally:
        s.quit()


def delivery_ca(p):
    """Postern trusts the harness's test certificate (CN/SAN localhost) as a CA."""
    p.overrides["delivery.tls_ca_file"] = p.cert


# --------------------------------------------------------------------------------------
# Receiving

def test_utf8_local_part_byte_exact_to_maildir_and_pop3():
    with Postern(users=USERS) as p:
        s = p.smtp("mx")
        check("smtputf8" in s.esmtp_features, "EHLO offers SMTPUTF8: %r" % s.esmtp_features)
        check("requiretls" not in s.esmtp_features, "no REQUIRETLS without TLS")
        marker = new_marker("local")
        sender = "s\u00e9bastien@remote.example"
        msg = utf8_message(marker, sender, JOERG)
        refused = s.sendmail(sender, [JOERG], msg, mail_options=["SMTPUTF8"])
        check_eq(refused, {}, "recipients refused")
        s.quit()
        stored = wait_for(lambda: p.maildir_find(JOERG, marker), 10, what="message in Maildir")
        check_eq(len(stored), 1, "one copy")
        received = assert_stored_equals(stored[0], msg, "Maildir file")
        check_eq(received_protocol(received), "UTF8SMTP", "Received protocol (RFC 6531 4.3)")
        check(("for <%s>" % JOERG).encode() in received, "Received names the UTF-8 recipient: %r" % received)
        # The Maildir directory is the UTF-8 local part itself.
        check(os.path.isdir(os.path.join(p.mail_root, "example.test", "j\u00f6rg")), "Maildir path")
        pop = p.pop3_login(JOERG, JOERG_PW)
        _, raw = pop_find(pop, marker)
        pop.quit()
        check_eq(raw, stored[0], "POP3 RETR is the Maildir file byte for byte")
        p.log_contains(r"event=message\.accept .*from=<s\\xc3\\xa9bastien@remote\.example>|"
                       r"event=message\.accept .*from=<s\u00e9bastien@remote\.example>")


def test_non_ascii_refused_without_smtputf8_and_bad_utf8_refused():
    with Postern(users=USERS) as p:
        c = p.raw("mx")
        c.expect_reply(220)
        c.send("EHLO client.example\r\n")
        lines = c.expect_reply(250)
        check("SMTPUTF8" in lines, "EHLO lines %r" % lines)
        # RFC 6531 3.5: a non-ASCII address without the parameter: 553 5.6.7.
        c.send("MAIL FROM:<j\u00f6rg@remote.example>\r\n".encode("utf-8"))
        c.expect_reply(553, "5.6.7", "UTF-8 sender without SMTPUTF8")
        c.send(b"MAIL FROM:<a@remote.example>\r\n")
        c.expect_reply(250)
        c.send(("RCPT TO:<%s>\r\n" % JOERG).encode("utf-8"))
        c.expect_reply(553, "5.6.7", "UTF-8 recipient without SMTPUTF8")
        c.send(("RCPT TO:<%s>\r\n" % "user@b\u00fccher.example").encode("utf-8"))
        c.expect_reply(553, "5.6.7", "U-label domain without SMTPUTF8")
        c.send(b"RSET\r\n")
        c.expect_reply(250)
        # Invalid UTF-8 is a syntax error of the path (RFC 6531 3.3 uses RFC 3629 UTF-8):
        # 501 5.1.7 for MAIL, 501 5.1.3 for RCPT, with or without the parameter.
        for bad in (b"j\xc0\xafrg", b"j\xed\xa0\x80rg", b"j\xc3", b"j\xff", b"j\xf4\x90\x80\x80"):
            c.send(b"MAIL FROM:<" + bad + b"@remote.example> SMTPUTF8\r\n")
            c.expect_reply(501, "5.1.7", "invalid UTF-8 %r in MAIL" % bad)
        c.send(b"MAIL FROM:<a@remote.example> SMTPUTF8\r\n")
        c.expect_reply(250)
        for bad in (b"j\xc0\xafrg", b"j\xed\xbf\xbfrg", b"j\xe2\x82"):
            c.send(b"RCPT TO:<" + bad + b"@example.test>\r\n")
            c.expect_reply(501, "5.1.3", "invalid UTF-8 %r in RCPT" % bad)
        c.send(b"RCPT TO:<u@b\xc3(cher.example>\r\n")
        c.expect_reply(501, "5.1.3", "invalid UTF-8 in the domain")
        c.send(b"RCPT TO:<u@xn--zz.example>\r\n")
        c.expect_reply(501, "5.1.3", "invalid A-label")
        c.send(("RCPT TO:<%s>\r\n" % JOERG).encode("utf-8"))
        c.expect_reply(250, "2.1.5", "valid UTF-8 recipient with SMTPUTF8")
        c.close()


def test_u_label_and_a_label_domains_are_one_domain():
    with Postern(users=USERS) as p:
        s = p.smtp("mx")
        marker = new_marker("idna")
        msg = utf8_message(marker, "x@remote.example", BUECHER_U)
        # The user is stored as user@bücher.example: reached as U-label and as A-label, one copy.
        refused = s.sendmail("x@remote.example", [BUECHER_U, BUECHER_A, "USER@XN--BCHER-KVA.Example"], msg,
                             mail_options=["SMTPUTF8"])
        check_eq(refused, {}, "refused")
        # An ASCII-only transaction can name the A-label without SMTPUTF8.
        marker2 = new_marker("idna-ascii")
        msg2 = ("Subject: %s\r\nX-Test-Marker: %s\r\n\r\nascii\r\n" % (marker2, marker2)).encode()
        check_eq(s.sendmail("x@remote.example", [BUECHER_A, CAFE_A], msg2), {}, "A-label without SMTPUTF8")
        # anna is stored as an A-label: reached by her U-label.
        marker3 = new_marker("idna-cafe")
        check_eq(s.sendmail("x@remote.example", [CAFE_U], utf8_message(marker3, "x@remote.example", CAFE_U),
                            mail_options=["SMTPUTF8"]), {}, "U-label to an A-label user")
        # Unknown users in those domains are still unknown.
        code, _ = s.docmd("MAIL", "FROM:<x@remote.example>")
        check_eq(code, 250, "MAIL")
        code, _ = s.docmd("RCPT", "TO:<nobody@xn--bcher-kva.example>")
        check_eq(code, 550, "unknown user in the IDN domain")
        s.quit()
        got = wait_for(lambda: p.maildir_find(BUECHER_U, marker), 10, what="IDN delivery")
        check_eq(len(got), 1, "one copy for three spellings")
        check(os.path.isdir(os.path.join(p.mail_root, "b\u00fccher.example", "user")), "mailbox as stored")
        check_eq(len(wait_for(lambda: p.maildir_find(BUECHER_U, marker2), 10, what="A-label delivery")), 1,
                 "A-label copy")
        check_eq(len(wait_for(lambda: p.maildir_find(CAFE_A, marker2), 10, what="cafe A")), 1, "cafe A-label")
        check_eq(len(wait_for(lambda: p.maildir_find(CAFE_A, marker3), 10, what="cafe U")), 1, "cafe U-label")
        # Login in the stored spelling works (POP3 USER in UTF-8).
        pop = p.pop3_login(BUECHER_U, "buecher-Secret8")
        pop_find(pop, marker)
        pop.quit()


# --------------------------------------------------------------------------------------
# Relaying through the outbound queue

def test_relay_passes_smtputf8_and_8bitmime_byte_exact():
    port = sink_port((MX1,))
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, Peer(MX1, port, smtputf8=True) as peer:
        with Postern(users=USERS, overrides=delivery_overrides(dns, port)) as p:
            marker = new_marker("relay")
            rcpt = "\u00fcser@a.test"
            msg = utf8_message(marker, JOERG, rcpt)
            relay(p, JOERG, JOERG_PW, [rcpt], msg)
            got = peer.wait_for(marker)[0]
            check_eq(got.mail_from, JOERG, "MAIL FROM at the peer")
            check_eq(got.rcpt_tos, [rcpt], "RCPT TO at the peer")
            check("SMTPUTF8" in got.mail_options, "SMTPUTF8 passed on: %r" % got.mail_options)
            check("BODY=8BITMIME" in got.mail_options, "BODY=8BITMIME passed on: %r" % got.mail_options)
            assert_stored_equals(got.content, msg, "message at the peer")


def test_relay_to_postfix_with_smtputf8():
    """A real Postfix as the next hop (delivery.relayhost, test change): it takes the UTF-8
    envelope only because SMTPUTF8 was passed on (it would answer 553 5.6.7 otherwise),
    records the SMTPUTF8 flag in its queue file and has the UTF-8 header fields unchanged."""
    if not postfix_support.available():
        raise AssertionError("needs root and the postfix package (scripts/test installs it)")
    with postfix_support.PostfixPeer() as pf:
        o = {"delivery.enabled": "true",  # test change: outbound delivery on
             "delivery.relayhost": "127.0.0.1:%d" % pf.port,  # test change: the Postfix peer
             "delivery.relayhost_tls": "none",  # test change: the peer offers no STARTTLS
             "delivery.scan_interval": "1s"}
        with Postern(users=USERS, overrides=o) as p:
            marker = new_marker("postfix")
            rcpt = "\u00fcser@b\u00fccher-remote.test"
            msg = utf8_message(marker, JOERG, rcpt)
            relay(p, JOERG, JOERG_PW, [rcpt], msg)
            held = pf.wait_held(lambda m: marker in m.text)
            p.log_contains(r"event=delivery\.ok", timeout=20)
            check_eq(held.records.get("sender"), JOERG, "UTF-8 sender at Postfix:\n" + held.text)
            # Postern keeps the local part byte-exact and sends the domain as an A-label.
            a_label = "b\u00fccher-remote".encode("idna").decode("ascii")  # Python's codec: same label here
            check_eq(held.all("recipient"), ["\u00fcser@%s.test" % a_label], "recipient at Postfix")
            check(held.smtputf8_flags is not None and held.smtputf8_flags & 1,
                  "Postfix recorded MAIL ... SMTPUTF8 (flags %r):\n%s" % (held.smtputf8_flags, held.text))
            check("Gr\u00fc\u00dfe aus K\u00f6ln" in held.text, "UTF-8 Subject unchanged at Postfix")


def mime_8bit_message(marker):
    """A multipart message (as a mail program sends it) with two parts declared 8bit, one
    base64 part, and ASCII header fields."""
    return ("Date: Fri, 27 Nov 2026 12:00:00 +0000\r\n"
            "Message-ID: <%s@client.example>\r\n"
            "From: <alice@example.test>\r\n"
            "To: <friend@remote.test>\r\n"
            "Subject: %s\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/alternative; boundary=\"=_b %s\"\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n"
            "--=_b %s\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n"
            "K\u00e4se, \u00e9t\u00e9 = 100 %%, \u65e5\u672c\u8a9e \r\n"
            ".leading dot and a long line: %s\r\n"
            "--=_b %s\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            "Content-Transfer-Encoding: binary\r\n"
            "\r\n"
            "<p>K\u00e4se</p>\r\n"
            "--=_b %s\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "\r\n"
            "AAECAwQ=\r\n"
            "--=_b %s--\r\n" % (marker, marker, marker, marker, "\u00fc" * 400, marker, marker, marker)).encode("utf-8")


def test_8bit_parts_go_as_quoted_printable_to_postfix_without_8bitmime():
    """RFC 6152 3: a real Postfix that does not announce 8BITMIME (smtpd_discard_ehlo_keywords,
    and smtputf8_enable = no, since SMTPUTF8 implies 8BITMIME) gets no 8-bit octet: the 8bit
    and binary parts arrive as quoted-printable and decode to what was sent, the multipart is
    relabelled 7bit, the base64 part is unchanged. With delivery.mime_output_conversion =
    false the same message arrives with its 8-bit octets (what Postern did before)."""
    if not postfix_support.available():
        raise AssertionError("needs root and the postfix package (scripts/test installs it)")
    import smtplib
    with postfix_support.PostfixPeer(users=["friend"], smtputf8=False, discard_ehlo=("8bitmime",)) as pf:
        with smtplib.SMTP("127.0.0.1", pf.port, timeout=10) as probe:
            probe.ehlo("probe.test")
            check(not probe.has_extn("8bitmime") and not probe.has_extn("smtputf8"),
                  "the peer announces neither 8BITMIME nor SMTPUTF8: %r" % probe.esmtp_features)
        o = {"delivery.enabled": "true",  # test change: outbound delivery on
             "delivery.transport.remote.test": "127.0.0.1:%d" % pf.port,  # test change: the Postfix peer
             "delivery.tls_policy.remote.test": "none",  # test change: the peer offers no STARTTLS
             "delivery.scan_interval": "1s"}  # test change: no 30-s wait for the queue scan
        sent = {}
        for convert in ("true", "false"):
            o["delivery.mime_output_conversion"] = convert  # test change: on (shipped) and off
            with Postern(overrides=o) as p:
                marker = new_marker("mime" + convert)
                msg = mime_8bit_message(marker)
                sent[convert] = (marker, msg)
                relay(p, ALICE, ALICE_PW, ["friend@remote.test"], msg, options=("BODY=8BITMIME",))
                wait_for(lambda: any(marker.encode() in m for m in pf.messages("friend")), 60,
                         what="the message in the Postfix peer's Maildir")
                p.log_contains(r"event=delivery\.ok to=<friend@remote\.test>", timeout=20)
        got = {c: next(m for m in pf.messages("friend") if sent[c][0].encode() in m) for c in sent}
        original = email.message_from_bytes(sent["true"][1], policy=email.policy.default)
        want = [part.get_payload(decode=True) for part in original.iter_parts()]
        # Converted: 7-bit throughout, each part decodes to what was sent.
        conv = got["true"]
        check(all(b < 128 for b in conv), "8-bit octets reached a hop without 8BITMIME:\n%r" % conv[-1500:])
        check(all(len(line) <= 998 for line in conv.split(b"\n")), "line lengths")
        m = email.message_from_bytes(conv, policy=email.policy.default)
        check_eq(m["Content-Transfer-Encoding"], "7bit", "the multipart relabelled")
        parts = list(m.iter_parts())
        check_eq([p_["Content-Transfer-Encoding"] for p_ in parts], ["quoted-printable", "quoted-printable", "base64"],
                 "each part's encoding")
        check_eq([p_.get_payload(decode=True).replace(b"\r\n", b"\n") for p_ in parts],
                 [w.replace(b"\r\n", b"\n") for w in want], "the parts decode to what was sent")
        check(b"=C3=A4" in conv and b"=3D 100 %" in conv, "quoted-printable as RFC 2045 6.7 says")
        # Not converted (delivery.mime_output_conversion = false): the 8-bit octets as they were.
        raw_body = sent["false"][1].split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
        check(got["false"].endswith(raw_body), "unconverted message relayed unchanged")


def test_relay_to_peer_without_smtputf8_bounces_5_6_7_only_when_needed():
    port = sink_port((MX1,))
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, Peer(MX1, port, smtputf8=False) as peer:
        with Postern(users=USERS, overrides=delivery_overrides(dns, port)) as p:
            # Needs it: a UTF-8 recipient local part.
            marker = new_marker("need")
            rcpt = "\u00fcser@a.test"
            relay(p, ALICE, ALICE_PW, [rcpt], utf8_message(marker, ALICE, rcpt))
            raw = bounce_for(p, ALICE, marker)
            m, per_msg, rcpts = parse_dsn(raw, global_report=True)  # about a UTF-8 address: RFC 6533
            check_eq(len(rcpts), 1, "one failed recipient")
            check_eq(rcpts[0]["final-recipient"], "utf-8; " + rcpt, "Final-Recipient keeps the UTF-8 address")
            check_eq(rcpts[0]["status"], "5.6.7", "Status (RFC 6531 3.4)")
            check_eq(rcpts[0]["action"], "failed", "Action")
            check("SMTPUTF8" in rcpts[0].get("diagnostic-code", ""), "Diagnostic-Code: %r" % rcpts[0])
            check_eq(peer.find(marker), [], "nothing reached the peer")
            # Does not need it: ASCII envelope, UTF-8 only in the header fields: goes on,
            # without the SMTPUTF8 parameter (the peer does not offer it), 8BITMIME declared.
            marker2 = new_marker("noneed")
            msg2 = utf8_message(marker2, ALICE, "bob@a.test")
            relay(p, ALICE, ALICE_PW, ["bob@a.test"], msg2)
            got = peer.wait_for(marker2)[0]
            check("SMTPUTF8" not in got.mail_options, "no SMTPUTF8 to a peer without it: %r" % got.mail_options)
            check("BODY=8BITMIME" in got.mail_options, "8BITMIME: %r" % got.mail_options)
            assert_stored_equals(got.content, msg2, "message at the peer")
            p.log_contains(r"event=delivery\.bounce to=<\S+@a\.test> .*status=5\.6\.7")


def test_requiretls_only_over_tls_and_kept():
    with Postern(users=USERS) as p:
        c = p.raw("mx")
        c.expect_reply(220)
        c.send(b"EHLO client.example\r\n")
        check("REQUIRETLS" not in c.expect_reply(250), "REQUIRETLS offered in clear")
        c.send(b"MAIL FROM:<a@remote.example> REQUIRETLS\r\n")
        c.expect_reply(530, "5.7.10", "REQUIRETLS in clear")
        c.send(b"STARTTLS\r\n")
        c.expect_reply(220)
        c.starttls()
        c.send(b"EHLO client.example\r\n")
        check("REQUIRETLS" in c.expect_reply(250), "REQUIRETLS offered after STARTTLS")
        c.send(b"MAIL FROM:<a@remote.example> REQUIRETLS SMTPUTF8\r\n")
        c.expect_reply(250)
        c.close()
        # Relayed mail keeps the flags in the queue envelope (delivery is off here).
        marker = new_marker("keep")
        s = p.submission(ALICE, ALICE_PW)
        s.sendmail(ALICE, ["x@a.test"], utf8_message(marker, ALICE, "x@a.test"),
                   mail_options=["SMTPUTF8", "REQUIRETLS"])
        s.quit()
        envs = wait_for(lambda: [f for f in p.queue_files() if "/envelope/" in f
                                 and not os.path.basename(f).startswith(".")], 10, what="queued envelope")
        text = open(envs[0], encoding="utf-8").read()
        check("\nsmtputf8 1\n" in text and "\nrequiretls 1\n" in text, "envelope flags: %r" % text)


def test_report_about_requiretls_mail_is_relayed_with_requiretls():
    """RFC 8689 5: a non-delivery report about a REQUIRETLS message carries its header section
    and is sent with REQUIRETLS too, as if RET=HDRS was given. A remote sender's REQUIRETLS
    message (RET=FULL) to a local alias that forwards to a.test, whose MX does not offer
    REQUIRETLS, bounces 5.7.30; the report to the sender (b.test, no server up) waits in the
    queue marked requiretls, with the header section only."""
    port = sink_port((MX1,))
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, Peer(MX1, port, tls=True) as peer:
        aliases = {"fwd@example.test": ["x@a.test"]}  # the test's alias: a forward to a.test
        o = delivery_overrides(dns, port)
        # b.test through a configured next hop where nothing listens: the report waits in the
        # queue (by MX it would bounce at once: REQUIRETLS needs an authenticated MX name).
        o["delivery.transport.b.test"] = "%s:%d" % (MX2, port)
        with Postern(users=USERS, aliases=aliases, overrides=o, start=False) as p:
            delivery_ca(p)
            p.start()
            marker = new_marker("rt-report")
            s = p.smtp("mx", starttls=True)
            s.sendmail("someone@b.test", ["fwd@example.test"], utf8_message(marker, "someone@b.test", "fwd@example.test"),
                       mail_options=["SMTPUTF8", "REQUIRETLS", "RET=FULL"])
            s.quit()
            p.log_contains(r"event=dsn\.sent .*kind=bounce", timeout=30)
            check_eq(peer.find(marker), [], "sent to a peer without REQUIRETLS")

            def report_envelopes():
                out = []
                for f in p.queue_files():
                    if "/envelope/" in f and not os.path.basename(f).startswith("."):
                        text = open(f, encoding="utf-8").read()
                        if "\nsender \n" in text and "\nrecipient someone@b.test\n" in text:
                            out.append((f, text))
                return out
            envs = wait_for(report_envelopes, 10, what="the report queued for someone@b.test")
            path, text = envs[0]
            check("\nrequiretls 1\n" in text, "the report is marked REQUIRETLS: %r" % text)
            report = open(os.path.join(p.queue_dir, "data", os.path.basename(path)), "rb").read()
            check(b"Content-Type: text/rfc822-headers" in report and b"message/rfc822" not in report,
                  "RET=FULL answered with the header section only")


def test_requiretls_relayed_only_to_verified_peer_offering_it():
    port = sink_port(("127.0.0.1", MX1))
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, \
            Peer("127.0.0.1", port, tls=True, requiretls=True, smtputf8=True) as good, \
            Peer(MX1, port, tls=True, requiretls=True) as wrong_name:
        o = delivery_overrides(dns, port)
        # good.test goes to "localhost", the name in the test certificate; a.test's MX
        # (mx1.a.test) offers REQUIRETLS too, but its certificate does not name it.
        o["delivery.transport.good.test"] = "localhost:%d" % port
        with Postern(users=USERS, overrides=o, start=False) as p:
            delivery_ca(p)
            p.start()
            m1 = new_marker("rt-ok")
            relay(p, ALICE, ALICE_PW, ["ok@good.test"], utf8_message(m1, ALICE, "ok@good.test"),
                  options=("REQUIRETLS",))
            got = good.wait_for(m1)[0]
            check(got.tls, "over TLS")
            check("REQUIRETLS" in got.mail_options, "REQUIRETLS passed on: %r" % got.mail_options)
            # Not verified (name mismatch): bounced 5.7.30, nothing sent there.
            m2 = new_marker("rt-name")
            relay(p, ALICE, ALICE_PW, ["x@a.test"], utf8_message(m2, ALICE, "x@a.test"), options=("REQUIRETLS",))
            _, _, r2 = parse_dsn(bounce_for(p, ALICE, m2))
            check_eq(r2[0]["status"], "5.7.30", "unverified peer")
            check_eq(wrong_name.find(m2), [], "sent to an unverified peer")
            # The same message without REQUIRETLS goes to that peer (tls_policy may).
            m3 = new_marker("rt-none")
            relay(p, ALICE, ALICE_PW, ["x@a.test"], utf8_message(m3, ALICE, "x@a.test"), options=())
            check("REQUIRETLS" not in wrong_name.wait_for(m3)[0].mail_options, "no REQUIRETLS")
        # The verified peer stops offering REQUIRETLS; a fresh server (no cached session): 5.7.30.
        good.controller.handler.offer_requiretls = False
        with Postern(users=USERS, overrides=o, start=False) as p:
            delivery_ca(p)
            p.start()
            m4 = new_marker("rt-nooffer")
            relay(p, ALICE, ALICE_PW, ["x@good.test"], utf8_message(m4, ALICE, "x@good.test"),
                  options=("REQUIRETLS",))
            _, _, r4 = parse_dsn(bounce_for(p, ALICE, m4))
            check_eq(r4[0]["status"], "5.7.30", "peer without REQUIRETLS")
            check("REQUIRETLS" in r4[0].get("diagnostic-code", ""), "diagnostic: %r" % r4[0])
            check_eq(good.find(m4), [], "sent to a peer without REQUIRETLS")
            p.log_contains(r"event=delivery\.bounce to=<x@good\.test> .*status=5\.7\.30")


def test_requiretls_goes_only_to_an_authenticated_mx():
    """Review finding (RFC 8689 4.2.1): REQUIRETLS mail went to whatever host the MX answer
    named, so a forged MX with a valid certificate that offered REQUIRETLS got it. The MX
    name must be authenticated: by a DNSSEC-validated answer or an MTA-STS policy in enforce
    mode. Here the DNS is not signed; sts.test publishes MTA-STS (the test CA signs the policy
    server's and the MX's certificates): enforce delivers with REQUIRETLS, testing bounces
    5.7.30 and sends nothing."""
    import tempfile
    from mta_sts_support import PolicyServer, TestCa, free_port_on, policy_text
    web_ip, mx_ip = "127.0.0.32", "127.0.0.33"
    tmp = tempfile.mkdtemp(prefix="postern-e2e-rtsts-", dir=_root_dir())
    ca = TestCa(os.path.join(tmp, "ca"))
    port = free_port_on([mx_ip, web_ip])
    for mode, txt_id in (("enforce", "1"), ("testing", "2")):
        dns = DnsServer(mx={"sts.test": [(10, "mx1.sts.test")]},
                        hosts={"mx1.sts.test": mx_ip, "mta-sts.sts.test": web_ip},
                        txt={"_mta-sts.sts.test": ["v=STSv1; id=%s" % txt_id]})
        with dns, Peer(mx_ip, port, tls=True, requiretls=True, cert=ca.issue("mx1.sts.test")) as peer, \
                PolicyServer(web_ip, port, ca.issue("mta-sts.sts.test"),
                             policy=policy_text(mode, ["mx1.sts.test"])):
            o = delivery_overrides(dns, port)
            o.update({
                "delivery.mta_sts.ca_file": ca.pem,        # the policy server's cert is from the test CA
                "delivery.mta_sts.https_port": str(port),  # no root for port 443 in tests
                "delivery.tls_ca_file": ca.pem,            # the MX certificate too
            })
            with Postern(users=USERS, overrides=o) as p:
                marker = new_marker("rt-sts-" + mode)
                relay(p, ALICE, ALICE_PW, ["x@sts.test"], utf8_message(marker, ALICE, "x@sts.test"),
                      options=("REQUIRETLS",))
                if mode == "enforce":
                    got = peer.wait_for(marker)[0]
                    check(got.tls and "REQUIRETLS" in got.mail_options, "REQUIRETLS over verified TLS")
                else:
                    _, _, r = parse_dsn(bounce_for(p, ALICE, marker))
                    check_eq(r[0]["status"], "5.7.30", "MX not authenticated")
                    check("not authenticated" in r[0].get("diagnostic-code", ""), "diagnostic: %r" % r[0])
                    check_eq(peer.find(marker), [], "sent to an MX whose name nobody vouched for")
                    # Without REQUIRETLS the same MX is fine (MTA-STS testing: delivered).
                    m2 = new_marker("rt-sts-plain")
                    relay(p, ALICE, ALICE_PW, ["x@sts.test"], utf8_message(m2, ALICE, "x@sts.test"), options=())
                    peer.wait_for(m2)


def test_requiretls_to_peer_without_tls_bounces():
    port = sink_port((MX1,))
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, Peer(MX1, port) as peer:
        with Postern(users=USERS, overrides=delivery_overrides(dns, port)) as p:
            marker = new_marker("rt-clear")
            relay(p, ALICE, ALICE_PW, ["x@a.test"], utf8_message(marker, ALICE, "x@a.test"), options=("REQUIRETLS",))
            _, _, r = parse_dsn(bounce_for(p, ALICE, marker))
            check_eq(r[0]["status"], "5.7.30", "peer without STARTTLS")
            check_eq(peer.find(marker), [], "sent in clear")


def test_tls_required_no_header_lets_mail_go_without_tls():
    port = sink_port((MX1,))
    with DnsServer(DNS_MX, DNS_HOSTS) as dns, Peer(MX1, port) as peer:
        o = delivery_overrides(dns, port)
        # The operator's policy for a.test demands TLS, which the peer does not offer.
        o["delivery.tls_policy.a.test"] = "encrypt"
        with Postern(users=USERS, overrides=o) as p:
            m1 = new_marker("tlsreq")
            relay(p, ALICE, ALICE_PW, ["x@a.test"], utf8_message(m1, ALICE, "x@a.test"), options=())
            p.log_contains(r"event=delivery\.defer to=<x@a\.test> .*STARTTLS is not offered", timeout=20)
            check_eq(peer.find(m1), [], "sent in clear under encrypt")
            # RFC 8689 5: the sender says TLS is not required: delivered in clear.
            m2 = new_marker("tlsno")
            msg2 = utf8_message(m2, ALICE, "y@a.test", extra="TLS-Required: No\r\n")
            relay(p, ALICE, ALICE_PW, ["y@a.test"], msg2, options=())
            got = peer.wait_for(m2)[0]
            check(not got.tls, "in clear")
            assert_stored_equals(got.content, msg2, "message at the peer")


# --------------------------------------------------------------------------------------
# PostgreSQL backend with a UTF-8 user

def test_postgres_utf8_user_login_and_delivery():
    import pg_support as P
    pg = P.PgServer()
    try:
        user, pw = "\u00e5sa@pg.test", "asa-Pg-Secret1"
        q = lambda s: "'" + s.replace("'", "''") + "'"  # noqa: E731
        pg.sql("INSERT INTO domains (name) VALUES ('pg.test'), (%s);"
               "INSERT INTO users (address, domain, password) VALUES (%s, 'pg.test', %s);"
               "INSERT INTO users (address, domain, password) VALUES (%s, %s, %s);"
               "INSERT INTO aliases (address, domain, destination) VALUES (%s, 'pg.test', %s);"
               % (q("xn--bcher-kva.example"), q(user), q("{PLAIN}" + pw), q("kim@xn--bcher-kva.example"),
                  q("xn--bcher-kva.example"), q("{PLAIN}kim-Pg-Secret2"), q("\u00f8le@pg.test"), q(user)))
        cfg = {"auth.backends": "local, pg", "auth.backend.local.domains": "example.test, example.org"}
        cfg.update(pg.backend_config(domains="pg.test, xn--bcher-kva.example"))
        # No auth cache: every lookup goes to PostgreSQL.
        with Postern(users=USERS, config=cfg, overrides={"auth.cache.size": "0"}) as p:
            s = p.smtp("mx")
            marker = new_marker("pg")
            msg = utf8_message(marker, "x@remote.example", user)
            # The user, an alias with a UTF-8 local part, and a U-label spelling of an A-label user.
            check_eq(s.sendmail("x@remote.example", [user, "\u00f8le@pg.test", "kim@b\u00fccher.example"], msg,
                                mail_options=["SMTPUTF8"]), {}, "refused")
            code, _ = s.docmd("MAIL", "FROM:<x@remote.example> SMTPUTF8")
            check_eq(code, 250, "MAIL")
            code, _ = s.docmd("RCPT", "TO:<\u00c5sa@pg.test>")  # Å is not å: no Unicode case folding
            check_eq(code, 550, "non-ASCII letters are compared byte for byte")
            s.quit()
            got = wait_for(lambda: p.maildir_find(user, marker), 10, what="delivery to the PG user")
            check_eq(len(got), 1, "one copy (direct + alias)")
            assert_stored_equals(got[0], msg, "Maildir file")
            check_eq(len(wait_for(lambda: p.maildir_find("kim@xn--bcher-kva.example", marker), 10,
                                  what="kim")), 1, "kim via U-label")
            pop = p.pop3_login(user, pw)
            _, raw = pop_find(pop, marker)
            pop.quit()
            check_eq(raw, got[0], "POP3 RETR byte for byte")
            submission_utf8(p, user, pw).quit()
    finally:
        pg.destroy()


if __name__ == "__main__":
    run_tests(globals())
