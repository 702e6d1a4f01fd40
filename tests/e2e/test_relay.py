#!/usr/bin/env python3
"""Relay control on the MX role: local users accepted from anyone, unknown local users 550,
remote recipients 554 without AUTH or a POP3 grant; address tricks never relay; authenticated
relay goes to the queue (the positive control that makes "queue stays empty" meaningful)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (Postern, DEFAULT_USERS, check, check_eq, expect, make_message,
                             run_tests, smtp_auth)

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]


def test_relay_denied_local_accepted_unknown_550():
    with Postern() as p:
        s = p.smtp("mx", source="127.0.0.3")
        expect(s.mail("someone@remote.example"), 250, "2.1.0")
        expect(s.rcpt("friend@remote.example"), 554, "5.7.1", what="relay without auth")
        expect(s.rcpt("nobody@example.test"), 550, "5.1.1", what="unknown local user")
        expect(s.rcpt("nobody@example.org"), 550, "5.1.1", what="unknown user, 2nd domain")
        expect(s.rcpt(ALICE), 250, "2.1.5", what="local user")
        expect(s.rcpt("ALICE@EXAMPLE.TEST"), 250, what="local user, upper case")
        expect(s.rcpt("sales@example.test"), 250, what="alias")
        marker, msg = make_message(sender="someone@remote.example")
        expect(s.data(msg), 250)
        s.quit()
        check_eq(len(p.maildir_find(ALICE, marker)), 1, "alice gets exactly one copy")
        check_eq(len(p.maildir_find("bob@example.test", marker)), 1, "bob via alias")
        check_eq(p.queue_files(), [], "queue after local-only delivery")
        p.log_contains(r"event=(relay\.deny|rcpt\.reject) .*ip=127\.0\.0\.3 .*"
                       r"to=<friend@remote\.example>.*relay")


def test_relay_tricks_never_relay():
    # Expected codes: an address in a local domain with a local part that is not a user is
    # "unknown user" (550 5.1.1); a source route is stripped (RFC 5321 4.1.2/C) so the
    # address is remote (554 5.7.1); a trailing-dot domain or two unquoted @ is a syntax
    # error (501 5.1.3); an address literal is not a local domain (554 5.7.1); never 250.
    cases = [
        ('<"alice@remote.example"@example.test>', (550,), "5.1.1"),
        ('<"friend@remote.example"@example.test>', (550,), "5.1.1"),
        ("<alice%remote.example@example.test>", (550,), "5.1.1"),
        ("<friend%remote.example@example.test>", (550,), "5.1.1"),
        ("<@example.test:friend@remote.example>", (554,), "5.7.1"),
        ("<@example.test,@mail.example.test:friend@remote.example>", (554,), "5.7.1"),
        ("<remote.example!alice@example.test>", (550,), "5.1.1"),
        ("<remote.example!friend@example.test>", (550,), "5.1.1"),
        ("<friend@remote.example.>", (501,), "5.1.3"),
        ("<alice@example.test.>", (501,), "5.1.3"),
        ("<friend@remote.example@example.test>", (501,), "5.1.3"),
        ("<friend@[127.0.0.1]>", (554,), "5.7.1"),
        ("<friend@remote.example>", (554,), "5.7.1"),
    ]
    with Postern() as p:
        before = {u: len(p.maildir_messages(u)) for u in DEFAULT_USERS}
        s = p.smtp("mx", source="127.0.0.3")
        failures = []
        for rcpt, codes, enh in cases:
            expect(s.docmd("RSET"), 250)
            expect(s.docmd("MAIL", "FROM:<someone@remote.example>"), 250)
            code, text = s.docmd("RCPT", "TO:" + rcpt)
            text = text.decode("utf-8", "replace")
            ok = code in codes and (enh is None or text.split()[:1] == [enh])
            print("  RCPT TO:%s -> %d %s" % (rcpt, code, text))
            if not ok:
                failures.append("RCPT TO:%s -> %d %s (expected %s %s)"
                                % (rcpt, code, text, "/".join(map(str, codes)), enh or ""))
            if code == 250:
                # Push it through so the effect (queue / mailbox) is visible in the report.
                marker, msg = make_message(sender="someone@remote.example")
                failures.append("  ... DATA after accepted trick: %s"
                                % " ".join(map(str, s.data(msg))))
        s.quit()
        check_eq(p.queue_files(), [], "queue after relay tricks")
        after = {u: len(p.maildir_messages(u)) for u in DEFAULT_USERS}
        check_eq(after, before, "mailboxes after relay tricks")
        check(not failures, "relay tricks:\n" + "\n".join(failures))


def test_relay_after_auth_is_queued():
    with Postern() as p:
        check_eq(p.queue_files(), [], "queue at start")
        s = p.smtp("mx", starttls=True, source="127.0.0.3")
        smtp_auth(s, ALICE, ALICE_PW)
        expect(s.mail(ALICE), 250)
        expect(s.rcpt("friend@remote.example"), 250, "2.1.5", what="relay after AUTH on MX")
        marker, msg = make_message(to="friend@remote.example")
        expect(s.data(msg), 250)
        s.quit()
        files = p.queue_files()
        check(files, "no queue file after an accepted relay")
        check(any(marker.encode() in open(f, "rb").read() for f in files),
              "queued files do not contain the message: %r" % files)
        # and on submission
        s = p.submission(ALICE, ALICE_PW, implicit=True)
        expect(s.mail(ALICE), 250)
        expect(s.rcpt("friend@remote.example"), 250)
        marker2, msg2 = make_message(to="friend@remote.example")
        expect(s.data(msg2), 250)
        s.quit()
        check(any(marker2.encode() in open(f, "rb").read() for f in p.queue_files()),
              "submission relay not queued")


if __name__ == "__main__":
    run_tests(globals())
