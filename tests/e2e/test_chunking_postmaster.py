"""CHUNKING/BDAT with BINARYMIME (RFC 3030), LIMITS (RFC 9422) and the postmaster/abuse role
addresses (RFC 5321 4.5.1, RFC 2142) against a real posternd: raw sockets for BDAT (the
octets must be exact), smtplib for EHLO and the role addresses, poplib for RETR.
"""

import os
import poplib
import socket
import time

from postern_harness import (Postern, RawConn, TestFailure, assert_stored_equals, check, check_eq,
                             expect, make_message, run_tests, smtp_auth, wait_for, IO_TIMEOUT)

ALICE = ("alice@example.test", "alice-Secret1")


def ehlo_raw(c):
    c.expect_reply(220, what="greeting")
    c.send("EHLO client.example\r\n")
    c.expect_reply(250, what="EHLO")


def envelope(c, rcpt="alice@example.test", mail_params=""):
    c.send("MAIL FROM:<sender@remote.example>%s\r\nRCPT TO:<%s>\r\n" % (mail_params, rcpt))
    c.expect_reply(250, "2.1.0", what="MAIL")
    c.expect_reply(250, "2.1.5", what="RCPT")


def binary_message(marker):
    """A message only BINARYMIME can carry: NUL, bare CR, bare LF, a lone dot line, a line
    that starts with a dot, a CRLF.CRLF in the middle and 8-bit octets."""
    return (b"From: sender@remote.example\r\nTo: alice@example.test\r\nSubject: " + marker +
            b"\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n"
            b"\x00\x01\x02 nul\r\nbare\rCR and bare\nLF\n.\n.\r\n.dot line\r\n"
            + bytes(range(256)) + b"\r\n\r\n.\r\nend\r\n")


def pop_retr_raw(user, password, port, marker):
    """RETR over POP3 (poplib for the login, the multi-line answer read raw so that bare CR
    and LF arrive as sent) of the message holding `marker`; byte-unstuffed."""
    p = poplib.POP3("127.0.0.1", port, timeout=IO_TIMEOUT)
    try:
        p.stls(context=__import__("postern_harness").tls_context())
        p.user(user)
        p.pass_(password)
        count, _ = p.stat()
        for n in range(1, count + 1):
            p._putcmd("RETR %d" % n)
            first = p._getline()[0]
            check(first.startswith(b"+OK"), "RETR answer %r" % first)
            data = b""
            while not data.endswith(b"\r\n.\r\n"):
                chunk = p.file.read1(65536) if hasattr(p.file, "read1") else p.file.read(1)
                if not chunk:
                    raise TestFailure("POP3 connection closed during RETR")
                data += chunk
            body = data[:-3]  # the terminator's ".\r\n"; the CRLF before it is the message's
            # RFC 1939 3: a line start is after any LF here (see Pop3Session); undo the stuffing.
            body = body.replace(b"\n..", b"\n.")
            if marker in body:
                return body
        raise TestFailure("no message with %r over POP3" % marker)
    finally:
        try:
            p.quit()
        except Exception:  # noqa: BLE001
            pass


def wait_disconnect_logged(p, before):
    wait_for(lambda: p.log_count("event=disconnect svc=smtp") > before, timeout=15,
             what="the session's disconnect line")


# ------------------------------------------------------------------------------------------
# EHLO: CHUNKING, BINARYMIME, LIMITS

def test_ehlo_advertises_chunking_binarymime_limits():
    # smtp.max_recipients / smtp.max_transactions_per_session: values the test can recognise
    # in LIMITS (the shipped 100 / 1000 would also pass a hard-coded reply).
    with Postern(overrides={"smtp.max_recipients": "7", "smtp.max_transactions_per_session": "4"}) as p:
        for listener, tls in (("mx", False), ("submission", True)):
            s = p.smtp(listener, starttls=tls)
            for kw in ("chunking", "binarymime", "limits"):
                check(s.has_extn(kw), "%s: EHLO lacks %s: %r" % (listener, kw, s.esmtp_features))
            check_eq(s.esmtp_features["limits"].strip(), "RCPTMAX=7 MAILMAX=4", listener + " LIMITS")
            s.quit()
        # swaks sees them too (a second, independent client).
        out = __import__("postern_harness").run(
            ["swaks", "--server", "127.0.0.1:%d" % p.port("mx"), "--quit-after", "EHLO",
             "--helo", "client.example"]).stdout.decode()
        for kw in ("250-CHUNKING", "250-BINARYMIME", "250-LIMITS RCPTMAX=7 MAILMAX=4"):
            check(kw in out, "swaks transcript lacks %s:\n%s" % (kw, out))


