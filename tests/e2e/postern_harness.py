"""End-to-end harness: a real posternd on free loopback ports, driven by stdlib clients.

Standard library only (system python3). Each tests/e2e/test_*.py file imports this module,
defines `test_*` functions and ends with `run_tests(globals())`; ctest runs every file as one
test (see tests/CMakeLists.txt). A test takes no arguments and starts the servers it needs:

    def test_something():
        with Postern(overrides={"smtp.max_recipients": "2"}) as p:
            s = p.smtp("mx", source="127.0.0.2")
            expect(s.docmd("MAIL", "FROM:<a@remote.example>"), 250)

Environment: POSTERN_BUILD_DIR (default /work/main/build, else <repo>/build), POSTERN_SOURCE_DIR
(default: the repo root above this file), POSTERN_PLUGIN_DIR (optional server.plugin_dir),
POSTERN_KEEP=1 keeps temp dirs, POSTERN_TEST_VERBOSE=1 prints each daemon log after a test.
Run a subset: `python3 tests/e2e/test_pop3.py test_uidl_stable` (names or substrings).

No fixed sleeps: every wait is "poll a condition until a deadline" (see wait_for()).
"""

import base64
import inspect
import os
import pwd
import re
import select
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import poplib

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("POSTERN_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))


def _default_build_dir():
    if os.environ.get("POSTERN_BUILD_DIR"):
        return os.environ["POSTERN_BUILD_DIR"]
    if os.path.isdir("/work/main/build"):
        return "/work/main/build"
    return os.path.join(SOURCE_DIR, "build")


BUILD_DIR = _default_build_dir()
# Every test server starts from the configuration the project ships.
SHIPPED_CONFIG = os.path.join(SOURCE_DIR, "etc", "postern.properties")
POSTERND = os.path.join(BUILD_DIR, "bin", "posternd")

LISTENERS = ("mx", "submission", "submissions", "pop3", "pop3s")
LISTENER_SPEC = {
    # name: (protocol, role, tls)
    "mx": ("smtp", "mx", "starttls"),
    "submission": ("smtp", "submission", "starttls"),
    "submissions": ("smtp", "submission", "implicit"),
    "pop3": ("pop3", None, "starttls"),
    "pop3s": ("pop3", None, "implicit"),
}

HOSTNAME = "mail.example.test"
START_TIMEOUT = 30.0
STOP_GRACE = "5s"          # server.shutdown_grace written into every config
STOP_TIMEOUT = 15.0        # how long stop() waits for the process after SIGTERM
IO_TIMEOUT = 15.0          # socket timeout of every client

# Default users. bob's password is stored as {SHA512-CRYPT} (made with `openssl passwd -6`),
# everybody else's as {PLAIN}. dave may also send as team@example.test.
DEFAULT_USERS = {
    "alice@example.test": {"password": "alice-Secret1"},
    "bob@example.test": {"password": "bob-Secret2", "scheme": "SHA512-CRYPT"},
    "carol@example.org": {"password": "carol-Secret3"},
    "dave@example.test": {"password": "dave-Secret4",
                          "extra": "senders=dave@example.test,team@example.test"},
    "erin@example.test": {"password": "erin-Secret5"},
}
DEFAULT_ALIASES = {
    "sales@example.test": ["alice@example.test", "bob@example.test"],
}


# --------------------------------------------------------------------------------------
# small utilities

class TestFailure(AssertionError):
    pass


def wait_for(cond, timeout=10.0, interval=0.02, what="condition"):
    """Poll cond() until it returns a truthy value or the deadline passes; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def sleep_until(deadline_monotonic):
    """Wait until a monotonic deadline (used where the condition *is* the passage of time,
    e.g. a grant lifetime)."""
    while True:
        left = deadline_monotonic - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_ports(n, host="127.0.0.1"):
    # Hold all sockets at once so the n ports are distinct.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def plain_ir(user, password, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, password))


def tls_context():
    """Client context that does not verify (self-signed test certificate)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def reply_text(resp):
    code, msg = resp
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return "%s %s" % (code, msg)


def expect(resp, code, enhanced=None, what=""):
    """Assert an smtplib (code, msg) reply has `code` and, if given, the enhanced status
    code as the first word of its text. Returns resp."""
    got_code, msg = resp
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    ok = got_code == code
    if ok and enhanced is not None:
        first = msg.split()[0] if msg.split() else ""
        ok = first == enhanced
    if not ok:
        want = "%s%s" % (code, (" " + enhanced) if enhanced else "")
        raise TestFailure("%sexpected %s, got %s %s" % ((what + ": ") if what else "",
                                                        want, got_code, msg))
    return resp


def check(cond, message):
    if not cond:
        raise TestFailure(message)


def check_eq(got, want, message=""):
    if got != want:
        raise TestFailure("%s\n  expected: %r\n  got:      %r" % (message, want, got))


def split_return_path(stored):
    """(envelope sender, rest) of a message in a Maildir, which begins with the Return-Path
    line final delivery writes (RFC 5321 4.4); the sender is None if there is none."""
    m = re.match(rb"Return-Path: <([^>\r\n]*)>\r\n", stored)
    if not m:
        return None, stored
    return m.group(1).decode("utf-8", "replace"), stored[m.end():]


def split_received(stored):
    """Split a stored message into (received_header_bytes, rest). The message must begin
    with a Received: header (possibly folded), after the Return-Path line of a message in a
    Maildir."""
    _, stored = split_return_path(stored)
    if not stored.startswith(b"Received:"):
        raise TestFailure("stored message does not start with a Received header: %r"
                          % stored[:200])
    pos = 0
    while True:
        eol = stored.find(b"\r\n", pos)
        if eol < 0:
            raise TestFailure("unterminated Received header (no CRLF): %r" % stored[:300])
        pos = eol + 2
        if pos >= len(stored) or stored[pos:pos + 1] not in (b" ", b"\t"):
            return stored[:pos], stored[pos:]


def received_protocol(received):
    m = re.search(rb"\bwith\s+([A-Za-z0-9]+)", received)
    return m.group(1).decode() if m else None


def assert_stored_equals(stored, sent, what="stored message"):
    """Stored = Postern's Received header + exactly the bytes we sent."""
    received, rest = split_received(stored)
    if rest != sent:
        # Show where it starts to differ.
        i = next((k for k in range(min(len(rest), len(sent))) if rest[k] != sent[k]),
                 min(len(rest), len(sent)))
        raise TestFailure("%s differs from what was sent at byte %d (stored %d bytes after "
                          "Received, sent %d)\n  sent:   %r\n  stored: %r"
                          % (what, i, len(rest), len(sent), sent[max(0, i - 40):i + 80],
                             rest[max(0, i - 40):i + 80]))
    return received


def header_section(msg):
    end = msg.find(b"\r\n\r\n")
    return msg if end < 0 else msg[:end + 2]


def header_values(msg, name):
    """Unfolded values of every header `name` (case-insensitive) in the header section."""
    out = []
    cur = None
    for line in header_section(msg).split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and cur is not None:
            cur[1] += b" " + line.strip()
            continue
        if b":" in line:
            k, v = line.split(b":", 1)
            cur = [k.strip().lower(), v.strip()]
            out.append(cur)
        else:
            cur = None
    return [v.decode("utf-8", "replace") for k, v in out if k == name.lower().encode()]


_msg_counter = [0]
_msg_lock = threading.Lock()


def make_message(sender="alice@example.test", to="alice@example.test", subject=None,
                 body=None, date=True, message_id=True, marker=None, extra_headers=()):
    """A CRLF message with a unique marker. Includes lines that exercise transparency
    (leading dots, a long line, 8-bit text, trailing blanks)."""
    with _msg_lock:
        _msg_counter[0] += 1
        n = _msg_counter[0]
    marker = marker or "m%d-%d-%x" % (os.getpid(), n, int(time.time() * 1e6) & 0xffffff)
    hdrs = []
    if date:
        hdrs.append("Date: Fri, 27 Nov 2026 12:00:00 +0000")
    hdrs.append("From: <%s>" % sender)
    hdrs.append("To: <%s>" % to)
    hdrs.append("Subject: %s" % (subject or ("test " + marker)))
    if message_id:
        hdrs.append("Message-ID: <%s@client.example>" % marker)
    hdrs.append("X-Test-Marker: %s" % marker)
    hdrs.extend(extra_headers)
    if body is None:
        body = ("Hello, this is %s.\r\n"
                ".a line that starts with a dot\r\n"
                "..two dots\r\n"
                ".\r\n"
                ".\tdot tab\r\n"
                "trailing blanks   \r\n"
                "\r\n"
                "tab\there and a folded-looking line:\r\n"
                "  indented\r\n"
                + "x" * 900 + "\r\n"
                "end.\r\n") % marker
    msg = "\r\n".join(hdrs) + "\r\n\r\n" + body
    data = msg.encode("utf-8") + "8bit: gr\u00fc\u00dfe\r\n".encode("utf-8")
    return marker, data


# --------------------------------------------------------------------------------------
# clients with a chosen source address

class POP3Src(poplib.POP3):
    def __init__(self, host, port, source="127.0.0.1", timeout=IO_TIMEOUT):
        self._source = source
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


class POP3SSLSrc(poplib.POP3_SSL):
    def __init__(self, host, port, source="127.0.0.1", timeout=IO_TIMEOUT, context=None):
        self._source = source
        super().__init__(host, port, timeout=timeout, context=context or tls_context())

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


class RawConn:
    """A line-oriented raw socket client for byte-exact protocol tests."""

    def __init__(self, port, source="127.0.0.1", host="127.0.0.1", tls=False,
                 timeout=IO_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout,
                                             source_address=(source, 0))
        self.sock.settimeout(timeout)
        self.buf = b""
        self.timeout = timeout
        self.transcript = []
        if tls:
            self.sock = tls_context().wrap_socket(self.sock, server_hostname="localhost")

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(b"C: " + data)
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by server; transcript:\n" + self.dump())
        self.transcript.append(b"S: " + chunk)
        self.buf += chunk

    def read_line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_reply(self):
        """One SMTP reply: (code, [text lines])."""
        lines = []
        while True:
            line = self.read_line().decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit():
                raise TestFailure("malformed SMTP reply line %r; transcript:\n%s"
                                  % (line, self.dump()))
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), lines

    def expect_reply(self, code, enhanced=None, what=""):
        got, lines = self.read_reply()
        first = lines[0].split()[0] if lines and lines[0].split() else ""
        if got != code or (enhanced is not None and first != enhanced):
            raise TestFailure("%sexpected %s %s, got %s %s; transcript:\n%s"
                              % ((what + ": ") if what else "", code, enhanced or "",
                                 got, " | ".join(lines), self.dump()))
        return lines

    def read_pop(self):
        return self.read_line().decode("utf-8", "replace")

    def read_pop_multi(self):
        out = []
        while True:
            line = self.read_line()
            if line == b".":
                return out
            if line.startswith(b".."):
                line = line[1:]
            out.append(line)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.read_reply()

    def starttls(self):
        """Start TLS now. Nothing may be buffered from the server (that would be plaintext
        injected into the TLS session)."""
        if self.buf:
            raise TestFailure("server sent data before the TLS handshake: %r" % self.buf)
        self.sock = tls_context().wrap_socket(self.sock, server_hostname="localhost")
        self.transcript.append(b"-- TLS established --")

    def pending(self, wait=0.5):
        """Whatever the server sends within `wait` seconds (b"" if nothing). Used only to
        assert that nothing *more* arrives, after the expected replies were read."""
        data = self.buf
        self.buf = b""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
                r = True
            else:
                r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                break
            try:
                chunk = self.sock.recv(65536)
            except (ssl.SSLWantReadError, socket.timeout):
                continue
            except OSError:
                break
            if not chunk:
                break
            self.transcript.append(b"S: " + chunk)
            data += chunk
        return data

    def read_until_eof(self, timeout=10.0):
        data = self.buf
        self.buf = b""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.transcript.append(b"S: " + chunk)
                data += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
        return data

    def dump(self):
        return "\n".join(t.decode("utf-8", "replace").rstrip("\r\n")
                         for t in self.transcript[-40:])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Drop the connection with a RST (no FIN/QUIT)."""
        try:
            raw = self.sock
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()


def flood_without_reading(port, line, count, source="127.0.0.1"):
    """A plaintext client that reads the greeting (an early talker is refused on the MX role),
    then sends `count` copies of `line` and never reads a reply (a small receive buffer, so
    the server's replies back up at once). Returns the socket; the sending runs in a daemon
    thread and stops when the server closes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.settimeout(IO_TIMEOUT)
    greeting = b""
    while not greeting.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise TestFailure("no greeting before the flood")
        greeting += chunk
    sock.settimeout(None)
    data = (line * count).encode()

    def send():
        try:
            sock.sendall(data)
        except OSError:
            pass

    threading.Thread(target=send, daemon=True).start()
    return sock


# --------------------------------------------------------------------------------------
# test certificates (once per process)

_cert_lock = threading.Lock()
_cert_cache = {}


def metric_value(metrics_text, name, labels=None):
    """Sum of the samples of `name` whose labels include `labels` (dict); None if none."""
    total, seen = 0.0, False
    for line in metrics_text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if labels and any(got.get(k) != v for k, v in labels.items()):
            continue
        total += float(m.group(3))
        seen = True
    return total if seen else None


def make_test_cert(workdir_root):
    """(cert, key) for CN=localhost, SAN DNS:localhost, IP:127.0.0.1, via the openssl CLI."""
    with _cert_lock:
        if "pair" in _cert_cache:
            return _cert_cache["pair"]
        d = os.path.join(workdir_root, "tls")
        os.makedirs(d, exist_ok=True)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.chmod(key, 0o600)
        _cert_cache["pair"] = (cert, key)
        return cert, key


_crypt_cache = {}


def sha512_crypt(password):
    if password not in _crypt_cache:
        out = subprocess.run(["openssl", "passwd", "-6", password], check=True,
                             capture_output=True, text=True).stdout.strip()
        _crypt_cache[password] = out
    return _crypt_cache[password]


def thread_stacks(pid):
    """Backtraces of a hung process (gdb if installed, else /proc wchan per thread)."""
    out = []
    if shutil.which("gdb"):
        try:
            r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex",
                                "thread apply all bt 30"], capture_output=True, text=True,
                               timeout=60)
            lines = [l for l in r.stdout.splitlines() if l.startswith(("#", "Thread"))]
            out.append("---- gdb backtraces of pid %d\n%s" % (pid, "\n".join(lines[-400:])))
        except (subprocess.SubprocessError, OSError) as e:
            out.append("gdb failed: %s" % e)
    try:
        for tid in sorted(os.listdir("/proc/%d/task" % pid), key=int):
            base = "/proc/%d/task/%s/" % (pid, tid)
            comm = open(base + "comm").read().strip()
            wchan = open(base + "wchan").read().strip()
            out.append("thread %s %s wchan=%s" % (tid, comm, wchan))
    except OSError:
        pass
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# the daemon

