#!/usr/bin/env python3
"""Authenticated submission (STARTTLS on submission, implicit TLS on submissions) with
AUTH PLAIN and LOGIN, local delivery, byte-identical read-back over POP3S and POP3+STLS;
the same with swaks and curl; Received protocol keywords; Date/Message-ID added when missing."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (Postern, DEFAULT_USERS, assert_stored_equals, check, check_eq,
                             expect, header_values, make_message, pop_find, received_protocol,
                             run, run_tests, split_received)

PW = {u: d["password"] for u, d in DEFAULT_USERS.items()}


def _submit_and_read_back(implicit, mech, initial_response, pop_tls, user, rcpt):
    with Postern() as p:
        marker, msg = make_message(sender=user, to=rcpt)
        if initial_response:
            s = p.submission(user, PW[user], implicit=implicit, mech=mech, source="127.0.0.2")
        else:
            s = (p.smtp_ssl(source="127.0.0.2") if implicit
                 else p.smtp("submission", source="127.0.0.2", starttls=True))
            s.user, s.password = user, PW[user]
            code, text = s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login,
                                initial_response_ok=False)
            expect((code, text), 235, "2.7.0", what="AUTH %s without initial response" % mech)
        expect(s.mail(user), 250, "2.1.0", what="MAIL")
        expect(s.rcpt(rcpt), 250, "2.1.5", what="RCPT")
        expect(s.data(msg), 250, what="DATA")
        expect(s.quit(), 221, what="QUIT")

        stored = p.maildir_find(rcpt, marker)
        check_eq(len(stored), 1, "messages with the marker in %s's Maildir" % rcpt)
        received = assert_stored_equals(stored[0], msg, "Maildir file")
        check_eq(received_protocol(received), "ESMTPSA", "Received protocol keyword in %r"
                 % received)
        check(b"127.0.0.2" in received, "client IP 127.0.0.2 missing from %r" % received)

        pop = p.pop3_login(rcpt, PW[rcpt], tls=pop_tls)
        n, data = pop_find(pop, marker)
        check_eq(data, stored[0], "POP3 RETR vs the Maildir file")
        # LIST size is the exact octet count (the file is stored with CRLF).
        size = int(pop.list(n).split()[2])
        check_eq(size, len(stored[0]), "POP3 LIST size")
        expect_quit = pop.quit()
        check(expect_quit.startswith(b"+OK"), "POP3 QUIT: %r" % expect_quit)


def test_starttls_plain_ir_read_pop3s():
    _submit_and_read_back(False, "PLAIN", True, "implicit", "alice@example.test",
                          "bob@example.test")


def test_starttls_login_read_pop3_stls():
    _submit_and_read_back(False, "LOGIN", True, "stls", "bob@example.test",
                          "alice@example.test")


def test_starttls_plain_no_ir_read_pop3_stls():
    _submit_and_read_back(False, "PLAIN", False, "stls", "alice@example.test",
                          "carol@example.org")


def test_implicit_plain_read_pop3s():
    _submit_and_read_back(True, "PLAIN", True, "implicit", "carol@example.org",
                          "alice@example.test")


def test_implicit_login_no_ir_read_pop3_stls():
    _submit_and_read_back(True, "LOGIN", False, "stls", "bob@example.test",
                          "bob@example.test")


def test_alias_and_multiple_recipients():
    with Postern() as p:
        marker, msg = make_message(sender="alice@example.test", to="sales@example.test")
        s = p.submission("alice@example.test", PW["alice@example.test"])
        expect(s.mail("alice@example.test"), 250)
        expect(s.rcpt("sales@example.test"), 250, what="RCPT alias")
        expect(s.rcpt("carol@example.org"), 250, what="RCPT carol")
        expect(s.data(msg), 250)
        s.quit()
        for u in ("alice@example.test", "bob@example.test", "carol@example.org"):
            got = p.maildir_find(u, marker)
            check_eq(len(got), 1, "copies in %s" % u)
            assert_stored_equals(got[0], msg, "copy for %s" % u)


def test_sender_from_senders_field():
    with Postern() as p:
        marker, msg = make_message(sender="team@example.test", to="alice@example.test")
        s = p.submission("dave@example.test", PW["dave@example.test"], implicit=True)
        expect(s.mail("team@example.test"), 250, "2.1.0", what="MAIL as listed sender")
        expect(s.rcpt("alice@example.test"), 250)
        expect(s.data(msg), 250)
        s.quit()
        check_eq(len(p.maildir_find("alice@example.test", marker)), 1, "delivered")


def _submitted_to_alice(p, marker, msg):
    """Alice submits msg to herself; the stored copy after the Received header."""
    s = p.submission("alice@example.test", PW["alice@example.test"])
    expect(s.mail("alice@example.test"), 250)
    expect(s.rcpt("alice@example.test"), 250)
    expect(s.data(msg), 250)
    s.quit()
    stored = p.maildir_find("alice@example.test", marker)
    check_eq(len(stored), 1, "delivered")
    return split_received(stored[0])[1]


def test_missing_date_and_message_id_added():
    with Postern() as p:
        marker, msg = make_message(date=False, message_id=False)
        rest = _submitted_to_alice(p, marker, msg)
        dates = header_values(rest, "Date")
        mids = header_values(rest, "Message-ID")
        check_eq(len(dates), 1, "Date headers after submission (stored: %r)" % rest[:600])
        check_eq(len(mids), 1, "Message-ID headers after submission (stored: %r)" % rest[:600])
        check(mids[0].startswith("<") and mids[0].endswith(">") and "@" in mids[0],
              "Message-ID syntax: %r" % mids[0])
        # The body and the headers we sent are all still there, in order.
        sent_hdrs = [l for l in msg.split(b"\r\n\r\n", 1)[0].split(b"\r\n")]
        stored_hdrs = rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        it = iter(stored_hdrs)
        check(all(any(h == x for x in it) for h in sent_hdrs),
              "sent headers not preserved in order: %r" % stored_hdrs)
        check_eq(rest.split(b"\r\n\r\n", 1)[1], msg.split(b"\r\n\r\n", 1)[1], "body")


def test_header_only_message_gets_date_message_id_and_loses_return_path():
    """A message that is only a header section (no empty line, no body: RFC 5322 3.5 allows
    it; `printf 'Subject: x\\n' | msmtp` sends one) gets the same header processing as any
    other: the client's Return-Path is dropped, Date and Message-ID are added on submission.
    Before, it was stored exactly as sent."""
    with Postern() as p:
        marker = "header-only-%d" % os.getpid()
        msg = ("Return-Path: <forged@elsewhere.example>\r\nFrom: alice@example.test\r\n"
               "Subject: %s\r\n" % marker).encode()
        rest = _submitted_to_alice(p, marker, msg)
        check(b"forged@elsewhere.example" not in rest, "the client's Return-Path was dropped: %r" % rest)
        check_eq(len(header_values(rest, "Date")), 1, "Date added (stored: %r)" % rest)
        check_eq(len(header_values(rest, "Message-ID")), 1, "Message-ID added (stored: %r)" % rest)
        check(("Subject: %s\r\n" % marker).encode() in rest, "the Subject is kept: %r" % rest)


def test_mx_received_protocols():
    """Plain MX: ESMTP; MX after STARTTLS without AUTH: ESMTPS (RFC 3848)."""
    with Postern() as p:
        m1, msg1 = make_message(sender="someone@remote.example")
        s = p.smtp("mx", source="127.0.0.3")
        expect(s.mail("someone@remote.example"), 250)
        expect(s.rcpt("alice@example.test"), 250)
        expect(s.data(msg1), 250)
        s.quit()
        m2, msg2 = make_message(sender="someone@remote.example")
        s = p.smtp("mx", source="127.0.0.3", starttls=True)
        expect(s.mail("someone@remote.example"), 250)
        expect(s.rcpt("alice@example.test"), 250)
        expect(s.data(msg2), 250)
        s.quit()
        r1 = assert_stored_equals(p.maildir_find("alice@example.test", m1)[0], msg1)
        r2 = assert_stored_equals(p.maildir_find("alice@example.test", m2)[0], msg2)
        check_eq(received_protocol(r1), "ESMTP", "plain MX Received: %r" % r1)
        check_eq(received_protocol(r2), "ESMTPS", "MX+STARTTLS Received: %r" % r2)
        check(b"127.0.0.3" in r1, "client IP missing from %r" % r1)


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_swaks_starttls_and_implicit_read_with_curl():
    with Postern() as p:
        for implicit, user in ((False, "alice@example.test"), (True, "bob@example.test")):
            marker, msg = make_message(sender=user, to=user)
            f = os.path.join(p.dir, "swaks-%s.eml" % marker)
            # swaks always sends CRLF "." CRLF after the data, so the file omits the last CRLF
            _write(f, msg[:-2])
            port = p.port("submissions" if implicit else "submission")
            cmd = ["swaks", "--server", "127.0.0.1:%d" % port,
                   "--tlsc" if implicit else "--tls",
                   "--auth", "PLAIN", "--auth-user", user, "--auth-password", PW[user],
                   "--from", user, "--to", user, "--helo", "swaks.example",
                   "--data", "@" + f]
            r = run(cmd)
            out = r.stdout.decode("utf-8", "replace")
            check("235 2.7.0" in out, "swaks AUTH not accepted:\n" + out)
            stored = p.maildir_find(user, marker)
            check_eq(len(stored), 1, "swaks message in %s (swaks output:\n%s)" % (user, out))
            received = assert_stored_equals(stored[0], msg, "swaks message")
            check_eq(received_protocol(received), "ESMTPSA", "Received: %r" % received)
            # read it back with curl over POP3S (one message in this mailbox: number 1)
            r = run(["curl", "-sS", "-k", "--max-time", "20",
                     "pop3s://127.0.0.1:%d/1" % p.port("pop3s"),
                     "--user", "%s:%s" % (user, PW[user])])
            check_eq(r.stdout, stored[0], "curl pop3s RETR vs Maildir file")


def test_curl_submission_starttls_and_smtps():
    with Postern() as p:
        cases = (("smtp", "submission", "carol@example.org", "PLAIN"),
                 ("smtps", "submissions", "erin@example.test", "LOGIN"))
        for scheme, listener, user, mech in cases:
            marker, msg = make_message(sender=user, to=user)
            f = os.path.join(p.dir, "curl-%s.eml" % marker)
            _write(f, msg)
            r = run(["curl", "-sS", "-v", "-k", "--max-time", "20",
                     "--url", "%s://127.0.0.1:%d" % (scheme, p.port(listener)),
                     "--ssl-reqd", "--login-options", "AUTH=" + mech,
                     "--mail-from", user, "--mail-rcpt", user,
                     "--user", "%s:%s" % (user, PW[user]), "--upload-file", f])
            stored = p.maildir_find(user, marker)
            check_eq(len(stored), 1, "curl message in %s (curl stderr:\n%s)"
                     % (user, r.stderr.decode("utf-8", "replace")))
            received = assert_stored_equals(stored[0], msg, "curl message")
            check_eq(received_protocol(received), "ESMTPSA", "Received: %r" % received)
            # read back: curl over POP3+STLS (--ssl-reqd upgrades pop3://) and poplib POP3S
            r = run(["curl", "-sS", "-k", "--ssl-reqd", "--max-time", "20",
                     "pop3://127.0.0.1:%d/1" % p.port("pop3"),
                     "--user", "%s:%s" % (user, PW[user])])
            check_eq(r.stdout, stored[0], "curl pop3+STLS RETR vs Maildir file")
            pop = p.pop3_login(user, PW[user], tls="implicit")
            _, data = pop_find(pop, marker)
            check_eq(data, stored[0], "poplib RETR")
            pop.quit()


if __name__ == "__main__":
    run_tests(globals())
