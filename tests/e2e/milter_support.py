"""A scripted milter (Sendmail milter protocol 6) for the e2e tests, and helpers that
start real third-party milters (rspamd's proxy worker in milter mode, OpenDKIM).

ScriptedMilter speaks the real wire protocol on a free loopback port: it answers the
option negotiation, records every command (and the macros sent with it) per connection,
and answers each step with what `decide(cmd, data, conn)` returns: a list of reply
packets built with the helpers below (default: continue). `hang_on` makes it stop
answering at a step (a milter that times out).
"""

import grp
import os
import pwd
import shutil
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading

from postern_harness import free_port, wait_for

# Actions / protocol flags (libmilter mfdef.h).
ALL_ACTIONS = 0x1FF


def packet(cmd, data=b""):
    if isinstance(cmd, str):
        cmd = cmd.encode()
    return struct.pack(">I", len(data) + 1) + cmd + data


def z(*parts):
    return b"".join((p.encode() if isinstance(p, str) else p) + b"\0" for p in parts)


CONTINUE = packet("c")
ACCEPT = packet("a")
REJECT = packet("r")
TEMPFAIL = packet("t")
DISCARD = packet("d")


def reply_code(text):
    return packet("y", z(text))


def add_header(name, value):
    return packet("h", z(name, value))


def insert_header(index, name, value):
    return packet("i", struct.pack(">I", index) + z(name, value))


def change_header(index, name, value):
    return packet("m", struct.pack(">I", index) + z(name, value))


def add_rcpt(addr):
    return packet("+", z("<%s>" % addr))


def del_rcpt(addr):
    return packet("-", z("<%s>" % addr))


def change_from(addr):
    return packet("e", z("<%s>" % addr))


def replace_body(data):
    return packet("b", data if isinstance(data, bytes) else data.encode())


def quarantine(reason):
    return packet("q", z(reason))


def parse_strings(data):
    parts = data.split(b"\0")
    return [p.decode("utf-8", "replace") for p in parts[:-1]] if parts and parts[-1] == b"" else \
        [p.decode("utf-8", "replace") for p in parts]


class Conn:
    """One MTA connection as the milter saw it."""

    def __init__(self):
        self.commands = []   # (cmd char, data bytes)
        self.macros = {}     # cmd char -> {name: value}

    def cmds(self):
        return "".join(c for c, _ in self.commands)

    def all_macros(self):
        out = {}
        for m in self.macros.values():
            out.update(m)
        return out

    def headers(self):
        return [tuple(parse_strings(d)) for c, d in self.commands if c == "L"]

    def body(self):
        return b"".join(d for c, d in self.commands if c == "B")


class ScriptedMilter:
    def __init__(self, decide=None, protocol=0, actions=ALL_ACTIONS, hang_on=None, reset_after=None,
                 unix_path=None, version=6):
        self.decide = decide or (lambda cmd, data, conn: [CONTINUE])
        self.protocol = protocol
        self.version = version  # the protocol version it answers the negotiation with
        self.actions = actions
        self.hang_on = hang_on
        self.reset_after = reset_after  # a command: after answering it, reset the connection (RST)
        self.conns = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                conn = Conn()
                with outer.lock:
                    outer.conns.append(conn)
                sock = self.request
                buf = b""
                while not outer.stopping.is_set():
                    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                        try:
                            chunk = sock.recv(65536)
                        except OSError:
                            return
                        if not chunk:
                            return
                        buf += chunk
                    n = struct.unpack(">I", buf[:4])[0]
                    cmd, data = chr(buf[4]), buf[5:4 + n]
                    buf = buf[4 + n:]
                    if cmd == "D":
                        vals = parse_strings(data[1:])
                        conn.macros.setdefault(chr(data[0]), {}).update(
                            dict(zip(vals[0::2], vals[1::2])))
                        continue
                    with outer.lock:
                        conn.commands.append((cmd, data))
                    if cmd == "O":
                        sock.sendall(packet("O", struct.pack(">III", outer.version, outer.actions, outer.protocol)))
                        continue
                    if cmd in "AKQ":
                        if cmd == "Q":
                            return
                        continue
                    if outer.hang_on and cmd == outer.hang_on:
                        outer.stopping.wait(120)
                        return
                    if cmd in "LB" and outer.protocol & (0x80 if cmd == "L" else 0x80000):
                        continue
                    try:
                        sock.sendall(b"".join(outer.decide(cmd, data, conn)))
                    except OSError:
                        return
                    if outer.reset_after and cmd == outer.reset_after:
                        if sock.family != socket.AF_UNIX:
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        sock.close()
                        return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        class UnixServer(socketserver.ThreadingUnixStreamServer):
            daemon_threads = True

        if unix_path:  # unix_path: a unix socket instead of TCP on loopback
            self.server = UnixServer(unix_path, Handler)
            os.chmod(unix_path, 0o666)
            self.port = None
            self.spec = "unix:" + unix_path
        else:
            self.server = Server(("127.0.0.1", 0), Handler)
            self.port = self.server.server_address[1]
            self.spec = "inet:127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def last(self):
        with self.lock:
            return self.conns[-1]


def unprivileged_user():
    """(uid, gid, name) of a user third-party daemons may run as when we are root."""
    for name in ("_rspamd", "opendkim", "nobody"):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid, name
        except KeyError:
            continue
    return None


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _MilterDaemon:
    """A milter daemon the test starts (self.proc) in its own temp dir (self.dir): a
    context manager that starts it and, at the end, terminates it (kills it after 15 s)
    and removes the dir."""

    proc = None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


