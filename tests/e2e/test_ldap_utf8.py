#!/usr/bin/env python3
"""UTF-8 local parts (RFC 6531) in the LDAP backend against a real slapd: a user whose
address is jörg@ldap.test logs in with SMTP AUTH PLAIN over submission (STARTTLS) and over
POP3, sends with MAIL FROM:<jörg@ldap.test> SMTPUTF8, receives mail addressed to the UTF-8
address and to an LDAP alias with a UTF-8 local part (øle@ldap.test) in the Maildir
ldap.test/jörg, read back byte for byte over POP3 RETR. The standard `mail` attribute is
IA5String (ASCII only), so the directory keeps these addresses in DirectoryString (UTF-8)
attributes and the backend's filters and attributes are configured for them."""

import base64
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from postern_harness import (Postern, TestFailure, _root_dir, assert_stored_equals, check,  # noqa: E402
                             check_eq, expect, plain_ir, pop_find, run_tests, wait_for)
import ldap_support as L  # noqa: E402

JOERG, JOERG_PW = "j\u00f6rg@ldap.test", "j\u00f6rg-Ldap7"   # UTF-8 local part and password
OLE = "\u00f8le@ldap.test"                                      # alias -> JOERG
ALICE = "alice@example.test"                                    # passwd-file user of the harness

# The LDAP backend's keys that differ from ldap_support.ldap_backend_config(), each for
# UTF-8: `mail` and the test schema's mail* attributes are IA5String (ASCII only).
UTF8_LDAP = {
    # Logins and recipients are found by `uid` (DirectoryString, UTF-8, caseIgnoreMatch)
    # holding the whole address.
    "auth.backend.ldap.user_filter": "(&(objectClass=inetOrgPerson)(uid=%u))",
    "auth.backend.ldap.recipient_filter": "(&(objectClass=inetOrgPerson)(uid=%u))",
    # The user's addresses (sender addresses, user name) come from `uid` too.
    "auth.backend.ldap.mail_attributes": "uid",
    # Aliases: organizationalRole entries (core schema), the alias address in `cn` and the
    # destination in `description`, both DirectoryString.
    "auth.backend.ldap.alias_filter": "(&(objectClass=organizationalRole)(cn=%u))",
    "auth.backend.ldap.alias_attribute": "description",
}


def b64(s):
    return base64.b64encode(s.encode("utf-8")).decode("ascii")


def utf8_ldif():
    """The UTF-8 user and alias; non-ASCII values base64 (RFC 2849 SAFE-STRING is ASCII)."""
    people, aliases = "ou=people," + L.SUFFIX, "ou=aliases," + L.SUFFIX
    return "\n".join([
        "dn:: " + b64("uid=%s,%s" % (JOERG, people)),
        "objectClass: inetOrgPerson",
        "uid:: " + b64(JOERG),
        "cn: joerg", "sn: joerg",
        "userPassword:: " + b64(JOERG_PW),
        "",
        "dn:: " + b64("cn=%s,%s" % (OLE, aliases)),
        "objectClass: organizationalRole",
        "cn:: " + b64(OLE),
        "description:: " + b64(JOERG),
        "",
    ]) + "\n"


def utf8_slapd(root):
    """slapd with only the base entries (make_ldif with no users/aliases) plus utf8_ldif()."""
    d = L.Slapd(root, "u8", users={}, aliases={}, start=False)
    path = os.path.join(d.dir, "utf8.ldif")
    with open(path, "w", encoding="ascii") as f:
        f.write(utf8_ldif())
    r = subprocess.run([L.SLAPADD, "-f", d.conf_path, "-l", path], capture_output=True, timeout=60)
    if r.returncode != 0:
        raise TestFailure("slapadd of the UTF-8 entries failed:\n" + r.stderr.decode("utf-8", "replace"))
    return d.start()


