"""Real slapd instances for the LDAP backend's end-to-end tests.

Each Slapd is an OpenLDAP server on a free loopback port with its own temp dir: a slapd.conf
(core/cosine/inetorgperson/nis schemas from /etc/ldap/schema plus a tiny test schema for
mailAlternateAddress, mailForwardingAddress and accountStatus), an mdb database loaded with
slapadd from LDIF generated here, and a log (slapd -d stats). stop()/start() simulate outages
on the same port. tls="ldaps" or "starttls" serves a generated certificate (cert_path).

Standard library only. Nothing here sleeps for a fixed time: start() polls the port.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from postern_harness import TestFailure, free_port, wait_for

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
# slapd -d logs through stdio, block-buffered into a file: line-buffer it so the tests can
# read BIND lines while slapd runs.
STDBUF = ["stdbuf", "-oL", "-eL"] if shutil.which("stdbuf") else []
SCHEMA_DIR = "/etc/ldap/schema"
SUFFIX = "dc=example,dc=test"
ROOT_DN = "cn=admin," + SUFFIX
ROOT_PW = "root-Secret0"
SERVICE_DN = "cn=postern,ou=services," + SUFFIX
SERVICE_PW = "svc-Secret9"
DOMAIN = "ldap.test"

# Test schema (private OID arc, tests only).
TEST_SCHEMA = """
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'mailAlternateAddress'
  EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'mailForwardingAddress'
  EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'accountStatus'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.4 NAME 'mailboxLocation'
  EQUALITY caseExactIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'posternMailUser' SUP top AUXILIARY
  MAY ( mailAlternateAddress $ mailForwardingAddress $ accountStatus $ mailboxLocation ) )
objectclass ( 1.3.6.1.4.1.99999.2.2 NAME 'posternMailAlias' SUP top STRUCTURAL
  MUST ( cn $ mail ) MAY ( mailForwardingAddress ) )
