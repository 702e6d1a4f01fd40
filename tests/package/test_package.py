#!/usr/bin/env python3
"""The Debian package (issue 17): built from this build tree with CPack (what scripts/package
does, into a temporary directory), then checked without installing it on this machine:

- the control data (dpkg-deb -I/-f): name, a Debian-valid version equal to the binaries'
  --version, the architecture, Depends from dpkg-shlibdeps plus adduser and openssl, the
  conffiles, the maintainer scripts;
- the contents (dpkg-deb -c): every path where the README and the man pages say, modes;
- from the tree extracted with dpkg-deb -x: `posternd --check` on the packaged configuration
  (with temp files for the ones postinst makes; a missing one fails it), the plugins at the
  configuration's server.plugin_dir, the installed posternctl's defaults, and posternd
  started from the extracted tree on the packaged configuration, serving AUTH and POP3 with
  only the overrides a machine without the package's postinst and ports needs (each named);
- the maintainer scripts run for real in a private mount namespace over copies of /etc,
  /var/lib and /var/spool (postinst: user, directories, certificate; an upgrade keeps what the
  administrator changed; posternd started as root drops to that user and delivers into those
  directories; prerm; postrm purge keeps non-empty mailboxes);
- the systemd unit's hardening, the man pages (exit codes), the bash completion, lintian.
"""

import glob
import json
import os
import poplib
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
from postern_harness import (BUILD_DIR, SOURCE_DIR, TestFailure, check, check_eq,  # noqa: E402
                             free_ports, make_test_cert, plain_ir, run_tests, tls_context, wait_for)

ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
MULTIARCH = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], capture_output=True, text=True,
                           check=True).stdout.strip()
PLUGIN_DIR = "/usr/lib/%s/postern" % MULTIARCH
PLUGINS = ("passwd-file", "postgres", "ldap")
# Debian policy 5.6.12: upstream version starts with a digit; no '-' without a revision.
DEBIAN_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~]*$")

_pkg = {}


def build_package():
    """Builds the package once per run: the programs and package inputs in BUILD_DIR (usually
    nothing to do), then cpack into a temporary directory (scripts/package's output stays
    untouched). Returns (deb path, extracted root)."""
    if _pkg:
        return _pkg["deb"], _pkg["root"]
    cache = open(os.path.join(BUILD_DIR, "CMakeCache.txt")).read()
    if not re.search(r"^CMAKE_INSTALL_PREFIX:PATH=/usr$", cache, re.M):
        # The package's layout (/usr, multiarch libdir, /etc) needs the /usr prefix; a build
        # tree configured before it was the default is switched (one file recompiles).
        subprocess.run(["cmake", "-DCMAKE_INSTALL_PREFIX=/usr", BUILD_DIR], check=True, stdout=subprocess.DEVNULL)
    r = subprocess.run(["cmake", "--build", BUILD_DIR, "--target", "deb_inputs", "-j2"],
                       capture_output=True, text=True)
    check(r.returncode == 0, "build deb_inputs: %s%s" % (r.stdout[-3000:], r.stderr[-3000:]))
    work = tempfile.mkdtemp(prefix="postern-pkg-")
    r = subprocess.run(["cpack", "-G", "DEB", "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake"),
                        "-B", work], capture_output=True, text=True, cwd=work)
    check(r.returncode == 0, "cpack: %s%s" % (r.stdout, r.stderr))
    debs = glob.glob(os.path.join(work, "postern_*.deb"))
    check_eq(len(debs), 1, "one postern_*.deb in %s: %r" % (work, os.listdir(work)))
    root = os.path.join(work, "root")
    subprocess.run(["dpkg-deb", "-x", debs[0], root], check=True)
    _pkg.update(deb=debs[0], root=root, work=work)
    return debs[0], root


def field(deb, name):
    return subprocess.run(["dpkg-deb", "-f", deb, name], capture_output=True, text=True, check=True).stdout.strip()


def contents(deb):
    """{path: (mode string, owner)} from dpkg-deb -c."""
    out = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in out.splitlines():
        parts = line.split(None, 5)
        path = parts[5].split(" -> ")[0]
        entries[path[2:].rstrip("/") if path.startswith("./") else path] = (parts[0], parts[1])
    return entries


def build_version():
    return subprocess.run([os.path.join(BUILD_DIR, "bin", "posternd"), "--version"], capture_output=True,
                          text=True, check=True).stdout.split()[1]