_active = []          # Postern instances created by the running test
_session_root = [None]


def _root_dir():
    if _session_root[0] is None:
        _session_root[0] = tempfile.mkdtemp(prefix="postern-e2e-")
    return _session_root[0]


class Postern:
    """One posternd with all five listeners on free loopback ports, its own temp dir,
    passwd file, aliases file, config and log."""

    def __init__(self, overrides=None, users=None, aliases=None, config=None, start=True,
                 name=None):
        self.overrides = dict(overrides or {})
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.aliases = dict(DEFAULT_ALIASES if aliases is None else aliases)
        self.extra_config = dict(config or {})
        root = _root_dir()
        self.dir = tempfile.mkdtemp(prefix=(name or "srv") + "-", dir=root)
        self.mail_root = os.path.join(self.dir, "mail")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.ready_file = os.path.join(self.dir, "ready")
        self.log_path = os.path.join(self.dir, "posternd.log")
        self.passwd_path = os.path.join(self.dir, "users.passwd")
        self.aliases_path = os.path.join(self.dir, "aliases")
        self.config_path = os.path.join(self.dir, "postern.properties")
        self.cert, self.key = make_test_cert(root)
        self.proc = None
        self.start_failure = None
        self.exit_codes = []
        self.ports = {}
        self._write_users()
        _active.append(self)
        if start:
            self.start()

    # ---- files
    def _write_users(self):
        lines = []
        for user, u in self.users.items():
            scheme = u.get("scheme", "PLAIN")
            if scheme == "PLAIN":
                h = "{PLAIN}" + u["password"]
            elif scheme == "SHA512-CRYPT":
                h = "{SHA512-CRYPT}" + sha512_crypt(u["password"])
            else:
                h = u["hash"]
            lines.append("%s:%s::::::%s" % (user, h, u.get("extra", "")))
        with open(self.passwd_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(self.aliases_path, "w") as f:
            for a, dests in self.aliases.items():
                f.write("%s: %s\n" % (a, ", ".join(dests)))

    def _write_config(self):
        """The shipped etc/postern.properties, unchanged, followed by the test's changes: only
        what a test needs (ports, paths, users, the test certificate, the log format) plus
        whatever the test itself asks for. Later keys override earlier ones, so every value
        not named below is the shipped default, abuse controls included."""
        ports = free_ports(len(LISTENERS) + 1)
        self.ports = dict(zip(LISTENERS, ports))
        # A health port the test chose itself wins over the free one picked here.
        chosen = self.overrides.get("health.port") or self.extra_config.get("health.port")
        self.health_port = int(chosen) if chosen else ports[-1]
        with open(SHIPPED_CONFIG) as f:
            shipped = f.read()
        c = [
            "",
            "# ---- test changes (tests/e2e/postern_harness.py) -------------------------------",
            # Paths: everything lives in this server's temp dir.
            "server.mail_root = " + self.mail_root,
            "server.queue_dir = " + self.queue_dir,
            "server.ready_file = " + self.ready_file,
            # Tests stop servers often; a short grace keeps them fast.
            "server.shutdown_grace = " + STOP_GRACE,
            # Test servers run as whoever runs the tests (root in CI): allow it explicitly.
            "server.allow_root = true",
            "tls.cert_file = " + self.cert,
            "tls.key_file = " + self.key,
            # Health endpoint on a free port (the shipped 2080 would clash between tests).
            "health.port = %d" % self.health_port,
            # Queued mail stays in the queue (tests look at it) unless a test turns
            # delivery on (tests/e2e/test_delivery.py: -D delivery.enabled=true).
            "delivery.enabled = false",
        ]
        if os.environ.get("POSTERN_PLUGIN_DIR"):
            c.append("server.plugin_dir = " + os.environ["POSTERN_PLUGIN_DIR"])
        # Listeners: the shipped five, on free ports.
        c.append("listeners = " + ", ".join(LISTENERS))
        for name in LISTENERS:
            proto, role, tls = LISTENER_SPEC[name]
            c.append("listener.%s.address = 127.0.0.1" % name)
            c.append("listener.%s.port = %d" % (name, self.ports[name]))
            c.append("listener.%s.protocol = %s" % (name, proto))
            if role:
                c.append("listener.%s.role = %s" % (name, role))
            c.append("listener.%s.tls = %s" % (name, tls))
        c += [
            # Users: the test's passwd-file and aliases.
            "auth.backends = local",
            "auth.backend.local.plugin = passwd-file",
            "auth.backend.local.domains = *",
            "auth.backend.local.path = " + self.passwd_path,
            "auth.backend.local.aliases = " + self.aliases_path,
        ]
        if self.extra_config:
            c.append("# ---- this test's own changes")
        for k, v in self.extra_config.items():
            c.append("%s = %s" % (k, v))
        with open(self.config_path, "w") as f:
            f.write(shipped.rstrip("\n") + "\n" + "\n".join(c) + "\n")

    # ---- process
    def command(self):
        cmd = [POSTERND, "--config", self.config_path]
        for k, v in self.overrides.items():
            cmd += ["-D", "%s=%s" % (k, v)]
        return cmd

    def start(self, keep_ports=False):
        if not os.access(POSTERND, os.X_OK):
            raise TestFailure("posternd not found at %s (set POSTERN_BUILD_DIR)" % POSTERND)
        for attempt in range(4):
            if not keep_ports or not self.ports:
                self._write_config()
            if os.path.exists(self.ready_file):
                os.unlink(self.ready_file)
            # The command line goes to its own file so log searches never match it.
            with open(os.path.join(self.dir, "command"), "a") as f:
                f.write(" ".join(self.command()) + "\n")
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
            log.close()
            deadline = time.monotonic() + START_TIMEOUT
            while not os.path.exists(self.ready_file):
                if self.proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    self.proc.kill()
                    self.proc.wait()
                    raise TestFailure("posternd not ready within %ss\n%s"
                                      % (START_TIMEOUT, self.tail()))
                time.sleep(0.02)
            else:
                return self
            rc = self.proc.returncode
            self.proc = None
            if re.search(r"(?i)address already in use|EADDRINUSE", self.log_text()) and attempt < 3 \
                    and not keep_ports:
                # A health port the test chose (a cluster node's) that something else took
                # meanwhile is picked again too; the mail ports are picked again by
                # _write_config.
                if "health endpoint: cannot listen on [127.0.0.1]:%d:" % self.health_port in self.log_text() \
                        and "health.port" in self.extra_config and "health.port" not in self.overrides:
                    self.extra_config["health.port"] = str(free_ports(1)[0])
                continue
            self.start_failure = rc
            raise TestFailure("posternd exited with %s before it was ready\n%s" % (rc, self.tail()))
        raise TestFailure("could not start posternd")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, expect_code=0, timeout=STOP_TIMEOUT, cut_drain_delay=True):
        """SIGTERM; assert the process exits with expect_code within timeout. Returns
        the elapsed seconds. A node whose /readyz was being polled (a balancer, a test)
        keeps serving for server.drain_delay after SIGTERM (shutdown.announce): unless
        cut_drain_delay is False, a second SIGTERM ends that wait, as an operator may."""
        if self.proc is None:
            return 0.0
        proc = self.proc
        self.proc = None
        if proc.poll() is not None:
            self.exit_codes.append(proc.returncode)
            raise TestFailure("posternd had already exited with %s\n%s"
                              % (proc.returncode, self.tail()))
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        if cut_drain_delay:
            try:
                proc.wait(0.5)
            except subprocess.TimeoutExpired:
                if "event=shutdown.announce " in self.log_text():
                    proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stacks = thread_stacks(proc.pid)
            proc.kill()
            proc.wait()
            raise TestFailure("posternd did not exit within %ss of SIGTERM\n%s\n%s"
                              % (timeout, self.tail(), stacks))
        elapsed = time.monotonic() - t0
        self.exit_codes.append(rc)
        if expect_code is not None and rc != expect_code:
            raise TestFailure("posternd exited with %s after SIGTERM (expected %s)\n%s"
                              % (rc, expect_code, self.tail()))
        return elapsed

    def restart(self, overrides=None):
        self.stop()
        if overrides is not None:
            self.overrides = dict(overrides)
        self.start(keep_ports=True)

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.stop()
        else:
            self.kill()
        return False

    # ---- metrics
    def metrics_text(self):
        """The health listener's /metrics page."""
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.health_port, timeout=10) as r:
            return r.read().decode()

    def metric(self, name, labels=None, default=0.0):
        """Sum of the samples of `name` whose labels include `labels` (a dict); `default` if none."""
        v = metric_value(self.metrics_text(), name, labels)
        return default if v is None else v

    # ---- logs
    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def tail(self, n=80):
        lines = self.log_text().splitlines()[-n:]
        return ("---- %s\n---- last %d lines of %s\n" % (" ".join(self.command()), len(lines),
                                                        self.log_path)
                + "\n".join(lines) + "\n----")

    def log_contains(self, pattern, timeout=5.0):
        """Wait until a log line matches the regex; return the match."""
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log_text()), timeout,
                        what="log line matching %r in %s" % (pattern, self.log_path))

    def log_count(self, pattern):
        return len(re.findall(pattern, self.log_text()))

    # ---- clients
    def port(self, name):
        return self.ports[name]

    def smtp(self, listener="mx", source="127.0.0.1", ehlo=True, starttls=False,
             helo_name="client.example"):
        """smtplib.SMTP to a plain/STARTTLS listener (optionally EHLO + STARTTLS + EHLO)."""
        s = smtplib.SMTP("127.0.0.1", self.port(listener), local_hostname=helo_name,
                         timeout=IO_TIMEOUT, source_address=(source, 0))
        if ehlo or starttls:
            expect(s.ehlo(), 250, what="EHLO")
        if starttls:
            expect(s.starttls(context=tls_context()), 220, what="STARTTLS")
            expect(s.ehlo(), 250, what="EHLO after STARTTLS")
        return s

    def smtp_ssl(self, listener="submissions", source="127.0.0.1", ehlo=True,
                 helo_name="client.example"):
        s = smtplib.SMTP_SSL("127.0.0.1", self.port(listener), local_hostname=helo_name,
                             timeout=IO_TIMEOUT, source_address=(source, 0),
                             context=tls_context())
        if ehlo:
            expect(s.ehlo(), 250, what="EHLO")
        return s

    def submission(self, user, password, implicit=False, source="127.0.0.1", mech="PLAIN"):
        """An authenticated submission session (STARTTLS on 'submission' or implicit TLS
        on 'submissions')."""
        s = (self.smtp_ssl("submissions", source=source) if implicit
             else self.smtp("submission", source=source, starttls=True))
        smtp_auth(s, user, password, mech)
        return s

    def pop3(self, listener="pop3", source="127.0.0.1", stls=False):
        p = POP3Src("127.0.0.1", self.port(listener), source=source)
        if stls:
            p.stls(context=tls_context())
        return p

    def pop3_ssl(self, listener="pop3s", source="127.0.0.1"):
        return POP3SSLSrc("127.0.0.1", self.port(listener), source=source)

    def pop3_login(self, user, password, tls="implicit", source="127.0.0.1"):
        p = self.pop3_ssl(source=source) if tls == "implicit" else self.pop3(source=source,
                                                                            stls=True)
        p.user(user)
        p.pass_(password)
        return p

    def raw(self, listener="mx", source="127.0.0.1", tls=None):
        if tls is None:
            tls = LISTENER_SPEC[listener][2] == "implicit"
        return RawConn(self.port(listener), source=source, tls=tls)

    # ---- storage
    def maildir(self, user):
        local, domain = user.split("@", 1)
        return os.path.join(self.mail_root, domain, local)

    def maildir_files(self, user, subdirs=("new", "cur")):
        out = []
        base = self.maildir(user)
        for sub in subdirs:
            d = os.path.join(base, sub)
            if os.path.isdir(d):
                out += sorted(os.path.join(d, f) for f in os.listdir(d))
        return out

    def maildir_messages(self, user):
        """Contents (bytes) of every message in new/ and cur/, ordered by file name."""
        files = self.maildir_files(user)
        files.sort(key=lambda p: os.path.basename(p))
        out = []
        for p in files:
            with open(p, "rb") as f:
                out.append(f.read())
        return out

    def maildir_find(self, user, marker):
        if isinstance(marker, str):
            marker = marker.encode()
        return [m for m in self.maildir_messages(user) if marker in m]

    def all_mailbox_files(self, subdirs=("new", "cur")):
        out = []
        for dp, dn, fn in os.walk(self.mail_root):
            if os.path.basename(dp) in subdirs:
                out += [os.path.join(dp, f) for f in fn]
        return out

    def prepare_unprivileged(self, user="nobody"):
        """Before start(), for a test that serves as `user` (it sets server.user itself): every
        directory up to the test's is searchable, the mail root and the queue are the user's,
        the users and aliases files readable (the TLS key stays root's: read before the drop).
        Returns the user's pwd entry."""
        pw = pwd.getpwnam(user)
        d = self.dir
        while d != "/":
            os.chmod(d, os.stat(d).st_mode | 0o711)
            d = os.path.dirname(d)
        os.chmod(self.dir, 0o777)
        for sub in (self.mail_root, self.queue_dir):
            os.makedirs(sub, exist_ok=True)
            os.chown(sub, pw.pw_uid, pw.pw_gid)
        for f in (self.passwd_path, self.aliases_path):
            if os.path.exists(f):
                os.chmod(f, 0o644)
        return pw

    def queue_files(self):
        """Every file in the queue, but the daemon's own posternd.lock (held while it runs)."""
        out = []
        for dp, dn, fn in os.walk(self.queue_dir):
            out += [os.path.join(dp, f) for f in fn if not (dp == self.queue_dir and f == "posternd.lock")]
        return sorted(out)


