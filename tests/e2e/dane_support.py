"""DANE test support (RFC 7672): a DNSSEC-signed zone served by nsd, signed with
ldns-keygen/ldns-signzone, a validating unbound (trust anchor = the zone's KSK) in front of
it, certificates with their TLSA data, and SMTP sinks with a given certificate.

    with SignedDns({"dane.test": ["a MX 10 mx1", "mx1 A 127.0.0.20", ...]},
                   unsigned={"plain.test": [...]}) as dns:
        Postern(overrides=delivery_overrides(dns, port, delivery__tls_policy="dane"))

Zone lines are relative to their zone (a name without a dot is below it). nsd and unbound
run in the foreground on free 127.0.0.1 ports, from configs in a temp dir (no system
service, no chroot, no user change); unbound answers only below the given zones (stub
zones to nsd). Signed zones are below their own trust anchor, so their answers carry the AD
bit; unsigned zones have no anchor above them, so they are insecure (no AD bit).
"""

import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import TestFailure, wait_for  # noqa: E402
from delivery_support import Sink, _free_udp_tcp_port  # noqa: E402


def _need(*tools):
    for t in tools:
        if not shutil.which(t) and not os.path.exists("/usr/sbin/" + t):
            raise TestFailure("%s not installed (Debian packages nsd, unbound, ldnsutils)" % t)


def _tool(name):
    return shutil.which(name) or "/usr/sbin/" + name


def _query(port, name, qtype=1, tcp=False, do=False):
    """One DNS query to 127.0.0.1:port; the raw response or None."""
    qname = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\x00"
    flags = b"\x01\x20"  # RD, AD
    arcount = b"\x00\x01" if do else b"\x00\x00"
    q = b"\xab\xcd" + flags + b"\x00\x01\x00\x00\x00\x00" + arcount + qname + qtype.to_bytes(2, "big") + b"\x00\x01"
    if do:
        q += b"\x00\x00\x29\x10\x00\x00\x00\x80\x00\x00\x00"  # OPT, DO bit
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    try:
        s.sendto(q, ("127.0.0.1", port))
        r = s.recv(4096)
        return r if r[:2] == b"\xab\xcd" else None
    except OSError:
        return None
    finally:
        s.close()


def rcode_and_ad(response):
    return response[3] & 0x0F, bool(response[3] & 0x20)


