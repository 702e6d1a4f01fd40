"""A private Postfix (Debian's postfix package) as the next hop of outbound delivery: the
real MTA most of the Internet's mail meets. It runs from its own config directory in a
temporary directory (`postfix -c DIR`, as /work/shared/reference/up.sh does) and listens on
127.0.0.1:<free port>. Its smtpd offers PIPELINING, DSN, SMTPUTF8 and CHUNKING (not
BINARYMIME) and logs per-session command counts ("bdat=2") in its own log file.

Two modes:
- hold (the default): accepts mail from loopback for any domain and puts every message on
  HOLD, so a test reads what Postfix recorded for it with postcat: the envelope sender, the
  recipients, the DSN attributes (envelope_id, ret_flags, notify_flags, dsn_orig_rcpt), the
  SMTPUTF8 flag and the message;
- mailboxes (users=...): delivers <user>@<domain> to Maildirs through virtual(8), read with
  messages(user); other domains are refused.

    with PostfixPeer() as pf:
        Postern(overrides={"delivery.relayhost": "127.0.0.1:%d" % pf.port, ...})
        ...
        msg = pf.wait_held(lambda m: marker in m.text)
        msg.records["envelope_id"]

The system's own Postfix instance is never touched (the package is installed with
"No configuration", see scripts/deps.sh). Needs root (Postfix's master runs as root and
drops to the postfix user).
"""

import os
import re
import shutil
import subprocess
import tempfile

from postern_harness import TestFailure, free_port, wait_for

POSTFIX = "/usr/sbin/postfix"


def available():
    return os.path.exists(POSTFIX) and os.geteuid() == 0


class HeldMessage:
    """One message in Postfix's hold queue, as postcat prints it."""

    def __init__(self, queue_id, text):
        self.queue_id = queue_id
        self.text = text
        # "name: value" records of the envelope section, in order (a name may repeat).
        self.entries = []
        section = None
        for line in text.splitlines():
            if line.startswith("*** ") and line.endswith(" ***"):
                section = line.strip("* ").lower()
                continue
            if section and section.startswith("envelope") and ": " in line:
                name, value = line.split(": ", 1)
                name = name.strip()
                if name == "named_attribute" and "=" in value:  # envelope_id, ret_flags, ...
                    name, value = value.split("=", 1)
                self.entries.append((name, value))
        self.records = {}
        for name, value in self.entries:
            self.records.setdefault(name, value)
        # message_size: size, data offset, recipients, qmgr options, content length, and
        # the SMTPUTF8 flags (1 = the client sent MAIL ... SMTPUTF8).
        sizes = self.records.get("message_size", "").split()
        self.smtputf8_flags = int(sizes[5]) if len(sizes) > 5 else None

    def all(self, name):
        return [v for n, v in self.entries if n == name]


