#!/usr/bin/env python3
"""DKIM signing (RFC 6376; Ed25519 by RFC 8463): `posternctl dkim keygen` writes RSA and
Ed25519 keys and prints the DNS TXT records; posternd (keys read again on SIGHUP) signs mail
from an authenticated user and from a POP-before-SMTP grant holder with both, and Debian's
python3-dkim verifies both signatures of the queued message against the records posternctl
PRINTED. Unauthenticated MX mail and mail whose From domain has no key are not signed, and
the log and /metrics name each outcome."""

import base64
import json
import os
import re
import signal
import ssl
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (DEFAULT_USERS, Postern, RawConn, TestFailure, check, check_eq,  # noqa: E402
                             expect, make_message, run_tests, wait_for, _root_dir)
import pg_support as P  # noqa: E402

try:
    import dkim  # Debian: python3-dkim (scripts/test installs it)
except ImportError:  # pyenv/venv Python: use the Debian package
    sys.path.append("/usr/lib/python3/dist-packages")
    import dkim  # noqa: E402

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
CAROL, CAROL_PW = "carol@example.org", DEFAULT_USERS["carol@example.org"]["password"]
BOB = "bob@example.test"
REMOTE = "friend@remote.example"
TXT_LINE = re.compile(r'^(\S+)\._domainkey\.(\S+)\. IN TXT((?: "[^"]*")+)$')


def ctl(p, *args):
    return P.posternctl(list(args), p.config_path)


def ok(r, what):
    check(r.returncode == 0, "%s: exit %d\n%s%s" % (what, r.returncode, r.stdout, r.stderr))
    return r.stdout


def keygen(p, domain, selector, algorithm):
    """Runs posternctl dkim keygen; returns {dns name: record text} parsed from what it PRINTED."""
    out = ok(ctl(p, "dkim", "keygen", domain, "--selector", selector, "--algorithm", algorithm),
             "dkim keygen %s %s" % (domain, algorithm))
    records = {}
    for line in out.splitlines():
        m = TXT_LINE.match(line)
        if m:
            strings = re.findall(r'"([^"]*)"', m.group(3))
            check(all(len(s) <= 255 for s in strings), "TXT strings over 255 octets: " + line)
            records["%s._domainkey.%s." % (m.group(1), m.group(2))] = "".join(strings)
    check(len(records) == 1, "keygen printed one TXT record:\n" + out)
    return records


def dns_of(records):
    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        return records.get(name, "").encode()
    return dnsfunc


def verify_all(msg, records):
    """Every DKIM-Signature of msg verified by python3-dkim; returns the a= values."""
    d = dkim.DKIM(msg)
    sigs = [v for k, v in _headers(msg) if k.lower() == b"dkim-signature"]
    check(sigs, "no DKIM-Signature in the message:\n" + msg[:2000].decode("utf-8", "replace"))
    algs = []
    for i, sig in enumerate(sigs):
        res = d.verify(idx=i, dnsfunc=dns_of(records))
        check(res, "python3-dkim: signature %d does not verify:\n%s" % (i, sig.decode("ascii", "replace")))
        algs.append(re.search(rb"a=([a-z0-9-]+)", sig).group(1).decode())
    return algs


def _headers(msg):
    head = msg.split(b"\r\n\r\n", 1)[0]
    out = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + b"\r\n" + line)
        else:
            k, _, v = line.partition(b":")
            out.append((k, v))
    return out


def queued_message(p, marker):
    found = []
    def look():
        found[:] = [open(f, "rb").read() for f in p.queue_files()]
        found[:] = [d for d in found if marker.encode() in d]
        return found
    wait_for(look, 10.0, what="queued message " + marker)
    return found[0]


def submitted(p, user, password, sender=None, from_header=None):
    """Submits one message to REMOTE as `user` (MAIL FROM `sender`, default the user), with
    its From field replaced by `from_header` if given; returns it as queued."""
    sender = sender or user
    marker, msg = make_message(sender=sender, to=REMOTE)
    if from_header is not None:
        msg = msg.replace(b"From: <%s>" % sender.encode(), from_header, 1)
        check(from_header in msg, "the From field of the test message")
    s = p.submission(user, password)
    s.sendmail(sender, [REMOTE], msg)
    s.quit()
    return queued_message(p, marker)