class SignedDns:
    """nsd serving `signed` zones (signed by ldns-signzone) and `unsigned` zones, unbound
    validating in front. address() is what delivery.dns_server gets."""

    def __init__(self, signed=None, unsigned=None, bogus=None):
        self.signed = dict(signed or {})
        self.unsigned = dict(unsigned or {})
        # Names (absolute, in a signed zone) whose RRSIGs are broken after signing: a
        # validating resolver answers SERVFAIL for them.
        self.bogus = set(bogus or ())
        self.dir = None
        self.nsd = None
        self.unbound = None
        self.nsd_port = None
        self.port = None

    # -- zones -------------------------------------------------------------------------
    def _zone_text(self, zone, lines):
        out = ["$ORIGIN %s." % zone, "$TTL 300",
               "@ SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300" % (zone, zone),
               "@ NS ns.%s." % zone, "ns A 127.0.0.1"]
        out += lines
        return "\n".join(out) + "\n"

    def _sign(self, zone, path):
        d = self.dir
        run = lambda *a: subprocess.run(list(a), cwd=d, check=True, capture_output=True, text=True).stdout.strip()
        zsk = run(_tool("ldns-keygen"), "-a", "ECDSAP256SHA256", zone)
        ksk = run(_tool("ldns-keygen"), "-a", "ECDSAP256SHA256", "-k", zone)
        run(_tool("ldns-signzone"), "-f", path + ".signed", path, zsk, ksk)
        if self.bogus:
            self._break_signatures(path + ".signed")
        with open(os.path.join(d, ksk + ".key")) as f:
            return f.read()

    def _break_signatures(self, signed):
        lines = []
        with open(signed) as f:
            for line in f:
                parts = line.split()
                if len(parts) > 8 and parts[3] == "RRSIG" and parts[0].rstrip(".") in self.bogus \
                        and parts[4] != "NSEC3" and parts[4] != "NSEC":
                    sig = parts[-1]
                    parts[-1] = ("B" if sig[0] != "B" else "C") + sig[1:]  # a different signature
                    line = "\t".join(parts) + "\n"
                lines.append(line)
        with open(signed, "w") as f:
            f.writelines(lines)

    # -- servers -----------------------------------------------------------------------
    def start(self):
        _need("nsd", "unbound", "ldns-signzone", "ldns-keygen")
        self.dir = tempfile.mkdtemp(prefix="postern-e2e-dane-")
        anchors = []
        zones = []
        for zone, lines in list(self.signed.items()) + list(self.unsigned.items()):
            path = os.path.join(self.dir, zone + ".zone")
            with open(path, "w") as f:
                f.write(self._zone_text(zone, lines))
            if zone in self.signed:
                anchors.append(self._sign(zone, path))
                path += ".signed"
            zones.append((zone, path))
        with open(os.path.join(self.dir, "anchors.key"), "w") as f:
            f.write("".join(anchors) or "")
        try:
            self._start_nsd(zones)
            self._start_unbound([z for z, _ in zones], bool(anchors))
        except BaseException:
            self.stop()
            raise
        return self

    def _start_nsd(self, zones):
        for _ in range(5):
            self.nsd_port = _free_udp_tcp_port()
            conf = os.path.join(self.dir, "nsd.conf")
            with open(conf, "w") as f:
                f.write("server:\n"
                        "  ip-address: 127.0.0.1@%d\n"
                        "  port: %d\n"
                        "  username: \"\"\n"
                        "  chroot: \"\"\n"
                        "  zonesdir: \"%s\"\n"
                        "  database: \"\"\n"
                        "  zonelistfile: \"%s/zone.list\"\n"
                        "  xfrdfile: \"%s/xfrd.state\"\n"
                        "  xfrdir: \"%s\"\n"
                        "  pidfile: \"%s/nsd.pid\"\n"
                        "  logfile: \"%s/nsd.log\"\n"
                        "  server-count: 1\n"
                        "  verbosity: 1\n"
                        "  do-ip6: no\n"
                        "remote-control:\n"
                        "  control-enable: no\n"
                        % ((self.nsd_port, self.nsd_port) + (self.dir,) * 6))
                for zone, path in zones:
                    f.write("zone:\n  name: \"%s\"\n  zonefile: \"%s\"\n" % (zone, path))
            self.nsd = subprocess.Popen([_tool("nsd"), "-d", "-c", conf], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
            probe = "ns." + zones[0][0]
            try:
                wait_for(lambda: self.nsd.poll() is not None or _query(self.nsd_port, probe), 10.0,
                         what="nsd on port %d" % self.nsd_port)
            except TestFailure:
                raise TestFailure("nsd did not answer: " + self._log("nsd.log"))
            if self.nsd.poll() is None:
                return
            err = self.nsd.stderr.read().decode("utf-8", "replace") + self._log("nsd.log")
            self.nsd = None
            if "in use" not in err:
                raise TestFailure("nsd failed: " + err)
        raise TestFailure("could not start nsd")

    def _start_unbound(self, zones, anchored):
        for _ in range(5):
            self.port = _free_udp_tcp_port()
            conf = os.path.join(self.dir, "unbound.conf")
            with open(conf, "w") as f:
                f.write("server:\n"
                        "  interface: 127.0.0.1@%d\n"
                        "  port: %d\n"
                        "  do-ip6: no\n"
                        "  do-not-query-localhost: no\n"
                        "  username: \"\"\n"
                        "  chroot: \"\"\n"
                        "  directory: \"%s\"\n"
                        "  pidfile: \"%s/unbound.pid\"\n"
                        "  use-syslog: no\n"
                        "  logfile: \"%s/unbound.log\"\n"
                        "  verbosity: 1\n"
                        "  val-log-level: 2\n"
                        "  num-threads: 1\n"
                        "  qname-minimisation: no\n"
                        "  module-config: \"validator iterator\"\n"
                        # RFC 6761 names (test.) are blocked by default: serve ours.
                        "  local-zone: \"test.\" nodefault\n"
                        % ((self.port, self.port) + (self.dir,) * 3))
                if anchored:
                    f.write("  trust-anchor-file: \"%s/anchors.key\"\n" % self.dir)
                f.write("remote-control:\n  control-enable: no\n")
                for zone in zones:
                    f.write("stub-zone:\n  name: \"%s\"\n  stub-addr: 127.0.0.1@%d\n" % (zone, self.nsd_port))
            self.unbound = subprocess.Popen([_tool("unbound"), "-d", "-c", conf], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.PIPE)
            probe = "ns." + zones[0]
            try:
                wait_for(lambda: self.unbound.poll() is not None or _query(self.port, probe), 10.0,
                         what="unbound on port %d" % self.port)
            except TestFailure:
                raise TestFailure("unbound did not answer: " + self._log("unbound.log"))
            if self.unbound.poll() is None:
                return
            err = self.unbound.stderr.read().decode("utf-8", "replace") + self._log("unbound.log")
            self.unbound = None
            if "in use" not in err and "address already" not in err.lower():
                raise TestFailure("unbound failed: " + err)
        raise TestFailure("could not start unbound")

    def _log(self, name):
        try:
            with open(os.path.join(self.dir, name)) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def address(self):
        return "127.0.0.1:%d" % self.port

    def query(self, name, qtype):
        """(rcode, AD bit) of unbound's answer, for tests checking their own setup."""
        r = _query(self.port, name, qtype, do=True)
        if r is None:
            raise TestFailure("no DNS answer for %s" % name)
        return rcode_and_ad(r)

    def stop(self):
        for proc in (self.unbound, self.nsd):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.unbound = self.nsd = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        return False


# --------------------------------------------------------------------------------------
# Certificates and TLSA data

class Certs:
    """Test certificates made with the openssl CLI in a temp dir: self-signed ones (DANE-EE)
    and a CA with leaves it signed (DANE-TA)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-e2e-dane-certs-")

    def _run(self, *args):
        subprocess.run(list(args), cwd=self.dir, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def self_signed(self, name, cn):
        cert, key = os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".key")
        self._run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-days", "2", "-subj", "/CN=" + cn, "-addext", "subjectAltName=DNS:" + cn,
                  "-keyout", key, "-out", cert)
        return cert, key

    def ca(self, name):
        cert, key = os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".key")
        self._run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-days", "2", "-subj", "/CN=" + name,
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", key, "-out", cert)
        return cert, key

    def leaf(self, name, cn, ca):
        """A leaf for DNS:cn signed by `ca` (cert, key); returns (chain file leaf+CA, key)."""
        ca_cert, ca_key = ca
        key, csr = os.path.join(self.dir, name + ".key"), os.path.join(self.dir, name + ".csr")
        cert, chain = os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".chain")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % cn)
        self._run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-subj", "/CN=" + cn, "-keyout", key, "-out", csr)
        self._run("openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
                  "-days", "2", "-extfile", ext, "-out", cert)
        with open(chain, "w") as f:
            f.write(open(cert).read() + open(ca_cert).read())
        return chain, key

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _der(cert_path):
    return subprocess.run(["openssl", "x509", "-in", cert_path, "-outform", "DER"], check=True,
                          capture_output=True).stdout


def _spki(cert_path):
    pem = subprocess.run(["openssl", "x509", "-in", cert_path, "-noout", "-pubkey"], check=True,
                         capture_output=True).stdout
    return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem, check=True,
                          capture_output=True).stdout


def tlsa_rdata(cert_path, usage, selector, mtype):
    """'3 1 1 <hex>' for the first certificate in cert_path."""
    data = _der(cert_path) if selector == 0 else _spki(cert_path)
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return "%d %d %d %s" % (usage, selector, mtype, data.hex())


class CertSink(Sink):
    """A Sink offering STARTTLS with the given certificate (file may hold a chain) and key;
    requiretls=True: it also offers REQUIRETLS (RFC 8689) after STARTTLS and accepts the
    MAIL parameter (it stays in Received.mail_options)."""

    def __init__(self, address, port, cert, key, requiretls=False, **kw):
        super().__init__(address, port, **kw)
        self.cert_file, self.key_file = cert, key
        self.requiretls = requiretls
        self.sni = []  # server names the client sent

    def start(self):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import SMTP
        from delivery_support import _Handler
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)

        def sni_cb(sock, server_name, context):
            with self.lock:
                self.sni.append(server_name)
        ctx.sni_callback = sni_cb
        requiretls = self.requiretls

        class Handler(_Handler):
            async def handle_EHLO(self, server, session, envelope, hostname, responses):
                session.host_name = hostname
                if requiretls and session.ssl is not None:  # RFC 8689 4: only over TLS
                    responses.insert(len(responses) - 1, "250-REQUIRETLS")
                return responses

        class RequireTlsSMTP(SMTP):
            def _getparams(self, params):
                result = super()._getparams(params)
                # RFC 8689 4: REQUIRETLS takes no value; accepted (it stays in mail_options).
                if requiretls and result is not None and result.get("REQUIRETLS") is True:
                    del result["REQUIRETLS"]
                return result

        class Ctl(Controller):
            def factory(self):
                return RequireTlsSMTP(self.handler, **self.SMTP_kwargs)

        self.controller = Ctl(Handler(self), hostname=self.address, port=self.port,
                              server_hostname="sink-%s" % self.address, tls_context=ctx)
        self.controller.start()
        return self