class PostfixPeer:
    def __init__(self, smtputf8=True, domain="remote.test", users=None, discard_ehlo=()):
        # Its own temporary directory, traversable by the postfix user (the harness's is 0700).
        self.dir = tempfile.mkdtemp(prefix="postern-postfix-")
        os.chmod(self.dir, 0o755)
        self.smtputf8 = smtputf8
        # EHLO keywords its smtpd does not announce (smtpd_discard_ehlo_keywords), e.g.
        # ("8bitmime",) for a next hop without 8BITMIME.
        self.discard_ehlo = list(discard_ehlo)
        self.domain = domain
        self.users = list(users or [])  # empty: hold mode
        self.mail = os.path.join(self.dir, "mail")
        self.port = None
        self.started = False

    @property
    def config_dir(self):
        return os.path.join(self.dir, "etc")

    @property
    def log_file(self):
        return os.path.join(self.dir, "log", "postfix.log")

    def log_text(self):
        try:
            with open(self.log_file, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def _run(self, *args, check=True):
        r = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
        if check and r.returncode != 0:
            raise TestFailure("%s failed (%d):\n%s\n--- postfix log:\n%s"
                              % (" ".join(args), r.returncode, r.stdout, self.log_text()[-3000:]))
        return r.stdout

    def start(self):
        if not available():
            raise TestFailure("Postfix peer needs root and Debian's postfix package (scripts/test installs it)")
        etc, spool, lib, logd = (os.path.join(self.dir, d) for d in ("etc", "spool", "lib", "log"))
        for d in (etc, spool, logd):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        os.makedirs(lib, exist_ok=True)
        shutil.chown(lib, "postfix", "postfix")
        os.chmod(lib, 0o700)
        self.port = free_port()
        main_cf = "\n".join([
            "# private Postfix for a Postern e2e test (tests/e2e/postfix_support.py)",
            "compatibility_level = 3.6",
            "config_directory = " + etc,
            "queue_directory = " + spool,
            "data_directory = " + lib,
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "maillog_file_prefixes = " + self.dir,
            "maillog_file = " + self.log_file,
            "myhostname = peer.postfix.test",
            "mydomain = postfix.test",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "smtpd_peername_lookup = no",
            "biff = no",
            "mydestination =",
            "local_recipient_maps =",
            "alias_maps =",
            "alias_database =",
            "mynetworks = 127.0.0.0/8",
        ] + (self._mailbox_cf(etc) if self.users else [
            # Relay anything from loopback, then hold it: nothing leaves, everything is
            # left in the queue for postcat.
            "smtpd_relay_restrictions = permit_mynetworks, reject",
            "smtpd_recipient_restrictions =",
            "smtpd_end_of_data_restrictions = check_client_access static:HOLD",
        ]) + [
            "smtputf8_enable = " + ("yes" if self.smtputf8 else "no"),
            "smtpd_discard_ehlo_keywords = " + ", ".join(self.discard_ehlo),
            "smtpd_tls_security_level = none",
            "",
        ])
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write(main_cf)
        if self.users:
            self._run("/usr/sbin/postmap", "-c", etc, "hash:" + os.path.join(etc, "vmailbox"))
        master = [
            "127.0.0.1:%d inet n - n - - smtpd" % self.port,
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
            "virtual unix - n n - - virtual",
            "",
        ]
        with open(os.path.join(etc, "master.cf"), "w") as f:
            f.write("\n".join(master))
        self._run(POSTFIX, "-c", etc, "check")
        self._run(POSTFIX, "-c", etc, "start")
        self.started = True
        import socket

        def listening():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    return s.recv(200).startswith(b"220")
            except OSError:
                return False
        wait_for(listening, 30, what="Postfix on 127.0.0.1:%d" % self.port)
        return self

    MAIL_UID = 5000

    def _mailbox_cf(self, etc):
        os.makedirs(self.mail, mode=0o770, exist_ok=True)
        os.chown(self.mail, self.MAIL_UID, self.MAIL_UID)
        vmailbox = os.path.join(etc, "vmailbox")
        with open(vmailbox, "w") as f:
            for u in self.users:
                f.write("%s@%s %s/%s/\n" % (u, self.domain, self.domain, u))
        return ["virtual_mailbox_domains = " + self.domain,
                "virtual_mailbox_base = " + self.mail,
                "virtual_mailbox_maps = hash:" + vmailbox,
                "virtual_uid_maps = static:%d" % self.MAIL_UID,
                "virtual_gid_maps = static:%d" % self.MAIL_UID,
                "smtpd_relay_restrictions = reject_unauth_destination"]

    def messages(self, user):
        """Mailboxes mode: the messages in <user>@<domain>'s Maildir, oldest first."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.mail, self.domain, user, sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), "rb") as f:
                        out.append(f.read())
        return out

    def stop(self):
        if self.started:
            self._run(POSTFIX, "-c", self.config_dir, "stop", check=False)
            self.started = False
            # master exits asynchronously: wait until its pid is gone before removing its files.
            pid_file = os.path.join(self.dir, "spool", "pid", "master.pid")

            def gone():
                try:
                    with open(pid_file) as f:
                        os.kill(int(f.read().strip()), 0)
                    return False
                except (OSError, ValueError):
                    return True
            wait_for(gone, 20, what="Postfix master to exit")
        if not os.environ.get("POSTERN_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def held_ids(self):
        """Queue ids of the messages on hold."""
        out = self._run("/usr/sbin/postqueue", "-c", self.config_dir, "-j", check=False)
        ids = []
        for line in out.splitlines():
            m = re.search(r'"queue_name":\s*"hold".*?"queue_id":\s*"([0-9A-Za-z]+)"', line) or \
                re.search(r'"queue_id":\s*"([0-9A-Za-z]+)".*?"queue_name":\s*"hold"', line)
            if m:
                ids.append(m.group(1))
        return ids

    def held(self):
        return [HeldMessage(i, self._run("/usr/sbin/postcat", "-c", self.config_dir, "-e", "-h", "-b", "-q", i,
                                         check=False))
                for i in self.held_ids()]

    def wait_held(self, match, timeout=60):
        """The first held message for which match(HeldMessage) is true."""
        found = []

        def look():
            for m in self.held():
                if match(m):
                    found.append(m)
                    return True
            return False
        try:
            wait_for(look, timeout, interval=0.2, what="message held by Postfix")
        except TestFailure:
            raise TestFailure("no matching message held by Postfix; its log:\n" + self.log_text()[-4000:])
        return found[0]
