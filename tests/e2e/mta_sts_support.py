"""MTA-STS test support: a test CA made with the openssl CLI, certificates it signs for given
host names, and an HTTPS policy server (http.server + ssl in a thread) serving
/.well-known/mta-sts.txt as a test tells it to (policy text, content type, delay, size).

    ca = TestCa(workdir)
    with PolicyServer("127.0.0.20", port, ca.issue("mta-sts.a.test"), policy=TEXT) as web:
        ...
"""

import http.server
import os
import socket
import ssl
import subprocess
import threading
import time

from postern_harness import TestFailure


class TestCa:
    """A throw-away CA (EC P-256) under `directory`; issue(name) returns (cert, key) files of a
    server certificate for DNS:name signed by it. `pem` is the CA certificate file."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.pem = os.path.join(directory, "ca.pem")
        self.key = os.path.join(directory, "ca.key")
        self._run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                   "-nodes", "-days", "2", "-subj", "/CN=Postern MTA-STS test CA",
                   "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                   "-keyout", self.key, "-out", self.pem])
        self.serial = 1

    @staticmethod
    def _run(cmd):
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise TestFailure("%s failed: %s" % (" ".join(cmd), r.stderr.decode("utf-8", "replace")))

    def issue(self, name, ip=False):
        """ip=True: `name` is an IP address, in the certificate's subjectAltName only (an IP
        entry; the subject's CN is no address)."""
        self.serial += 1
        base = os.path.join(self.dir, "%s-%d" % (name.replace(":", "_"), self.serial))
        key, csr, cert, ext = base + ".key", base + ".csr", base + ".pem", base + ".ext"
        with open(ext, "w") as f:
            f.write("subjectAltName=%s:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                    % ("IP" if ip else "DNS", name))
        self._run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                   "-subj", "/CN=%s" % ("address-certificate" if ip else name), "-keyout", key, "-out", csr])
        self._run(["openssl", "x509", "-req", "-in", csr, "-CA", self.pem, "-CAkey", self.key,
                   "-set_serial", str(self.serial), "-days", "2", "-extfile", ext, "-out", cert])
        os.chmod(key, 0o600)
        return cert, key


class PolicyServer:
    """HTTPS on (address, port) with the given (cert, key). Serves `policy` (str) at
    /.well-known/mta-sts.txt with `content_type`; `delay` seconds before answering; `status`
    and extra `headers` (e.g. a redirect). requests: paths asked for, in order."""

    def __init__(self, address, port, cert, policy="", content_type="text/plain", delay=0.0,
                 status=200, headers=None):
        self.address, self.port, self.cert = address, port, cert
        self.policy = policy
        self.content_type = content_type
        self.delay = delay
        self.status = status
        self.headers = dict(headers or {})
        self.requests = []
        self.httpd = None
        self.thread = None

    def start(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                server.requests.append(self.path)
                if server.delay:
                    time.sleep(server.delay)
                body = server.policy.encode() if self.path == "/.well-known/mta-sts.txt" else b"not found"
                try:
                    self.send_response(server.status if self.path == "/.well-known/mta-sts.txt" else 404)
                    self.send_header("Content-Type", server.content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in server.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *a):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.cert)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client refusing our certificate is what some tests want

            def get_request(self):
                sock, addr = self.socket.accept()
                sock.settimeout(10)
                return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        self.httpd = Server((self.address, self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        return False


def free_port_on(addresses):
    """A TCP port free on every given loopback address."""
    for _ in range(50):
        s = socket.socket()
        s.bind((addresses[0], 0))
        port = s.getsockname()[1]
        s.close()
        ok = True
        for a in addresses[1:]:
            t = socket.socket()
            try:
                t.bind((a, port))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return port
    raise TestFailure("no common free port")


def policy_text(mode, mx, max_age=86400, newline="\n"):
    lines = ["version: STSv1", "mode: %s" % mode] + ["mx: %s" % m for m in mx] + ["max_age: %d" % max_age]
    return newline.join(lines) + newline
