"""The shipped defaults serve ordinary ISP traffic, and floods are cut (issue 11).

Every server here runs on the shipped etc/postern.properties (the harness changes only
ports, paths, users and the certificate); each test names any further change it makes.
Clients are real: poplib, smtplib, raw sockets for the floods.
"""

import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (  # noqa: E402
    DEFAULT_USERS, IO_TIMEOUT, POP3SSLSrc, Postern, TestFailure, check, check_eq, expect, make_message,
    run_tests, smtp_auth, tls_context, wait_for)

USER, PASSWORD = "alice@example.test", "alice-Secret1"
FLOOD = 10 * 1024 * 1024  # a 10 MiB "line" without a line end


def pop3s_session(p, user=USER, password=PASSWORD, source="127.0.0.1"):
    """One complete mail-program poll over POP3S: login, STAT, UIDL, QUIT."""
    c = POP3SSLSrc("127.0.0.1", p.port("pop3s"), source=source)
    try:
        c.user(user)
        c.pass_(password)
        c.stat()
        c.uidl()
        return c.quit().decode()
    finally:
        try:
            c.close()
        except OSError:
            pass


def test_fifty_pop3s_sessions_in_ten_seconds_from_one_ip():
    # Shipped defaults, nothing changed: a household or an office behind one address polls;
    # five users' mail programs at once, ten polls each (one user's polls follow each other:
    # a maildrop is locked while a session has it, RFC 1939 8).
    with Postern() as p:
        users = [(u, d["password"]) for u, d in DEFAULT_USERS.items()][:5]
        check_eq(len(users), 5, "five test users")

        def polls(user):
            return [pop3s_session(p, user[0], user[1]) for _ in range(10)]

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=5) as pool:
            results = [r for rs in pool.map(polls, users) for r in rs]
        check_eq(len(results), 50, "sessions")
        elapsed = time.monotonic() - t0
        check(all(r.startswith("+OK") for r in results), "every session ends with +OK: %r" % results)
        check(elapsed < 10.0, "50 sessions took %.1fs, expected them within 10 s" % elapsed)
        check_eq(p.log_count(r"event=conn\.refuse"), 0, "no connection refused on the defaults")


def test_fifty_submissions_from_one_ip_all_accepted():
    # Shipped defaults: 50 authenticated submissions from one address in a row.
    with Postern() as p:
        for i in range(50):
            s = p.submission(USER, PASSWORD, implicit=(i % 2 == 0))
            _, msg = make_message(sender=USER, to="bob@example.test")
            s.sendmail(USER, ["bob@example.test"], msg)
            s.quit()
        wait_for(lambda: len(p.maildir_files("bob@example.test")) == 50, what="50 messages stored")


def test_refusal_on_implicit_tls_is_readable_and_logged_once_per_minute():
    # Test change: a per-IP connection rate of 3 per minute (off by default) to get refusals.
    with Postern(overrides={"connections.rate_per_ip": "3"}) as p:
        for _ in range(3):
            pop3s_session(p)
        for _ in range(4):
            raw = socket.create_connection(("127.0.0.1", p.port("pop3s")), timeout=IO_TIMEOUT)
            tls = tls_context().wrap_socket(raw, server_hostname="localhost")  # handshake completes
            line = tls.makefile("rb").readline().decode()
            check(line.startswith("-ERR [SYS/TEMP] "), "refusal readable over TLS, got %r" % line)
            tls.close()
        # SMTP over implicit TLS: the same, as 421 4.7.0 (smtplib reads it as the greeting).
        for _ in range(3):
            s = p.smtp_ssl("submissions")
            s.quit()
        raw = socket.create_connection(("127.0.0.1", p.port("submissions")), timeout=IO_TIMEOUT)
        tls = tls_context().wrap_socket(raw, server_hostname="localhost")
        line = tls.makefile("rb").readline().decode()
        check(line.startswith("421 4.7.0 "), "421 4.7.0 over implicit TLS, got %r" % line)
        tls.close()
        # Plain text listener: 421 before anything else.
        for _ in range(3):
            p.smtp("mx").quit()
        raw = socket.create_connection(("127.0.0.1", p.port("mx")), timeout=IO_TIMEOUT)
        line = raw.makefile("rb").readline().decode()
        check(line.startswith("421 4.7.0 "), "421 4.7.0 on the MX port, got %r" % line)
        raw.close()
        # Four POP3S refusals from one address within a minute: one log line for them.
        p.log_contains(r"event=conn\.refuse listener=pop3s ip=127\.0\.0\.1 reason=rate_from_ip")
        check_eq(p.log_count(r"event=conn\.refuse listener=pop3s "), 1, "one refusal line per IP and minute")
        check_eq(p.log_count(r"event=conn\.refuse listener=submissions "), 1, "submissions logged too")