def server_with_keys(workdir, algorithms=(("rsa", "r1"), ("ed25519", "e1")), overrides=None):
    keydir = os.path.join(workdir, "dkim")
    os.makedirs(keydir, mode=0o750)
    # The key directory (explicitly: shipped default is none) and the health port for /metrics.
    p = Postern(config={"dkim.key_dir": keydir}, overrides=overrides)
    records = {}
    for alg, sel in algorithms:
        records.update(keygen(p, "example.test", sel, alg))
    for alg, sel in algorithms:
        mode = os.stat(os.path.join(keydir, "example.test", sel + ".key")).st_mode & 0o777
        check(mode & 0o007 == 0, "key file %s is world-accessible: %o" % (sel, mode))
    # Never overwritten, and written through a temp file that does not stay behind.
    sel = algorithms[0][1]
    before = open(os.path.join(keydir, "example.test", sel + ".key")).read()
    again = ctl(p, "dkim", "keygen", "example.test", "--selector", sel)
    check(again.returncode == 73 and "exists" in again.stderr, "keygen over a key: %d %s" % (again.returncode, again.stderr))
    check_eq(open(os.path.join(keydir, "example.test", sel + ".key")).read(), before, "the key kept")
    check_eq(sorted(os.listdir(os.path.join(keydir, "example.test"))), sorted(s + ".key" for _, s in algorithms),
             "the domain's key directory")
    # The running server reads the new keys on SIGHUP.
    p.proc.send_signal(signal.SIGHUP)
    p.log_contains(r"event=dkim\.reload result=ok keys=%d" % len(algorithms), timeout=15)
    return p, records


def test_authenticated_submission_signed_with_rsa_and_ed25519():
    with tempfile.TemporaryDirectory(dir=_root_dir()) as work:
        p, records = server_with_keys(work)
        with p:
            lst = ok(ctl(p, "dkim", "list"), "dkim list")
            check("example.test\tr1\trsa\tfile" in lst and "example.test\te1\ted25519\tfile" in lst,
                  "dkim list:\n" + lst)
            show = ok(ctl(p, "dkim", "show", "example.test"), "dkim show")
            for name, text in records.items():
                check(text[:60] in show.replace('" "', ""), "dkim show lacks " + name)
            shown = json.loads(ok(ctl(p, "dkim", "show", "example.test", "--json"), "dkim show --json"))
            check_eq({k["dns_name"]: k["txt"] for k in shown}, records, "dkim show --json = the keygen records")
            check_eq(ctl(p, "dkim", "show", "example.org").returncode, 67, "dkim show of a domain without keys")
            s = p.submission(ALICE, ALICE_PW)
            marker, msg = make_message(sender=ALICE, to=REMOTE)
            s.sendmail(ALICE, [REMOTE], msg)
            s.quit()
            stored = queued_message(p, marker)
            algs = verify_all(stored, records)
            check_eq(sorted(algs), ["ed25519-sha256", "rsa-sha256"], "signature algorithms")
            # Oversigned: From/To/Subject/Date/Message-ID once more than present.
            h = re.search(rb"h=([^;]*)", stored).group(1).replace(b"\r\n\t", b"").replace(b" ", b"")
            for name in (b"from", b"to", b"subject", b"date", b"message-id"):
                check_eq(h.split(b":").count(name), 2, "%s in h= (%s)" % (name, h))
            # The check can fail: a changed Subject (or an added one) breaks the signatures.
            tampered = stored.replace(b"Subject: test ", b"Subject: TEST ", 1)
            check(not dkim.DKIM(tampered).verify(idx=0, dnsfunc=dns_of(records)), "tampered message verified")
            added = stored.replace(b"\r\n\r\n", b"\r\nSubject: other\r\n\r\n", 1)
            check(not dkim.DKIM(added).verify(idx=0, dnsfunc=dns_of(records)), "added Subject verified")
            # Nor a Reply-To or a MIME structure added to a replayed message (review finding:
            # only five fields were oversigned).
            for extra in (b"Reply-To: <attacker@evil.example>", b"Content-Type: multipart/mixed; boundary=x"):
                added = stored.replace(b"\r\n\r\n", b"\r\n" + extra + b"\r\n\r\n", 1)
                check(not dkim.DKIM(added).verify(idx=0, dnsfunc=dns_of(records)), "added %r verified" % extra)
            # 400 Cc: fields: h= names each one, and was one line of over 1,600 octets
            # (review finding); folded, every line stays under 998 and dkimpy verifies.
            s = p.submission(ALICE, ALICE_PW)
            marker2, msg2 = make_message(sender=ALICE, to=REMOTE)
            head, body = msg2.split(b"\r\n\r\n", 1)
            many = head + b"".join(b"\r\nCc: c%d@example.net" % i for i in range(400)) + b"\r\n\r\n" + body
            s.sendmail(ALICE, [REMOTE], many)
            s.quit()
            stored2 = queued_message(p, marker2)
            check_eq(sorted(verify_all(stored2, records)), ["ed25519-sha256", "rsa-sha256"], "400 Cc: verified")
            longest = max(len(line) for line in stored2.split(b"\r\n\r\n", 1)[0].split(b"\r\n"))
            check(longest <= 998, "header lines within 998 octets: %d" % longest)
            p.log_contains(r"event=dkim\.signed domain=example\.test selector=r1 alg=rsa-sha256")
            p.log_contains(r"event=dkim\.signed domain=example\.test selector=e1 alg=ed25519-sha256")
            check(p.metric("postern_events_total", {"event": "dkim", "label": "signed"}) >= 1, "signed counter in /metrics")