def test_mailmax_is_enforced():
    # MAILMAX 2: the third MAIL of a session ends it with 421 (what LIMITS advertised).
    with Postern(overrides={"smtp.max_transactions_per_session": "2"}) as p:
        s = p.smtp("mx")
        for i in range(2):
            expect(s.mail("sender@remote.example"), 250, "2.1.0", what="MAIL %d" % (i + 1))
            expect(s.rset(), 250)
        expect(s.mail("sender@remote.example"), 421, "4.7.0", what="MAIL over MAILMAX")
        check(p.log_contains(r"event=limit.hit .*limit=max_transactions_per_session"), "limit.hit logged")
        # A new session may send again.
        s2 = p.smtp("mx")
        expect(s2.mail("sender@remote.example"), 250)
        s2.quit()


def test_recipient_limit_matches_rcptmax():
    # RCPTMAX 2 (smtp.max_recipients): the third RCPT gets 452 4.5.3.
    with Postern(overrides={"smtp.max_recipients": "2"}) as p:
        s = p.smtp("mx")
        check_eq(s.esmtp_features["limits"].split()[0], "RCPTMAX=2")
        expect(s.mail("sender@remote.example"), 250)
        expect(s.rcpt("alice@example.test"), 250)
        expect(s.rcpt("bob@example.test"), 250)
        expect(s.rcpt("erin@example.test"), 452, "4.5.3")
        s.quit()


# ------------------------------------------------------------------------------------------
# BDAT

def test_bdat_pipelined_binary_chunks_byte_exact():
    with Postern() as p:
        c = p.raw("mx")
        ehlo_raw(c)
        marker = b"bdat-binary-%d" % os.getpid()
        msg = binary_message(marker)
        chunks = [msg[:17], msg[17:200], msg[200:201], msg[201:]]
        # Everything in one write: MAIL, RCPT and every chunk pipelined behind each other.
        wire = b"MAIL FROM:<sender@remote.example> BODY=BINARYMIME\r\nRCPT TO:<alice@example.test>\r\n"
        for i, ch in enumerate(chunks):
            wire += b"BDAT %d%s\r\n" % (len(ch), b" LAST" if i == len(chunks) - 1 else b"") + ch
        wire += b"NOOP\r\n"
        c.send(wire)
        c.expect_reply(250, "2.1.0")
        c.expect_reply(250, "2.1.5")
        for ch in chunks[:-1]:
            lines = c.expect_reply(250, "2.0.0", what="chunk")
            check_eq(lines[0], "2.0.0 %d octets received" % len(ch))
        c.expect_reply(250, "2.0.0", what="LAST")
        c.expect_reply(250, what="NOOP after the chunks (they were consumed exactly)")
        c.send("QUIT\r\n")
        c.expect_reply(221)
        c.close()
        stored = p.maildir_find("alice@example.test", marker)
        check_eq(len(stored), 1, "one stored copy")
        assert_stored_equals(stored[0], msg, "BDAT message in Maildir")
        # The same octets over POP3 RETR.
        retr = pop_retr_raw(ALICE[0], ALICE[1], p.port("pop3"), marker)
        assert_stored_equals(retr, msg, "BDAT message over POP3 RETR")


