#!/usr/bin/env python3
"""Privilege separation and TLS operations: serving as root is refused unless allowed; the
daemon binds, reads its key, then drops to server.user and still delivers and serves mail;
a world-readable key is refused; SIGHUP reloads certificate and key without dropping the
sessions in progress; an ECDSA chain beside the RSA one is served to the clients that
support it; an IPv6 listener on ::1 works."""

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (Postern, DEFAULT_USERS, TestFailure, check, check_eq, expect,
                             make_message, run_tests, smtp_auth, tls_context, wait_for)

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
IS_ROOT = os.geteuid() == 0


def new_cert(d, cn, rsa=False):
    cert, key = os.path.join(d, cn + ".crt"), os.path.join(d, cn + ".key")
    keyspec = ["-newkey", "rsa:2048"] if rsa else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    subprocess.run(["openssl", "req", "-x509"] + keyspec + [
                    "-nodes", "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    os.chmod(key, 0o600)
    return cert, key


def served_cert_digest(port, context=None):
    """SHA-256 of the certificate the implicit-TLS listener presents."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with (context or tls_context()).wrap_socket(raw, server_hostname="localhost") as t:
            return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def tls12_context(ciphers):
    """A TLS 1.2 client offering only `ciphers`: the cipher's authentication (ECDSA or
    RSA) decides which of the server's chains it can accept."""
    ctx = tls_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    return ctx


def openssl_sigalgs_cert_digest(port, sigalgs):
    """TLS 1.3 handshake with openssl s_client limited to `sigalgs`; SHA-256 of the
    certificate it was sent."""
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_3",
                        "-sigalgs", sigalgs, "-servername", "localhost"],
                       input=b"", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=20)
    pem = r.stdout.decode("ascii", "replace")
    begin = pem.find("-----BEGIN CERTIFICATE-----")
    end = pem.find("-----END CERTIFICATE-----")
    check(begin >= 0 and end > begin, "s_client got a certificate:\n" + pem[-2000:])
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem[begin:end + 25])).hexdigest()


def file_digest(cert_path):
    pem = open(cert_path).read()
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def test_refuses_to_serve_as_root_unless_allowed():
    if not IS_ROOT:
        print("  (not root: nothing to refuse)")
        return
    p = Postern(overrides={"server.allow_root": "false"}, start=False)
    try:
        p.start()
        raise AssertionError("posternd served as root without server.user or server.allow_root")
    except TestFailure:
        pass
    check_eq(p.start_failure, 78, "exit code EX_CONFIG")
    check("refusing to serve clients as root" in p.log_text(), "clear message:\n" + p.tail())


def test_drops_to_server_user_and_still_serves():
    if not IS_ROOT:
        print("  (not root: cannot switch users)")
        return
    p = Postern(overrides={"server.allow_root": "false", "server.user": "nobody"}, start=False)
    # The unprivileged user must reach its own files: mail root, queue, ready file; the key
    # stays root-only (read before the drop).
    nobody = p.prepare_unprivileged("nobody")
    with p.start():
        status = open("/proc/%d/status" % p.proc.pid).read()
        uid_line = [l for l in status.splitlines() if l.startswith("Uid:")][0].split()[1:]
        gid_line = [l for l in status.splitlines() if l.startswith("Gid:")][0].split()[1:]
        check_eq(uid_line, [str(nobody.pw_uid)] * 4, "every uid is nobody's")
        check_eq(gid_line, [str(nobody.pw_gid)] * 4, "every gid is nobody's group")
        s = p.submission(ALICE, ALICE_PW, implicit=True)
        marker, msg = make_message(sender=ALICE, to=ALICE)
        expect(s.sendmail(ALICE, [ALICE], msg) or (250, b""), 250)
        s.quit()
        pop = p.pop3_login(ALICE, ALICE_PW)
        count, _ = pop.stat()
        check_eq(count, 1, "message delivered by the unprivileged daemon")
        pop.quit()
        files = p.all_mailbox_files()
        check(files, "a message file in the Maildir")
        check_eq(os.stat(files[0]).st_uid, nobody.pw_uid, "mail owned by the server user")