def test_signed_8bit_mail_to_a_hop_without_8bitmime_goes_unchanged():
    """Postern's own signatures over a message with an 8bit MIME part, relayed to a real
    Postfix that announces neither 8BITMIME nor SMTPUTF8: the message is not converted to
    quoted-printable (delivery.mime_output_conversion makes an exception for signed mail),
    so both signatures verify on what the peer stored. Converted, they would fail."""
    import postfix_support
    if not postfix_support.available():
        raise AssertionError("needs root and Debian's postfix (scripts/test installs it)")
    with postfix_support.PostfixPeer(users=["friend"], domain="remote.example", smtputf8=False,
                                     discard_ehlo=("8bitmime",)) as pf, \
            tempfile.TemporaryDirectory(dir=_root_dir()) as work:
        o = {"delivery.enabled": "true",  # test change: outbound delivery on
             "delivery.transport.remote.example": "127.0.0.1:%d" % pf.port,  # test change: the Postfix peer
             "delivery.tls_policy.remote.example": "none",  # test change: the peer offers no STARTTLS
             "delivery.scan_interval": "1s"}  # test change: no 30-s wait for the queue scan
        p, records = server_with_keys(work, overrides=o)
        with p:
            marker = "signed8-%d" % os.getpid()
            msg = ("Date: Fri, 27 Nov 2026 12:00:00 +0000\r\n"
                   "Message-ID: <%s@client.example>\r\n"
                   "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
                   "MIME-Version: 1.0\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Transfer-Encoding: 8bit\r\n"
                   "\r\n"
                   "K\u00e4se, \u00e9t\u00e9 = 100 %%\r\n" % (marker, ALICE, REMOTE, marker)).encode("utf-8")
            s = p.submission(ALICE, ALICE_PW)
            s.sendmail(ALICE, [REMOTE], msg, mail_options=["BODY=8BITMIME"])
            s.quit()
            got = wait_for(lambda: next((m for m in pf.messages("friend") if marker.encode() in m), None), 60,
                           what="the message in the Postfix peer's Maildir")
            check("K\u00e4se".encode("utf-8") in got and b"quoted-printable" not in got, "sent unconverted:\n%r" % got)
            # Postfix stores LF line ends (and adds its own fields on top).
            stored = got.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            check_eq(sorted(verify_all(stored, records)), ["ed25519-sha256", "rsa-sha256"],
                     "signatures verified at the peer")