def test_allow_networks_are_exempt_from_per_ip_limits():
    # Test changes: a rate of 2 and 2 concurrent per IP, with 127.0.0.0/8 allow-listed.
    with Postern(overrides={"connections.rate_per_ip": "2", "connections.max_per_ip": "2",
                            "connections.allow_networks": "127.0.0.0/8"}) as p:
        held = [p.pop3_ssl() for _ in range(4)]  # more than max_per_ip at once
        for _ in range(6):                          # more than the rate
            pop3s_session(p)
        for c in held:
            c.quit()
        check_eq(p.log_count(r"event=conn\.refuse"), 0, "allow-listed networks are never refused")


def flood(port, greeting_prefix, wrap_tls=False, before=()):
    """Send `before` lines, then a 10 MiB line without a line end, reading while writing.
    Returns (everything read, seconds from the first flood byte until
    the server closed, bytes the sender got out)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    if wrap_tls:
        sock = tls_context().wrap_socket(sock, server_hostname="localhost")
    f = sock.makefile("rb")
    greeting = f.readline().decode()
    check(greeting.startswith(greeting_prefix), "greeting %r" % greeting)
    for line in before:
        sock.sendall(line)
        while True:  # one whole reply (SMTP multi-line: "250-" ... "250 ")
            r = f.readline()
            if len(r) < 4 or r[3:4] != b"-":
                break
    # One thread, non-blocking, writing and reading as the socket allows: an SSL object must
    # not be used by two threads at once (a reader thread beside a writer breaks over TLS).
    chunk = b"A" * 65536
    sent = [0]
    sending = True
    got = b""
    sock.setblocking(False)
    t0 = time.monotonic()
    closed_after = None
    while time.monotonic() - t0 < 20.0:
        want_write = [sock] if sending and sent[0] < FLOOD else []
        readable, writable, _ = select.select([sock], want_write, [], 0.5)
        if readable or (wrap_tls and sock.pending()):
            try:
                d = sock.recv(4096)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                d = None
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                closed_after = time.monotonic() - t0
                break
            if d == b"":
                closed_after = time.monotonic() - t0
                break
            if d:
                got += d
        if writable:
            try:
                sent[0] += sock.send(chunk)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                pass
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                sending = False  # the server closed its side; read what it said
    if closed_after is None:
        raise TestFailure("the server kept the connection open 20 s into the flood (read %r)" % got)
    try:
        sock.close()
    except OSError:
        pass
    return got.decode("utf-8", "replace"), closed_after, sent[0]


def test_ten_mib_line_is_cut_on_smtp():
    # Shipped defaults.
    with Postern() as p:
        # Before EHLO replies carry no enhanced status codes (RFC 2034 3).
        got, secs, sent = flood(p.port("mx"), "220 ")
        check(got.startswith("500 Line too long"), "500 before the close, got %r" % got)
        check(secs < 8.0, "closed %.1fs into the flood, expected within a few seconds" % secs)
        check(sent < FLOOD, "the server stopped reading long before 10 MiB (the client got %d out)" % sent)
        p.log_contains(r"event=smtp\.line_too_long ip=127\.0\.0\.1")
        # After the MAIL command too (inside a transaction), and on submission over TLS.
        got, secs, _ = flood(p.port("mx"), "220 ", before=[b"EHLO client.example\r\n", b"MAIL FROM:<a@remote.example>\r\n"])
        # A command line is a syntax error (x.5.2); x.5.6 is for an AUTH exchange's line (RFC 4954 4).
        check("500 5.5.2" in got and secs < 8.0, "cut after EHLO (%.1fs): %r" % (secs, got))
        got, secs, _ = flood(p.port("submissions"), "220 ", wrap_tls=True, before=[b"EHLO client.example\r\n"])
        check("500 5.5.2" in got and secs < 8.0, "cut on implicit TLS (%.1fs): %r" % (secs, got))
        got, secs, _ = flood(p.port("submissions"), "220 ", wrap_tls=True,
                             before=[b"EHLO client.example\r\n", b"AUTH PLAIN\r\n"])
        check("500 5.5.6" in got and secs < 8.0, "cut inside an AUTH exchange (%.1fs): %r" % (secs, got))
        p.log_contains(r"event=smtp\.line_too_long ip=127\.0\.0\.1 .*auth=yes")
        # The server is fine: an ordinary client is served.
        s = p.smtp("mx")
        _, msg = make_message(to="bob@example.test")
        s.sendmail("someone@remote.example", ["bob@example.test"], msg)
        s.quit()


def test_ten_mib_line_is_cut_on_pop3():
    # Shipped defaults.
    with Postern() as p:
        got, secs, sent = flood(p.port("pop3"), "+OK")
        check("-ERR Line too long" in got, "-ERR before the close, got %r" % got)
        check(secs < 8.0, "closed %.1fs into the flood" % secs)
        check(sent < FLOOD, "stopped reading early (client got %d out)" % sent)
        p.log_contains(r"event=pop3\.line_too_long ip=127\.0\.0\.1")
        got, secs, _ = flood(p.port("pop3s"), "+OK", wrap_tls=True, before=[b"USER " + USER.encode() + b"\r\n"])
        check("-ERR Line too long" in got and secs < 8.0, "cut on POP3S after USER (%.1fs): %r" % (secs, got))
        check(pop3s_session(p).startswith("+OK"), "an ordinary client is still served")


def test_long_but_bounded_command_keeps_the_session():
    # A 600-octet command is over smtp.max_command_length (512) but far from the flood limit:
    # 500 5.5.2 and the session goes on (RFC 5321 4.5.3.1.4), it is not a flood.
    with Postern() as p:
        s = p.smtp("mx")
        code, msg = s.docmd("NOOP", "x" * 600)
        check_eq(code, 500, "over-long command: %r" % msg)
        expect(s.docmd("NOOP"), 250, what="session still usable")
        s.quit()


def test_msmtp_and_mpop_on_the_defaults():
    # Real mail programs: msmtp submits over STARTTLS (587's role) and implicit TLS (465's),
    # mpop fetches over POP3S and over POP3 with STLS. Nothing changed but ports and users.
    with Postern() as p:
        d = p.dir
        markers = []
        for i, (port, starttls) in enumerate(((p.port("submission"), "on"), (p.port("submissions"), "off"))):
            rc = os.path.join(d, "msmtprc-%d" % i)
            with open(rc, "w") as f:
                f.write("defaults\nauth plain\ntls on\ntls_certcheck off\ntls_starttls %s\n"
                        "account default\nhost 127.0.0.1\nport %d\nfrom %s\nuser %s\npassword %s\n"
                        % (starttls, port, USER, USER, PASSWORD))
            os.chmod(rc, 0o600)
            marker, msg = make_message(sender=USER, to=USER)
            markers.append(marker)
            r = subprocess.run(["msmtp", "-C", rc, USER], input=msg, capture_output=True, timeout=60)
            check(r.returncode == 0, "msmtp (starttls=%s) exit %d: %s" % (starttls, r.returncode, r.stderr))
        for i, (port, tls_mode) in enumerate(((p.port("pop3s"), "off"), (p.port("pop3"), "on"))):
            rc = os.path.join(d, "mpoprc-%d" % i)
            dest = os.path.join(d, "fetched-%d.mbox" % i)
            open(dest, "w").close()
            with open(rc, "w") as f:
                f.write("defaults\ntls on\ntls_certcheck off\ntls_starttls %s\nauth user\n"
                        "account default\nhost 127.0.0.1\nport %d\nuser %s\npassword %s\n"
                        "keep on\nuidls_file %s.uidls\ndelivery mbox %s\n"
                        % (tls_mode, port, USER, PASSWORD, dest, dest))
            os.chmod(rc, 0o600)
            r = subprocess.run(["mpop", "-C", rc, "-a", "-q"], capture_output=True, timeout=60)
            check(r.returncode == 0, "mpop (stls=%s) exit %d: %s %s" % (tls_mode, r.returncode, r.stdout, r.stderr))
            got = open(dest, "rb").read()
            for m in markers:
                check(m.encode() in got, "mpop fetched %s over port %d" % (m, port))


def test_old_tls_versions_refused_readably():
    # TLS 1.0 and 1.1 are refused on every TLS port (tls.min_version = 1.2 by default); the
    # client gets a protocol-version alert. openssl s_client is told to allow old versions
    # (SECLEVEL=0) so that the refusal is the server's; TLS 1.2 with the same options works.
    with Postern() as p:
        for listener, extra in (("pop3s", []), ("submissions", []), ("submission", ["-starttls", "smtp"]),
                                ("pop3", ["-starttls", "pop3"])):
            base = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % p.port(listener),
                    "-cipher", "DEFAULT:@SECLEVEL=0"] + extra
            ok = subprocess.run(base + ["-tls1_2"], input=b"", capture_output=True, timeout=30)
            check(b"Protocol  : TLSv1.2" in ok.stdout or b"TLSv1.2" in ok.stdout,
                  "%s: TLS 1.2 works: %r" % (listener, ok.stdout[-600:]))
            for v in ("-tls1", "-tls1_1"):
                r = subprocess.run(base + [v], input=b"", capture_output=True, timeout=30)
                out = r.stdout + r.stderr
                check(r.returncode != 0 and b"Cipher is (NONE)" in out or b"alert protocol version" in out
                      or b"unsupported protocol" in out or b"no protocols available" in out,
                      "%s %s refused: %r" % (listener, v, out[-800:]))
                check(b"no protocols available" not in out, "%s %s: the client refused itself, not the server: %r"
                      % (listener, v, out[-400:]))


run_tests(globals())