def test_world_readable_key_refused():
    p = Postern(start=False)
    key = os.path.join(p.dir, "open.key")
    shutil.copy(p.key, key)
    os.chmod(key, 0o644)
    p.overrides["tls.key_file"] = key
    try:
        p.start()
        raise AssertionError("a world-readable key was accepted")
    except TestFailure:
        pass
    check("readable by every user" in p.log_text(), "names the problem and the fix:\n" + p.tail())


def test_sighup_reloads_certificate_without_dropping_sessions():
    p = Postern(start=False)
    cert1, key1 = new_cert(p.dir, "first")
    p.overrides.update({"tls.cert_file": cert1, "tls.key_file": key1})
    with p.start():
        check_eq(served_cert_digest(p.port("submissions")), file_digest(cert1), "first certificate served")
        held = p.submission(ALICE, ALICE_PW)  # a TLS session in progress
        cert2, key2 = new_cert(p.dir, "second")
        shutil.copy(cert2, cert1)
        shutil.copy(key2, key1)
        p.proc.send_signal(signal.SIGHUP)
        p.log_contains(r"event=tls\.reload result=ok")
        check_eq(served_cert_digest(p.port("submissions")), file_digest(cert2), "new certificate after SIGHUP")
        # The session that started before the reload carries on.
        marker, msg = make_message(sender=ALICE, to=ALICE)
        held.sendmail(ALICE, [ALICE], msg)
        held.quit()
        check_eq(len(p.maildir_find(ALICE, marker)), 1, "message over the old session delivered")
        # A broken pair is refused and the current one stays.
        with open(key1, "w") as f:
            f.write("not a key\n")
        p.proc.send_signal(signal.SIGHUP)
        p.log_contains(r"event=tls\.reload result=fail")
        check_eq(served_cert_digest(p.port("submissions")), file_digest(cert2), "still the good certificate")
        # So is a certificate with another certificate's key (a renewal that replaced one file
        # of the two). Review finding: OpenSSL dropped the key silently, the reload said ok,
        # and every handshake failed from then on.
        cert3, key3 = new_cert(p.dir, "third")
        shutil.copy(cert3, cert1)
        shutil.copy(key2, key1)
        p.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: p.log_count(r"event=tls\.reload result=fail") == 2, 10, what="the second refused reload")
        check(p.log_count(r"event=tls\.reload result=fail .*is not the key of tls\.cert_file") == 1, p.tail())
        check_eq(served_cert_digest(p.port("submissions")), file_digest(cert2), "still the good certificate")
        s = p.submission(ALICE, ALICE_PW)  # and STARTTLS still works
        s.quit()


def expect_refused_at_start(q, message):
    """q (not started) must fail to start, and its log must name the problem (`message`)."""
    try:
        q.start()
    except TestFailure:
        check(message in q.log_text(), "names the problem (%s):\n%s" % (message, q.tail()))
        return
    raise AssertionError("started with %r" % q.overrides)


def test_mismatched_key_or_bad_cipher_list_refused_at_start():
    """Start-up refuses what would leave every handshake failing or weaker than configured:
    tls.key_file of another certificate (also an RSA key named as tls.ecdsa_key_file) and a
    tls.ciphers list with no usable name (OpenSSL's DEFAULT was used instead)."""
    cases = []
    p = Postern(start=False)
    other_cert, other_key = new_cert(p.dir, "other")
    cases.append(({"tls.key_file": other_key}, "is not the key of tls.cert_file"))
    ec_cert, _ = new_cert(p.dir, "ecdsa")
    cases.append(({"tls.ecdsa_cert_file": ec_cert, "tls.ecdsa_key_file": p.key},
                  "is not the key of tls.ecdsa_cert_file"))
    cases.append(({"tls.ciphers": "TLS_AES_128_GCM_SHA256"}, "tls.ciphers: no usable TLS 1.2 cipher"))
    for overrides, message in cases:
        q = Postern(start=False)
        q.overrides.update(overrides)
        expect_refused_at_start(q, message)


