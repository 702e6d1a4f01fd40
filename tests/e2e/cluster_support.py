"""Cluster e2e support: a real HAProxy in front of real posternd nodes that share one
PostgreSQL (cluster.conninfo) and one mail root; PROXY protocol header builders for raw-socket
tests; a tiny HTTP client for /healthz, /readyz and /metrics.

    pg = pg_support.PgServer()
    shared = new_mail_root()
    a = start_node(pg, "node-a", shared)            # a Postern (postern_harness) in cluster mode
    b = start_node(pg, "node-b", shared)
    with HAProxy(routes(a, b)) as lb:               # frontends "pop3s_a", "mx_b", "mx_all", ...
        lb.wait_servers_up()                        # health checks on /readyz say UP
        s = lb.smtp("mx_b", source="127.0.0.2")    # the node sees 127.0.0.2 (PROXY v2)

Every listener of a node has proxy_protocol = true and proxy_trusted = 127.0.0.1: HAProxy
connects from 127.0.0.1 and sends a v2 header; a client connecting directly from 127.0.0.2,
127.0.0.3, ... is untrusted and speaks plain SMTP/POP3 with its own address. A direct client
from 127.0.0.1 would be taken for the balancer and must send a header.

Standard library only. HAProxy runs in the foreground (`haproxy -f cfg -db`) as a
subprocess on free loopback ports, with its admin socket in its temp dir for `show stat`.
"""

import http.client
import os
import poplib
import shutil
import signal
import smtplib
import socket
import struct
import subprocess
import tempfile
import time

import pg_support as P
from postern_harness import (IO_TIMEOUT, LISTENERS, LISTENER_SPEC, POP3Src, POP3SSLSrc, Postern,
                             RawConn, TestFailure, _root_dir, expect, free_port, free_ports,
                             metric_value, tls_context, wait_for)  # noqa: F401 (metric_value: re-exported)

HAPROXY = os.environ.get("POSTERN_HAPROXY") or shutil.which("haproxy") or "/usr/sbin/haproxy"
BALANCER_IP = "127.0.0.1"


# --------------------------------------------------------------------------------------
# nodes

def new_mail_root():
    """A mail root both nodes use (shared storage in production)."""
    d = tempfile.mkdtemp(prefix="shared-mail-", dir=_root_dir())
    return d


def proxy_listener_config(trusted=BALANCER_IP, listeners=LISTENERS, tls_counts=None):
    c = {}
    for name in listeners:
        c["listener.%s.proxy_protocol" % name] = "true"
        c["listener.%s.proxy_trusted" % name] = trusted
        if tls_counts is not None:
            c["listener.%s.proxy_tls_counts" % name] = "true" if tls_counts else "false"
    return c


def node_config(pg, node_id, health_port, extra=None):
    """The cluster part of a node's configuration (the harness writes the rest)."""
    c = {
        "cluster.conninfo": pg.conninfo(),
        "cluster.password_file": pg.password_file,
        "cluster.node_id": node_id,
        "cluster.pool_size": "4",
        "cluster.connect_timeout": "2s",
        "cluster.statement_timeout": "2s",
        "cluster.grant_cache_ttl": "1s",
        "cluster.lock_lease": "4s",
        "cluster.sweep_interval": "2s",
        "pop_before_smtp.lifetime": "3s",
        "server.proxy_timeout": "2s",
        "health.address": "127.0.0.1",
        "health.port": str(health_port),
    }
    c.update(proxy_listener_config())
    c.update(extra or {})
    return c


def start_node(pg, node_id, mail_root, extra=None, overrides=None, users=None):
    """A posternd in cluster mode on free ports with mail_root shared with the other nodes.
    Its health port is `node.health_port`. `users`: its passwd-file (the harness's by default)."""
    health = free_port()
    p = Postern(config=node_config(pg, node_id, health, extra), overrides=overrides, start=False,
                name=node_id, users=users)
    p.mail_root = mail_root            # written into server.mail_root by the harness
    p.health_port = health
    p.node_id = node_id
    p.start()
    return p


def truncate_cluster_tables(pg):
    # The account security tables too: a login an earlier test made from an address makes it
    # one the account is known from (auth.penalty.known_address_failures).
    pg.sql("TRUNCATE pop_before_smtp_grants, pop_before_smtp_revocations, auth_penalties, rate_counters, maildrop_leases,"
           " account_security_ips, account_security_counts, account_flags, account_logins, account_login_names, account_login_activity")


def sigkill(node):
    """SIGKILL a node (no drain, no lease release) and forget its process."""
    if node.proc is not None:
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        node.exit_codes.append(node.proc.returncode)
        node.proc = None


# --------------------------------------------------------------------------------------
# HTTP (health endpoint)

def http_get(port, path, host="127.0.0.1", timeout=5.0):
    """(status, body text) of GET path; (None, error) when nothing answers."""
    try:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read().decode("utf-8", "replace")
        c.close()
        return r.status, body
    except (OSError, http.client.HTTPException) as e:
        return None, str(e)


