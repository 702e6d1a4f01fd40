#!/usr/bin/env python3
"""TLS defaults that scanners pass (issue 17): with the shipped tls.* settings, testssl.sh
finds nothing above INFO on an implicit-TLS port (pop3s) and a STARTTLS port (submission),
apart from what a self-signed test certificate is bound to get (no trusted chain, no
CRL/OCSP, no CAA record). Plus direct checks with Python's ssl and openssl s_client: TLS 1.2
CBC and RSA-key-exchange suites are refused on every TLS listener, ECDHE+AEAD accepted; the
TLS 1.3 suites and the key exchange groups are the configured ones; sessions resume by
ticket (TLS 1.2 and 1.3) and by session ID.

testssl.sh (Debian package testssl.sh, command `testssl`) is installed by scripts/test."""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import Postern, TestFailure, check, check_eq, run_tests

# Findings a self-signed certificate on a test host is bound to get; none of them is about
# the server's TLS configuration. (The IDs carry a " <cert#N>" suffix with several certs.)
CERT_TRUST_IDS = {
    "cert_chain_of_trust",      # self signed
    "cert_trust",               # host name / trust
    "cert_caIssuers",
    "cert_revocation",          # neither CRL nor OCSP URI
    "cert_ocspURL", "cert_crlDistributionPoints", "OCSP_stapling", "cert_mustStapleExtension",
    "certificate_transparency",
    "DNS_CAArecord",            # no CAA record for a loopback address
}
# testssl's own problems (its local openssl lacks RC4/GOST, a resumption heuristic that
# counts the SMTP dialogue as handshake bytes, a ticket race of `s_client </dev/null` against
# a server that talks first): not findings about the server. Resumption is checked below
# with a client that waits for the greeting.
SEVERITY_ORDER = ["DEBUG", "INFO", "OK", "LOW", "MEDIUM", "HIGH", "CRITICAL"]

SCAN_TIMEOUT = 420  # seconds per testssl run (~60-100 s; 4 min seen on a 2-core machine at load 10)


def testssl_binary():
    for name in ("testssl", "testssl.sh"):
        path = shutil.which(name)
        if path:
            return path
    raise TestFailure("testssl.sh is not installed (Debian package testssl.sh; scripts/test installs it)")


