#!/usr/bin/env python3
"""Robustness: 200 SMTP/POP3 connections (plain, STARTTLS, implicit TLS) dropped at random
points (mid-greeting, mid-AUTH, mid-DATA, mid-handshake, garbage, over-long lines), mixed with
complete submissions; afterwards the server still works, every session ended, and every file
in new/ and cur/ is a complete message that was acknowledged with 250 (nothing half-written,
nothing left in tmp/).

POSTERN_ROBUSTNESS_SEED=<n> replays a run; POSTERN_ROBUSTNESS_N overrides the 200."""

import os
import random
import re
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (Postern, DEFAULT_USERS, RawConn, check, check_eq, drop, expect,
                             make_message, plain_ir, pop_find, run_tests, split_received,
                             tls_context, wait_for)

PW = {u: d["password"] for u, d in DEFAULT_USERS.items()}
ALICE, BOB = "alice@example.test", "bob@example.test"
SMTP_LISTENERS = ("mx", "submission", "submissions")
POP_LISTENERS = ("pop3", "pop3s")


def client_hello():
    """The bytes of a real TLS ClientHello (from an in-memory handshake)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = tls_context().wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


CLIENT_HELLO = client_hello()
CLIENT_ERRORS = (OSError, EOFError, ssl.SSLError, ConnectionError, socket.timeout)


class Ctx:
    def __init__(self, p, rnd, i):
        self.p, self.rnd, self.i = p, rnd, i
        self.partial = "PARTIAL-%d-%d" % (os.getpid(), i)
        self.conns = []

    def raw(self, listener, tls=None):
        if tls is None:
            tls = listener in ("submissions", "pop3s")
        c = RawConn(self.p.port(listener), tls=tls, timeout=10)
        self.conns.append(c)
        return c

    def close_all(self):
        for c in self.conns:
            c.close()

    def end(self, c):
        """Close cleanly or abortively (RST), at random."""
        if self.rnd.random() < 0.5:
            c.abort()
        else:
            c.close()


def _smtp_ready(ctx, listener, tls_upgrade=True):
    """A raw SMTP connection after the greeting and EHLO (and STARTTLS+EHLO if wanted)."""
    c = ctx.raw(listener)
    c.expect_reply(220)
    c.send("EHLO drop%d.example\r\n" % ctx.i)
    c.expect_reply(250)
    if tls_upgrade and listener in ("mx", "submission"):
        c.send("STARTTLS\r\n")
        c.expect_reply(220)
        c.starttls()
        c.send("EHLO drop%d.example\r\n" % ctx.i)
        c.expect_reply(250)
    return c


def s_connect_close(ctx):
    listener = ctx.rnd.choice(SMTP_LISTENERS + POP_LISTENERS)
    c = ctx.raw(listener, tls=False)
    if ctx.rnd.random() < 0.5 and listener not in ("submissions", "pop3s"):
        c.sock.recv(ctx.rnd.randint(1, 5))        # mid-greeting
    ctx.end(c)


def s_garbage(ctx):
    listener = ctx.rnd.choice(SMTP_LISTENERS + POP_LISTENERS)
    c = ctx.raw(listener, tls=False)
    c.send(bytes(ctx.rnd.getrandbits(8) for _ in range(ctx.rnd.randint(1, 3000))))
    if ctx.rnd.random() < 0.5:
        c.pending(0.1)
    ctx.end(c)


def s_overlong(ctx):
    listener = ctx.rnd.choice(SMTP_LISTENERS[:2] + ("pop3",))
    c = ctx.raw(listener, tls=False)
    n = ctx.rnd.choice((600, 1100, 5000, 70000, 300000))
    line = b"NOOP " + b"A" * n
    if ctx.rnd.random() < 0.5:
        line += b"\r\n"
    c.send(line)
    if ctx.rnd.random() < 0.5:
        c.pending(0.1)
    ctx.end(c)


def s_mid_tls_handshake(ctx):
    listener = ctx.rnd.choice(("submissions", "pop3s", "mx", "submission", "pop3"))
    c = ctx.raw(listener, tls=False)
    if listener in ("mx", "submission"):
        c.expect_reply(220)
        c.send("EHLO hs.example\r\n")
        c.expect_reply(250)
        c.send("STARTTLS\r\n")
        c.expect_reply(220)
    elif listener == "pop3":
        c.read_pop()
        c.send("STLS\r\n")
        c.read_pop()
    cut = ctx.rnd.randint(1, len(CLIENT_HELLO))
    c.send(CLIENT_HELLO[:cut])
    if cut == len(CLIENT_HELLO) and ctx.rnd.random() < 0.5:
        c.sock.recv(ctx.rnd.randint(1, 100))       # part of the ServerHello
    ctx.end(c)


def s_mid_auth(ctx):
    if ctx.rnd.random() < 0.6:
        listener = ctx.rnd.choice(SMTP_LISTENERS)
        c = _smtp_ready(ctx, listener)
        user = ctx.rnd.choice((ALICE, BOB))
        step = ctx.rnd.randint(0, 3)
        if step == 0:
            c.send("AUTH PLAIN " + plain_ir(user, PW[user])[:ctx.rnd.randint(1, 20)])
        elif step == 1:
            c.send("AUTH PLAIN\r\n")
            c.expect_reply(334)
        elif step == 2:
            c.send("AUTH LOGIN\r\n")
            c.expect_reply(334)
            c.send(plain_ir(user, "")[:6] + "\r\n")
        else:
            c.send("AUTH LOGIN\r\n")
            c.expect_reply(334)
    else:
        listener = ctx.rnd.choice(POP_LISTENERS)
        c = ctx.raw(listener)
        c.read_pop()
        if listener == "pop3":
            c.send("STLS\r\n")
            c.read_pop()
            c.starttls()
        if ctx.rnd.random() < 0.5:
            c.send("USER %s\r\nPASS %s" % (ALICE, PW[ALICE][:3]))
        else:
            c.send("AUTH PLAIN\r\n")
            c.read_pop()
            c.send(plain_ir(ALICE, PW[ALICE])[:10])
    ctx.end(c)


def s_mid_data(ctx):
    listener = ctx.rnd.choice(SMTP_LISTENERS)
    c = _smtp_ready(ctx, listener, tls_upgrade=(listener != "mx" or ctx.rnd.random() < 0.5))
    sender = "someone@remote.example"
    if listener != "mx":
        c.send("AUTH PLAIN %s\r\n" % plain_ir(ALICE, PW[ALICE]))
        c.expect_reply(235)
        sender = ALICE
    rcpt = ctx.rnd.choice((ALICE, BOB))
    c.send("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (sender, rcpt))
    c.expect_reply(250)
    c.expect_reply(250)
    c.expect_reply(354)
    _, msg = make_message(sender=sender, to=rcpt, marker=ctx.partial)
    msg = msg.replace(b"\r\n.", b"\r\n..") * ctx.rnd.randint(1, 40)     # dot-stuffed
    how = ctx.rnd.randint(0, 3)
    if how == 0:
        tail = msg[:ctx.rnd.randint(0, len(msg))]
    elif how == 1:
        tail = msg + b"."                           # dot without its CRLF
    elif how == 2:
        tail = msg + b"\r\n.\r"                     # almost the end
    else:
        tail = msg[:ctx.rnd.randint(0, len(msg))]
        while tail.endswith(b"\r\n."):             # keep "CRLF . CRLF" out of the cut
            tail = tail[:-1]
        tail += b"\r\n"
    check(b"\r\n.\r\n" not in b"\r\n" + tail, "test bug: end of data inside the partial")
    abort = ctx.rnd.random() < 0.5
    PARTIALS[ctx.partial] = "%s how=%d sent=%d bytes ending %r, then %s" % (
        listener, how, len(tail), tail[-12:], "RST" if abort else "FIN")
    c.send(tail)
    if abort:
        c.abort()
    else:
        c.close()


def s_pop3_drop(ctx):
    listener = ctx.rnd.choice(POP_LISTENERS)
    user = ctx.rnd.choice((ALICE, BOB))
    pop = (ctx.p.pop3_ssl(listener) if listener == "pop3s"
           else ctx.p.pop3(listener, stls=True))
    try:
        pop.user(user)
        pop.pass_(PW[user])
    except Exception as e:  # noqa: BLE001 - [IN-USE] is expected under concurrency
        drop(pop)
        if "[IN-USE]" in str(e):
            return
        raise
    count = pop.stat()[0]
    if count:
        n = ctx.rnd.randint(1, count)
        if ctx.rnd.random() < 0.5:
            pop.dele(n)
        else:
            pop.sock.sendall(b"RETR %d\r\n" % n)      # drop while the server is sending
    drop(pop)


PARTIALS = {}
SENT = []
SENT_LOCK = threading.Lock()


def s_complete(ctx):
    """A normal delivery; must succeed."""
    rcpt = ctx.rnd.choice((ALICE, BOB))
    if ctx.rnd.random() < 0.5:
        s = ctx.p.smtp("mx")
        sender = "someone@remote.example"
    else:
        s = ctx.p.submission(ALICE, PW[ALICE], implicit=ctx.rnd.random() < 0.5)
        sender = ALICE
    marker, msg = make_message(sender=sender, to=rcpt)
    expect(s.mail(sender), 250)
    expect(s.rcpt(rcpt), 250)
    expect(s.data(msg), 250)
    s.quit()
    with SENT_LOCK:
        SENT.append((rcpt, marker, msg))


SCENARIOS = [
    (s_connect_close, 3), (s_garbage, 3), (s_overlong, 2), (s_mid_tls_handshake, 3),
    (s_mid_auth, 3), (s_mid_data, 4), (s_pop3_drop, 2), (s_complete, 2),
]


def test_random_drops_then_normal_service():
    seed = int(os.environ.get("POSTERN_ROBUSTNESS_SEED", int(time.time())))
    n = int(os.environ.get("POSTERN_ROBUSTNESS_N", "200"))
    print("  seed=%d n=%d (POSTERN_ROBUSTNESS_SEED to replay)" % (seed, n), flush=True)
    master = random.Random(seed)
    funcs = [f for f, w in SCENARIOS for _ in range(w)]
    plan = [(i, master.choice(funcs), master.getrandbits(32)) for i in range(n)]
    unexpected = []
    with Postern() as p:
        def one(item):
            i, fn, s = item
            ctx = Ctx(p, random.Random(s), i)
            try:
                try:
                    fn(ctx)
                finally:
                    ctx.close_all()
            except CLIENT_ERRORS:
                if fn is s_complete:
                    unexpected.append("#%d %s: %r" % (i, fn.__name__, sys.exc_info()[1]))
            except Exception as e:  # noqa: BLE001
                unexpected.append("#%d %s: %s: %s" % (i, fn.__name__, type(e).__name__, e))
        with ThreadPoolExecutor(max_workers=16) as ex:
            list(ex.map(one, plan))
        counts = {}
        for _, fn, _ in plan:
            counts[fn.__name__] = counts.get(fn.__name__, 0) + 1
        print("  scenarios: %s" % counts)
        check(p.running(), "posternd died during the storm\n" + p.tail())
        # A write to a peer that went away is an error for its session, never the end of the
        # daemon: SIGPIPE (13) is ignored (OpenSSL writes with write(2), no MSG_NOSIGNAL).
        with open("/proc/%d/status" % p.proc.pid) as f:
            ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)", f.read(), re.M).group(1), 16)
        check(ignored & (1 << (13 - 1)), "SIGPIPE is not ignored: SigIgn=%x" % ignored)
        check(not unexpected, "unexpected client-side results:\n" + "\n".join(unexpected[:30]))

        # Normal service afterwards.
        s_complete(Ctx(p, random.Random(1), -1))
        rcpt, marker, msg = SENT[-1]

        def login():
            try:
                return p.pop3_login(rcpt, PW[rcpt], tls="stls")
            except Exception as e:  # noqa: BLE001
                if "[IN-USE]" in str(e):
                    return None
                raise
        pop = wait_for(login, 15, 0.05, "POP3 login after the storm (lock released)")
        _, data = pop_find(pop, marker)
        check_eq(split_received(data)[1], msg, "message read back after the storm")
        pop.quit()

        # Every session ended (none hung or leaked).
        try:
            wait_for(lambda: p.log_count(r"event=connect\b")
                     == p.log_count(r"event=disconnect\b"), 20, 0.1, "sessions to end")
        except AssertionError:
            raise AssertionError("sessions still open 20s after the storm: connect=%d "
                                 "disconnect=%d" % (p.log_count(r"event=connect\b"),
                                                    p.log_count(r"event=disconnect\b")))

        # Nothing half-written: every file is a complete, acknowledged message.
        sent_by_rcpt = {}
        for r, m, body in SENT:
            sent_by_rcpt.setdefault(r, {})[body] = m
        seen = {}
        problems = []
        for path in p.all_mailbox_files():
            data = open(path, "rb").read()
            if b"PARTIAL-" in data:
                m = re.search(rb"PARTIAL-\d+-\d+", data).group(0).decode()
                problems.append("partial message stored: %s (%d bytes, last bytes %r); the "
                                "client sent: %s" % (path, len(data), data[-40:],
                                                     PARTIALS.get(m)))
                continue
            try:
                _, rest = split_received(data)
            except AssertionError as e:
                problems.append("%s: %s" % (path, e))
                continue
            user = "%s@%s" % (os.path.basename(os.path.dirname(os.path.dirname(path))),
                              os.path.basename(os.path.dirname(os.path.dirname(
                                  os.path.dirname(path)))))
            if rest not in sent_by_rcpt.get(user, {}):
                problems.append("unknown/incomplete content in %s: %r" % (path, rest[:200]))
            seen[(user, rest)] = seen.get((user, rest), 0) + 1
        for r, m, body in SENT:
            c = seen.get((r, body), 0)
            # POP3 sessions in the storm may have deleted nothing (no QUIT), so every
            # acknowledged message must still be there exactly once.
            if c != 1:
                problems.append("acknowledged message %s for %s stored %d times" % (m, r, c))
        check(not problems, "\n".join(problems[:30]))
        print("  checked %d mailbox files against %d acknowledged messages; log: %d warnings, "
              "%d errors" % (len(p.all_mailbox_files()), len(SENT),
                             p.log_count(r" Warning "), p.log_count(r" (Error|Critical|Fatal) ")))
        wait_for(lambda: not p.all_mailbox_files(subdirs=("tmp",)), 10, 0.1,
                 "tmp/ to be empty (left: %r)" % p.all_mailbox_files(subdirs=("tmp",)))
        check(p.running(), "posternd died\n" + p.tail())


def test_slow_clients_cannot_starve_the_health_endpoint():
    """Review finding: the health endpoint has two threads and POCO's timeout is per read,
    so clients sending a byte every few seconds held both for hours and the balancer's
    probes went unanswered. Shipped config (health.request_timeout = 1s); only the health
    port is the test's. Three slow clients keep reconnecting while curl probes /healthz."""
    import subprocess
    with Postern() as p:
        stop = threading.Event()
        cut = []

        def slow():
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    with socket.create_connection(("127.0.0.1", p.health_port), timeout=5) as s:
                        for k in range(10 ** 6):
                            if stop.is_set():
                                return
                            s.sendall(head[k % len(head):k % len(head) + 1])
                            time.sleep(0.2)
                except OSError:
                    pass
                if not stop.is_set():
                    cut.append(time.monotonic() - t0)

        threads = [threading.Thread(target=slow) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            for i in range(5):
                r = subprocess.run(["curl", "-sS", "--max-time", "3", "-o", "/dev/null", "-w", "%{http_code}",
                                    "http://127.0.0.1:%d/healthz" % p.health_port],
                                   capture_output=True, text=True)
                check_eq(r.stdout, "200", "probe %d answered while slow clients hold connections (%s)"
                         % (i + 1, r.stderr.strip()))
                time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        check(len(cut) >= 3, "slow clients were cut off: %r" % cut)
        check(max(cut) < 3, "each within about health.request_timeout: %r" % cut)


def trickle(port, prefix, payload, limit=12.0, tls_greeting=False):
    """Connects, sends `prefix` at once, then `payload` one byte every 0.4 s until the server
    closes the connection. Returns (seconds from the first trickled byte, what the server sent)."""
    import select
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    got = b""
    try:
        if not tls_greeting:
            got += s.recv(4096)  # the greeting
        s.sendall(prefix)
        t0 = time.monotonic()
        for i in range(10 ** 6):
            if time.monotonic() - t0 > limit:
                return None, got
            try:
                s.sendall(payload[i % len(payload):i % len(payload) + 1])
            except OSError:
                return time.monotonic() - t0, got
            ready, _, _ = select.select([s], [], [], 0.4)
            if ready:
                try:
                    chunk = s.recv(4096)
                except OSError:
                    return time.monotonic() - t0, got
                if not chunk:
                    return time.monotonic() - t0, got
                got += chunk
    finally:
        s.close()


def test_trickling_clients_are_cut_at_the_command_deadline():
    """Review finding: the command timeouts counted per read, so a client sending a byte a
    little more often than that held a session thread for ever: a command line, or a TLS
    handshake, trickled in. Now the whole command has the timeout (Postfix's
    smtpd_per_record_deadline). Changed: smtp.command_timeout = 3s, pop3.idle_timeout = 3s."""
    with Postern(overrides={"smtp.command_timeout": "3s", "pop3.idle_timeout": "3s"}) as p:
        results = {}

        def run(name, *args, **kw):
            results[name] = trickle(*args, **kw)

        cases = [
            ("mx line", (p.port("mx"), b"", b"NOOP " + b"x" * 400)),
            ("pop3 line", (p.port("pop3"), b"", b"CAPA" + b"x" * 200)),
            ("submissions handshake", (p.port("submissions"), b"", CLIENT_HELLO), {"tls_greeting": True}),
            ("pop3s handshake", (p.port("pop3s"), b"", CLIENT_HELLO), {"tls_greeting": True}),
            ("mx after a whole command", (p.port("mx"), b"EHLO client.example\r\nNO", b"OP " + b"y" * 400)),
        ]
        threads = [threading.Thread(target=run, args=(c[0],) + c[1], kwargs=(c[2] if len(c) > 2 else {}))
                   for c in cases]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for name, _ in [(c[0], None) for c in cases]:
            took, got = results[name]
            check(took is not None, "%s: still connected after 12 s of trickling (server sent %r)" % (name, got[-200:]))
            check(took < 8, "%s: cut after %.1f s, about the 3-s deadline" % (name, took))
        check(b"421 " in results["mx line"][1] and b"Timeout" in results["mx line"][1], "the SMTP client is told: %r" % (results,))
        # Every cut session, the handshakes included, is logged as a timeout. The client can see
        # the close a moment before the server writes the line (a CI run under ASan checked
        # too early), so wait a little for it.
        timeouts = r"event=disconnect svc=\w+ ip=127\.0\.0\.1 reason=\"timeout\""
        settle = time.monotonic() + 5
        while p.log_count(timeouts) < len(cases) and time.monotonic() < settle:
            time.sleep(0.05)
        check_eq(p.log_count(timeouts), len(cases), "disconnects logged as timeouts:\n" + p.tail())
        check(b"-ERR" in results["pop3 line"][1].split(b"\r\n", 1)[1], "the POP3 client is told: %r"
              % results["pop3 line"][1])
        # A client that takes its time between whole commands is not affected.
        c = RawConn(p.port("mx"), timeout=10)
        expect(c.read_reply(), 220)
        for _ in range(3):
            time.sleep(1.5)
            c.send("NOOP\r\n")
            expect(c.read_reply(), 250)
        c.send("QUIT\r\n")


def test_message_data_must_keep_a_minimum_rate():
    """Message data trickled in a byte at a time held a session thread for ever (data_timeout
    counted per read). Now it must arrive within smtp.data_timeout plus a second per
    smtp.min_data_rate octets (Postfix's smtpd_min_data_rate; shipped 500). Changed:
    smtp.data_timeout = 3s. A message sent at a normal pace is unaffected."""
    with Postern(overrides={"smtp.data_timeout": "3s"}) as p:
        head = b"EHLO client.example\r\nMAIL FROM:<someone@remote.example>\r\nRCPT TO:<%s>\r\nDATA\r\n" % BOB.encode()
        took, got = trickle(p.port("mx"), head, b"Subject: slow\r\n\r\n" + b"x" * 400 + b"\r\n")
        check(took is not None, "still connected after 12 s of trickled message data: %r" % got[-200:])
        check(took < 8, "cut after %.1f s, about the 3-s data deadline" % took)
        check(b"421 4.4.2" in got, "the client is told: %r" % got[-200:])
        check_eq(p.log_count(r"reason=\"timeout\""), 1, "logged as a timeout")
        # A whole message at once.
        s = p.smtp("mx")
        marker, data = make_message(sender="someone@remote.example", to=BOB)
        s.sendmail("someone@remote.example", [BOB], data)
        s.quit()
        wait_for(lambda: p.maildir_find(BOB, marker), 10, what="the message sent at a normal pace")


def test_pop3_client_must_log_in_in_time():
    """Review finding: before login a POP3 client could keep its session (and thread) for ever
    with a CAPA every few minutes. Now pop3.login_timeout (Dovecot: 3 minutes) bounds the time
    to log in. Changed: pop3.login_timeout = 3s."""
    with Postern(overrides={"pop3.login_timeout": "3s"}) as p:
        busy = RawConn(p.port("pop3"), timeout=10)
        check(busy.read_line().startswith(b"+OK"), "greeting")
        t0 = time.monotonic()
        last = b""
        try:
            for _ in range(20):
                busy.send("CAPA\r\n")
                last = busy.read_line()
                while last.startswith(b"+OK") or (last and last != b"." and not last.startswith(b"-ERR")):
                    last = busy.read_line()
                if last.startswith(b"-ERR"):
                    break
                time.sleep(0.5)
        except (EOFError, OSError):
            pass
        took = time.monotonic() - t0
        check(last.startswith(b"-ERR Disconnected: no login in time"), "told why: %r" % last)
        check(took < 8, "cut after %.1f s, about pop3.login_timeout" % took)
        check(p.log_contains(r"event=disconnect svc=pop3 .*reason=\"login timeout\""),
              "the disconnect is logged with its reason")
        # Logged in within the time: the deadline no longer applies.
        c = RawConn(p.port("pop3s"), tls=True, timeout=10)
        check(c.read_line().startswith(b"+OK"), "greeting")
        c.send("USER %s\r\n" % ALICE)
        check(c.read_line().startswith(b"+OK"), "USER")
        c.send("PASS %s\r\n" % PW[ALICE])
        check(c.read_line().startswith(b"+OK"), "PASS")
        time.sleep(4)
        c.send("STAT\r\n")
        check(c.read_line().startswith(b"+OK"), "STAT after the login deadline")
        c.send("QUIT\r\n")


def test_a_client_that_reads_too_slowly_is_cut_at_the_write_deadline():
    """Review finding: the socket's send timeout counts per send(2), so a POP3 client reading
    a big message a few KB a second (never letting one send wait the timeout) held its
    session, its thread and the maildrop lock as long as it liked. Now every block written
    must be taken within pop3.idle_timeout. Changed: pop3.idle_timeout = 3s."""
    with Postern(overrides={"pop3.idle_timeout": "3s"}) as p:
        s = p.smtp("mx")
        marker, data = make_message(sender="someone@remote.example", to=BOB,
                                    body=("x" * 76 + "\r\n") * 110000)  # about 8.6 MB: more than
        # the loopback socket buffers hold (a few MB), so the old code's send blocks for good
        s.sendmail("someone@remote.example", [BOB], data)
        s.quit()
        wait_for(lambda: p.maildir_find(BOB, marker), 10, what="the big message")
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, set before connect
        raw.settimeout(10)
        raw.connect(("127.0.0.1", p.port("pop3s")))
        c = tls_context().wrap_socket(raw, server_hostname="localhost")
        buf = b""

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                buf += c.recv(4096)
            first, buf = buf.split(b"\r\n", 1)
            return first

        check(line().startswith(b"+OK"), "greeting")
        c.sendall(b"USER %s\r\n" % BOB.encode())
        check(line().startswith(b"+OK"), "USER")
        c.sendall(b"PASS %s\r\n" % PW[BOB].encode())
        check(line().startswith(b"+OK"), "PASS")
        c.sendall(b"RETR 1\r\n")
        t0 = time.monotonic()
        stop = threading.Event()
        got = [len(buf)]

        def read_slowly():  # about 4 KB a second: each send(2) of the server makes progress
            while not stop.wait(1.0):
                try:
                    chunk = c.recv(4096)
                except (OSError, ssl.SSLError, ValueError):
                    return
                if not chunk:
                    return
                got[0] += len(chunk)

        reader = threading.Thread(target=read_slowly)
        reader.start()
        try:
            # What matters is the server's side: the session ends (what the client still
            # reads afterwards is what the kernel had already queued for it).
            p.log_contains(r"event=disconnect svc=pop3 ip=127\.0\.0\.1 reason=\"timeout\"", timeout=12)
            took = time.monotonic() - t0
            check(took < 10, "the session ended %.1f s after RETR, about pop3.idle_timeout" % took)
            # The maildrop lock went with the session: bob reads his mail now, at a normal pace.
            pop = p.pop3_ssl()
            pop.user(BOB)
            pop.pass_(PW[BOB])
            check(marker.encode() in b"\r\n".join(pop.retr(1)[1]), "the message is still there, whole")
            pop.quit()
        finally:
            stop.set()
            reader.join(10)
            c.close()


if __name__ == "__main__":
    run_tests(globals())
