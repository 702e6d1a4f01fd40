#!/usr/bin/env python3
"""The README's "Install on a server" commands, verbatim, on a throw-away copy of this machine
(issue 17: "the README's commands verbatim ... including the package route").

The commands run as root in `unshare --mount --net`: a private mount namespace whose root is an
overlay over this machine's / (writes land in a temporary upper directory; the machine's own
/etc, /usr and dpkg database are never touched) and a network namespace of its own with only a
loopback interface, so the installed server's real ports (25, 587, 465, 110, 995 on all
addresses) exist only there. The repository is bound at its own path, so `scripts/package`
packs this build tree.

Test changes, named:
- `systemctl enable --now posternd` cannot start a service without systemd as PID 1: the test
  runs `systemctl enable posternd` (offline: the symlink) and then starts what the unit's
  ExecStartPre and ExecStart say, `posternd --check` and `posternd --config ...`, as root (the
  daemon binds, then drops to the package's `postern` user: server.user in the packaged
  configuration). The unit's sandboxing needs systemd and is checked by test_package.py.
- The password for `posternctl user add` comes on standard input (the README says so).
Then a real client sends over 587 with STARTTLS and AUTH, and reads the mail back over POP3S
on 995, as the customer would.
"""

import os
import re
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
from postern_harness import SOURCE_DIR, TestFailure, check, run_tests  # noqa: E402

PASSWORD = "Install-route-pw1"


def readme_install_commands():
    text = open(os.path.join(SOURCE_DIR, "README.md")).read()
    section = text[text.index("## Install on a server"):]
    section = section[:section.index("\n## ", 5)]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    cmds = []
    for line in block.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line:
            cmds.append(line)
    return cmds


def test_readme_install_route_verbatim():
    if os.geteuid() != 0:
        raise TestFailure("needs root (unshare, overlay, chroot): run by scripts/test as root")
    cmds = readme_install_commands()
    check(cmds[:2] == ["scripts/package", "apt install ./postern_*.deb"] and
          any(c.startswith("posternctl user add ") for c in cmds) and
          cmds[-1] == "systemctl enable --now posternd", "README install commands changed: %r" % cmds)
    user = next(c for c in cmds if c.startswith("posternctl user add ")).split()[3]
    verbatim = [c for c in cmds if not c.startswith("systemctl ")]
    had_etc = os.path.exists("/etc/postern")
    t = tempfile.mkdtemp(prefix="postern-install-")
    for d in ("upper", "work", "root"):
        os.makedirs(os.path.join(t, d))
    root = os.path.join(t, "root")
    src = os.path.realpath(SOURCE_DIR)
    inner = textwrap.dedent("""\
        set -eu
        cd {src}
        echo "== README, verbatim (as root, in the repository):"
        {verbatim}
        echo "== test change: systemctl enable without --now (no systemd here), then the unit's commands"
        systemctl enable posternd 2>&1 | tail -2
        test -L /etc/systemd/system/multi-user.target.wants/posternd.service
        grep -E '^(ExecStartPre|ExecStart|User)=' /lib/systemd/system/posternd.service
        posternd --check --config /etc/postern/postern.properties
        ip link set lo up
        posternd --config /etc/postern/postern.properties -D server.ready_file=/run/posternd.ready \\
          > /run/posternd.log 2>&1 &
        pid=$!
        for i in $(seq 1 150); do [ -e /run/posternd.ready ] && break; sleep 0.2; done
        test -e /run/posternd.ready || {{ cat /run/posternd.log; exit 1; }}
        echo "== the server runs as: $(stat -c %U /proc/$pid)"
        python3 - <<'PY'
        import poplib, smtplib, ssl
        ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
        s = smtplib.SMTP("127.0.0.1", 587, timeout=30)
        s.starttls(context=ctx); s.login("{user}", "{pw}")
        s.sendmail("{user}", ["{user}"], b"Subject: installed\\r\\n\\r\\nvia the package\\r\\n"); s.quit()
        p = poplib.POP3_SSL("127.0.0.1", 995, context=ctx, timeout=30)
        p.user("{user}"); p.pass_("{pw}")
        n = p.stat()[0]
        body = b"\\n".join(p.retr(n)[1])
        assert b"via the package" in body, body
        p.quit()
        print("mail sent on 587 and read on 995: ok")
        PY
        echo "== stored under the packaged mail root, owned by the service user:"
        find /var/lib/postern/mail \\( -path '*/new/*' -o -path '*/cur/*' \\) -type f -printf '%u %p\\n' | head -3
        kill -TERM $pid; wait $pid || true
        """).format(src=src, user=user, pw=PASSWORD,
                    verbatim="\n".join('echo "\\$ %s"; %s < %s' % (c.replace('"', '\\"'), c,
                                                                     "/run/pw" if "user add" in c else "/dev/null")
                                        for c in verbatim))
    script = os.path.join(t, "inner.sh")
    with open(script, "w") as f:
        f.write(inner)
    outer = textwrap.dedent("""\
        set -eu
        # Nothing mounted here may reach the machine's own namespace. Inside a chroot (a
        # fresh-ci run) "/" is no mount point and the namespace around it is private already.
        mount --make-rprivate / 2>/dev/null || echo "note: / is no mount point here (a chroot)"
        mount -t overlay overlay -o lowerdir=/,upperdir={t}/upper,workdir={t}/work {root}
        mount -t proc proc {root}/proc
        mount --rbind /dev {root}/dev
        mount -t tmpfs tmpfs {root}/run
        mount -t tmpfs tmpfs {root}/tmp
        mkdir -p {root}{src}
        mount --bind {src} {root}{src}
        cp {script} {root}/run/inner.sh
        printf '%s\\n%s\\n' '{pw}' '{pw}' > {root}/run/pw
        chroot {root} /bin/bash /run/inner.sh
        """).format(t=t, root=root, src=src, script=script, pw=PASSWORD)
    r = subprocess.run(["unshare", "--mount", "--propagation", "unchanged", "--net", "--fork", "bash", "-c", outer],
                       capture_output=True,
                       text=True, timeout=900)
    out = r.stdout + r.stderr
    print(textwrap.indent(out[-6000:], "    "))
    check(r.returncode == 0, "install route failed (exit %d)" % r.returncode)
    check("added %s" % user in out, "posternctl user add said it added the user")
    check("configuration OK" in out, "posternd --check on the installed configuration")
    check("mail sent on 587 and read on 995: ok" in out, "a customer's mail went through the installed server")
    check(re.search(r"^postern /var/lib/postern/mail/\S+/(new|cur)/", out, re.M),
          "mail stored under /var/lib/postern/mail and owned by the postern user")
    check(os.path.exists("/etc/postern") == had_etc, "the machine itself got nothing installed")
    check(os.path.isdir(os.path.join(t, "upper", "etc", "postern")), "the install went to the overlay")
    check("server runs as: postern" in out, "the daemon dropped to the package's postern user")
    subprocess.run(["rm", "-rf", t])


run_tests(globals())