def rsa_cert(d):
    """An RSA-2048 certificate valid for 90 days (so the ECDHE-RSA suites are the ones on
    offer, as with most ISP certificates, and no expiry warning), CN/SAN localhost."""
    cert, key = os.path.join(d, "rsa.crt"), os.path.join(d, "rsa.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days", "90",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    os.chmod(key, 0o600)
    return cert, key


def tls_server(d, **extra):
    cert, key = rsa_cert(d)
    overrides = {
        # The scan's certificate (see rsa_cert); every tls.* setting stays the shipped default
        # unless a test names it in `extra`.
        "tls.cert_file": cert, "tls.key_file": key,
        # testssl opens a few hundred connections from 127.0.0.1 one after another: no rate
        # limit may refuse them (the shipped default is none; stated here so it stays so).
        "connections.rate_per_ip": "0",
    }
    overrides.update({k.replace("__", "."): v for k, v in extra.items()})
    return Postern(overrides=overrides, name="tlsscan")


# --------------------------------------------------------------------------------------
# handshakes with Python's ssl

def client_context(max_version=None, ciphers=None, tickets=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if max_version:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def read_line(sock):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise TestFailure("connection closed before a full line: %r" % buf)
        buf += chunk
    return buf


def read_smtp_reply(sock):
    lines = []
    while True:
        line = read_line(sock)
        lines.append(line)
        if line[3:4] != b"-":
            return b"".join(lines)


def tls_connect(p, listener, ctx, session=None):
    """A TLS session on any TLS listener (STARTTLS/STLS first where needed); returns the
    SSLSocket after the (first) greeting was read, so a TLS 1.3 ticket has arrived."""
    kind = {"pop3s": "implicit", "submissions": "implicit", "submission": "smtp", "mx": "smtp",
            "pop3": "pop3"}[listener]
    raw = socket.create_connection(("127.0.0.1", p.port(listener)), timeout=15)
    try:
        if kind == "smtp":
            check(read_smtp_reply(raw).startswith(b"220"), "SMTP greeting")
            raw.sendall(b"EHLO scan.example\r\n")
            check(read_smtp_reply(raw).startswith(b"250"), "EHLO")
            raw.sendall(b"STARTTLS\r\n")
            check(read_smtp_reply(raw).startswith(b"220"), "STARTTLS")
        elif kind == "pop3":
            check(read_line(raw).startswith(b"+OK"), "POP3 greeting")
            raw.sendall(b"STLS\r\n")
            check(read_line(raw).startswith(b"+OK"), "STLS")
        t = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    except BaseException:
        raw.close()
        raise
    if kind == "implicit":
        first = read_smtp_reply(t) if listener == "submissions" else read_line(t)
        check(first[:3] in (b"220", b"+OK"), "greeting over implicit TLS: %r" % first)
    elif kind == "smtp":
        t.sendall(b"EHLO scan.example\r\n")
        check(read_smtp_reply(t).startswith(b"250"), "EHLO after STARTTLS")
    else:
        t.sendall(b"CAPA\r\n")
        check(read_line(t).startswith(b"+OK"), "CAPA after STLS")
    return t


def quit_session(t, listener):
    """QUIT and wait for the server to close: a session the server did not end with a TLS
    close_notify is not kept for resumption by ID (OpenSSL drops it), as with real clients."""
    t.sendall(b"QUIT\r\n")
    reply = read_line(t)
    check(reply[:3] in (b"221", b"+OK"), "QUIT: %r" % reply)
    try:
        while t.recv(4096):
            pass
    except (ssl.SSLError, OSError):
        pass
    t.close()


def handshake_fails(p, listener, ctx):
    try:
        t = tls_connect(p, listener, ctx)
    except (ssl.SSLError, ConnectionError) as e:
        return str(e)
    t.close()
    return None


TLS_LISTENERS = ["pop3s", "submissions", "submission", "mx", "pop3"]


def test_tls12_cbc_and_rsa_kex_refused_aead_accepted():
    with tempfile.TemporaryDirectory() as d:
        with tls_server(d) as p:
            for listener in TLS_LISTENERS:
                for bad in ("ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384", "AES128-GCM-SHA256",
                            "AES128-SHA", "DHE-RSA-AES128-GCM-SHA256"):
                    err = handshake_fails(p, listener, client_context(ssl.TLSVersion.TLSv1_2, bad))
                    check(err is not None, "%s: TLS 1.2 with only %s must be refused" % (listener, bad))
                for good in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                             "ECDHE-RSA-CHACHA20-POLY1305"):
                    t = tls_connect(p, listener, client_context(ssl.TLSVersion.TLSv1_2, good))
                    check_eq(t.version(), "TLSv1.2", "%s %s" % (listener, good))
                    check_eq(t.cipher()[0], good, "%s: negotiated suite" % listener)
                    t.close()
                # A client offering everything gets TLS 1.3 with one of the three suites.
                t = tls_connect(p, listener, client_context())
                check_eq(t.version(), "TLSv1.3", "%s: best version" % listener)
                check(t.cipher()[0] in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                        "TLS_CHACHA20_POLY1305_SHA256"), "%s: %s" % (listener, t.cipher()))
                t.close()
            # Server preference: a client preferring CHACHA20 still gets the server's first
            # choice (AES128-GCM) in TLS 1.2.
            t = tls_connect(p, "pop3s", client_context(
                ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256"))
            check_eq(t.cipher()[0], "ECDHE-RSA-AES128-GCM-SHA256", "server cipher order")
            t.close()


def s_client(port, *args):
    r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", "localhost"]
                       + list(args), input=b"", capture_output=True, timeout=30)
    return r.returncode, r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")


def test_groups_and_tls13_suites():
    with tempfile.TemporaryDirectory() as d:
        with tls_server(d) as p:
            port = p.port("pop3s")
            for group, want in (("X25519", "X25519"), ("P-256", "prime256v1"), ("P-384", "secp384r1")):
                for version in ("-tls1_2", "-tls1_3"):
                    rc, out = s_client(port, version, "-groups", group)
                    check(rc == 0 and "Server Temp Key" in out and want in out.split("Server Temp Key")[1][:60],
                          "%s %s must be accepted:\n%s" % (group, version, out[-1500:]))
            # Not configured: X448, P-521, finite-field groups (TLS 1.3; TLS 1.2 has no DHE).
            for group in ("X448", "P-521", "ffdhe2048"):
                rc, out = s_client(port, "-tls1_3", "-groups", group)
                check(rc != 0,
                      "group %s must be refused:\n%s" % (group, out[-1500:]))
            # TLS 1.3 suites: the CCM ones (not configured) are refused.
            rc, out = s_client(port, "-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256")
            check(rc != 0, "TLS_AES_128_CCM_SHA256 must be refused:\n" + out[-1500:])
            rc, out = s_client(port, "-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")
            check(rc == 0 and "TLS_CHACHA20_POLY1305_SHA256" in out, "CHACHA20 TLS 1.3 suite:\n" + out[-1500:])
            # TLS 1.1 and older: not offered.
            rc, out = s_client(port, "-tls1_1", "-cipher", "ALL:@SECLEVEL=0")
            check(rc != 0, "TLS 1.1 must be refused:\n" + out[-1500:])


def test_session_resumption():
    with tempfile.TemporaryDirectory() as d:
        with tls_server(d) as p:
            cases = [("TLS 1.2 ticket", client_context(ssl.TLSVersion.TLSv1_2)),
                     ("TLS 1.2 session ID", client_context(ssl.TLSVersion.TLSv1_2, tickets=False)),
                     ("TLS 1.3 ticket", client_context())]
            for listener in ("pop3s", "submission"):
                for what, ctx in cases:
                    t = tls_connect(p, listener, ctx)
                    check(not t.session_reused, "first connection is a full handshake")
                    session = t.session
                    if what == "TLS 1.2 ticket":
                        check(session.has_ticket, "%s: the server issued a ticket" % listener)
                    if what == "TLS 1.2 session ID":
                        check(not session.has_ticket and len(session.id) > 0, "%s: a session ID" % listener)
                    quit_session(t, listener)
                    t = tls_connect(p, listener, ctx, session=session)
                    check(t.session_reused, "%s: %s resumed" % (listener, what))
                    quit_session(t, listener)
            # After a restart the ticket keys are new: the old ticket gives a full handshake.
            ctx = client_context(ssl.TLSVersion.TLSv1_2)
            t = tls_connect(p, "pop3s", ctx)
            session = t.session
            t.close()
            p.restart()
            t = tls_connect(p, "pop3s", ctx, session=session)
            check(not t.session_reused, "a ticket from before a restart must not resume")
            t.close()


def test_no_tickets_without_a_cache_or_ticket_keys():
    """Review finding: with tls.session_cache_size = 0 and tls.ticket_key_rotation = 0 (the
    test's changes: resumption off), OpenSSL still sent TLS 1.3 clients stateful tickets
    that could never resume. None are sent now, and nothing resumes."""
    with tempfile.TemporaryDirectory() as d:
        with tls_server(d, tls__session_cache_size="0", tls__ticket_key_rotation="0") as p:
            for listener in ("pop3s", "submission"):
                ctx = client_context()
                t = tls_connect(p, listener, ctx)
                session = t.session
                check(session is None or not session.has_ticket, "%s: no ticket" % listener)
                quit_session(t, listener)
                if session is not None:
                    t = tls_connect(p, listener, ctx, session=session)
                    check(not t.session_reused, "%s: nothing to resume" % listener)
                    quit_session(t, listener)


# --------------------------------------------------------------------------------------
# testssl.sh

def run_testssl(binary, target, out_dir, tag, starttls=None):
    json_path = os.path.join(out_dir, tag + ".json")
    cmd = [binary, "--quiet", "--color", "0", "--warnings", "off", "--openssl-timeout", "5",
           "--connect-timeout", "5", "--sneaky", "--nodns", "none", "--jsonfile", json_path,
           # protocols, cipher categories, forward secrecy, server preference, server
           # defaults (certificate, tickets, resumption), vulnerabilities. Not the per-cipher
           # list (-e) and the client simulation (-c), which take minutes and judge nothing.
           "-p", "-s", "-f", "-P", "-S", "-U"]
    if starttls:
        cmd += ["-t", starttls]
    cmd.append(target)
    t0 = time.monotonic()
    # Its own process group: on a timeout the openssl children go too.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            cwd=out_dir, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=SCAN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise TestFailure("testssl %s did not finish within %d s\n%s"
                          % (tag, SCAN_TIMEOUT, out.decode("utf-8", "replace")[-4000:]))
    elapsed = time.monotonic() - t0
    text = out.decode("utf-8", "replace")
    if not os.path.exists(json_path):
        raise TestFailure("testssl wrote no JSON (exit %d)\n%s\n%s"
                          % (proc.returncode, text[-4000:], err.decode("utf-8", "replace")[-2000:]))
    with open(json_path) as f:
        findings = json.load(f)
    print("  testssl %s: %.0f s, %d findings, exit %d" % (tag, elapsed, len(findings), proc.returncode),
          flush=True)
    return findings, text


