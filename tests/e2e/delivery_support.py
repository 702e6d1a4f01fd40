"""Outbound delivery test support: a local dnsmasq (MX/A records for *.test) and local SMTP
sinks (aiosmtpd) that answer as a test tells them to.

    with DnsServer(mx={"a.test": [(10, "mx1.a.test"), (20, "mx2.a.test")]},
                   hosts={"mx1.a.test": "127.0.0.10", "mx2.a.test": "127.0.0.11"}) as dns, \\
         Sink("127.0.0.10", port) as sink:
        Postern(overrides=delivery_overrides(dns, port))

Every sink of one test listens on the same port (delivery.smtp_port) on its own loopback
address; pick it with sink_port(). dnsmasq answers for the "test" zone only (--local=/test/),
so unknown names there are NXDOMAIN, and nothing is forwarded to the outside.
aiosmtpd comes from Debian's python3-aiosmtpd; when the test runs under another Python
its dist-packages directory is added to sys.path.
"""

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

from postern_harness import TestFailure, free_port, wait_for, make_test_cert, _root_dir

try:
    import aiosmtpd  # noqa: F401
except ImportError:  # pyenv/venv Python: use the Debian package
    sys.path.append("/usr/lib/python3/dist-packages")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402


# --------------------------------------------------------------------------------------
# DNS