def test_bdat_submission_signed():
    """BDAT (RFC 3030) in two chunks, 8-bit body and a long line: the stored octets verify."""
    with tempfile.TemporaryDirectory(dir=_root_dir()) as work:
        p, records = server_with_keys(work, (("ed25519", "e1"),))
        with p:
            marker, msg = make_message(sender=ALICE, to=REMOTE)
            c = RawConn(p.port("submissions"), tls=True)
            c.expect_reply(220)
            c.send("EHLO client.example" + "\r\n")
            c.expect_reply(250)
            auth = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + ALICE_PW.encode()).decode()
            c.send("AUTH PLAIN " + auth + "\r\n")
            c.expect_reply(235)
            c.send("MAIL FROM:<%s> BODY=8BITMIME\r\n" % ALICE)
            c.expect_reply(250)
            c.send("RCPT TO:<%s>\r\n" % REMOTE)
            c.expect_reply(250)
            half = len(msg) // 2
            c.send(b"BDAT %d\r\n" % half + msg[:half])
            c.expect_reply(250)
            c.send(b"BDAT %d LAST\r\n" % (len(msg) - half) + msg[half:])
            c.expect_reply(250)
            c.send("QUIT" + "\r\n")
            c.close()
            stored = queued_message(p, marker)
            check_eq(verify_all(stored, records), ["ed25519-sha256"], "BDAT signature")


def test_grant_holder_signed():
    with tempfile.TemporaryDirectory(dir=_root_dir()) as work:
        p, records = server_with_keys(work)
        with p:
            p.pop3_login(ALICE, ALICE_PW, tls="implicit", source="127.0.0.2").quit()
            s = p.smtp("mx", source="127.0.0.2")
            marker, msg = make_message(sender=ALICE, to=REMOTE)
            expect(s.mail(ALICE), 250)
            expect(s.rcpt(REMOTE), 250, what="relay on the grant")
            expect(s.data(msg), 250)
            s.quit()
            check_eq(sorted(verify_all(queued_message(p, marker), records)), ["ed25519-sha256", "rsa-sha256"],
                     "grant holder's signatures")


def test_unauthenticated_and_keyless_mail_not_signed():
    with tempfile.TemporaryDirectory(dir=_root_dir()) as work:
        p, records = server_with_keys(work)
        with p:
            # MX mail to a local user with a From of the signed domain: not signed.
            s = p.smtp("mx", source="127.0.0.3")
            marker, msg = make_message(sender=ALICE, to=BOB)
            expect(s.mail(ALICE), 250)
            expect(s.rcpt(BOB), 250)
            expect(s.data(msg), 250)
            s.quit()
            stored = wait_for(lambda: p.maildir_find(BOB, marker), 10.0, what="delivered to bob")[0]
            check(b"DKIM-Signature" not in stored, "unauthenticated MX mail was signed")
            p.log_contains(r"event=dkim\.skip reason=not_authenticated")
            # An authenticated user whose From domain has no key: not signed.
            check(b"DKIM-Signature" not in submitted(p, CAROL, CAROL_PW), "keyless domain signed")
            p.log_contains(r"event=dkim\.skip reason=no_key domain=example\.org")
            # Two From addresses: not signed, and said so.
            two = submitted(p, ALICE, ALICE_PW, from_header=b"From: <%s>, <x@example.test>" % ALICE.encode())
            check(b"DKIM-Signature" not in two, "two-author mail signed")
            p.log_contains(r"event=dkim\.skip reason=multiple_from")
            # Review finding: a customer of another domain (carol@example.org) who writes a
            # signed domain in From got example.test's signatures (DMARC pass for a forgery).
            forged = submitted(p, CAROL, CAROL_PW, from_header=b"From: <ceo@example.test>")
            check(b"DKIM-Signature" not in forged, "another domain's From signed")
            p.log_contains(r"event=dkim\.skip reason=from_not_own domain=example\.test")
            # Nor another customer's address in the user's own (shared) domain.
            other = submitted(p, ALICE, ALICE_PW, from_header=b"From: Support <erin@example.test>")
            check(b"DKIM-Signature" not in other, "another user's From signed")
            # A sender address of the account (dave may send as team@) is the user's own.
            team = submitted(p, "dave@example.test", "dave-Secret4", sender="team@example.test")
            check(b"DKIM-Signature" in team, "the account's sender address not signed")
            check(p.metric("postern_events_total", {"event": "dkim", "label": "not_authenticated"}) >= 1 and p.metric("postern_events_total", {"event": "dkim", "label": "no_key"}) >= 1 and
                  p.metric("postern_events_total", {"event": "dkim", "label": "multiple_from"}) >= 1, "skip reasons in /metrics")