def judge(findings, text, tag):
    by_id = {}
    problems, notes = [], []
    for f in findings:
        fid = f["id"].split(" ")[0]
        sev = f["severity"]
        by_id.setdefault(fid, f)
        if sev in ("WARN", "FATAL"):
            (problems if sev == "FATAL" else notes).append("%s %s: %s" % (fid, sev, f["finding"]))
            continue
        if sev not in SEVERITY_ORDER:
            problems.append("%s: unknown severity %s" % (fid, sev))
        elif SEVERITY_ORDER.index(sev) > SEVERITY_ORDER.index("OK") and fid not in CERT_TRUST_IDS:
            problems.append("%s %s: %s" % (fid, sev, f["finding"]))
    if notes:
        print("  testssl %s notes (scan-side, not judged): %s" % (tag, "; ".join(notes)), flush=True)
    # The scan must really have looked at the server: these checks ran and passed.
    for fid, want in (("TLS1_2", "offered"), ("TLS1_3", "offered"), ("TLS1", "not offered"),
                      ("TLS1_1", "not offered"), ("SSLv3", "not offered"),
                      ("cipherlist_AVERAGE", "not offered"),  # obsolete CBC suites
                      ("cipherlist_3DES_IDEA", "not offered"), ("cipherlist_LOW", "not offered"),
                      ("cipher_order", "server"), ("LUCKY13", "not vulnerable"),
                      ("CRIME_TLS", "not vulnerable"), ("secure_client_renego", "not vulnerable"),
                      ("ROBOT", "not vulnerable"), ("PFS", "offered"),
                      ("TLS_session_ticket", "valid for")):
        f = by_id.get(fid)
        if f is None:
            problems.append("%s: missing from the scan" % fid)
        elif not f["finding"].startswith(want):
            problems.append("%s: %r, expected %r..." % (fid, f["finding"], want))
    curves = by_id.get("PFS_ECDHE_curves", {}).get("finding", "")
    if sorted(curves.split()) != ["X25519", "prime256v1", "secp384r1"]:
        problems.append("PFS_ECDHE_curves: %r, expected X25519 P-256 P-384" % curves)
    if problems:
        raise TestFailure("testssl %s:\n  %s\n---- testssl output (tail)\n%s"
                          % (tag, "\n  ".join(problems), text[-6000:]))


def test_testssl_finds_nothing_above_info():
    binary = testssl_binary()
    with tempfile.TemporaryDirectory() as d:
        with tls_server(d) as p:
            scans = [("pop3s", "127.0.0.1:%d" % p.port("pop3s"), None),
                     ("submission-starttls", "127.0.0.1:%d" % p.port("submission"), "smtp")]
            for tag, target, starttls in scans:
                findings, text = run_testssl(binary, target, d, tag, starttls)
                judge(findings, text, tag)


if __name__ == "__main__":
    run_tests(globals())