def smtp_auth(s, user, password, mech="PLAIN", initial_response=True):
    """AUTH PLAIN / LOGIN with smtplib, asserting 235 2.7.0."""
    s.user, s.password = user, password
    if mech == "PLAIN":
        code, msg = s.auth("PLAIN", s.auth_plain, initial_response_ok=initial_response)
    elif mech == "LOGIN":
        code, msg = s.auth("LOGIN", s.auth_login, initial_response_ok=initial_response)
    else:
        raise ValueError(mech)
    expect((code, msg), 235, "2.7.0", what="AUTH %s as %s" % (mech, user))


def pop_retr(p, n):
    """RETR n as the exact bytes (CRLF line ends, dot-unstuffed)."""
    resp, lines, octets = p.retr(n)
    return b"".join(l + b"\r\n" for l in lines)


def pop_find(p, marker):
    """(number, bytes) of the message containing marker in a POP3 session."""
    if isinstance(marker, str):
        marker = marker.encode()
    count, _ = p.stat()
    for n in range(1, count + 1):
        data = pop_retr(p, n)
        if marker in data:
            return n, data
    raise TestFailure("no message with marker %r in the POP3 mailbox (%d messages)"
                      % (marker, count))


def drop(client):
    """Close a poplib/smtplib client's connection abruptly: no QUIT, no TLS close_notify.
    (Closing only .sock is not enough: the makefile() object keeps the descriptor open.)"""
    for attr in ("file",):
        f = getattr(client, attr, None)
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
    sock = getattr(client, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def run(cmd, timeout=60, input=None, check_rc=True):
    """Run an external client (swaks, curl); return CompletedProcess (bytes)."""
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, input=input)
    if check_rc and r.returncode != 0:
        raise TestFailure("%s exited with %d\nstdout:\n%s\nstderr:\n%s"
                          % (" ".join(cmd), r.returncode,
                             r.stdout.decode("utf-8", "replace")[-4000:],
                             r.stderr.decode("utf-8", "replace")[-4000:]))
    return r