class DnsServer:
    """dnsmasq on 127.0.0.1:<free port>. mx: {domain: [(pref, host), ...]} (host "." = null
    MX); hosts: {name: ip}; txt: {name: [text, ...]} (one TXT record per text). Names under
    .test that are not given are NXDOMAIN."""

    def __init__(self, mx=None, hosts=None, txt=None):
        self.mx = dict(mx or {})
        self.hosts = dict(hosts or {})
        self.txt = dict(txt or {})
        self.proc = None
        self.port = None

    def start(self):
        if not shutil.which("dnsmasq"):
            raise TestFailure("dnsmasq not installed")
        for _ in range(5):
            self.port = _free_udp_tcp_port()
            cmd = ["dnsmasq", "--no-daemon", "--port=%d" % self.port, "--listen-address=127.0.0.1",
                   "--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                   "--local=/test/", "--log-facility=-", "--user=" + _dnsmasq_user()]
            for domain, records in self.mx.items():
                for pref, host in records:
                    cmd.append("--mx-host=%s,%s,%d" % (domain, host, pref))
            for name, ips in self.hosts.items():  # one address, or a list of them
                for ip in (ips if isinstance(ips, (list, tuple)) else [ips]):
                    cmd.append("--host-record=%s,%s" % (name, ip))
            for name, texts in self.txt.items():
                for text in texts:  # no commas: dnsmasq splits the strings there
                    cmd.append("--txt-record=%s,%s" % (name, text))
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                wait_for(lambda: self.proc.poll() is not None or _udp_answers(self.port), 5.0,
                         what="dnsmasq on port %d" % self.port)
            except TestFailure:
                self.stop()
                raise
            if self.proc.poll() is None:
                return self
            err = self.proc.stderr.read().decode("utf-8", "replace")
            self.proc = None
            if "in use" not in err:
                raise TestFailure("dnsmasq failed: " + err)
        raise TestFailure("could not start dnsmasq")

    def address(self):
        return "127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        return False


def _dnsmasq_user():
    # dnsmasq drops privileges to "nobody" by default; stay as we are when not root.
    return "root" if os.geteuid() == 0 else (os.environ.get("USER") or "nobody")


def _free_udp_tcp_port():
    while True:
        p = free_port()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            u.close()


def _udp_answers(port):
    """True once dnsmasq answers a query (any rcode)."""
    q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05probe\x04test\x00\x00\x01\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    try:
        s.sendto(q, ("127.0.0.1", port))
        return s.recv(512)[:2] == b"\x12\x34"
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------------------
# SMTP sinks

def sink_port(addresses=("127.0.0.1",)):
    """A port free on every given loopback address (sinks of one test share it)."""
    for _ in range(50):
        p = free_port()
        ok = True
        for a in addresses:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((a, p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    raise TestFailure("no common free port")


class Received:
    def __init__(self, mail_from, rcpt_tos, content, tls, mail_options, auth_user=None):
        self.auth_user = auth_user
        self.mail_from = mail_from
        self.rcpt_tos = list(rcpt_tos)
        self.content = content
        self.tls = tls
        self.mail_options = list(mail_options)


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink.rcpt_reply(address)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):
        sink = self.sink
        content = envelope.original_content
        with sink.lock:
            sink.data_seen.append(content)
        if sink.stall is not None and sink.stall(content):
            with sink.lock:
                sink.stalled.append(content)
            # Never answer: the client sees its final-dot timeout or is killed meanwhile.
            while not sink.stopping:
                await asyncio.sleep(0.05)
            return "421 4.3.2 shutting down"
        reply = sink.data_reply(content) if callable(sink.data_reply) else sink.data_reply
        if reply.startswith("2"):
            with sink.lock:
                user = session.auth_data if session.authenticated else None
                sink.messages.append(Received(envelope.mail_from, envelope.rcpt_tos, content,
                                              session.ssl is not None, envelope.mail_options,
                                              user))
        return reply


class Sink:
    """An aiosmtpd server on (address, port) in a thread.

    rcpt: {address: "550 5.1.1 no such user"} replies for some recipients (others 250);
    data_reply: "250 ..." or a callable(content) -> reply for the final dot;
    stall: callable(content) -> True to never answer that message's final dot;
    tls: offer STARTTLS with the harness's test certificate; require_tls: refuse MAIL
    before STARTTLS; auth: {user: password} offers AUTH PLAIN/LOGIN (after STARTTLS) and
    requires it. messages: what was accepted (answered 2xx), in order."""

    def __init__(self, address, port, rcpt=None, data_reply="250 2.0.0 Ok: queued", stall=None,
                 tls=False, require_tls=False, auth=None, cert=None):
        self.cert = cert  # (cert, key) files for STARTTLS; None: the harness's test certificate
        self.auth = auth
        self.address = address
        self.port = port
        self.rcpt = dict(rcpt or {})
        self.data_reply = data_reply
        self.stall = stall
        self.tls = tls
        self.require_tls = require_tls
        self.messages = []
        self.auth_attempts = []  # logins the client tried (with auth), accepted or not
        self.data_seen = []
        self.stalled = []
        self.lock = threading.Lock()
        self.stopping = False
        self.controller = None

    def rcpt_reply(self, address):
        r = self.rcpt.get(address) or self.rcpt.get("*")
        return r or "250 2.1.5 Ok"

    def start(self):
        kwargs = {}
        if self.tls or self.require_tls:
            cert, key = self.cert or make_test_cert(_root_dir())
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            kwargs["tls_context"] = ctx
            kwargs["require_starttls"] = self.require_tls
        if self.auth:
            def authenticator(server, session, envelope, mechanism, auth_data):
                with self.lock:
                    self.auth_attempts.append(getattr(auth_data, "login", b"").decode("utf-8", "replace"))
                ok = (isinstance(auth_data, LoginPassword) and
                      self.auth.get(auth_data.login.decode()) == auth_data.password.decode())
                return AuthResult(success=ok, auth_data=auth_data.login.decode() if ok else None)
            kwargs["authenticator"] = authenticator
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = True
        self.controller = Controller(_Handler(self), hostname=self.address, port=self.port,
                                     server_hostname="sink-%s" % self.address, **kwargs)
        self.controller.start()
        return self

    def stop(self):
        self.stopping = True
        if self.controller is not None:
            try:
                self.controller.stop()
            except Exception:  # noqa: BLE001 - already stopped
                pass
            self.controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        return False

    def count(self):
        with self.lock:
            return len(self.messages)

    def find(self, marker):
        if isinstance(marker, str):
            marker = marker.encode()
        with self.lock:
            return [m for m in self.messages if marker in m.content]

    def wait_for(self, marker, n=1, timeout=20.0):
        return wait_for(lambda: len(self.find(marker)) >= n and self.find(marker), timeout,
                        what="%d message(s) with %r at sink %s:%d" % (n, marker, self.address,
                                                                      self.port))


def delivery_overrides(dns, port, **extra):
    """-D overrides that turn delivery on against the local DNS and sinks."""
    o = {
        "delivery.enabled": "true",
        "delivery.dns_server": dns.address(),
        "delivery.dns_timeout": "2s",
        "delivery.smtp_port": str(port),
        "delivery.retry_schedule": "1s",
        "delivery.connect_timeout": "5s",
        "delivery.scan_interval": "1s",
    }
    o.update({k.replace("__", "."): v for k, v in extra.items()})
    return o
