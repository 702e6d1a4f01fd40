#!/usr/bin/env python3
"""Limits: smtp.max_message_size (SIZE advertised, SIZE= in MAIL, DATA over the limit ->
552 5.3.4), smtp.max_recipients (452 4.5.3), over-long command and text lines."""

import os
import time
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (Postern, DEFAULT_USERS, assert_stored_equals, check, check_eq,
                             expect, make_message, run_tests)

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
LIMITS = {"smtp.max_message_size": "10K", "smtp.max_recipients": "2"}


def _big_message(size, marker_hint=""):
    line = "y" * 76 + "\r\n"
    marker, head = make_message(sender="someone@remote.example", body="big %s\r\n" % marker_hint)
    body = line * (size // len(line) + 1)
    return marker, head + body.encode()


def test_size_advertised_and_size_param_552():
    with Postern(overrides=LIMITS) as p:
        s = p.smtp("mx")
        check_eq(s.esmtp_features.get("size"), "10240", "SIZE in EHLO")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example> SIZE=20000"), 552, "5.3.4",
               what="SIZE= over the limit")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example> SIZE=10241"), 552, "5.3.4",
               what="SIZE= one over")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example> SIZE=5000"), 250,
               what="SIZE= under the limit")
        s.quit()


def test_message_over_limit_552():
    with Postern(overrides=LIMITS) as p:
        marker, msg = _big_message(20000)
        s = p.smtp("mx")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example>"), 250)
        expect(s.rcpt(ALICE), 250)
        expect(s.data(msg), 552, "5.3.4", what="20K message with a 10K limit")
        check_eq(p.maildir_find(ALICE, marker), [], "oversized message stored")
        # session still usable, and a small message goes through
        expect(s.docmd("RSET"), 250)
        m2, small = make_message(sender="someone@remote.example")
        check(len(small) < 5000, "test message too big")
        expect(s.docmd("MAIL", "FROM:<someone@remote.example>"), 250)
        expect(s.rcpt(ALICE), 250)
        expect(s.data(small), 250)
        s.quit()
        assert_stored_equals(p.maildir_find(ALICE, m2)[0], small)
        check_eq(p.maildir_find(ALICE, marker), [], "oversized message stored")


def test_message_over_limit_on_submission():
    with Postern(overrides=LIMITS) as p:
        marker, msg = _big_message(11000)
        s = p.submission(ALICE, ALICE_PW, implicit=True)
        expect(s.docmd("MAIL", "FROM:<%s>" % ALICE), 250)
        expect(s.rcpt("friend@remote.example"), 250)
        expect(s.data(msg), 552, "5.3.4", what="11000-byte message with a 10K limit")
        s.quit()
        check_eq(p.queue_files(), [], "queue after oversized relay")


def test_too_many_recipients_452():
    with Postern(overrides=LIMITS) as p:
        s = p.smtp("mx")
        expect(s.mail("someone@remote.example"), 250)
        expect(s.rcpt(ALICE), 250)
        expect(s.rcpt("bob@example.test"), 250)
        expect(s.rcpt("carol@example.org"), 452, "4.5.3", what="third recipient")
        expect(s.rcpt("erin@example.test"), 452, "4.5.3", what="fourth recipient")
        marker, msg = make_message(sender="someone@remote.example")
        expect(s.data(msg), 250)
        s.quit()
        check_eq(len(p.maildir_find(ALICE, marker)), 1, "alice")
        check_eq(len(p.maildir_find("bob@example.test", marker)), 1, "bob")
        check_eq(p.maildir_find("carol@example.org", marker), [], "carol (over the limit)")