# --------------------------------------------------------------------------------------
# the runner

def run_tests(namespace):
    tests = [(n, f) for n, f in namespace.items()
             if n.startswith("test_") and inspect.isfunction(f)
             and f.__code__.co_filename == namespace.get("__file__", f.__code__.co_filename)]
    tests.sort(key=lambda nf: nf[1].__code__.co_firstlineno)
    selected = sys.argv[1:]
    if selected:
        tests = [(n, f) for n, f in tests if any(s in n for s in selected)]
    script = os.path.basename(namespace.get("__file__", "?"))
    print("%s: %d tests, posternd = %s" % (script, len(tests), POSTERND), flush=True)
    passed, failed = 0, []
    keep = os.environ.get("POSTERN_KEEP") == "1"
    for name, fn in tests:
        del _active[:]
        t0 = time.monotonic()
        print("[ RUN  ] %s" % name, flush=True)
        err = None
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - report everything, incl. KeyboardInterrupt
            if isinstance(e, KeyboardInterrupt):
                raise
            err = traceback.format_exc()
        # Stop whatever the test left running; an unclean exit fails the test.
        for srv in list(_active):
            if srv.running():
                try:
                    srv.stop()
                except BaseException:  # noqa: BLE001
                    if err is None:
                        err = traceback.format_exc()
        dt = time.monotonic() - t0
        if err is None:
            passed += 1
            print("[  OK  ] %s (%.1fs)" % (name, dt), flush=True)
            if os.environ.get("POSTERN_TEST_VERBOSE") == "1":
                for srv in _active:
                    print(srv.tail())
        else:
            failed.append(name)
            print("[ FAIL ] %s (%.1fs)\n%s" % (name, dt, err), flush=True)
            for srv in _active:
                print(srv.tail(80), flush=True)
                keep = True
    root = _session_root[0]
    if root and not keep:
        shutil.rmtree(root, ignore_errors=True)
    elif root:
        print("kept temp dir %s" % root)
    if failed:
        print("failed: " + ", ".join(failed))
    print("%d passed, %d failed" % (passed, len(failed)), flush=True)
    sys.exit(1 if failed else 0)