# --------------------------------------------------------------------------------------
# HAProxy

def routes(a, b, listeners=LISTENERS):
    """Frontends "<listener>_a" (node a only), "<listener>_b" (node b only) and
    "<listener>_all" (both, round robin) for every listener."""
    r = {}
    for name in listeners:
        r[name + "_a"] = (name, [a])
        r[name + "_b"] = (name, [b])
        r[name + "_all"] = (name, [a, b])
    return r


class HAProxy:
    """haproxy -db with a generated config: TCP mode, send-proxy-v2 to every node, health
    checks GET /readyz on each node's health port (option httpchk + check port)."""

    def __init__(self, routes, check_inter="300ms", start=True):
        self.routes = dict(routes)
        self.dir = tempfile.mkdtemp(prefix="haproxy-", dir=_root_dir())
        self.cfg_path = os.path.join(self.dir, "haproxy.cfg")
        self.log_path = os.path.join(self.dir, "haproxy.log")
        self.sock_path = os.path.join(self.dir, "admin.sock")
        self.check_inter = check_inter
        self.ports = {}
        self.proc = None
        if start:
            self.start()

    def config_text(self):
        names = sorted(self.routes)
        ports = free_ports(len(names))
        self.ports = dict(zip(names, ports))
        out = [
            "# generated by tests/e2e/cluster_support.py (see etc/haproxy.cfg for the real one)",
            "global",
            "    log stderr format raw local0 info",
            "    stats socket %s mode 600 level admin" % self.sock_path,
            "    maxconn 4096",
            "",
            "defaults",
            "    mode tcp",
            "    log global",
            "    option tcplog",
            "    option log-health-checks",
            "    timeout connect 2s",
            "    timeout client 2m",
            "    timeout server 2m",
            "    timeout check 2s",
            "    default-server inter %s fall 2 rise 1" % self.check_inter,
            "",
        ]
        for name in names:
            listener, nodes = self.routes[name]
            out += [
                "frontend fe_%s" % name,
                "    bind 127.0.0.1:%d" % self.ports[name],
                "    default_backend be_%s" % name,
                "",
                "backend be_%s" % name,
                "    balance roundrobin",
                "    option httpchk",
                "    http-check send meth GET uri /readyz",
                "    http-check expect status 200",
            ]
            for n in nodes:
                out.append("    server %s 127.0.0.1:%d send-proxy-v2 check port %d"
                           % (n.node_id, n.port(listener), n.health_port))
            out.append("")
        return "\n".join(out) + "\n"

    def start(self, attempts=4):
        """Starts haproxy. A frontend port taken between free_ports() and haproxy's bind (by
        a test running beside this one: CI runs two at a time) is retried on fresh ports, as
        the harness does for posternd's own ports."""
        for attempt in range(attempts):
            with open(self.cfg_path, "w") as f:
                f.write(self.config_text())  # fresh free ports each time
            start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([HAPROXY, "-f", self.cfg_path, "-db"], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
            log.close()

            def up():
                if self.proc.poll() is not None:
                    raise TestFailure("haproxy exited with %s\n%s" % (self.proc.returncode, self.log_text()))
                return self.stat_rows(quiet=True)
            try:
                wait_for(up, timeout=15, what="haproxy admin socket")
                return self
            except TestFailure:
                with open(self.log_path, "rb") as f:
                    f.seek(start)
                    taken = b"Address already in use" in f.read()
                if not taken or attempt + 1 == attempts:
                    raise
                self.proc = None
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)      # soft stop
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.stop()
        return False

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # ---- admin socket
    def admin(self, command):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.sock_path)
            s.sendall(command.encode() + b"\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data.decode("utf-8", "replace")
        finally:
            s.close()

    def stat_rows(self, quiet=False):
        """[{pxname, svname, status, ...}] from `show stat`."""
        try:
            text = self.admin("show stat")
        except OSError:
            if quiet:
                return None
            raise
        lines = [l for l in text.splitlines() if l.strip()]
        if not lines or not lines[0].startswith("# "):
            return None
        cols = lines[0][2:].split(",")
        return [dict(zip(cols, l.split(","))) for l in lines[1:]]

    def server_states(self):
        """{(backend, server): status} e.g. ("be_mx_a", "node-a"): "UP"."""
        out = {}
        for r in self.stat_rows() or []:
            if r.get("svname") not in ("FRONTEND", "BACKEND"):
                out[(r["pxname"], r["svname"])] = r.get("status", "")
        return out

    def node_states(self, node_id):
        return {k: v for k, v in self.server_states().items() if k[1] == node_id}

    def wait_servers(self, want, node_id=None, timeout=15.0):
        """Wait until every server (of node_id, or all) has the status `want` ("UP", "DOWN";
        "UP 1/2" is a server still being checked)."""
        def ok():
            st = self.node_states(node_id) if node_id else self.server_states()
            return st and all(v == want for v in st.values())
        try:
            wait_for(ok, timeout=timeout, interval=0.1,
                     what="haproxy servers%s %s" % ((" of " + node_id) if node_id else "", want))
        except TestFailure as e:
            raise TestFailure("%s\nstates: %r\n%s" % (e, self.server_states(), self.log_text()[-3000:]))

    def wait_servers_up(self, node_id=None, timeout=15.0):
        self.wait_servers("UP", node_id, timeout)

    # ---- clients through the balancer
    def port(self, route):
        return self.ports[route]

    def _listener(self, route):
        return self.routes[route][0]

    def smtp(self, route, source, ehlo=True, starttls=False, helo_name="client.example"):
        s = smtplib.SMTP("127.0.0.1", self.port(route), local_hostname=helo_name, timeout=IO_TIMEOUT,
                         source_address=(source, 0))
        if ehlo or starttls:
            expect(s.ehlo(), 250, what="EHLO via %s" % route)
        if starttls:
            expect(s.starttls(context=tls_context()), 220, what="STARTTLS via %s" % route)
            expect(s.ehlo(), 250, what="EHLO after STARTTLS via %s" % route)
        return s

    def smtp_ssl(self, route, source, ehlo=True, helo_name="client.example"):
        s = smtplib.SMTP_SSL("127.0.0.1", self.port(route), local_hostname=helo_name, timeout=IO_TIMEOUT,
                             source_address=(source, 0), context=tls_context())
        if ehlo:
            expect(s.ehlo(), 250, what="EHLO via %s" % route)
        return s

    def pop3(self, route, source, stls=False):
        p = POP3Src("127.0.0.1", self.port(route), source=source)
        if stls:
            p.stls(context=tls_context())
        return p

    def pop3_ssl(self, route, source):
        return POP3SSLSrc("127.0.0.1", self.port(route), source=source)

    def raw(self, route, source, tls=None):
        if tls is None:
            tls = LISTENER_SPEC[self._listener(route)][2] == "implicit"
        return RawConn(self.port(route), source=source, tls=tls)


# --------------------------------------------------------------------------------------
# PROXY protocol headers (HAProxy's proxy-protocol.txt)

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_CLIENT_SSL = 0x01


def proxy_v1(src="192.0.2.10", dst="192.0.2.1", sport=40000, dport=25):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def tlv(t, value):
    return struct.pack("!BH", t, len(value)) + value


def ssl_tlv(client=PP2_CLIENT_SSL, verify=0, version=b"TLSv1.3"):
    sub = tlv(PP2_SUBTYPE_SSL_VERSION, version) if version else b""
    return tlv(PP2_TYPE_SSL, struct.pack("!BI", client, verify) + sub)


def proxy_v2(src="192.0.2.10", dst="192.0.2.1", sport=40000, dport=25, command=1, tlvs=b"",
             length=None, family=None, address_block=None):
    """A v2 header. command 1 = PROXY, 0 = LOCAL. length/family/address_block override the
    computed fields (for malformed headers)."""
    if address_block is None:
        if command == 0:
            address_block, fam = b"", 0x00
        elif ":" in src:
            address_block = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                             + struct.pack("!HH", sport, dport))
            fam = 0x21
        else:
            address_block = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
            fam = 0x11
    else:
        fam = 0x11
    if family is not None:
        fam = family
    body = address_block + tlvs
    return (V2_SIGNATURE + bytes([0x20 | command, fam])
            + struct.pack("!H", len(body) if length is None else length) + body)