def test_ecdsa_chain_beside_rsa():
    """tls.ecdsa_cert_file/tls.ecdsa_key_file (test change): an RSA and an ECDSA chain
    configured together; each client gets the one it supports, ECDSA first; SIGHUP
    reloads both; a non-ECDSA certificate in the ECDSA slot is refused at start-up."""
    p = Postern(start=False)
    rsa_cert, rsa_key = new_cert(p.dir, "rsa", rsa=True)
    ec_cert, ec_key = new_cert(p.dir, "ecdsa")
    p.overrides.update({"tls.cert_file": rsa_cert, "tls.key_file": rsa_key,
                        "tls.ecdsa_cert_file": ec_cert, "tls.ecdsa_key_file": ec_key})
    with p.start():
        port = p.port("submissions")
        check_eq(served_cert_digest(port), file_digest(ec_cert), "a modern client gets the ECDSA chain")
        check_eq(served_cert_digest(port, tls12_context("ECDHE-RSA-AES128-GCM-SHA256")), file_digest(rsa_cert),
                 "an RSA-only TLS 1.2 client gets the RSA chain")
        check_eq(served_cert_digest(port, tls12_context("ECDHE-ECDSA-AES128-GCM-SHA256")), file_digest(ec_cert),
                 "an ECDSA TLS 1.2 client gets the ECDSA chain")
        check_eq(openssl_sigalgs_cert_digest(port, "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"), file_digest(rsa_cert),
                 "TLS 1.3 with RSA signatures only: RSA chain")
        check_eq(openssl_sigalgs_cert_digest(port, "ecdsa_secp256r1_sha256"), file_digest(ec_cert),
                 "TLS 1.3 with ECDSA signatures: ECDSA chain")
        # Mail flows over both (STARTTLS on submission, full session).
        s = p.submission(ALICE, ALICE_PW)
        marker, msg = make_message(sender=ALICE, to=ALICE)
        s.sendmail(ALICE, [ALICE], msg)
        s.quit()
        check_eq(len(p.maildir_find(ALICE, marker)), 1, "delivered over the dual-certificate listener")
        # SIGHUP reloads the ECDSA pair too.
        ec2_cert, ec2_key = new_cert(p.dir, "ecdsa2")
        shutil.copy(ec2_cert, ec_cert)
        shutil.copy(ec2_key, ec_key)
        p.proc.send_signal(signal.SIGHUP)
        p.log_contains(r"event=tls\.reload result=ok")
        check_eq(served_cert_digest(port), file_digest(ec2_cert), "new ECDSA certificate after SIGHUP")
        check_eq(served_cert_digest(port, tls12_context("ECDHE-RSA-AES128-GCM-SHA256")), file_digest(rsa_cert),
                 "RSA chain still served after SIGHUP")

    # An RSA certificate in the ECDSA slot would silently replace the RSA chain: refused.
    q = Postern(start=False)
    r2_cert, r2_key = new_cert(q.dir, "rsa2", rsa=True)
    q.overrides.update({"tls.ecdsa_cert_file": r2_cert, "tls.ecdsa_key_file": r2_key})
    expect_refused_at_start(q, "is not an ECDSA certificate")

    # Review finding: an ECDSA tls.cert_file and a second ECDSA chain: the second replaced
    # the first silently (no RSA chain left, tls.cert_file unused). Refused.
    q = Postern(start=False)
    e1_cert, e1_key = new_cert(q.dir, "ec1")
    e2_cert, e2_key = new_cert(q.dir, "ec2")
    q.overrides.update({"tls.cert_file": e1_cert, "tls.key_file": e1_key,
                        "tls.ecdsa_cert_file": e2_cert, "tls.ecdsa_key_file": e2_key})
    expect_refused_at_start(q, "tls.cert_file is an ECDSA certificate already")