def test_bdat_zero_last_and_one_big_chunk():
    with Postern() as p:
        c = p.raw("mx")
        ehlo_raw(c)
        envelope(c)
        marker = b"bdat-zero-%d" % os.getpid()
        # 200 KB in lines of 1000 octets (without BINARYMIME lines must fit, RFC 3030 3).
        body = b"Subject: " + marker + b"\r\n\r\n" + (b"x" * 998 + b"\r\n") * 200
        c.send(b"BDAT %d\r\n" % len(body) + body)
        c.expect_reply(250, "2.0.0")
        c.send("BDAT 0 LAST\r\n")
        c.expect_reply(250, "2.0.0", what="BDAT 0 LAST")
        c.send("QUIT\r\n")
        c.expect_reply(221)
        stored = p.maildir_find("alice@example.test", marker)
        check_eq(len(stored), 1)
        assert_stored_equals(stored[0], body)


def test_bdat_content_without_final_crlf_is_stored_with_one():
    """RFC 3030 lets the last chunk end inside a line. The stored message ends in CRLF (as
    DATA's always does, and as Postfix stores it), so that POP3's LIST and RETR's "+OK n
    octets" count exactly what RETR sends (RFC 1939 11). Before, LIST said n and RETR sent
    n + 2 octets."""
    with Postern() as p:
        c = p.raw("mx")
        ehlo_raw(c)
        envelope(c)
        marker = b"bdat-nocrlf-%d" % os.getpid()
        body = b"Subject: " + marker + b"\r\n\r\nfirst line\r\nthe last line has no line end"
        c.send(b"BDAT 7\r\n" + body[:7] + b"BDAT %d LAST\r\n" % (len(body) - 7) + body[7:])
        c.expect_reply(250, "2.0.0", what="first chunk")
        c.expect_reply(250, "2.0.0", what="LAST chunk")
        c.send("QUIT\r\n")
        c.expect_reply(221)
        stored = p.maildir_find("alice@example.test", marker)
        check_eq(len(stored), 1)
        assert_stored_equals(stored[0], body + b"\r\n", "stored with a final CRLF")
        pop = poplib.POP3("127.0.0.1", p.port("pop3"), timeout=IO_TIMEOUT)
        try:
            pop.stls(context=__import__("postern_harness").tls_context())
            pop.user(ALICE[0])
            pop.pass_(ALICE[1])
            count, _ = pop.stat()
            for n in range(1, count + 1):
                resp, lines, octets = pop.retr(n)
                if not any(marker in ln for ln in lines):
                    continue
                listed = int(pop.list(n).split()[2])
                said = int(resp.split()[1])
                # poplib's octet count: each line with its CRLF (stuffed dots included).
                sent = sum(len(ln) + 2 for ln in lines)
                check_eq(listed, said, "LIST and RETR's +OK agree")
                check_eq(sent, said, "RETR sends the octets it announced")
                break
            else:
                raise TestFailure("the message is not in the POP3 maildrop")
        finally:
            pop.quit()


def test_bdat_size_limit_applies_while_chunks_arrive():
    # smtp.max_message_size 1K: a small limit the chunks below cross in the second chunk.
    with Postern(overrides={"smtp.max_message_size": "1K"}) as p:
        c = p.raw("mx")
        ehlo_raw(c)
        envelope(c)
        marker = b"bdat-big-%d" % os.getpid()
        first = b"Subject: " + marker + b"\r\n\r\n" + b"a" * 700
        c.send(b"BDAT %d\r\n" % len(first) + first + b"BDAT 800\r\n" + b"b" * 800 +
               b"BDAT 10 LAST\r\n" + b"c" * 10 + b"NOOP\r\n")
        c.expect_reply(250, "2.0.0", what="first chunk")
        c.expect_reply(552, "5.3.4", what="chunk over the limit")
        c.expect_reply(503, "5.5.1", what="LAST after the refusal (transaction reset)")
        c.expect_reply(250, what="NOOP: every chunk was consumed")
        # The session goes on: a new transaction works.
        envelope(c)
        c.send("BDAT 0 LAST\r\n")
        c.expect_reply(250, "2.0.0")
        c.send("QUIT\r\n")
        c.expect_reply(221)
        check_eq(p.maildir_find("alice@example.test", marker), [], "nothing of the refused message stored")
        check(p.log_contains(r"event=message.reject .*reason=size"), "the refusal is logged")