def connect(port, source="127.0.0.1", timeout=IO_TIMEOUT):
    s = socket.create_connection(("127.0.0.1", port), timeout, source_address=(source, 0))
    s.settimeout(timeout)
    return s


def read_all(sock, timeout=5.0):
    """Everything until EOF (or a reset); (bytes, "eof"|"reset"|"timeout")."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, "eof"
            data += chunk
    except ConnectionResetError:
        return data, "reset"
    except socket.timeout:
        return data, "timeout"


def proxied_raw(port, header, source="127.0.0.1", tls=False):
    """A RawConn that has sent `header` first (then TLS if asked): a balancer's connection."""
    c = RawConn(port, source=source, tls=False)
    c.send(header)
    if tls:
        c.starttls()
    return c


def cluster_pg():
    """One PostgreSQL for the test file (pg_support.shared_server), running again if a test
    stopped it, with the cluster tables emptied for every test."""
    s = P.shared_server()
    if not s.running:
        s.start()
    truncate_cluster_tables(s)
    return s


def pop_answer(client, user, password):
    """The answer to PASS on `client` ('+OK ...' or the -ERR line); the session is closed afterwards."""
    try:
        client.user(user)
        return client.pass_(password).decode("utf-8", "replace")
    except poplib.error_proto as e:
        return e.args[0].decode("utf-8", "replace") if isinstance(e.args[0], bytes) else str(e)
    finally:
        try:
            client.quit()
        except (poplib.error_proto, OSError, EOFError):
            pass