def test_world_readable_key_refused_at_start():
    with tempfile.TemporaryDirectory(dir=_root_dir()) as work:
        p, _ = server_with_keys(work, (("ed25519", "e1"),))
        keyfile = os.path.join(work, "dkim", "example.test", "e1.key")
        os.chmod(keyfile, 0o644)
        # SIGHUP keeps the old keys and says why.
        p.proc.send_signal(signal.SIGHUP)
        p.log_contains(r"event=dkim\.reload result=fail .*chmod o-rwx", timeout=15)
        p.stop()
        try:
            p.start()
        except TestFailure:
            pass
        check(p.start_failure is not None, "posternd started with a world-readable DKIM key")
        check("chmod o-rwx" in p.log_text(), "start-up error names the fix:\n" + p.tail())



def test_cluster_nodes_sign_with_the_database_key():
    """Keys in PostgreSQL (keygen --db, dkim.keys_in_database): two nodes sign with the same key."""
    pg = P.PgServer()  # schema migrated by posternctl db migrate, 006_dkim included
    try:
        # The shared database and the key source (explicit: the shipped defaults are off).
        cluster = {"cluster.conninfo": pg.conninfo(), "cluster.password_file": pg.password_file,
                   "dkim.keys_in_database": "true"}
        a = Postern(config=cluster, name="node-a")
        with a:
            out = ok(ctl(a, "dkim", "keygen", "example.test", "--db", "--selector", "c1",
                         "--algorithm", "ed25519"), "dkim keygen --db")
            m = [TXT_LINE.match(l) for l in out.splitlines()]
            m = [x for x in m if x]
            check(len(m) == 1, "keygen --db printed one record:\n" + out)
            records = {"c1._domainkey.example.test.": "".join(re.findall(r'"([^"]*)"', m[0].group(3)))}
            check_eq(pg.sql("SELECT domain || ' ' || selector || ' ' || algorithm FROM dkim_keys"),
                     ["example.test c1 ed25519"], "dkim_keys rows")
            r = ctl(a, "dkim", "keygen", "example.test", "--db", "--selector", "c1")
            check_eq(r.returncode, 73, "a second key c1 is refused:\n" + r.stderr)
            check("example.test\tc1\ted25519\tdb" in ok(ctl(a, "dkim", "list"), "dkim list"), "list shows db key")
            a.proc.send_signal(signal.SIGHUP)
            a.log_contains(r"event=dkim\.reload result=ok keys=1", timeout=15)
            b = Postern(config=cluster, name="node-b")  # reads the key at start-up
            with b:
                b.log_contains(r"event=dkim\.keys result=ok keys=1")
                for node in (a, b):
                    s = node.submission(ALICE, ALICE_PW)
                    marker, msg = make_message(sender=ALICE, to=REMOTE)
                    s.sendmail(ALICE, [REMOTE], msg)
                    s.quit()
                    check_eq(verify_all(queued_message(node, marker), records), ["ed25519-sha256"],
                             "signature of " + node.dir)
    finally:
        pg.destroy()

if __name__ == "__main__":
    run_tests(globals())
