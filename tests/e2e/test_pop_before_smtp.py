#!/usr/bin/env python3
"""POP-before-SMTP: a successful POP3 login from an IP lets that IP relay through the MX
listener for pop_before_smtp.lifetime; other IPs, failed logins and expired grants get 554."""

import os
import poplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (Postern, DEFAULT_USERS, check, check_eq, expect, make_message,
                             run_tests, sleep_until)

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
REMOTE = "friend@remote.example"


def _relay_attempt(p, source, data=True):
    """MAIL + RCPT to a remote address on MX from `source`; returns the RCPT reply and,
    when accepted and data=True, sends the message and returns its marker too."""
    s = p.smtp("mx", source=source)
    expect(s.mail(ALICE), 250)
    code, text = s.rcpt(REMOTE)
    marker = None
    if code == 250 and data:
        marker, msg = make_message(to=REMOTE)
        expect(s.data(msg), 250, what="DATA of granted relay")
    s.quit()
    return (code, text), marker


def test_grant_from_pop3s_login():
    with Postern() as p:
        # Before any login, nobody relays.
        r, _ = _relay_attempt(p, "127.0.0.2")
        expect(r, 554, "5.7.1", what="relay from 127.0.0.2 before POP3 login")
        pop = p.pop3_login(ALICE, ALICE_PW, tls="implicit", source="127.0.0.2")
        pop.quit()
        r, marker = _relay_attempt(p, "127.0.0.2")
        expect(r, 250, "2.1.5", what="relay from 127.0.0.2 after POP3 login")
        files = p.queue_files()
        check(files, "no queue file after granted relay")
        check(any(marker.encode() in open(f, "rb").read() for f in files),
              "queue files lack the message")
        # Queued as alice's mail (review finding: as nobody's, so an account hold and the
        # compromise counters never saw grant relays), and logged as hers.
        envelopes = [open(f).read() for f in files if "/envelope/" in f]
        check(any("\nauth alice@example.test\n" in e or e.startswith("auth alice@example.test\n") for e in envelopes),
              "the queued envelope names the grant's user: %r" % envelopes)
        p.log_contains(r"event=message\.accept .*via=pop_before_smtp grant_user=alice@example\.test")
        n = len(files)
        r, _ = _relay_attempt(p, "127.0.0.3")
        expect(r, 554, "5.7.1", what="relay from 127.0.0.3 (no grant)")
        check_eq(len(p.queue_files()), n, "queue files after denied relay")


def test_grant_belongs_to_the_user_who_earned_it():
    """Subscribers sharing one public address (carrier-grade NAT): alice's POP3 login lets
    that address relay only with alice's own sender addresses."""
    dave, dave_pw = "dave@example.test", DEFAULT_USERS["dave@example.test"]["password"]
    with Postern() as p:
        pop = p.pop3_login(dave, dave_pw, tls="implicit", source="127.0.0.6")
        pop.quit()
        for sender in (dave, "team@example.test"):  # dave's login and his extra sender address
            s = p.smtp("mx", source="127.0.0.6")
            expect(s.mail(sender), 250)
            expect(s.rcpt(REMOTE), 250, "2.1.5", what="grant holder's own sender %s" % sender)
            s.quit()
        s = p.smtp("mx", source="127.0.0.6")
        expect(s.mail(ALICE), 250)
        expect(s.rcpt(REMOTE), 554, "5.7.1", what="another subscriber riding on dave's grant")
        expect(s.rcpt(ALICE), 250, what="mail for local users is still accepted")
        s.quit()
        p.log_contains("reason=grant_sender_mismatch grant_user=dave@example.test")
    with Postern(overrides={"pop_before_smtp.own_senders_only": "false"}) as p:
        pop = p.pop3_login(dave, dave_pw, tls="implicit", source="127.0.0.6")
        pop.quit()
        s = p.smtp("mx", source="127.0.0.6")
        expect(s.mail(ALICE), 250)
        expect(s.rcpt(REMOTE), 250, what="option off: any sender on the grant")
        s.quit()