def _have_ipv6_loopback():
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
        return True
    except OSError:
        print("  (no ::1 here)")
        return False


def test_ipv6_listener():
    if not _have_ipv6_loopback():
        return
    p = Postern(start=False)
    with socket.socket(socket.AF_INET6) as t:
        t.bind(("::1", 0))
        port = t.getsockname()[1]
    p.extra_config.update({"listeners": "mx, submission, submissions, pop3, pop3s, mx6",
                           "listener.mx6.address": "::1", "listener.mx6.port": str(port),
                           "listener.mx6.protocol": "smtp", "listener.mx6.role": "mx"})
    with p.start():
        import smtplib
        s = smtplib.SMTP("::1", port, timeout=10)
        expect(s.ehlo("v6.example"), 250)
        expect(s.mail("x@remote.example"), 250)
        expect(s.rcpt(ALICE), 250)
        marker, msg = make_message(sender="x@remote.example", to=ALICE)
        expect(s.data(msg), 250)
        s.quit()
        found = p.maildir_find(ALICE, marker)
        check_eq(len(found), 1, "delivered over IPv6")
        check(b"[IPv6:::1]" in found[0], "IPv6 client literal in Received")


def test_ipv6_wildcard_beside_ipv4_on_the_same_port():
    """etc/postern-production.properties pairs mx on 0.0.0.0:25 with mx6 on [::]:25. A dual-stack
    "::" socket would collide with the IPv4 listener of the same port (EADDRINUSE, exit 78), so
    IPv6 listeners are bound IPv6-only. Changed for the test: two extra listeners on one free
    port, v4 on 127.0.0.1 and v6 on "::" (clients connect over 127.0.0.1 and ::1 only)."""
    if not _have_ipv6_loopback():
        return
    p = Postern(start=False)
    with socket.socket() as t:
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
    p.extra_config.update({"listeners": "mx, submission, submissions, pop3, pop3s, v4, v6",
                           "listener.v4.address": "127.0.0.1", "listener.v4.port": str(port),
                           "listener.v4.protocol": "smtp", "listener.v4.role": "mx",
                           "listener.v6.address": "::", "listener.v6.port": str(port),
                           "listener.v6.protocol": "smtp", "listener.v6.role": "mx"})
    import smtplib
    with p.start():
        for host in ("127.0.0.1", "::1"):
            s = smtplib.SMTP(host, port, timeout=10)
            expect(s.ehlo("dual.example"), 250, what="EHLO over " + host)
            s.quit()
        check(re.search(r"listener=v6 .*ip=::1|ip=::1 .*listener=v6", p.log_text()),
              "the ::1 client was served by the v6 listener:\n" + p.tail(20))


def test_ipv6_wildcard_alone_is_dual_stack():
    """A "::" listener with no IPv4 listener on its port keeps taking IPv4 clients too (a
    configuration that relied on it before IPv6 listeners beside IPv4 ones became IPv6-only).
    Changed for the test: one extra listener on "::" and a free port (clients: 127.0.0.1, ::1)."""
    if not _have_ipv6_loopback():
        return
    p = Postern(start=False)
    with socket.socket() as t:
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
    p.extra_config.update({"listeners": "mx, submission, submissions, pop3, pop3s, any",
                           "listener.any.address": "::", "listener.any.port": str(port),
                           "listener.any.protocol": "smtp", "listener.any.role": "mx"})
    import smtplib
    with p.start():
        for host in ("127.0.0.1", "::1"):
            s = smtplib.SMTP(host, port, timeout=10)
            expect(s.ehlo("dual.example"), 250, what="EHLO over " + host)
            s.quit()


if __name__ == "__main__":
    run_tests(globals())