def test_control_name_version_depends():
    deb, _ = build_package()
    version = field(deb, "Version")
    check(DEBIAN_VERSION.match(version), "Debian-valid version: %r" % version)
    check_eq(version, build_version(), "package version = posternd --version of this build")
    tagged = subprocess.run(["git", "describe", "--tags"], cwd=SOURCE_DIR, capture_output=True).returncode == 0
    if not tagged:  # no tag yet: the project version plus the commit
        project = re.search(r"project\(Postern VERSION ([0-9.]+)",
                            open(os.path.join(SOURCE_DIR, "CMakeLists.txt")).read()).group(1)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=SOURCE_DIR, capture_output=True,
                              text=True).stdout.strip()
        check(version.startswith("%s+g%s" % (project, head)), "version %s = %s+g%s[.dirty]" % (version, project, head))
    check_eq(os.path.basename(deb), "postern_%s_%s.deb" % (version, ARCH), "file name")
    check_eq(field(deb, "Package"), "postern", "Package")
    check_eq(field(deb, "Architecture"), ARCH, "Architecture")
    check_eq(field(deb, "Section"), "mail", "Section")
    depends = [d.strip() for d in field(deb, "Depends").split(",")]
    names = {d.split()[0] for d in depends}
    for need in ("adduser", "openssl"):
        check(need in names, "Depends has %s (postinst): %r" % (need, depends))
    # dpkg-shlibdeps' work: versioned dependencies on the libraries the binaries link.
    for lib in ("libc6", "libstdc++6", "libssl3", "libpq5", "libargon2-1", "libcrypt1", "libpocofoundation80",
                "libpoconetssl80", "libpocojson80", "libldap-2.5-0"):
        check(any(d.startswith(lib + " (>= ") for d in depends), "Depends has %s (>= ...): %r" % (lib, depends))
    info = subprocess.run(["dpkg-deb", "-I", deb], capture_output=True, text=True, check=True).stdout
    for script in ("postinst", "prerm", "postrm"):
        check(re.search(r"\d+ bytes,\s+\d+ lines\s+\*\s+%s\s+#!/bin/sh" % script, info),
              "%s is an executable shell script:\n%s" % (script, info))
    check(re.search(r"\sconffiles\s", info), "conffiles in the control archive:\n" + info)
    ctrl = os.path.join(_pkg["work"], "control")
    subprocess.run(["dpkg-deb", "-e", deb, ctrl], check=True)
    check_eq(open(os.path.join(ctrl, "conffiles")).read().split(), ["/etc/postern/postern.properties"], "conffiles")
    for script in ("postinst", "prerm", "postrm"):
        r = subprocess.run(["sh", "-n", os.path.join(ctrl, script)], capture_output=True, text=True)
        check(r.returncode == 0, "sh -n %s: %s" % (script, r.stderr))
    postinst = open(os.path.join(ctrl, "postinst")).read()
    for needle in ("adduser --system", "/var/lib/postern/mail postern:postern 0750",
                   "/var/spool/postern postern:postern 0750", "/etc/postern/tls root:postern 0750",
                   "/etc/postern/users.passwd", "openssl req -x509"):
        check(needle in postinst, "postinst: %s" % needle)
    postrm = open(os.path.join(ctrl, "postrm")).read()
    check('"$1" = purge' in postrm and "rm -rf /var/spool/postern" in postrm, "postrm purges the queue")


def test_contents_paths_and_modes():
    deb, _ = build_package()
    c = contents(deb)
    want = {
        "usr/sbin/posternd": "-rwxr-xr-x",
        "usr/bin/posternctl": "-rwxr-xr-x",
        "etc/postern/postern.properties": "-rw-r--r--",
        "lib/systemd/system/posternd.service": "-rw-r--r--",
        "usr/share/man/man8/posternd.8.gz": "-rw-r--r--",
        "usr/share/man/man1/posternctl.1.gz": "-rw-r--r--",
        "usr/share/bash-completion/completions/posternctl": "-rw-r--r--",
        "usr/share/doc/postern/copyright": "-rw-r--r--",
        "usr/share/doc/postern/changelog.gz": "-rw-r--r--",
        "usr/share/doc/postern/examples/postern.properties": "-rw-r--r--",
        "usr/share/postern/schema/postgres/001_initial.sql": "-rw-r--r--",
    }
    for p in PLUGINS:
        want["%s/postern-auth-%s.so" % (PLUGIN_DIR[1:], p)] = "-rw-r--r--"
    for path, mode in want.items():
        check(path in c, "package holds /%s" % path)
        check_eq(c[path][0], mode, "mode of /%s" % path)
    for path, (mode, owner) in c.items():
        check_eq(owner, "root/root", "owner of /%s" % path)
        check(path == "." or path.split("/")[0] in ("etc", "lib", "usr"), "unexpected top-level path /%s" % path)
    # Stripped (CPACK_STRIP_FILES): no debug sections in what is installed.
    _, root = build_package()
    for b in ("usr/sbin/posternd", "usr/bin/posternctl"):
        r = subprocess.run(["readelf", "-S", os.path.join(root, b)], capture_output=True, text=True, check=True)
        check(".debug_info" not in r.stdout, "/%s is stripped" % b)
    check(not any(p.startswith("var/") for p in c), "no /var files shipped (postinst makes the directories)")


