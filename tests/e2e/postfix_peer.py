"""A private Postfix (Debian's postfix 3.7) as the next hop of outbound delivery tests: its
smtpd offers CHUNKING (and not BINARYMIME), delivers remote.test to Maildirs through
virtual(8), and logs per-session command counts ("bdat=2") in its own log file.

Runs as root only (Postfix's master starts as root); everything lives in a temp dir under
/tmp that Postfix's unprivileged daemons can traverse; the system's own Postfix instance
(unconfigured on this machine) is never touched: `postfix -c <dir>` only.
"""

import os
import shutil
import subprocess
import tempfile

from postern_harness import free_port, wait_for

MAIL_UID = 5000


def available():
    return os.geteuid() == 0 and shutil.which("postfix") is not None and os.path.exists("/usr/sbin/postmap")


class PostfixPeer:
    def __init__(self, domain="remote.test", users=("friend",)):
        self.domain = domain
        self.users = users
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="postern-postfix-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.spool = os.path.join(self.dir, "spool")
        self.lib = os.path.join(self.dir, "lib")
        self.mail = os.path.join(self.dir, "mail")
        self.log_path = os.path.join(self.dir, "postfix.log")

    def _pf(self, *args, check=True):
        return subprocess.run(["postfix", "-c", self.etc] + list(args), capture_output=True,
                              timeout=60, check=check)

    def start(self):
        os.makedirs(self.etc)
        os.makedirs(self.spool, mode=0o755)
        os.makedirs(self.lib, mode=0o700)
        shutil.chown(self.lib, "postfix", "postfix")
        os.makedirs(self.mail, mode=0o770)
        os.chown(self.mail, MAIL_UID, MAIL_UID)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("""compatibility_level = 3.6
config_directory = {etc}
queue_directory = {spool}
data_directory = {lib}
mail_owner = postfix
setgid_group = postdrop
maillog_file_prefixes = /tmp/postern-postfix-
maillog_file = {log}
myhostname = peer.{domain}
mydomain = {domain}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks =
alias_maps =
alias_database =
local_recipient_maps =
smtpd_peername_lookup = no
biff = no
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = hash:{etc}/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{uid}
smtpd_relay_restrictions = reject_unauth_destination
""".format(etc=self.etc, spool=self.spool, lib=self.lib, log=self.log_path, domain=self.domain,
           mail=self.mail, uid=MAIL_UID))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("127.0.0.1:%d inet n - n - - smtpd\n" % self.port)
            for svc in ("cleanup unix n - n - 0 cleanup", "qmgr unix n - n 300 1 qmgr",
                        "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
                        "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce",
                        "verify unix - - n - 1 verify", "flush unix n - n 1000? 0 flush",
                        "proxymap unix - - n - - proxymap", "smtp unix - - n - - smtp",
                        "showq unix n - n - - showq", "error unix - - n - - error",
                        "retry unix - - n - - error", "discard unix - - n - - discard",
                        "virtual unix - n n - - virtual", "anvil unix - - n - 1 anvil",
                        "scache unix - - n - 1 scache", "postlog unix-dgram n - n - 1 postlogd",
                        "tlsmgr unix - - n 1000? 1 tlsmgr", "pickup unix n - n 60 1 pickup"):
                f.write(svc + "\n")
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            for u in self.users:
                f.write("%s@%s %s/%s/\n" % (u, self.domain, self.domain, u))
        subprocess.run(["postmap", "-c", self.etc, "hash:" + os.path.join(self.etc, "vmailbox")],
                       check=True, capture_output=True, timeout=60)
        r = self._pf("start", check=False)
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: %s %s" % (r.stdout, r.stderr))
        wait_for(self._listening, timeout=30, what="postfix smtpd on port %d" % self.port)
        return self

    def _listening(self):
        import socket
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(100).startswith(b"220")
        except OSError:
            return False

    def stop(self):
        self._pf("stop", check=False)
        # master exits asynchronously; wait for its pid file lock to go.
        pid_file = os.path.join(self.spool, "pid", "master.pid")

        def gone():
            try:
                with open(pid_file) as f:
                    pid = int(f.read().strip())
                os.kill(pid, 0)
                return False
            except (OSError, ValueError):
                return True
        try:
            wait_for(gone, timeout=20, what="postfix master to exit")
        finally:
            if os.environ.get("POSTERN_KEEP") != "1":
                shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def messages(self, user):
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.mail, self.domain, user, sub)
            if os.path.isdir(d):
                for name in sorted(os.listdir(d)):
                    with open(os.path.join(d, name), "rb") as f:
                        out.append(f.read())
        return out

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