class Rspamd(_MilterDaemon):
    """rspamd with only a proxy worker in milter mode (self_scan), on a free loopback port,
    from a private config dir in a temp dir. No redis is needed for GTUBE."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rspamd-")
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.spec = "inet:127.0.0.1:%d" % self.port
        self.proc = None

    def _write(self):
        conf = os.path.join(self.dir, "rspamd.conf")
        d = self.dir
        # A small TLD list and no hyperscan: start-up in seconds instead of minutes (GTUBE
        # is rspamd's built-in check; no Lua module, redis or DNS is needed for it).
        with open(os.path.join(d, "tld.dat"), "w") as f:
            f.write("com\norg\nnet\ntest\nexample\n")
        with open(conf, "w") as f:
            f.write('''
options {
  pidfile = "%(d)s/rspamd.pid";
  dbdir = "%(d)s/db";
  hs_cache_dir = "%(d)s/hs";
  disable_hyperscan = true;
  url_tld = "%(d)s/tld.dat";
  dns { nameserver = ["127.0.0.1:1"]; timeout = 1s; retransmits = 1; }
}
logging {
  type = "file";
  filename = "%(d)s/rspamd.log";
  level = "info";
}
actions { reject = 15; add_header = 6; greylist = 4; }
worker "rspamd_proxy" {
  bind_socket = "127.0.0.1:%(port)d";
  milter = yes;
  timeout = 120s;
  upstream "local" {
    default = yes;
    self_scan = yes;
  }
  count = 1;
}
''' % {"d": d, "port": self.port})
        for sub in ("db", "hs"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
            os.chmod(os.path.join(d, sub), 0o777)
        return conf

    def start(self):
        conf = self._write()
        cmd = ["rspamd", "-f", "-c", conf]
        if os.geteuid() == 0:
            u = unprivileged_user()
            cmd += ["-u", u[2], "-g", grp.getgrgid(u[1]).gr_name] if u else ["-i"]
        self.log = open(os.path.join(self.dir, "stdout.log"), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, timeout=180,
                 interval=0.5, what="rspamd proxy worker listening")
        if self.proc.poll() is not None:
            raise RuntimeError("rspamd exited %s:\n%s" % (self.proc.returncode, self.logs()))
        return self

    def logs(self):
        out = ""
        for n in ("stdout.log", "rspamd.log"):
            p = os.path.join(self.dir, n)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out += f.read()[-4000:]
        return out


class OpenDkim(_MilterDaemon):
    """opendkim as a milter on a free loopback port, from a private config in a temp dir.
    mode "s": signs mail from `domain` with a fresh key (opendkim-genkey); mode "v":
    verifies, with the public key served from a KeyTable-free test file (TrustAnchor-free
    `TestPublicKeys`)."""

    def __init__(self, domain, selector="test", mode="s", keydir=None, canonicalization="relaxed/simple"):
        self.domain, self.selector, self.mode = domain, selector, mode
        self.canonicalization = canonicalization
        self.dir = tempfile.mkdtemp(prefix="opendkim-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.spec = "inet:127.0.0.1:%d" % self.port
        self.keydir = keydir or self.dir
        self.proc = None

    def genkey(self):
        subprocess.run(["opendkim-genkey", "-b", "1024", "-d", self.domain, "-s", self.selector,
                        "-D", self.keydir], check=True, capture_output=True)
        return os.path.join(self.keydir, self.selector + ".private"), \
            os.path.join(self.keydir, self.selector + ".txt")

    def start(self):
        d = self.dir
        user = None
        if os.geteuid() == 0:
            user = unprivileged_user()
        conf = os.path.join(d, "opendkim.conf")
        lines = [
            "Socket inet:%d@127.0.0.1" % self.port,
            "PidFile %s/opendkim.pid" % d,
            "Mode %s" % self.mode,
            "Syslog no",
            "LogWhy yes",
            "Canonicalization %s" % self.canonicalization,
            "On-NoSignature accept",
            "On-BadSignature accept",
            "On-KeyNotFound accept",
            "On-DNSError accept",
            "On-Default accept",
        ]
        if self.mode == "s":
            key, txt = self.genkey()
            self.txt = txt
            with open(os.path.join(d, "KeyTable"), "w") as f:
                f.write("%s._domainkey.%s %s:%s:%s\n" % (self.selector, self.domain, self.domain,
                                                        self.selector, key))
            with open(os.path.join(d, "SigningTable"), "w") as f:
                f.write("*@%s %s._domainkey.%s\n" % (self.domain, self.selector, self.domain))
            lines += ["KeyTable file:%s/KeyTable" % d, "SigningTable refile:%s/SigningTable" % d,
                      "RequireSafeKeys no"]
        if self.mode == "v":
            lines += ["TestPublicKeys %s/keys" % d]
        if user:
            lines.append("UserID %s" % user[2])
            for root, dirs, files in os.walk(d):
                for n in dirs + files:
                    os.chown(os.path.join(root, n), user[0], user[1])
            os.chown(d, user[0], user[1])
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(d, "stdout.log"), "w")
        self.proc = subprocess.Popen(["opendkim", "-f", "-x", conf, "-v"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, timeout=30,
                 what="opendkim listening")
        if self.proc.poll() is not None:
            raise RuntimeError("opendkim exited %s:\n%s" % (self.proc.returncode, self.logs()))
        return self

    def logs(self):
        p = os.path.join(self.dir, "stdout.log")
        if os.path.exists(p):
            with open(p, errors="replace") as f:
                return f.read()[-4000:]
        return ""