def packaged_config(root):
    return os.path.join(root, "etc/postern/postern.properties")


def config_value(path, key):
    for line in open(path):
        m = re.match(r"^\s*%s\s*=\s*(.*?)\s*$" % re.escape(key), line)
        if m:
            return m.group(1)
    return None


def test_packaged_config_is_valid_and_names_the_installed_paths():
    _, root = build_package()
    cfg = packaged_config(root)
    posternd = os.path.join(root, "usr/sbin/posternd")
    # --check validates every key and block and reads the files start-up reads: the ones
    # postinst makes (certificate, key, user file) are temp files here, and the plugins are
    # in the extracted tree, not at /usr/lib/<multiarch>/postern.
    work = tempfile.mkdtemp(prefix="postern-pkgcheck-", dir=_pkg["work"])
    cert, key = make_test_cert(work)
    users = os.path.join(work, "users.passwd")
    with open(users, "w") as f:
        f.write("dave@example.net:{PLAIN}x::::::\n")
    files = ["-D", "tls.cert_file=" + cert, "-D", "tls.key_file=" + key,
             "-D", "auth.backend.customers.path=" + users,
             "-D", "server.plugin_dir=" + os.path.join(root, PLUGIN_DIR[1:]),
             # the packaged config logs to syslog; errors are wanted on the terminal here.
             "-D", "logging.loggers.root.channel=console", "-D", "logging.channels.console.class=ConsoleChannel"]
    r = subprocess.run([posternd, "--check", "--config", cfg] + files, capture_output=True, text=True)
    check(r.returncode == 0 and "configuration OK: 5 listeners, 1 auth backends" in r.stdout,
          "posternd --check on the packaged config: %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    # A certificate or a user file that is not there fails the check, as it would fail the start.
    for key_name, path in [("tls.cert_file", os.path.join(work, "missing.pem")),
                           ("auth.backend.customers.path", os.path.join(work, "missing.passwd"))]:
        r = subprocess.run([posternd, "--check", "--config", cfg] + files + ["-D", "%s=%s" % (key_name, path)],
                           capture_output=True, text=True)
        check(r.returncode == 78 and path in r.stderr, "--check with %s missing: %d\n%s%s"
              % (key_name, r.returncode, r.stdout, r.stderr))
    r = subprocess.run([posternd, "--version"], capture_output=True, text=True)
    check_eq(r.stdout.strip(), "posternd " + field(_pkg["deb"], "Version"), "posternd --version")
    for key, value in [("server.plugin_dir", PLUGIN_DIR), ("server.mail_root", "/var/lib/postern/mail"),
                       ("server.queue_dir", "/var/spool/postern"), ("server.user", "postern"),
                       ("tls.cert_file", "/etc/postern/tls/fullchain.pem"),
                       ("tls.key_file", "/etc/postern/tls/privkey.pem"),
                       ("auth.backend.customers.path", "/etc/postern/users.passwd")]:
        check_eq(config_value(cfg, key), value, key)
    for listener, port in [("mx", 25), ("submission", 587), ("submissions", 465), ("pop3", 110), ("pop3s", 995)]:
        check_eq(config_value(cfg, "listener.%s.port" % listener), str(port), "listener.%s.port" % listener)
    for p in PLUGINS:
        check(os.path.isfile(os.path.join(root, PLUGIN_DIR[1:], "postern-auth-%s.so" % p)),
              "plugin %s at server.plugin_dir in the extracted tree" % p)
    # A bad key is still refused (the check is not a rubber stamp).
    r = subprocess.run([posternd, "--check", "--config", cfg, "-D", "smtp.max_recipeints=5",
                        # the packaged config logs to syslog; the error is wanted on stdout here.
                        "-D", "logging.loggers.root.channel=console",
                        "-D", "logging.channels.console.class=ConsoleChannel"],
                       capture_output=True, text=True)
    check(r.returncode == 78 and "smtp.max_recipeints" in r.stdout + r.stderr, "bad key refused: %d" % r.returncode)


def test_installed_posternctl_defaults_and_plugins():
    _, root = build_package()
    ctl = os.path.join(root, "usr/bin/posternctl")
    # Installed as /usr/bin/posternctl it reads /etc/postern/postern.properties; extracted
    # into ROOT, ROOT/etc/postern/postern.properties (the same rule: <prefix>/../etc for a
    # prefix ending in /usr).
    r = subprocess.run([ctl, "help"], capture_output=True, text=True)
    check(r.returncode == 0 and "(default: %s)" % packaged_config(root) in r.stdout,
          "extracted posternctl defaults to the tree's /etc/postern/postern.properties:\n" + r.stdout[:600])
    r = subprocess.run([ctl, "domain", "list"], capture_output=True, text=True)
    check(r.returncode == 78 and "no postgres backend in auth.backends of " + packaged_config(root) in r.stderr,
          "default config read (78, no postgres backend in it): %d %s" % (r.returncode, r.stderr))
    work = tempfile.mkdtemp(prefix="postern-pkgctl-", dir=_pkg["work"])
    users = os.path.join(work, "users.passwd")
    open(users, "w").close()
    os.chmod(users, 0o640)
    base = [ctl, "-c", packaged_config(root),
            # postinst makes /etc/postern/users.passwd; this machine has no package installed.
            "-D", "auth.backend.customers.path=" + users,
            # the plugins are in the extracted tree, not yet at the packaged server.plugin_dir.
            "-D", "server.plugin_dir=" + os.path.join(root, PLUGIN_DIR[1:])]
    r = subprocess.run(base + ["user", "add", "carol@example.net"], input="carol-Pw-7\n", capture_output=True,
                       text=True)
    check(r.returncode == 0 and "carol@example.net" in r.stdout, "user add: %d %s%s" % (r.returncode, r.stdout, r.stderr))
    r = subprocess.run(base + ["user", "list", "--json"], capture_output=True, text=True)
    check_eq(json.loads(r.stdout), [{"address": "carol@example.net", "enabled": True, "mailbox": None}], "list --json")
    r = subprocess.run(base + ["auth", "test", "carol@example.net"], input="carol-Pw-7\n", capture_output=True,
                       text=True)
    check(r.returncode == 0 and "result=ok backend=customers" in r.stdout,
          "auth test through the packaged passwd-file plugin: %d %s%s" % (r.returncode, r.stdout, r.stderr))
    r = subprocess.run(base + ["auth", "test", "carol@example.net"], input="wrong\n", capture_output=True, text=True)
    check_eq(r.returncode, 77, "auth test, wrong password: " + r.stdout)
    # db migrate's default schema directory is the package's.
    r = subprocess.run([ctl, "help", "db", "migrate"], capture_output=True, text=True)
    check(r.returncode == 0, "help db migrate")
    check(os.path.isfile(os.path.join(root, "usr/share/postern/schema/postgres/002_cluster.sql")), "schema shipped")


def test_posternd_from_the_package_serves():
    """posternd and its plugin from the extracted tree, on the packaged configuration. The
    overrides, and why each is needed on a build machine without the installed package:"""
    _, root = build_package()
    work = tempfile.mkdtemp(prefix="postern-pkgrun-", dir=_pkg["work"])
    os.chmod(_pkg["work"], 0o755)  # the unprivileged server.user below must reach its files
    cert, key = make_test_cert(work)
    mail, queue = os.path.join(work, "mail"), os.path.join(work, "queue")
    for d in (mail, queue):
        os.makedirs(d)
    users = os.path.join(work, "users.passwd")
    ctl = os.path.join(root, "usr/bin/posternctl")
    r = subprocess.run([ctl, "-c", packaged_config(root), "-D", "auth.backend.customers.path=" + users,
                        "hash-password"], input="dave-Pw-3\n", capture_output=True, text=True, check=True)
    with open(users, "w") as f:
        f.write("dave@example.net:%s::::::\n" % r.stdout.strip())
    os.chmod(users, 0o640)
    ports = free_ports(6)
    ready = os.path.join(work, "ready")
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:
        for path in (work, mail, queue, users, key):
            os.chown(path, pwd.getpwnam(user).pw_uid, -1)
    overrides = {
        # postinst makes the directories, the user file and a certificate; here: temp files.
        "server.mail_root": mail, "server.queue_dir": queue, "auth.backend.customers.path": users,
        "tls.cert_file": cert, "tls.key_file": key,
        # the plugins are in the extracted tree, not at /usr/lib/<multiarch>/postern.
        "server.plugin_dir": os.path.join(root, PLUGIN_DIR[1:]),
        # no postern user on this machine (postinst's adduser): an existing unprivileged one.
        "server.user": user, "server.group": "",
        # ports 25/587/465/110/995 and 2080 may be taken (or privileged): free loopback ports.
        "listener.mx.port": ports[0], "listener.submission.port": ports[1],
        "listener.submissions.port": ports[2], "listener.pop3.port": ports[3], "listener.pop3s.port": ports[4],
        "health.port": ports[5],
        # the test waits for this file and reads the log on stderr (a build box may have no syslog).
        "server.ready_file": ready, "logging.loggers.root.channel": "console",
        "logging.channels.console.class": "ConsoleChannel",
    }
    for name in ("mx", "submission", "submissions", "pop3", "pop3s"):
        overrides["listener.%s.address" % name] = "127.0.0.1"  # not every address of the machine
    cmd = [os.path.join(root, "usr/sbin/posternd"), "--config", packaged_config(root)]
    for k, v in overrides.items():
        cmd += ["-D", "%s=%s" % (k, v)]
    log = open(os.path.join(work, "posternd.log"), "w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    try:
        wait_for(lambda: os.path.exists(ready) or proc.poll() is not None, timeout=30, what="posternd ready")
        log.seek(0)
        check(proc.poll() is None, "posternd from the package exited %s:\n%s" % (proc.returncode, log.read()[-3000:]))
        s = smtplib.SMTP("127.0.0.1", ports[1], timeout=15)
        s.starttls(context=tls_context())
        s.ehlo("client.example")
        code, _ = s.docmd("AUTH", "PLAIN " + plain_ir("dave@example.net", "dave-Pw-3"))
        s.quit()
        check_eq(code, 235, "AUTH on the packaged submission listener")
        p = poplib.POP3_SSL("127.0.0.1", ports[4], context=tls_context(), timeout=15)
        p.user("dave@example.net")
        check(p.pass_("dave-Pw-3").startswith(b"+OK"), "POP3S login")
        p.quit()
        with socket.create_connection(("127.0.0.1", ports[5]), timeout=10) as h:
            h.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
            check(b"200" in h.recv(200).split(b"\r\n")[0], "/readyz 200")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    check_eq(proc.returncode, 0, "posternd exit after SIGTERM")


NS_MOUNTS = """set -e
mount --make-rprivate /
mount --bind {t}/etc /etc
mount --bind {t}/varlib /var/lib
mount --bind {t}/varspool /var/spool
"""


def in_namespace(t, body, popen=False, **kw):
    """Runs a shell script in a private mount namespace where /etc, /var/lib and /var/spool are
    the test's copies under t: the maintainer scripts run for real (adduser, install -d,
    openssl) without touching this machine's files."""
    cmd = ["unshare", "-m", "sh", "-c", NS_MOUNTS.format(t=t) + body]
    if popen:
        return subprocess.Popen(cmd, **kw)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_maintainer_scripts_and_the_installed_server():
    """postinst (configure, then again as an upgrade), posternd started as root from the
    packaged configuration in the directories postinst made (it drops to the postern user it
    made, reads postinst's certificate, delivers into /var/lib/postern/mail), prerm, postrm
    purge. All in a private mount namespace over copies of /etc, /var/lib and /var/spool."""
    _, root = build_package()
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        print("    needs root and unshare -m (a private mount namespace): check skipped")
        return
    t = tempfile.mkdtemp(prefix="postern-ns-", dir=_pkg["work"])
    os.chmod(_pkg["work"], 0o755)
    os.chmod(t, 0o755)
    subprocess.run(["cp", "-a", "/etc", os.path.join(t, "etc")], check=True)
    for d in ("varlib", "varspool"):
        os.makedirs(os.path.join(t, d))
    # What dpkg unpacks into /etc before postinst runs.
    shutil.rmtree(os.path.join(t, "etc", "postern"), ignore_errors=True)
    os.makedirs(os.path.join(t, "etc", "postern"))
    shutil.copy(packaged_config(root), os.path.join(t, "etc", "postern", "postern.properties"))
    ctrl = os.path.join(_pkg["work"], "control-ns")
    subprocess.run(["dpkg-deb", "-e", _pkg["deb"], ctrl], check=True)

    r = in_namespace(t, "sh %s/postinst configure ''\n" % ctrl)
    check(r.returncode == 0, "postinst configure: %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    check("self-signed certificate" in r.stdout, "postinst made a certificate: " + r.stdout)
    entry = [line for line in open(os.path.join(t, "etc", "passwd")) if line.startswith("postern:")]
    check_eq(len(entry), 1, "postern user added")
    uid, gid, home, shell = (lambda f: (int(f[2]), int(f[3]), f[5], f[6].strip()))(entry[0].split(":"))
    check(uid < 1000 and shell.endswith("nologin") and home == "/var/lib/postern", "system user: " + entry[0])
    check(any(line.startswith("postern:") for line in open(os.path.join(t, "etc", "group"))), "postern group")
    check(not any(line.startswith("postern:") for line in open("/etc/passwd")), "this machine's /etc untouched")

    def owner_mode(path):
        st = os.stat(path)
        return (st.st_uid, st.st_gid, oct(st.st_mode & 0o7777))
    want = {
        "varlib/postern": (uid, gid, "0o750"), "varlib/postern/mail": (uid, gid, "0o750"),
        "varspool/postern": (uid, gid, "0o750"), "etc/postern/tls": (0, gid, "0o750"),
        "etc/postern/users.passwd": (0, gid, "0o640"), "etc/postern/tls/privkey.pem": (0, gid, "0o640"),
        "etc/postern/tls/fullchain.pem": (0, gid, "0o644"),
    }
    for path, w in want.items():
        check_eq(owner_mode(os.path.join(t, path)), w, "owner, group, mode of /" + path.replace("var", "var/", 1)
                 if path.startswith("var") else "owner, group, mode of /" + path)
    # An upgrade's configure changes nothing an administrator changed.
    os.chmod(os.path.join(t, "varlib/postern/mail"), 0o700)
    cert_before = open(os.path.join(t, "etc/postern/tls/fullchain.pem")).read()
    r = in_namespace(t, "sh %s/postinst configure 0.0.1\n" % ctrl)
    check(r.returncode == 0, "postinst upgrade: %s" % r.stderr)
    check_eq(owner_mode(os.path.join(t, "varlib/postern/mail"))[2], "0o700", "administrator's mode kept")
    check_eq(open(os.path.join(t, "etc/postern/tls/fullchain.pem")).read(), cert_before, "certificate kept")
    os.chmod(os.path.join(t, "varlib/postern/mail"), 0o750)

    # posternd as systemd would run it, except started as root (no systemd here): it binds,
    # reads the key, drops to server.user = postern. Overrides, and why:
    ports = free_ports(6)
    ready_dir = os.path.join(t, "ready")
    os.makedirs(ready_dir)
    os.chmod(ready_dir, 0o777)
    overrides = {
        # the plugins are in the extracted tree, not at /usr/lib/<multiarch>/postern here.
        "server.plugin_dir": os.path.join(root, PLUGIN_DIR[1:]),
        # ports 25/587/465/110/995 and 2080 may be taken: free loopback ports.
        "listener.mx.port": ports[0], "listener.submission.port": ports[1],
        "listener.submissions.port": ports[2], "listener.pop3.port": ports[3], "listener.pop3s.port": ports[4],
        "health.port": ports[5],
        # the test waits for this file and reads the log (a build box may have no syslog).
        "server.ready_file": os.path.join(ready_dir, "ready"), "logging.loggers.root.channel": "console",
        "logging.channels.console.class": "ConsoleChannel",
        # a shorter stop for the test (the packaged 60s is for real sessions).
        "server.shutdown_grace": "2s",
    }
    for name in ("mx", "submission", "submissions", "pop3", "pop3s"):
        overrides["listener.%s.address" % name] = "127.0.0.1"
    args = " ".join("-D '%s=%s'" % kv for kv in overrides.items())
    log = open(os.path.join(t, "posternd.log"), "w+")
    proc = in_namespace(t, "exec %s/usr/sbin/posternd --config /etc/postern/postern.properties %s\n" % (root, args),
                        popen=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = os.path.join(ready_dir, "ready")
        wait_for(lambda: os.path.exists(ready) or proc.poll() is not None, timeout=30, what="posternd ready")
        log.seek(0)
        check(proc.poll() is None, "posternd exited %s:\n%s" % (proc.returncode, log.read()[-3000:]))
        check_eq(os.stat("/proc/%d" % proc.pid).st_uid, uid, "posternd runs as postern")
        ctl = os.path.join(root, "usr/bin/posternctl")
        users = os.path.join(t, "etc/postern/users.passwd")
        r = subprocess.run([ctl, "-c", os.path.join(t, "etc/postern/postern.properties"),
                            # the namespace's /etc/postern/users.passwd, seen from outside it.
                            "-D", "auth.backend.customers.path=" + users,
                            # posternctl writes through the backend plugin, which is in the
                            # extracted tree here, not at /usr/lib/<multiarch>/postern.
                            "-D", "server.plugin_dir=" + os.path.join(root, PLUGIN_DIR[1:]),
                            "user", "add", "erin@example.net"],
                           input="erin-Pw-5\n", capture_output=True, text=True)
        check_eq(r.returncode, 0, "posternctl user add: " + r.stderr)
        check_eq(owner_mode(users), (0, gid, "0o640"), "user file keeps root:postern 0640")
        def accepted():  # the passwd-file backend notices the new user within its check interval
            # (a new session per probe: refused RCPTs count toward the session's error cap)
            with smtplib.SMTP("127.0.0.1", ports[0], timeout=15) as probe:
                probe.ehlo("client.example")
                probe.docmd("MAIL", "FROM:<x@remote.example>")
                return probe.docmd("RCPT", "TO:<erin@example.net>")[0] == 250
        try:
            wait_for(accepted, timeout=20, interval=0.3, what="erin@example.net accepted")
        except TestFailure:
            log.seek(0)
            raise TestFailure("RCPT refused; posternd log:\n" + log.read()[-3000:])
        s = smtplib.SMTP("127.0.0.1", ports[0], timeout=15)
        s.ehlo("client.example")
        s.starttls(context=tls_context())
        s.ehlo("client.example")
        s.sendmail("x@remote.example", ["erin@example.net"], b"Subject: packaged\r\n\r\nhello from the test\r\n")
        s.quit()
        p = poplib.POP3_SSL("127.0.0.1", ports[4], context=tls_context(), timeout=15)
        p.user("erin@example.net")
        p.pass_("erin-Pw-5")
        check(b"hello from the test" in b"\n".join(p.retr(1)[1]), "message read back over POP3S")
        p.quit()
        stored = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(t, "varlib/postern/mail")) for f in fs]
        check(stored and all(os.stat(f).st_uid == uid for f in stored), "mail stored by postern: %r" % stored)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    check_eq(proc.returncode, 0, "posternd exit after SIGTERM")

    r = in_namespace(t, "sh %s/prerm remove && sh %s/postrm remove && sh %s/postrm purge\n" % (ctrl, ctrl, ctrl))
    check(r.returncode == 0, "prerm/postrm: %s" % r.stderr)
    check("kept /var/lib/postern/mail" in r.stderr, "purge names the kept mailboxes: " + r.stderr)
    for gone in ("varspool/postern", "etc/postern/tls", "etc/postern/users.passwd"):
        check(not os.path.exists(os.path.join(t, gone)), "purge removed /" + gone)
    check(os.path.isdir(os.path.join(t, "varlib/postern/mail")) and stored and os.path.exists(stored[0]),
          "purge keeps non-empty mailboxes")
    shutil.rmtree(os.path.join(t, "varlib/postern/mail"))
    os.makedirs(os.path.join(t, "varlib/postern/mail"))
    r = in_namespace(t, "sh %s/postrm purge\n" % ctrl)
    check(r.returncode == 0 and not os.path.exists(os.path.join(t, "varlib/postern")),
          "purge with empty mailboxes removes /var/lib/postern: %s" % r.stderr)


def test_systemd_unit_is_hardened():
    _, root = build_package()
    unit_path = os.path.join(root, "lib/systemd/system/posternd.service")
    unit = open(unit_path).read()
    for needle in ("User=postern", "ExecStart=/usr/sbin/posternd --config /etc/postern/postern.properties",
                   "ExecStartPre=/usr/sbin/posternd --check --config /etc/postern/postern.properties",
                   "ExecReload=/bin/kill -HUP $MAINPID", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                   "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "NoNewPrivileges=true", "ProtectSystem=strict",
                   "ReadWritePaths=/var/lib/postern /var/spool/postern", "PrivateTmp=true", "ProtectHome=true",
                   "PrivateDevices=true", "RestrictAddressFamilies=", "SystemCallFilter=@system-service",
                   "WantedBy=multi-user.target"):
        check(needle in unit, "unit has %r" % needle)
    # The config's writable paths are inside ReadWritePaths.
    cfg = packaged_config(root)
    for key in ("server.mail_root", "server.queue_dir"):
        v = config_value(cfg, key)
        check(v.startswith("/var/lib/postern") or v.startswith("/var/spool/postern"), "%s in ReadWritePaths" % key)
    # TimeoutStopSec above server.drain_delay + server.shutdown_grace + 4 s (+ the last write).
    grace = int(config_value(cfg, "server.shutdown_grace").rstrip("s"))
    delay = int((config_value(cfg, "server.drain_delay") or "8s").rstrip("s"))
    stop = int(re.search(r"TimeoutStopSec=(\d+)s", unit).group(1))
    check(stop >= delay + grace + 4 + 10, "TimeoutStopSec %d vs drain_delay %d + shutdown_grace %d + 4 + 10"
          % (stop, delay, grace))
    check(shutil.which("systemd-analyze"), "systemd-analyze missing (scripts/test installs systemd)")
    r = subprocess.run(["systemd-analyze", "verify", unit_path], capture_output=True, text=True)
    bad = [line for line in (r.stdout + r.stderr).splitlines()
           if "posternd.service" in line and ("Unknown" in line or "nvalid" in line or "ailed to parse" in line)]
    check(not bad, "systemd-analyze verify:\n" + "\n".join(bad))


def test_man_pages_and_completion():
    _, root = build_package()
    for page, needles in [("usr/share/man/man8/posternd.8.gz", ("EXIT STATUS", "78", "--check", "SIGHUP")),
                          ("usr/share/man/man1/posternctl.1.gz",
                           ("EXIT STATUS", "EX_USAGE", "EX_NOUSER", "EX_TEMPFAIL", "EX_CONFIG", "--json",
                            "--config"))]:
        r = subprocess.run(["man", "--warnings", "-l", os.path.join(root, page)], capture_output=True, text=True,
                           env=dict(os.environ, MANWIDTH="100", MAN_KEEP_FORMATTING="0"))
        check(r.returncode == 0 and not r.stderr.strip(), "man %s: %d %s" % (page, r.returncode, r.stderr))
        text = re.sub(r".\x08", "", r.stdout).replace("\u2010", "-").replace("\u2212", "-")
        for n in needles:
            check(n in text, "%s mentions %s" % (page, n))
    # Every exit code posternctl's own help lists is in its man page.
    ctl = os.path.join(root, "usr/bin/posternctl")
    helptext = subprocess.run([ctl, "help"], capture_output=True, text=True).stdout
    codes = re.findall(r"^\s+(\d+)\s+EX_", helptext, re.M)
    check(len(codes) >= 10, "exit codes in posternctl help: %r" % codes)
    man = subprocess.run(["zcat", os.path.join(root, "usr/share/man/man1/posternctl.1.gz")], capture_output=True,
                         text=True).stdout
    for code in codes:
        check(".B %s\n" % code in man, "posternctl(1) lists exit code %s" % code)
    # Bash completion: loads and completes commands and options with the packaged posternctl
    # ("user li": "user l" has two answers, list and logins).
    comp = os.path.join(root, "usr/share/bash-completion/completions/posternctl")
    script = ('source %s\nt() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _posternctl; '
              'echo "${COMPREPLY[*]}"; }\nt %s us\nt %s user li\nt %s user list --j\n' % (comp, ctl, ctl, ctl))
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    check_eq(r.stdout.splitlines(), ["user", "list", "--json"], "completion (stderr: %s)" % r.stderr)


def test_lintian():
    deb, _ = build_package()
    check(shutil.which("lintian"), "lintian missing (scripts/test installs it)")
    r = subprocess.run(["lintian", deb], capture_output=True, text=True)
    errors = [line for line in r.stdout.splitlines() if line.startswith("E:")]
    warnings = [line for line in r.stdout.splitlines() if line.startswith("W:")]
    check(not errors and r.returncode == 0, "lintian errors:\n" + r.stdout)
    check(not warnings, "lintian warnings (the package had none):\n" + "\n".join(warnings))


def cleanup():
    if _pkg and os.environ.get("POSTERN_KEEP") != "1":
        shutil.rmtree(_pkg["work"], ignore_errors=True)


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        cleanup()