def test_overlong_command_and_text_lines():
    with Postern() as p:
        c = p.raw("mx")
        c.expect_reply(220)
        c.send("EHLO client.example\r\n")
        c.expect_reply(250)
        c.send("MAIL FROM:<" + "a" * 600 + "@remote.example>\r\n")
        code, lines = c.read_reply()
        check(code == 500 or code == 501, "over-long command line: %d %s" % (code, lines))
        c.send("NOOP\r\n")
        c.expect_reply(250, what="NOOP after an over-long line (session resynchronised)")
        c.send("MAIL FROM:<someone@remote.example>\r\nRCPT TO:<%s>\r\nDATA\r\n" % ALICE)
        c.expect_reply(250)
        c.expect_reply(250)
        c.expect_reply(354)
        c.send("Subject: long line\r\n\r\n" + "z" * 1200 + "\r\n.\r\n")
        code, lines = c.read_reply()
        check(code // 100 == 5, "message with a 1202-byte text line: %d %s" % (code, lines))
        c.send("QUIT\r\n")
        c.expect_reply(221)
        check_eq(p.maildir_messages(ALICE), [], "alice's mailbox")


def test_max_errors_421():
    """smtp.max_errors bad commands -> 421 4.7.0 and disconnect (the bad command itself may
    first get its own 500)."""
    with Postern(overrides={"smtp.max_errors": "3"}) as p:
        c = p.raw("mx")
        c.expect_reply(220)
        c.send("EHLO client.example\r\n")
        ehlo = c.expect_reply(250)
        check("ENHANCEDSTATUSCODES" in [l.upper() for l in ehlo], "EHLO: %r" % ehlo)
        for i in range(2):
            c.send("BOGUS%d\r\n" % i)
            c.expect_reply(500, "5.5.1", what="bad command %d" % (i + 1))
        c.send("BOGUS2\r\n")
        code, lines = c.read_reply()
        if code == 500:
            code, lines = c.read_reply()
        check(code == 421 and lines[0].split()[:1] == ["4.7.0"],
              "after the 3rd bad command (max_errors=3) expected 421 4.7.0\n" + c.dump())
        check_eq(c.read_until_eof(5), b"", "connection closed after 421")


def test_421_reaches_a_client_that_is_still_sending():
    """smtp.max_errors = 3 and smtp.max_junk_commands = 0 (test changes). A client pipelines
    many NOOPs, three bad commands and more input, and reads the replies slowly: when the
    session ends with 421 4.7.0, replies are still queued for it and its input is unread.
    Closing then sends an RST that throws the queued replies and the 421 away; posternd now
    reads and drops the rest of the input for a moment first, so the client gets the 421."""
    import socket as socketlib
    import threading
    with Postern(overrides={"smtp.max_errors": "3", "smtp.max_junk_commands": "0"}) as p:
        s = socketlib.socket(socketlib.AF_INET, socketlib.SOCK_STREAM)
        s.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 4096)  # replies back up at once
        s.settimeout(20)
        s.connect(("127.0.0.1", p.port("mx")))
        greeting = b""
        while not greeting.endswith(b"\r\n"):  # talking before the greeting is refused
            greeting += s.recv(1)
        check(greeting.startswith(b"220 "), "greeting: %r" % greeting)
        flood = (b"EHLO flood.example\r\n" + b"NOOP\r\n" * 200000 + b"BOGUS\r\n" * 3 +
                 b"MORE INPUT THAT IS NEVER READ\r\n" * 2000)

        def send():
            try:
                s.sendall(flood)
            except OSError:
                pass  # the server closed before the whole flood was sent

        threading.Thread(target=send, daemon=True).start()
        got = bytearray()
        reset = False
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
                time.sleep(0.0005)  # a slow reader: the server's replies queue up
        except (ConnectionResetError, socketlib.timeout):
            reset = True
        s.close()
        check(b"421 4.7.0" in got[-300:], "the 421 arrived (reset=%s, %d bytes read, last: %r)"
              % (reset, len(got), bytes(got[-120:])))


def test_errors_are_forgiven_after_each_accepted_message():
    """Shipped smtp.max_errors (20). A list server that sends many messages over one
    connection, each with one unknown recipient (550 5.1.1, an error), is not cut off: like
    Postfix's smtpd, an accepted message forgives the earlier errors. Before, the 20th refused
    recipient of the session ended it with 421 4.7.0."""
    with Postern() as p:
        c = p.raw("mx")
        c.expect_reply(220)
        c.send("EHLO lists.example\r\n")
        c.expect_reply(250)
        for i in range(25):
            c.send("MAIL FROM:<list-bounces@lists.example>\r\n")
            c.expect_reply(250, "2.1.0", what="MAIL %d" % i)
            c.send("RCPT TO:<gone%d@example.test>\r\n" % i)
            c.expect_reply(550, "5.1.1", what="unknown recipient %d" % i)
            c.send("RCPT TO:<%s>\r\n" % ALICE)
            c.expect_reply(250, "2.1.5", what="RCPT %d" % i)
            c.send("DATA\r\n")
            c.expect_reply(354)
            c.send("Subject: list mail %d\r\n\r\nbody\r\n.\r\n" % i)
            c.expect_reply(250, what="message %d accepted (the session is still open)" % i)
        c.send("QUIT\r\n")
        c.expect_reply(221)
        check_eq(len(p.maildir_messages(ALICE)), 25, "messages delivered")
        # Errors without accepted mail still end the session (a dictionary attack).
        c = p.raw("mx")
        c.expect_reply(220)
        c.send("EHLO prober.example\r\nMAIL FROM:<x@prober.example>\r\n")
        c.expect_reply(250)
        c.expect_reply(250)
        code = 0
        for i in range(20):
            c.send("RCPT TO:<guess%d@example.test>\r\n" % i)
            code, _ = c.read_reply()
            if code == 421:
                break
            check_eq(code, 550, "guess %d" % i)
            if i == 19:
                code, _ = c.read_reply()
        check_eq(code, 421, "the 20th error ends a session without accepted mail")


def test_mail_loop_is_refused_by_hop_count():
    """Shipped smtp.max_hops (50): a message that arrives with 50 Received fields is a loop
    (RFC 5321 6.3) and gets 554 5.4.6 after DATA, with nothing stored; 49 are accepted.
    Before, nothing counted hops and a loop between two servers went on until a size limit."""
    with Postern() as p:
        def send(hops, marker):
            s = p.smtp("mx")
            received = "".join("Received: from hop%d.example by hop%d.example; Mon, 7 Dec 2026 05:00:00 +0000\r\n"
                               % (i, i + 1) for i in range(hops))
            msg = (received + "From: loop@remote.example\r\nSubject: %s\r\n\r\nbody\r\n" % marker).encode()
            expect(s.mail("loop@remote.example"), 250)
            expect(s.rcpt(ALICE), 250)
            code, text = s.data(msg)
            s.quit()
            return code, text
        code, text = send(50, "loop-50")
        check_eq(code, 554, "50 hops: %r" % text)
        check(text.startswith(b"5.4.6"), "enhanced code 5.4.6: %r" % text)
        check_eq(p.maildir_find(ALICE, "loop-50"), [], "nothing stored")
        check(p.log_contains(r"event=message.reject .*reason=hops hops=50"), "the refusal is logged")
        code, text = send(49, "loop-49")
        check_eq(code, 250, "49 hops: %r" % text)
        check_eq(len(p.maildir_find(ALICE, "loop-49")), 1, "stored")


if __name__ == "__main__":
    run_tests(globals())