"""

# Users of the default directory: uid -> attributes. Passwords are stored in clear text
# (slapd compares them); what matters here is Postern's side of the bind.
DEFAULT_USERS = {
    "alice": {"password": "alice-Ldap1", "mail": ["alice@ldap.test"],
              "alt": ["alice.smith@ldap.test"]},
    "bob": {"password": "bob-Ldap2", "mail": ["bob@ldap.test"]},
    "carl": {"password": "carl-Ldap3", "mail": ["carl@ldap.test"], "status": "disabled"},
    # Two entries for one address: any login that finds both must fail closed.
    "dup1": {"password": "dup-Ldap4", "mail": ["dup@ldap.test"]},
    "dup2": {"password": "dup-Ldap4", "mail": ["dup@ldap.test"]},
    # A user whose mailbox location comes from the directory.
    "mbox": {"password": "mbox-Ldap5", "mail": ["mbox@ldap.test"],
             "mailbox": "ldap.test/custom-mbox"},
}
DEFAULT_ALIASES = {
    "team@ldap.test": ["alice@ldap.test", "bob@ldap.test"],
}


def make_ldif(users=None, aliases=None):
    users = DEFAULT_USERS if users is None else users
    aliases = DEFAULT_ALIASES if aliases is None else aliases
    out = [
        "dn: " + SUFFIX, "objectClass: dcObject", "objectClass: organization", "dc: example",
        "o: Example", "",
        "dn: ou=people," + SUFFIX, "objectClass: organizationalUnit", "ou: people", "",
        "dn: ou=services," + SUFFIX, "objectClass: organizationalUnit", "ou: services", "",
        "dn: ou=aliases," + SUFFIX, "objectClass: organizationalUnit", "ou: aliases", "",
        "dn: " + SERVICE_DN, "objectClass: organizationalRole", "objectClass: simpleSecurityObject",
        "cn: postern", "userPassword: " + SERVICE_PW, "",
    ]
    for uid, u in users.items():
        out += ["dn: uid=%s,ou=people,%s" % (uid, SUFFIX), "objectClass: inetOrgPerson",
                "objectClass: posternMailUser", "uid: " + uid, "cn: " + uid, "sn: " + uid,
                "userPassword: " + u["password"]]
        out += ["mail: " + m for m in u.get("mail", [])]
        out += ["mailAlternateAddress: " + m for m in u.get("alt", [])]
        if u.get("status"):
            out.append("accountStatus: " + u["status"])
        if u.get("mailbox"):
            out.append("mailboxLocation: " + u["mailbox"])
        out.append("")
    for i, (addr, dests) in enumerate(aliases.items()):
        out += ["dn: cn=alias%d,ou=aliases,%s" % (i, SUFFIX), "objectClass: posternMailAlias",
                "cn: alias%d" % i, "mail: " + addr]
        out += ["mailForwardingAddress: " + d for d in dests]
        out.append("")
    return "\n".join(out) + "\n"


def make_cert(directory):
    """Self-signed CA-capable certificate for CN=localhost, SAN localhost and 127.0.0.1."""
    cert, key = os.path.join(directory, "ldap-cert.pem"), os.path.join(directory, "ldap-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.chmod(key, 0o600)
    return cert, key


class Slapd:
    """One slapd on 127.0.0.1:<free port>. Use as a context manager or call stop()."""

    def __init__(self, root, name="slapd", users=None, aliases=None, tls=None, start=True, acls=()):
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=root)
        self.name = name
        self.tls = tls
        self.port = free_port()
        self.proc = None
        self.log_path = os.path.join(self.dir, "slapd.log")
        self.db_dir = os.path.join(self.dir, "db")
        os.makedirs(self.db_dir)
        self.cert_path = self.key_path = None
        if tls:
            self.cert_path, self.key_path = make_cert(self.dir)
        schema = os.path.join(self.dir, "postern-test.schema")
        with open(schema, "w") as f:
            f.write(TEST_SCHEMA)
        conf = [
            "include %s/core.schema" % SCHEMA_DIR,
            "include %s/cosine.schema" % SCHEMA_DIR,
            "include %s/inetorgperson.schema" % SCHEMA_DIR,
            "include %s/nis.schema" % SCHEMA_DIR,
            "include " + schema,
            "pidfile " + os.path.join(self.dir, "slapd.pid"),
            "argsfile " + os.path.join(self.dir, "slapd.args"),
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb",
        ]
        if tls:
            conf += ["TLSCertificateFile " + self.cert_path,
                     "TLSCertificateKeyFile " + self.key_path]
        conf += [
            "database mdb",
            "maxsize 33554432",
            'suffix "%s"' % SUFFIX,
            'rootdn "%s"' % ROOT_DN,
            "rootpw " + ROOT_PW,
            "directory " + self.db_dir,
            "index objectClass eq",
            "index mail,uid,mailAlternateAddress eq",
            # Passwords: only usable to bind. Everything else: the service account and
            # the entry itself may read; anonymous may only bind. So a search that works
            # proves Postern bound as the service first. A test's own rules come first.
            *acls,
            "access to attrs=userPassword by self write by anonymous auth by * none",
            'access to * by dn.exact="%s" read by self read by anonymous auth by * none'
            % SERVICE_DN,
        ]
        self.conf_path = os.path.join(self.dir, "slapd.conf")
        with open(self.conf_path, "w") as f:
            f.write("\n".join(conf) + "\n")
        ldif = os.path.join(self.dir, "data.ldif")
        with open(ldif, "w") as f:
            f.write(make_ldif(users, aliases))
        r = subprocess.run([SLAPADD, "-f", self.conf_path, "-l", ldif], capture_output=True,
                           timeout=60)
        if r.returncode != 0:
            raise TestFailure("slapadd failed (%d):\n%s" % (r.returncode,
                                                           r.stderr.decode("utf-8", "replace")))
        if start:
            self.start()

    @property
    def uri(self):
        scheme = "ldaps" if self.tls == "ldaps" else "ldap"
        return "%s://127.0.0.1:%d/" % (scheme, self.port)

    def start(self, timeout=20.0):
        if self.running():
            return self
        log = open(self.log_path, "ab")
        log.write(b"---- start\n")
        log.flush()
        # -d 256 (stats): foreground, one line per connection/operation, to the log.
        self.proc = subprocess.Popen(STDBUF + [SLAPD, "-h", self.uri, "-f", self.conf_path, "-d", "256"],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

        def accepting():
            if self.proc.poll() is not None:
                raise TestFailure("slapd %s exited with %s:\n%s" % (self.name, self.proc.returncode,
                                                                    self.log_text()[-3000:]))
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return True
            except OSError:
                return False

        wait_for(accepting, timeout, what="slapd %s on port %d" % (self.name, self.port))
        return self

    def stop(self, timeout=20.0):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        """Length of the log so far: pass to binds_since() to count only later lines."""
        return len(self.log_text())

    def binds_since(self, mark, dn_fragment):
        """How many BIND requests naming dn_fragment slapd logged after mark (slapd logs a
        request as 'BIND dn="..." method=128' and a success again with mech=SIMPLE)."""
        text = self.log_text()[mark:]
        return sum(1 for line in text.splitlines()
                   if " BIND dn=" in line and " method=" in line and dn_fragment in line)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.stop()
        return False


def write_secret(directory, password=SERVICE_PW, mode=0o600, name="ldap-bind.secret"):
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    os.chmod(path, mode)
    return path


def ldap_backend_config(uris, secret_path, extra=None, name="ldap"):
    """Postern config lines (dict) whose auth chain is: passwd-file for example.test and
    example.org, then the LDAP backend for ldap.test (search-then-bind as the service)."""
    p = "auth.backend.%s." % name
    c = {
        "auth.backends": "local, " + name,
        "auth.backend.local.domains": "example.test, example.org",
        p + "plugin": "ldap",
        p + "domains": DOMAIN,
        p + "uris": " ".join(uris),
        p + "mode": "search",
        p + "bind_dn": SERVICE_DN,
        p + "bind_password_file": secret_path,
        p + "base": SUFFIX,
        p + "user_filter": "(&(objectClass=inetOrgPerson)(|(mail=%u)(uid=%n)))",
        p + "recipient_filter": "(&(objectClass=inetOrgPerson)(|(mail=%u)(mailAlternateAddress=%u)))",
        p + "alias_filter": "(&(objectClass=posternMailAlias)(mail=%u))",
        p + "alias_attribute": "mailForwardingAddress",
        p + "mail_attributes": "mail, mailAlternateAddress",
        p + "mailbox_attribute": "mailboxLocation",
        p + "disabled_attribute": "accountStatus",
        p + "disabled_value": "disabled",
        p + "local_domains": DOMAIN,
        p + "network_timeout": "2s",
        p + "bind_timeout": "3s",
        p + "search_timeout": "3s",
        p + "pool_size": "4",
        p + "probe_interval": "200ms",
    }
    c.update(extra or {})
    return c