def test_bdat_without_binarymime_is_checked_like_data():
    """RFC 3030 3: without BODY=BINARYMIME, BDAT content is still CRLF lines of at most 1000
    octets. The chunk with a bare LF gets the 554 5.6.0 DATA gives, the transaction ends
    (LAST gets 503), nothing is stored; the same octets with BINARYMIME are stored."""
    with Postern() as p:  # shipped defaults
        c = p.raw("mx")
        ehlo_raw(c)
        envelope(c)
        marker = b"bdat-lf-%d" % os.getpid()
        first = b"Subject: " + marker + b"\r\n\r\nok line\r\n"
        bad = b"a bare\nLF\r\n"
        c.send(b"BDAT %d\r\n" % len(first) + first + b"BDAT %d\r\n" % len(bad) + bad +
               b"BDAT 4 LAST\r\nend\n" + b"NOOP\r\n")
        c.expect_reply(250, "2.0.0", what="first chunk")
        c.expect_reply(554, "5.6.0", what="the chunk with a bare LF")
        c.expect_reply(503, "5.5.1", what="LAST after the refusal")
        c.expect_reply(250, what="NOOP: every chunk was consumed")
        # A line of 1001 octets (with its CRLF), split over two chunks.
        envelope(c)
        c.send(b"BDAT 500\r\n" + b"x" * 500 + b"BDAT 501 LAST\r\n" + b"x" * 499 + b"\r\n")
        c.expect_reply(250, "2.0.0", what="first half of the long line")
        c.expect_reply(554, "5.6.0", what="a line over 1000 octets")
        # With BINARYMIME the same content is taken.
        envelope(c, mail_params=" BODY=BINARYMIME")
        body = first + bad
        c.send(b"BDAT %d LAST\r\n" % len(body) + body)
        c.expect_reply(250, "2.0.0", what="BINARYMIME")
        c.send("QUIT\r\n")
        c.expect_reply(221)
        stored = p.maildir_find("alice@example.test", marker)
        check_eq(len(stored), 1, "only the BINARYMIME copy is stored")
        check(p.log_contains(r"event=message.reject .*reason=bare_line_ending .*proto=bdat"), "bare LF logged")
        check(p.log_contains(r"event=message.reject .*reason=line_length .*proto=bdat"), "long line logged")


def test_data_after_bdat_and_binarymime_with_data_refused():
    with Postern() as p:
        c = p.raw("mx")
        ehlo_raw(c)
        envelope(c)
        c.send("BDAT 5\r\nhello")
        c.expect_reply(250, "2.0.0")
        c.send("DATA\r\n")
        c.expect_reply(503, "5.5.1", what="DATA after BDAT")
        marker = b"bdat-then-%d" % os.getpid()
        rest = b" " + marker + b"\r\n"
        c.send(b"BDAT %d LAST\r\n" % len(rest) + rest)
        c.expect_reply(250, "2.0.0")
        stored = p.maildir_find("alice@example.test", marker)
        check_eq(len(stored), 1)
        assert_stored_equals(stored[0], b"hello" + rest)
        # BODY=BINARYMIME then DATA: 503 5.5.1 (RFC 3030 3).
        envelope(c, mail_params=" BODY=BINARYMIME")
        c.send("DATA\r\n")
        c.expect_reply(503, "5.5.1", what="DATA after BODY=BINARYMIME")
        c.send("QUIT\r\n")
        c.expect_reply(221)


def test_bdat_without_transaction_consumes_octets():
    with Postern() as p:
        c = p.raw("mx")
        ehlo_raw(c)
        # The 12 octets are two NOOP lines: if they were read as commands, two more replies
        # would come.
        c.send("BDAT 12\r\nNOOP\r\nNOOP\r\nRSET\r\n")
        c.expect_reply(503, "5.5.1", what="BDAT without MAIL")
        c.expect_reply(250, what="RSET")
        check_eq(c.pending(0.5), b"", "nothing else answered")
        c.send("MAIL FROM:<sender@remote.example>\r\nBDAT 3 LAST\r\nabcRSET\r\n")
        c.expect_reply(250)
        c.expect_reply(503, "5.5.1", what="BDAT without RCPT")
        c.expect_reply(250, what="RSET")
        c.close()