def test_subscribers_sharing_an_address_each_relay_as_themselves():
    """Several subscribers behind one NAT address each keep their own grant: before, each
    POP3 login replaced the address's grant, so only the last one to poll could relay (the
    others' MAIL FROM got 554 while the option below is on, as shipped)."""
    dave, dave_pw = "dave@example.test", DEFAULT_USERS["dave@example.test"]["password"]
    bob = "bob@example.test"
    with Postern() as p:
        p.pop3_login(dave, dave_pw, tls="implicit", source="127.0.0.8").quit()
        p.pop3_login(ALICE, ALICE_PW, tls="implicit", source="127.0.0.8").quit()
        for sender, holder in ((dave, dave), ("team@example.test", dave), (ALICE, ALICE)):
            s = p.smtp("mx", source="127.0.0.8")
            expect(s.mail(sender), 250)
            expect(s.rcpt(REMOTE), 250, "2.1.5", what="%s relays on %s's grant" % (sender, holder))
            marker, msg = make_message(sender=sender, to=REMOTE)
            expect(s.data(msg), 250, what="DATA as %s" % sender)
            s.quit()
            p.log_contains(r"event=message\.accept .*via=pop_before_smtp grant_user=%s" % holder.replace(".", r"\."))
        # A subscriber of the address who did not log in still cannot ride on the others'.
        s = p.smtp("mx", source="127.0.0.8")
        expect(s.mail(bob), 250)
        expect(s.rcpt(REMOTE), 554, "5.7.1", what="bob (no POP3 login) on the others' grants")
        s.quit()


def test_excluded_networks_and_balancers_earn_no_grant():
    """A webmail host polling POP3 for its users (pop_before_smtp.exclude_networks), or a
    balancer's own address (a listener's proxy_trusted: a login seen from it is any of its
    clients'), must not open the relay to everyone there. Changed: exclude_networks =
    127.0.0.9; listener.mx.proxy_trusted = 127.0.0.10 (a balancer, without PROXY headers)."""
    with Postern(overrides={"pop_before_smtp.exclude_networks": "127.0.0.9",
                            "listener.mx.proxy_trusted": "127.0.0.10"}) as p:
        for source, reason in (("127.0.0.9", "excluded_network"), ("127.0.0.10", "balancer_address")):
            p.pop3_login(ALICE, ALICE_PW, tls="implicit", source=source).quit()
            p.log_contains(r"event=pop3\.grant_refused user=%s ip=%s reason=%s"
                           % (ALICE.replace(".", r"\."), source.replace(".", r"\."), reason))
            r, _ = _relay_attempt(p, source, data=False)
            expect(r, 554, "5.7.1", what="relay from %s after a POP3 login (%s)" % (source, reason))
        # Any other address: the login earns its grant (so the checks above can fail).
        p.pop3_login(ALICE, ALICE_PW, tls="implicit", source="127.0.0.11").quit()
        r, _ = _relay_attempt(p, "127.0.0.11", data=False)
        expect(r, 250, "2.1.5", what="relay from 127.0.0.11 after a POP3 login")


def test_grant_does_not_replace_auth_on_submission():
    with Postern() as p:
        p.pop3_login(ALICE, ALICE_PW, tls="implicit", source="127.0.0.7").quit()
        r, _ = _relay_attempt(p, "127.0.0.7", data=False)
        expect(r, 250, what="MX relay with the grant")
        s = p.smtp("submission", source="127.0.0.7", starttls=True)
        expect(s.mail(ALICE), 530, "5.7.0", what="submission MAIL from a granted IP, no AUTH")
        s.quit()
        s = p.smtp_ssl("submissions", source="127.0.0.7")
        expect(s.mail(ALICE), 530, "5.7.0", what="submissions MAIL from a granted IP, no AUTH")
        s.quit()


def test_failed_pop3_login_grants_nothing():
    with Postern() as p:
        pop = p.pop3_ssl(source="127.0.0.4")
        pop.user(ALICE)
        try:
            pop.pass_("not-the-password")
            raise AssertionError("wrong POP3 password accepted")
        except poplib.error_proto as e:
            check(str(e).startswith("b'-ERR [AUTH]"), "wrong password reply: %s" % e)
        try:
            pop.quit()
        except (poplib.error_proto, OSError):
            pass
        # unknown user too
        pop = p.pop3_ssl(source="127.0.0.4")
        try:
            pop.user("nobody@example.test")
            pop.pass_("x")
            raise AssertionError("unknown POP3 user accepted")
        except poplib.error_proto:
            pass
        r, _ = _relay_attempt(p, "127.0.0.4")
        expect(r, 554, "5.7.1", what="relay after failed POP3 login")
        check_eq(p.queue_files(), [], "queue")


