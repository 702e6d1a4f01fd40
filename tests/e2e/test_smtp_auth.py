#!/usr/bin/env python3
"""SMTP AUTH rules: nothing advertised and 538 before TLS, advertised after STARTTLS, 535 on a
bad password, 501 on cancel and bad base64, 535 on a foreign authzid; submission needs AUTH
before MAIL (530), the sender must belong to the login (553), null sender refused (553)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (Postern, DEFAULT_USERS, b64, check, check_eq, expect,
                             plain_ir, run_tests, smtp_auth, tls_context)

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
BOB_PW = DEFAULT_USERS["bob@example.test"]["password"]


def _auth_line(features):
    return features.get("auth")


def test_mx_no_auth_before_tls_538():
    with Postern() as p:
        s = p.smtp("mx")
        check("starttls" in s.esmtp_features, "STARTTLS not advertised on MX: %r"
              % s.esmtp_features)
        check("auth" not in s.esmtp_features, "AUTH advertised before TLS: %r"
              % s.esmtp_features)
        expect(s.docmd("AUTH", "PLAIN " + plain_ir(ALICE, ALICE_PW)), 538, "5.7.11",
               what="AUTH PLAIN before TLS")
        expect(s.docmd("AUTH", "LOGIN"), 538, "5.7.11", what="AUTH LOGIN before TLS")
        # Still usable afterwards.
        expect(s.docmd("NOOP"), 250)
        expect(s.starttls(context=tls_context()), 220)
        expect(s.ehlo(), 250)
        auth = s.esmtp_features.get("auth", "")
        check("PLAIN" in auth.split() and "LOGIN" in auth.split(),
              "AUTH after STARTTLS should offer PLAIN LOGIN, got %r" % auth)
        check("starttls" not in s.esmtp_features, "STARTTLS advertised twice")
        s.quit()


def test_submission_no_auth_before_tls_538():
    with Postern() as p:
        s = p.smtp("submission")
        check("auth" not in s.esmtp_features, "AUTH advertised before TLS on submission")
        expect(s.docmd("AUTH", "PLAIN " + plain_ir(ALICE, ALICE_PW)), 538, "5.7.11")
        s.quit()
        # implicit TLS: advertised at once
        s = p.smtp_ssl("submissions")
        auth = s.esmtp_features.get("auth", "").split()
        check("PLAIN" in auth and "LOGIN" in auth, "AUTH on submissions: %r" % auth)
        check("starttls" not in s.esmtp_features, "STARTTLS offered inside implicit TLS")
        s.quit()


def test_wrong_password_535():
    with Postern() as p:
        for listener in ("mx", "submission"):
            s = p.smtp(listener, starttls=True, source="127.0.0.2")
            expect(s.docmd("AUTH", "PLAIN " + plain_ir(ALICE, "Wr0ngPw-7731")), 535, "5.7.8",
                   what="%s PLAIN wrong password" % listener)
            # unknown user looks the same
            expect(s.docmd("AUTH", "PLAIN " + plain_ir("nobody@example.test", "x")), 535,
                   "5.7.8", what="unknown user")
            # LOGIN with the wrong password
            expect(s.docmd("AUTH", "LOGIN"), 334, what="AUTH LOGIN")
            expect(s.docmd(b64("bob@example.test")), 334)
            expect(s.docmd(b64("not-" + BOB_PW)), 535, "5.7.8", what="LOGIN wrong password")
            # the right one still works afterwards
            smtp_auth(s, ALICE, ALICE_PW, "PLAIN")
            s.quit()
        p.log_contains(r"event=auth\.fail .*svc=smtp .*ip=127\.0\.0\.2")
        log = p.log_text()
        check(ALICE_PW not in log and "Wr0ngPw-7731" not in log and BOB_PW not in log,
              "a password appears in the log")


def test_idn_login_with_either_spelling():
    """A user stored with the A-label domain (as posternctl stores it) logs in with the
    U-label spelling too, over SMTP AUTH PLAIN (UTF-8, RFC 4616) and POP3 USER/PASS (test
    change: that user added to the passwd-file). Review finding: the login went to the
    backend as typed: 535 / -ERR [AUTH] for the right password."""
    users = dict(DEFAULT_USERS)
    users["anna@xn--mller-kva.example"] = {"password": "anna-Secret6"}
    with Postern(users=users) as p:
        for login in ("anna@m\u00fcller.example", "anna@xn--mller-kva.example"):
            s = p.smtp("submission", starttls=True)
            expect(s.docmd("AUTH", "PLAIN " + plain_ir(login, "anna-Secret6")), 235, "2.7.0", what="AUTH as " + login)
            s.quit()
            c = p.pop3_ssl()
            c.user(login)
            check(c.pass_("anna-Secret6").startswith(b"+OK"), "POP3 as " + login)
            c.quit()


def test_auth_cancel_501():
    with Postern() as p:
        s = p.smtp("mx", starttls=True)
        expect(s.docmd("AUTH", "LOGIN"), 334, what="AUTH LOGIN")
        expect(s.docmd("*"), 501, what="cancel at username prompt")
        expect(s.docmd("AUTH", "LOGIN"), 334)
        expect(s.docmd(b64(ALICE)), 334)
        expect(s.docmd("*"), 501, what="cancel at password prompt")
        expect(s.docmd("AUTH", "PLAIN"), 334, what="AUTH PLAIN without IR")
        expect(s.docmd("*"), 501, what="cancel PLAIN")
        smtp_auth(s, ALICE, ALICE_PW)
        s.quit()


def test_auth_bad_base64_501():
    with Postern() as p:
        s = p.smtp("submission", starttls=True)
        expect(s.docmd("AUTH", "PLAIN !!!not-base64!!!"), 501, what="bad base64 IR")
        expect(s.docmd("AUTH", "PLAIN"), 334)
        expect(s.docmd("%%%%"), 501, what="bad base64 response")
        expect(s.docmd("AUTH", "LOGIN"), 334)
        expect(s.docmd("YWxpY2U@"), 501, what="bad base64 username")
        expect(s.docmd("AUTH", "CRAM-MD5"), 504, what="unknown mechanism")
        smtp_auth(s, ALICE, ALICE_PW, "LOGIN")
        expect(s.docmd("AUTH", "PLAIN " + plain_ir(ALICE, ALICE_PW)), 503,
               what="AUTH twice")
        s.quit()


def test_plain_authzid_mismatch_535():
    with Postern() as p:
        s = p.smtp("submission", starttls=True)
        expect(s.docmd("AUTH", "PLAIN " + plain_ir(ALICE, ALICE_PW, authzid="bob@example.test")),
               535, what="authzid != authcid")
        # authzid == authcid is fine
        expect(s.docmd("AUTH", "PLAIN " + plain_ir(ALICE, ALICE_PW, authzid=ALICE)), 235,
               "2.7.0", what="authzid == authcid")
        s.quit()


def test_submission_mail_before_auth_530():
    with Postern() as p:
        s = p.smtp("submission", starttls=True)
        expect(s.mail(ALICE), 530, "5.7.0", what="MAIL before AUTH (STARTTLS)")
        s.quit()
        s = p.smtp_ssl("submissions")
        expect(s.mail(ALICE), 530, "5.7.0", what="MAIL before AUTH (implicit)")
        s.quit()
        s = p.smtp("submission")
        expect(s.mail(ALICE), 530, "5.7.0", what="MAIL before AUTH (no TLS)")
        s.quit()


def test_sender_login_mismatch_553():
    with Postern() as p:
        s = p.submission(ALICE, ALICE_PW)
        expect(s.mail("bob@example.test"), 553, "5.7.1", what="MAIL as another user")
        expect(s.mail("team@example.test"), 553, "5.7.1", what="MAIL as dave's extra sender")
        expect(s.mail("alice@remote.example"), 553, "5.7.1", what="MAIL as a remote address")
        expect(s.mail(ALICE), 250, "2.1.0", what="MAIL as herself")
        s.quit()
        s = p.submission("dave@example.test", DEFAULT_USERS["dave@example.test"]["password"],
                         implicit=True)
        expect(s.mail("team@example.test"), 250, what="listed sender")
        expect(s.docmd("RSET"), 250)
        expect(s.mail(ALICE), 553, "5.7.1", what="dave as alice")
        s.quit()


def test_null_sender_with_auth_553():
    with Postern() as p:
        s = p.submission(ALICE, ALICE_PW)
        expect(s.docmd("MAIL", "FROM:<>"), 553, what="null sender on submission")
        s.quit()
        s = p.submission(ALICE, ALICE_PW, implicit=True)
        expect(s.docmd("MAIL", "FROM:<>"), 553, what="null sender on submissions")
        s.quit()
        s = p.smtp("mx", starttls=True)
        smtp_auth(s, ALICE, ALICE_PW)
        expect(s.docmd("MAIL", "FROM:<>"), 553, what="null sender after AUTH on MX")
        s.quit()
        # Without AUTH on MX a bounce (null sender) to a local user is normal mail.
        s = p.smtp("mx")
        expect(s.docmd("MAIL", "FROM:<>"), 250, what="null sender on MX without AUTH")
        expect(s.rcpt(ALICE), 250)
        s.quit()


def test_log_values_cannot_forge_fields():
    # A user name with a space, '=' and a line break must stay one escaped token in the log
    # (fail2ban and log parsers split on spaces and '='). Shipped defaults.
    with Postern() as p:
        s = p.smtp("submission", starttls=True)
        evil = "x user=admin@example.test result=ok\nevent=auth.ok"
        code, _ = s.docmd("AUTH", "PLAIN " + plain_ir(evil, "wrong-password"))
        check_eq(code, 535, "AUTH with a forged-looking user name")
        s.quit()
        line = p.log_contains(r"event=auth\.fail[^\n]*user=x\\x20user\\x3dadmin").group(0)
        check(" result=ok" not in line.split("user=", 1)[1].split(" ", 1)[0], "one token: %r" % line)
        check_eq(p.log_count(r"event=auth\.ok"), 0, "no forged auth.ok line")


if __name__ == "__main__":
    run_tests(globals())
