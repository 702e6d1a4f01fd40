#!/usr/bin/env python3
"""posternctl user add|passwd|disable|enable|delete|list|show against a passwd-file backend:
the file is rewritten atomically (other lines and comments kept, mode kept, no temp files
left), the running posternd picks each change up, and bad input exits with sysexits codes."""

import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from postern_harness import (DEFAULT_USERS, Postern, check, check_eq, expect,  # noqa: E402
                             plain_ir, run_tests, wait_for)
import pg_support as P  # noqa: E402

NO_CACHE = {"auth.cache.size": "0", "auth.backend.local.check_interval": "100ms"}
ALICE = ("alice@example.test", DEFAULT_USERS["alice@example.test"]["password"])
BOB = ("bob@example.test", DEFAULT_USERS["bob@example.test"]["password"])


def ctl(p, *args, password=None):
    return P.posternctl(list(args), p.config_path, input=(password + "\n") if password else "")


def auth_code(p, user, password):
    s = p.smtp("submission", starttls=True)
    try:
        return s.docmd("AUTH", "PLAIN " + plain_ir(user, password))[0]
    finally:
        s.quit()


def eventually(p, user, password, code):
    wait_for(lambda: auth_code(p, user, password) == code, timeout=10,
             what="AUTH as %s -> %d" % (user, code))


def read(p):
    with open(p.passwd_path) as f:
        return f.read()


def test_user_commands_edit_the_file_atomically():
    with Postern(overrides=NO_CACHE) as p:
        with open(p.passwd_path) as f:
            original = f.read()
        with open(p.passwd_path, "w") as f:
            f.write("# managed by hand and by posternctl\n\n" + original)
        os.chmod(p.passwd_path, 0o640)

        r = ctl(p, "user", "add", "New.User@Example.test", "--sender", "alias@example.test", password="new-Pw-1")
        check_eq(r.returncode, 0, "user add: " + r.stderr)
        check("passwd-file backend 'local'" in r.stdout, "reports the backend: " + r.stdout)
        text = read(p)
        check(text.startswith("# managed by hand and by posternctl\n\n"), "comment kept:\n" + text)
        check("new.user@example.test:{ARGON2ID}$argon2id$" in text, "new line with an ARGON2ID hash:\n" + text)
        check("senders=new.user@example.test,alias@example.test" in text, "senders field:\n" + text)
        check("new-Pw-1" not in text, "clear-text password in the file")
        check_eq(stat.S_IMODE(os.stat(p.passwd_path).st_mode), 0o640, "file mode kept")
        check_eq([f for f in os.listdir(p.dir) if ".tmp" in f], [], "temp files left behind")
        eventually(p, "new.user@example.test", "new-Pw-1", 235)

        # passwd: the old password stops working, the new one works
        r = ctl(p, "user", "passwd", ALICE[0], password="alice-New-9")
        check_eq(r.returncode, 0, "user passwd: " + r.stderr)
        eventually(p, ALICE[0], "alice-New-9", 235)
        check_eq(auth_code(p, *ALICE), 535, "old password after passwd")

        # disable / enable
        check_eq(ctl(p, "user", "disable", BOB[0]).returncode, 0, "user disable")
        check("disabled=yes" in [l for l in read(p).splitlines() if l.startswith(BOB[0])][0], "disabled=yes")
        eventually(p, *BOB, 535)
        r = ctl(p, "user", "list", "example.test")
        check(BOB[0] + "\tdisabled" in r.stdout and ALICE[0] + "\tenabled" in r.stdout, "list: " + r.stdout)
        check_eq(ctl(p, "user", "enable", BOB[0]).returncode, 0, "user enable")
        eventually(p, *BOB, 235)
        # The shipped auth.rehash_on_login=true re-hashes bob's SHA512-CRYPT to ARGON2ID in the
        # background after that login; wait for it so the file is settled before "delete".
        wait_for(lambda: "bob@example.test:{ARGON2ID}$argon2id$" in read(p), timeout=20,
                 what="rehash of bob's SHA512-CRYPT hash after his login")
        r = ctl(p, "user", "show", BOB[0])
        check("scheme: ARGON2ID" in r.stdout and "enabled: yes" in r.stdout and "$argon2id$" not in r.stdout,
              "show: " + r.stdout)

        # delete keeps every other line
        before = [l for l in read(p).splitlines() if not l.startswith("erin@")]
        check_eq(ctl(p, "user", "delete", "erin@example.test").returncode, 0, "user delete")
        check_eq(read(p).splitlines(), before, "only erin's line removed")
        eventually(p, "erin@example.test", DEFAULT_USERS["erin@example.test"]["password"], 535)

        # auth test asks the same chain
        r = ctl(p, "auth", "test", "new.user@example.test", password="new-Pw-1")
        check(r.returncode == 0 and "result=ok backend=local" in r.stdout, "auth test: %s %s" % (r.stdout, r.stderr))


def test_error_exits():
    with Postern(overrides=NO_CACHE) as p:
        text = read(p)
        for args, pw, code, what in [
            (["user", "add", ALICE[0].upper()], "x-Pw-1", 73, "already exists"),
            (["user", "add", "bad:colon@example.test"], "x-Pw-1", 65, "malformed"),
            (["user", "add", "no-at-sign"], "x-Pw-1", 65, "malformed"),
            (["user", "add", "fresh@example.test"], None, 65, "no password"),
            (["user", "passwd", "ghost@example.test"], "x-Pw-1", 67, "no such user"),
            (["user", "delete", "ghost@example.test"], None, 67, "no such user"),
            (["user", "show", "ghost@example.test"], None, 67, "no such user"),
            (["domain", "list"], None, 78, "no postgres backend"),
            # Review finding: a line break or blank in --mailbox added an account or a
            # senders= right to the passwd-file.
            (["user", "add", "fresh@example.test", "--mailbox",
              "x\nroot@example.test:{PLAIN}mine::::::"], "x-Pw-1", 65, "--mailbox must be"),
            (["user", "add", "fresh@example.test", "--mailbox", "x senders=ceo@example.test"], "x-Pw-1", 65,
             "--mailbox must be"),
            (["user", "add", "fresh@example.test", "--mailbox", "a//b"], "x-Pw-1", 65, "--mailbox must be"),
            (["user", "add", "fresh@example.test", "--mailbox", "a/./b"], "x-Pw-1", 65, "--mailbox must be"),
        ]:
            r = ctl(p, *args, password=pw)
            check(r.returncode == code and what in r.stderr,
                  "posternctl %s: expected %d %r, got %d %s" % (" ".join(args), code, what, r.returncode, r.stderr))
        r = P.posternctl(["user", "list", "--config", "/nonexistent/postern.properties"], None)
        check(r.returncode == 78 and "not found" in r.stderr, "missing config: %d %s" % (r.returncode, r.stderr))
        check_eq(read(p), text, "failed commands left the file unchanged")
        expect((auth_code(p, *ALICE), ""), 235)


if __name__ == "__main__":
    run_tests(globals())