def test_grant_from_pop3_stls_login():
    with Postern() as p:
        pop = p.pop3_login(ALICE, ALICE_PW, tls="stls", source="127.0.0.5")
        pop.quit()
        r, _ = _relay_attempt(p, "127.0.0.5", data=False)
        expect(r, 250, what="relay after POP3+STLS login")


def test_grant_expires():
    with Postern(overrides={"pop_before_smtp.lifetime": "2s"}) as p:
        pop = p.pop3_login(ALICE, ALICE_PW, tls="implicit", source="127.0.0.6")
        pop.quit()
        granted_by = time.monotonic()
        r, _ = _relay_attempt(p, "127.0.0.6", data=False)
        expect(r, 250, what="relay right after login (lifetime 2s)")
        # The grant was made before `granted_by`; 2s plus one second of clock granularity.
        sleep_until(granted_by + 3.0)
        r, _ = _relay_attempt(p, "127.0.0.6", data=False)
        expect(r, 554, "5.7.1", what="relay after the grant expired")


def test_grant_relays_count_against_the_client_ip_message_limit():
    """A granted address relays without AUTH, so MAIL cannot count its message; the first
    relayed RCPT of each transaction does, against limits.ip.messages_per_hour (a shared NAT
    address holding a grant must not send without bound). Changed for the test:
    limits.ip.messages_per_hour = 2."""
    with Postern(overrides={"limits.ip.messages_per_hour": "2"}) as p:
        pop = p.pop3_login(ALICE, ALICE_PW, tls="implicit", source="127.0.0.7")
        pop.quit()
        s = p.smtp("mx", source="127.0.0.7")
        for i in range(2):
            expect(s.mail(ALICE), 250)
            expect(s.rcpt(REMOTE), 250, what="relayed message %d" % (i + 1))
            expect(s.rcpt("other@remote.example"), 250, what="its second recipient (same message)")
            marker, msg = make_message(to=REMOTE)
            expect(s.data(msg), 250)
        expect(s.mail(ALICE), 250)
        expect(s.rcpt(REMOTE), 450, "4.7.1", what="third relayed message in the hour")
        expect(s.rcpt("bob@example.test"), 250, what="local mail is not limited")
        s.rset()
        s.quit()
        check(p.log_contains(r"limit\.hit .*limit=ip\.messages_per_hour"), "limit.hit logged")


def test_grant_relays_count_against_the_users_own_limits():
    """A grant relays as its POP3 user, so that user's own outbound limits apply, as they do
    to the user's AUTH relay. erin's passwd-file line lowers hers to one message an hour (an
    account under watch; the shipped limits.user.messages_per_hour is 200). After her POP3
    login from 127.0.0.8, the first relayed message goes and the second gets 450 4.7.1,
    counted against her. Before, a grant relay counted against the limits.user.* defaults,
    so the lowered limit held only over AUTH. Changed for the test: erin's passwd-file line
    has messages_per_hour=1."""
    users = dict(DEFAULT_USERS)
    erin = "erin@example.test"
    users[erin] = dict(users[erin], extra="messages_per_hour=1")
    with Postern(users=users) as p:
        pop = p.pop3_login(erin, users[erin]["password"], tls="implicit", source="127.0.0.8")
        pop.quit()
        s = p.smtp("mx", source="127.0.0.8")
        expect(s.mail(erin), 250)
        expect(s.rcpt(REMOTE), 250, what="her first relayed message in the hour")
        marker, msg = make_message(sender=erin, to=REMOTE)
        expect(s.data(msg), 250)
        expect(s.mail(erin), 250)
        expect(s.rcpt(REMOTE), 450, "4.7.1", what="her second relayed message in the hour")
        s.rset()
        s.quit()
        p.log_contains(r"limit\.hit .*limit=user\.messages_per_hour")
        # Her AUTH relay counts against the same limit (one counter per user).
        sub = p.submission(erin, users[erin]["password"])
        code, _ = sub.mail(erin)
        check_eq(code, 450, "MAIL after AUTH: her hour's message is spent")
        sub.quit()


if __name__ == "__main__":
    run_tests(globals())