def test_bdat_bad_syntax():
    with Postern() as p:
        for line in ("BDAT x", "BDAT", "BDAT 5 NOTLAST", "BDAT -1"):
            c = p.raw("mx")
            ehlo_raw(c)
            envelope(c)
            c.send(line + "\r\n")
            c.expect_reply(501, "5.5.4", what=line)
            # The octets that would follow cannot be told from commands: the session ends.
            check_eq(c.read_until_eof(10), b"", "connection closed after " + line)
            c.close()


def test_dropped_connection_before_last_delivers_nothing():
    with Postern() as p:
        marker = b"bdat-dropped-%d" % os.getpid()
        # 1. Dropped between chunks (first chunk acknowledged, no LAST).
        c = p.raw("mx")
        ehlo_raw(c)
        envelope(c)
        first = b"Subject: " + marker + b"\r\n\r\nfirst chunk\r\n"
        c.send(b"BDAT %d\r\n" % len(first) + first)
        c.expect_reply(250, "2.0.0")
        before = p.log_count("event=disconnect svc=smtp")
        c.abort()
        wait_disconnect_logged(p, before)
        # 2. Dropped inside the LAST chunk (fewer octets than announced).
        c = p.raw("mx")
        ehlo_raw(c)
        envelope(c)
        c.send(b"BDAT 1000 LAST\r\n" + first)
        check_eq(c.pending(0.3), b"", "no reply before the chunk is complete")
        before = p.log_count("event=disconnect svc=smtp")
        c.abort()
        wait_disconnect_logged(p, before)
        check(p.log_contains(r'event=disconnect svc=smtp .*reason="dropped in BDAT"'), "the drop is logged")
        check_eq(p.maildir_find("alice@example.test", marker), [], "nothing in the Maildir")
        check_eq(p.all_mailbox_files(), [], "no message in any mailbox")
        spool = os.path.join(p.mail_root, ".postern-spool")
        leftovers = [f for dp, dn, fn in os.walk(spool) for f in fn] if os.path.isdir(spool) else []
        check_eq([f for f in leftovers if f != "lock"], [], "no temp file left in the spool")


def test_bdat_on_submission_relays_to_queue():
    # Submission with AUTH: BDAT for a remote recipient goes into the queue byte-exact
    # (delivery.enabled=false in the harness keeps it there).
    with Postern() as p:
        c = p.raw("submissions")
        ehlo_raw(c)
        import base64
        c.send("AUTH PLAIN %s\r\n" % base64.b64encode(b"\0" + ALICE[0].encode() + b"\0" + ALICE[1].encode()).decode())
        c.expect_reply(235)
        c.send("MAIL FROM:<alice@example.test> BODY=BINARYMIME\r\nRCPT TO:<friend@remote.example>\r\n")
        c.expect_reply(250)
        c.expect_reply(250)
        marker = b"bdat-queue-%d" % os.getpid()
        msg = binary_message(marker).replace(b"\r\n\r\n", b"\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
                                             b"Message-ID: <x@example.test>\r\n\r\n", 1)
        c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
        c.expect_reply(250, "2.0.0")
        c.send("QUIT\r\n")
        c.expect_reply(221)
        found = []
        for f in p.queue_files():
            with open(f, "rb") as fh:
                data = fh.read()
            if marker in data:
                found.append(data)
        check_eq(len(found), 1, "one queue data file with the message")
        assert_stored_equals(found[0], msg, "queued BDAT message")


# ------------------------------------------------------------------------------------------
# postmaster and abuse

def send_to(s, rcpts, marker):
    expect(s.mail("sender@remote.example"), 250)
    for r in rcpts:
        expect(s.rcpt(r), 250, "2.1.5", what="RCPT " + r)
    _, msg = make_message(sender="sender@remote.example", to=rcpts[0], marker=marker)
    expect(s.data(msg), 250, "2.0.0")