def utf8_message(marker, sender, to):
    return ("Date: Fri, 27 Nov 2026 12:00:00 +0000\r\n"
            "Message-ID: <%s@client.example>\r\n"
            "From: <%s>\r\n"
            "To: <%s>\r\n"
            "Subject: Gr\u00fc\u00dfe \u2013 %s\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n"
            "K\u00e4se, \u65e5\u672c\u8a9e.\r\n" % (marker, sender, to, marker)).encode("utf-8")


def test_ldap_utf8_user_login_delivery_alias_and_pop3():
    root = _root_dir()
    with utf8_slapd(root) as d:
        secret = L.write_secret(root, name="secret-u8-%d" % os.getpid())
        cfg = L.ldap_backend_config([d.uri], secret, UTF8_LDAP)
        # No auth cache: every login and recipient lookup goes to slapd.
        with Postern(config=cfg, overrides={"auth.cache.size": "0"}) as p:
            # SMTP AUTH PLAIN over submission after STARTTLS (RFC 4616: UTF-8; smtplib's
            # auth() encodes ASCII only, so the initial response is built by hand).
            s = p.smtp("submission", starttls=True)
            expect(s.docmd("AUTH", "PLAIN " + plain_ir(JOERG, "j\u00f6rg-wrong")), 535, "5.7.8",
                   what="AUTH with a wrong password")
            s.quit()
            s = p.smtp("submission", starttls=True)
            expect(s.docmd("AUTH", "PLAIN " + plain_ir(JOERG, JOERG_PW)), 235, "2.7.0", what="AUTH as jörg")
            # Sending as the UTF-8 address: it is one of the user's addresses (from uid).
            marker_out = "u8ldap-out-%d" % os.getpid()
            msg_out = utf8_message(marker_out, JOERG, ALICE)
            check_eq(s.sendmail(JOERG, [ALICE], msg_out, mail_options=["SMTPUTF8"]), {}, "refused")
            s.quit()
            got = wait_for(lambda: p.maildir_find(ALICE, marker_out), 10, what="jörg's message at alice")
            assert_stored_equals(got[0], msg_out, "alice's Maildir file")

            # Receiving: to the UTF-8 address, then to the UTF-8 alias, over the MX listener.
            sender = "s\u00e9bastien@remote.example"
            markers = {}
            for to in (JOERG, OLE):
                markers[to] = "u8ldap-%s-%d" % ("direct" if to == JOERG else "alias", os.getpid())
                msg = utf8_message(markers[to], sender, to)
                s = p.smtp("mx")
                check_eq(s.sendmail(sender, [to], msg, mail_options=["SMTPUTF8"]), {}, "refused " + to)
                s.quit()
                stored = wait_for(lambda: p.maildir_find(JOERG, markers[to]), 10, what="delivery for " + to)
                check_eq(len(stored), 1, "one copy for " + to)
                assert_stored_equals(stored[0], msg, "Maildir file for " + to)
                markers[to] = (markers[to], stored[0])
            check(os.path.isdir(os.path.join(p.mail_root, "ldap.test", "j\u00f6rg")),
                  "Maildir is ldap.test/jörg (the UTF-8 local part)")
            # Unknown UTF-8 addresses of the LDAP domain are refused.
            s = p.smtp("mx")
            s.command_encoding = "utf-8"  # smtplib: raw UTF-8 commands (SMTPUTF8 below)
            expect(s.docmd("MAIL", "FROM:<%s> SMTPUTF8" % sender), 250)
            code, _ = s.docmd("RCPT", "TO:<j\u00f6rgen@ldap.test>")
            check_eq(code, 550, "RCPT to an unknown UTF-8 address")
            s.quit()

            # POP3 as the UTF-8 user (poplib sends commands as UTF-8): both messages byte-exact.
            pop = p.pop3_login(JOERG, JOERG_PW)
            for to, (marker, stored) in markers.items():
                _, raw = pop_find(pop, marker)
                check_eq(raw, stored, "POP3 RETR of the message to %s is the Maildir file" % to)
            pop.quit()


if __name__ == "__main__":
    run_tests(globals())
