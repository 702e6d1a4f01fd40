"""The README's commands, verbatim, against the server its run command starts (issue 11).

Starts `scripts/run` exactly as the README says, with one test change: POSTERN_RUN_DIR puts
the demo's var/ (users, Maildir, queue, certificate) in a temporary directory instead of the
work tree. Then every shell command of the README's quick-start sections (from "The two
commands" up to "Configuration", except the two commands themselves) is taken from README.md
and run with bash from the repository root, unchanged: swaks with STARTTLS, curl over SMTPS
and POP3S, the health and metrics URLs, posternctl hash-password.

The demo listens on the README's fixed ports (2525, 2587, 2465, 2110, 2995, 2080): ctest runs
this test under a resource lock so that no two copies of it overlap.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import SOURCE_DIR, TestFailure, check, run_tests, wait_for  # noqa: E402

DEMO_PORTS = (2525, 2587, 2465, 2110, 2995, 2080)


def readme_commands():
    """Shell commands of the README's quick start, in order: each ```sh block line (with
    backslash continuations joined, comments after # dropped) and each inline `curl ...`."""
    text = open(os.path.join(SOURCE_DIR, "README.md")).read()
    start = text.index("## The two commands")
    end = text.index("## Configuration")
    section = text[start:end]
    cmds = []
    for m in re.finditer(r"```sh\n(.*?)```|`(curl [^`]+)`", section, re.S):
        if m.group(2):
            cmds.append(m.group(2))
            continue
        block = m.group(1).replace("\\\n", " ")
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("scripts/run") or line.startswith("scripts/test"):
                continue  # the two commands: this test is started by the second, runs the first
            cmds.append(line)
    return cmds


def port_in_use(port):
    s = socket.socket()
    try:
        return s.connect_ex(("127.0.0.1", port)) == 0
    finally:
        s.close()


class Demo:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="postern-readme-")
        self.log_path = os.path.join(self.dir, "run.log")
        busy = [p for p in DEMO_PORTS if port_in_use(p)]
        if busy:
            raise TestFailure("the README's demo ports are in use: %r (is a scripts/run demo running?)" % busy)
        env = dict(os.environ, POSTERN_RUN_DIR=self.dir)  # test change: var/ in a temp dir
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["scripts/run"], cwd=SOURCE_DIR, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None or "event=ready" in self.text(), timeout=600,
                 interval=0.2, what="scripts/run to build and start the demo")
        if self.proc.poll() is not None:
            raise TestFailure("scripts/run exited with %s:\n%s" % (self.proc.returncode, self.text()[-4000:]))

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


def sh(cmd, stdin=b""):
    r = subprocess.run(["bash", "-c", cmd], cwd=SOURCE_DIR, input=stdin, capture_output=True, timeout=60)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def test_readme_quick_start_commands_work_verbatim():
    cmds = readme_commands()
    # The README must still show what this test is about; an empty list would prove nothing.
    check(any(c.startswith("swaks ") and "--tls" in c for c in cmds), "README shows swaks --tls: %r" % cmds)
    check(any("smtps://" in c for c in cmds) and any("pop3s://" in c for c in cmds), "curl SMTPS/POP3S")
    check(any("hash-password" in c for c in cmds), "README shows posternctl hash-password")
    demo = Demo()
    try:
        check("demo@example.test" in demo.text() and "demo-password" in demo.text(),
              "scripts/run prints the demo account")
        for cmd in cmds:
            rc, out, err = sh(cmd, stdin=b"Readme-pw-123\nReadme-pw-123\n")
            if rc != 0:
                raise TestFailure("README command failed (exit %d): %s\nstdout:\n%s\nstderr:\n%s\nserver:\n%s"
                                  % (rc, cmd, out[-3000:], err[-3000:], demo.text()[-3000:]))
            if cmd.startswith("swaks "):
                check("250 2.0.0" in out and "TLS started" in out, "swaks sent over TLS: %s" % out[-2000:])
            elif "pop3s://" in cmd and cmd.split()[2].endswith("/1"):
                check("Subject:" in out, "message 1 read back over POP3S: %r" % out[:500])
            elif "pop3s://" in cmd:
                # swaks' message and curl's: two in the listing.
                check(re.search(r"^1 \d+", out, re.M) and re.search(r"^2 \d+", out, re.M),
                      "POP3S listing shows both messages: %r" % out)
            elif cmd.endswith("/readyz"):
                check(out.strip() == "ok", "readyz says ok: %r" % out)
            elif cmd.endswith("/metrics"):
                check("postern_" in out, "metrics in Prometheus format: %r" % out[:300])
            elif "hash-password" in cmd:
                scheme = "{BLF-CRYPT}" if "BCRYPT" in cmd else "{ARGON2ID}"  # Dovecot's name for bcrypt
                check(out.strip().startswith(scheme), "%s prints a %s hash: %r" % (cmd, scheme, out))
        # The demo's own files went to the temp dir, not the work tree.
        check(os.path.isfile(os.path.join(demo.dir, "var", "users.passwd")), "var/ in POSTERN_RUN_DIR")
    finally:
        rc = demo.stop()
    check(rc == 0, "posternd stopped cleanly on SIGTERM (exit %s):\n%s" % (rc, demo.text()[-2000:]))


run_tests(globals())