def test_postmaster_default_mailbox_without_account():
    # No postmaster account, smtp.postmaster_address empty (the shipped default): the mail
    # lands in the domain's own postmaster Maildir.
    with Postern() as p:
        s = p.smtp("mx")
        marker = "pm-default-%d" % os.getpid()
        send_to(s, ["Postmaster", "POSTMASTER@example.test", "postmaster@example.org"], marker)
        s.quit()
        for user in ("postmaster@example.test", "postmaster@example.org", "postmaster@mail.example.test"):
            check_eq(len(p.maildir_find(user, marker)), 1, user + " mailbox")


def test_postmaster_and_abuse_to_configured_addresses():
    # smtp.postmaster_address / smtp.abuse_address point at accounts that exist; nobody has
    # a postmaster or abuse account of their own.
    with Postern(overrides={"smtp.postmaster_address": "alice@example.test",
                            "smtp.abuse_address": "bob@example.test"}) as p:
        s = p.smtp("mx")
        marker = "pm-conf-%d" % os.getpid()
        send_to(s, ["<postmaster>", "PostMaster@example.test", "postmaster@example.org"], marker)
        check_eq(len(p.maildir_find("alice@example.test", marker)), 1, "postmaster mail at alice (one copy)")
        marker2 = "abuse-conf-%d" % os.getpid()
        send_to(s, ["abuse@example.test", "ABUSE@example.org"], marker2)
        check_eq(len(p.maildir_find("bob@example.test", marker2)), 1, "abuse mail at bob")
        # Never a relay path.
        expect(s.mail("sender@remote.example"), 250)
        expect(s.rcpt("postmaster@foreign.example"), 554, "5.7.1", what="foreign postmaster")
        expect(s.rcpt("abuse@foreign.example"), 554, "5.7.1", what="foreign abuse")
        s.quit()
        # Submission, authenticated: the same.
        s = p.submission(*ALICE)
        expect(s.mail("alice@example.test"), 250)
        expect(s.rcpt("postmaster@example.test"), 250, "2.1.5")
        expect(s.rcpt("Postmaster"), 250, "2.1.5")
        expect(s.rcpt("abuse@example.test"), 250, "2.1.5")
        marker3 = "pm-sub-%d" % os.getpid()
        expect(s.data(make_message(to="postmaster@example.test", marker=marker3)[1]), 250)
        s.quit()
        check_eq(len(p.maildir_find("alice@example.test", marker3)), 1, "submission postmaster mail")
        check_eq(len(p.maildir_find("bob@example.test", marker3)), 1, "submission abuse mail")


def test_abuse_off_by_default_and_bad_target():
    with Postern(overrides={"smtp.postmaster_address": "nobody@example.test"}) as p:
        s = p.smtp("mx")
        expect(s.mail("sender@remote.example"), 250)
        # smtp.abuse_address empty (shipped default): an ordinary unknown recipient.
        expect(s.rcpt("abuse@example.test"), 550, "5.1.1")
        # A configured postmaster address that does not exist: try later, never a bounce.
        expect(s.rcpt("postmaster@example.test"), 451, "4.3.5")
        s.quit()
        check(p.log_contains(r"event=rcpt.reject .*reason=role_target_unknown"), "misconfiguration logged")


def test_existing_postmaster_account_wins():
    users = dict(__import__("postern_harness").DEFAULT_USERS)
    users["postmaster@example.test"] = {"password": "pm-Secret9"}
    with Postern(users=users, overrides={"smtp.postmaster_address": "alice@example.test"}) as p:
        s = p.smtp("mx")
        marker = "pm-own-%d" % os.getpid()
        send_to(s, ["postmaster@example.test"], marker)
        s.quit()
        check_eq(len(p.maildir_find("postmaster@example.test", marker)), 1, "the account's own mailbox")
        check_eq(p.maildir_find("alice@example.test", marker), [], "not redirected")

# ------------------------------------------------------------------------------------------
# outbound: BDAT to a next hop that offers CHUNKING (a private Postfix 3.7)

def outbound_overrides(peer):
    return {
        # Outbound delivery on (the harness turns it off), to the private Postfix for
        # remote.test, retried and scanned quickly so the test does not wait minutes.
        "delivery.enabled": "true",
        "delivery.transport.remote.test": "127.0.0.1:%d" % peer.port,
        "delivery.retry_schedule": "1s",
        "delivery.scan_interval": "1s",
        "delivery.connect_timeout": "5s",
        # The peer has no certificate: plain SMTP to it (the shipped 'may' would also fall
        # back, but the test should not depend on that).
        "delivery.tls_policy.remote.test": "none",
    }


def submit_bdat(p, rcpt, msg, body_param=""):
    import base64
    c = p.raw("submissions")
    ehlo_raw(c)
    c.send("AUTH PLAIN %s\r\n" % base64.b64encode(b"\0" + ALICE[0].encode() + b"\0" + ALICE[1].encode()).decode())
    c.expect_reply(235)
    c.send("MAIL FROM:<alice@example.test>%s\r\nRCPT TO:<%s>\r\n" % (body_param, rcpt))
    c.expect_reply(250)
    c.expect_reply(250)
    c.send(b"BDAT %d LAST\r\n" % len(msg) + msg)
    c.expect_reply(250, "2.0.0")
    c.send("QUIT\r\n")
    c.expect_reply(221)


def test_outbound_uses_bdat_when_the_next_hop_offers_chunking():
    import postfix_support
    if not postfix_support.available():
        raise AssertionError("needs root and Debian's postfix (scripts/test installs it): the next hop that speaks CHUNKING")
    with postfix_support.PostfixPeer(users=["friend"]) as peer, Postern(overrides=outbound_overrides(peer)) as p:
        marker, msg = make_message(sender="alice@example.test", to="friend@remote.test")
        submit_bdat(p, "friend@remote.test", msg)
        wait_for(lambda: any(marker.encode() in m for m in peer.messages("friend")), timeout=60,
                 what="the message in the Postfix peer's Maildir")
        got = [m for m in peer.messages("friend") if marker.encode() in m][0]
        # Postfix stores LF line ends and adds its own headers: compare the body lines.
        sent_body = msg.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n")
        check(got.endswith(sent_body), "body relayed unchanged:\n%r\n%r" % (sent_body[-200:], got[-200:]))
        # Postfix counts the commands of each session: BDAT was used, DATA was not.
        line = wait_for(lambda: next((l for l in peer.log_text().splitlines()
                                      if "disconnect from" in l and "mail=1" in l), None),
                        timeout=20, what="Postfix's disconnect line")
        check(" bdat=" in line and " data=" not in line, "Postfix saw BDAT, not DATA: " + line)


def test_binary_message_to_hop_without_binarymime_bounces_563():
    import postfix_support
    if not postfix_support.available():
        raise AssertionError("needs root and Debian's postfix (scripts/test installs it)")
    # Postfix offers CHUNKING but not BINARYMIME: the binary message cannot go there.
    with postfix_support.PostfixPeer(users=["friend"]) as peer, Postern(overrides=outbound_overrides(peer)) as p:
        marker = b"bin-out-%d" % os.getpid()
        msg = binary_message(marker).replace(b"\r\n\r\n", b"\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
                                             b"Message-ID: <bin@example.test>\r\n\r\n", 1)
        submit_bdat(p, "friend@remote.test", msg, " BODY=BINARYMIME")
        bounce = wait_for(lambda: next((m for m in p.maildir_messages("alice@example.test")
                                        if b"5.6.3" in m), None), timeout=60,
                          what="the 5.6.3 bounce in alice's Maildir")
        check(b"friend@remote.test" in bounce, "the bounce names the recipient")
        check_eq(peer.messages("friend"), [], "nothing reached the peer")
        check(p.log_contains(r"5\.6\.3"), "the failure is logged")


if __name__ == "__main__":
    run_tests(globals())
