#!/usr/bin/env python3
"""posternctl's command-line conventions (issue 17): global options (-c/--config, --backend,
-D) before or after the command, `help [COMMAND]` and `--help` on every command, `--version`
on both binaries (git describe at build time), sysexits exit codes, and `--json` for the
list and show commands (parsed with json.loads and compared with the text output and with
the server's own files). Against a real posternd with its passwd-file backend; a PostgreSQL
for the domain, alias and grant lists."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from postern_harness import (BUILD_DIR, DEFAULT_USERS, SOURCE_DIR, Postern, check, check_eq,  # noqa: E402
                             make_message, run_tests, wait_for)
import pg_support as P  # noqa: E402

POSTERNCTL = os.path.join(BUILD_DIR, "bin", "posternctl")
POSTERND = os.path.join(BUILD_DIR, "bin", "posternd")
ALICE = ("alice@example.test", DEFAULT_USERS["alice@example.test"]["password"])
DEBIAN_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~]*$")


def run(args, input="", cwd=None):
    return subprocess.run([POSTERNCTL] + list(args), capture_output=True, text=True, input=input, timeout=60,
                          cwd=cwd)


def command_names():
    r = run(["help", "--commands"])
    check_eq(r.returncode, 0, "help --commands")
    names = r.stdout.splitlines()
    check(len(names) >= 26 and "user add" in names and "queue list" in names, "command names: %r" % names)
    return names


def test_global_options_before_or_after_the_command():
    # Nothing the harness turns off matters here: only the passwd-file backend is used.
    with Postern() as p:
        cfg = p.config_path
        forms = [
            ["--config", cfg, "user", "list"],
            ["-c", cfg, "user", "list"],
            ["--config=" + cfg, "user", "list"],
            ["user", "list", "--config", cfg],
            ["user", "list", "-c", cfg],
            ["-c", cfg, "--backend", "local", "user", "list"],
            ["user", "list", "--backend=local", "-c", cfg],
            ["--backend", "local", "user", "list", "--config", cfg],
        ]
        outputs = []
        for args in forms:
            r = run(args)
            check_eq(r.returncode, 0, "posternctl %s: %s" % (" ".join(args), r.stderr))
            outputs.append(r.stdout)
        check(all(o == outputs[0] for o in outputs), "same output in every form:\n%s" % "\n---\n".join(outputs))
        for user in DEFAULT_USERS:
            check(user + "\tenabled" in outputs[0], "%s listed:\n%s" % (user, outputs[0]))

        # -D before the command reaches the configuration (an empty user file instead).
        empty = os.path.join(p.dir, "empty.passwd")
        open(empty, "w").close()
        r = run(["-c", cfg, "-D", "auth.backend.local.path=" + empty, "user", "list"])
        check(r.returncode == 0 and r.stdout == "", "-D before the command: %d %r %s" % (r.returncode, r.stdout,
                                                                                       r.stderr))
        # --backend before the command is honoured: an unknown one is named (78).
        r = run(["--backend", "nosuch", "-c", cfg, "user", "list"])
        check(r.returncode == 78 and "no backend 'nosuch'" in r.stderr, "--backend nosuch: %d %s" % (r.returncode,
                                                                                                     r.stderr))
        # Global options before commands that read no configuration are accepted too.
        r = run(["-c", cfg, "hash-password", "--scheme", "SHA512-CRYPT"], input="x-Pw-1\n")
        check(r.returncode == 0 and r.stdout.startswith("{SHA512-CRYPT}$6$"), "hash-password: " + r.stderr)
        # Without -c the work tree's etc/postern.properties is the default (from the repo root).
        r = run(["help"], cwd=SOURCE_DIR)
        check("(default: etc/postern.properties)" in r.stdout, "default config in help")


def test_help_for_every_command():
    r = run(["help"])
    check_eq(r.returncode, 0, "help")
    check(r.stdout.startswith("usage: posternctl [global options] COMMAND"), r.stdout[:200])
    for text in ("-c, --config FILE", "--backend NAME", "exit status (sysexits.h):", "78  EX_CONFIG"):
        check(text in r.stdout, "help mentions %r" % text)
    check_eq(run(["--help"]).stdout, r.stdout, "--help = help")
    check_eq(run(["-h"]).stdout, r.stdout, "-h = help")
    for name in command_names():
        words = name.split()
        h1 = run(["help"] + words)
        h2 = run(words + ["--help"])
        h3 = run(words + ["-h", "-c", "/nonexistent"])  # --help wins: nothing is read
        check(h1.returncode == 0 and h1.stdout.startswith("usage: posternctl %s " % name) or
              h1.stdout.startswith("usage: posternctl %s\n" % name), "help %s: %d %s" % (name, h1.returncode,
                                                                                       h1.stdout[:200]))
        check("exit status" in h1.stdout and "global options" in h1.stdout, "help %s: options and exits" % name)
        check_eq((h2.returncode, h2.stdout), (0, h1.stdout), "%s --help" % name)
        check_eq((h3.returncode, h3.stdout), (0, h1.stdout), "%s -h" % name)
    # A group word lists its commands; help for something that does not exist is a usage error.
    r = run(["help", "queue"])
    check(r.returncode == 0 and all("posternctl queue " + w in r.stdout
                                    for w in ("list", "show", "flush", "delete", "hold", "release")), r.stdout)
    r = run(["user"])
    check(r.returncode == 64 and "'user' needs a subcommand" in r.stderr and "user add" in r.stderr, r.stderr)
    r = run(["user", "frobnicate"])
    check(r.returncode == 64 and "unknown command 'user frobnicate'" in r.stderr and "user add" in r.stderr, r.stderr)
    for args in (["help", "nosuch"], ["help", "user", "frobnicate"], ["nosuch"], ["nosuch", "--help"], []):
        r = run(args)
        check_eq(r.returncode, 64, "posternctl %s" % " ".join(args))


def test_version_of_both_binaries():
    ctl = run(["--version"])
    d = subprocess.run([POSTERND, "--version"], capture_output=True, text=True)
    check_eq(ctl.returncode, 0, "posternctl --version")
    check_eq(d.returncode, 0, "posternd --version")
    m1 = re.match(r"^posternctl (\S+)\n$", ctl.stdout)
    m2 = re.match(r"^posternd (\S+)\n$", d.stdout)
    check(m1 and m2, "version lines: %r %r" % (ctl.stdout, d.stdout))
    check_eq(m1.group(1), m2.group(1), "same version in both binaries")
    version = m1.group(1)
    check(DEBIAN_VERSION.match(version), "Debian-valid version " + version)
    # From git describe when the tree is a checkout: the commit is in it.
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=SOURCE_DIR, capture_output=True, text=True)
    if head.returncode == 0:
        check("g" + head.stdout.strip() in version or
              subprocess.run(["git", "describe", "--tags", "--exact-match"], cwd=SOURCE_DIR,
                             capture_output=True).returncode == 0,
              "version %s names commit %s" % (version, head.stdout.strip()))
    # -v and --version after other options, as POCO's options would be.
    r = subprocess.run([POSTERND, "-c", "/nonexistent", "-v"], capture_output=True, text=True)
    check_eq((r.returncode, r.stdout), (0, d.stdout), "posternd -c FILE -v")
    check_eq(run(["-c", "/nonexistent", "--version"]).stdout, ctl.stdout, "posternctl -c FILE --version")
    # A global option "before or after the command", as the help says.
    after = run(["user", "list", "--version"])
    check_eq((after.returncode, after.stdout), (0, ctl.stdout), "posternctl user list --version")


def test_exit_codes():
    with Postern() as p:
        cfg = p.config_path
        cases = [
            (["frobnicate"], "", 64, "unknown command"),
            (["user", "list", "--frob"], "", 64, "unknown option --frob"),
            (["--frob", "user", "list"], "", 64, "unknown global option --frob"),
            (["-c"], "", 64, "-c needs a value"),
            (["user", "list", "-c"], "", 64, "-c needs a FILE"),
            (["user", "show"], "", 64, "usage: posternctl user show"),
            (["user", "list", "--json", "extra", "args"], "", 64, "usage"),
            (["hash-password", "secret"], "", 64, "never from the command line"),
            (["user", "show", "not-an-address"], "", 65, "malformed"),
            (["user", "add", "new@example.test"], "", 65, "no password"),
            (["user", "show", "ghost@example.test"], "", 67, "no such user"),
            (["user", "add", ALICE[0]], "x-Pw-1\n", 73, "already exists"),
            (["queue", "show", "nosuchid"], "", 64, "not a queue id"),
            (["auth", "test", ALICE[0]], "wrong\n", 77, ""),
            (["domain", "list"], "", 78, "no postgres backend"),
            (["user", "list", "-c", "/nonexistent/postern.properties"], "", 78, "not found"),
            (["auth", "test", ALICE[0], "-D", "server.plugin_dir=/nonexistent"], "x\n", 69, "backend 'local'"),
        ]
        for args, stdin, code, text in cases:
            full = args if "-c" in args else args + ["-c", cfg]
            if args in (["-c"], ["--frob", "user", "list"], ["frobnicate"]):
                full = args
            r = run(full, input=stdin)
            check(r.returncode == code and text in r.stderr,
                  "posternctl %s: expected %d %r, got %d %r" % (" ".join(full), code, text, r.returncode, r.stderr))
        r = run(["auth", "test", ALICE[0], "-c", cfg], input=ALICE[1] + "\n")
        check_eq(r.returncode, 0, "auth test ok: " + r.stderr)


def test_json_user_list_and_show():
    with Postern() as p:
        cfg = p.config_path
        r = run(["user", "add", "json.user@example.test", "--sender", "other@example.test", "--mailbox",
                 "example.test/json", "-c", cfg], input="json-Pw-1\n")
        check_eq(r.returncode, 0, "user add: " + r.stderr)
        check_eq(run(["user", "disable", "bob@example.test", "-c", cfg]).returncode, 0, "disable bob")

        text = run(["-c", cfg, "user", "list"]).stdout
        r = run(["-c", cfg, "user", "list", "--json"])
        check_eq(r.returncode, 0, "user list --json: " + r.stderr)
        users = json.loads(r.stdout)
        check(isinstance(users, list), "a JSON array")
        from_text = [line.split("\t") for line in text.splitlines()]
        check_eq([(u["address"], "enabled" if u["enabled"] else "disabled", u["mailbox"] or "-") for u in users],
                 [tuple(f) for f in from_text], "JSON list = text list")
        by = {u["address"]: u for u in users}
        check_eq(by["bob@example.test"]["enabled"], False, "bob disabled")
        check_eq(by["json.user@example.test"]["mailbox"], "example.test/json", "mailbox")
        check(by["alice@example.test"]["mailbox"] is None, "no mailbox -> null")
        # --json before the command too; a domain filter.
        r = run(["--json", "-c", cfg, "user", "list", "example.org"])
        check_eq(json.loads(r.stdout), [{"address": "carol@example.org", "enabled": True, "mailbox": None}],
                 "filtered list")

        r = run(["user", "show", "json.user@example.test", "--json", "-c", cfg])
        check_eq(r.returncode, 0, "user show --json: " + r.stderr)
        u = json.loads(r.stdout)
        check_eq(u["address"], "json.user@example.test", "address")
        check_eq(u["enabled"], True, "enabled")
        check_eq(u["scheme"], "ARGON2ID", "scheme (never the hash)")
        check_eq(u["senders"], ["json.user@example.test", "other@example.test"], "senders")
        check_eq(u["mailbox"], "example.test/json", "mailbox")
        check(u["backend"].startswith("passwd-file backend 'local'"), "backend: %r" % u["backend"])
        check("$argon2id$" not in r.stdout and "json-Pw-1" not in r.stdout, "no hash or password in the output")
        show = run(["user", "show", "json.user@example.test", "-c", cfg]).stdout
        check("scheme: ARGON2ID" in show and "senders: json.user@example.test,other@example.test" in show, show)
        # Commands without --json refuse it (64) instead of printing text a script cannot parse.
        r = run(["user", "enable", "bob@example.test", "--json", "-c", cfg])
        check(r.returncode == 64 and "unknown option --json" in r.stderr, "user enable --json: %s" % r.stderr)


def test_json_queue_list_and_show():
    # Relayed mail stays queued: the harness starts with delivery off (delivery.enabled=false).
    with Postern(overrides={"delivery.enabled": "false"}) as p:
        cfg = p.config_path
        r = run(["queue", "list", "--json", "-c", cfg])
        check_eq((r.returncode, json.loads(r.stdout) if r.returncode == 0 else r.stderr), (0, []), "empty queue")
        s = p.submission(*ALICE)
        _, msg = make_message(sender=ALICE[0], to="someone@remote.example", subject="json queue test")
        s.sendmail(ALICE[0], ["someone@remote.example", "other@remote.example"], msg)
        s.quit()
        entries = wait_for(lambda: json.loads(run(["queue", "list", "--json", "-c", cfg]).stdout), timeout=15,
                           what="a queued message")
        check_eq(len(entries), 1, "one queued message")
        e = entries[0]
        check_eq(e["sender"], ALICE[0], "sender")
        check_eq(sorted(e["recipients"]), ["other@remote.example", "someone@remote.example"], "recipients")
        check_eq((e["attempts"], e["hold"], e["last_error"]), (0, False, None), "fresh message")
        check(isinstance(e["size"], int) and e["size"] >= len(msg), "size %r" % e["size"])
        check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", e["arrival"]), "arrival %r" % e["arrival"])
        text = run(["queue", "list", "-c", cfg]).stdout
        check(text.startswith(e["id"] + " ") and "size=%d" % e["size"] in text, "text list agrees: " + text)

        r = run(["-c", cfg, "queue", "show", e["id"], "--json"])
        check_eq(r.returncode, 0, "queue show --json: " + r.stderr)
        v = json.loads(r.stdout)
        check_eq((v["id"], v["sender"], v["auth"], v["client"]), (e["id"], ALICE[0], ALICE[0], "127.0.0.1"),
                 "envelope")
        check("Subject: json queue test" in v["header"], "header: %r" % v["header"])
        check_eq(v["size"], e["size"], "size")
        check_eq(run(["queue", "hold", e["id"], "-c", cfg]).returncode, 0, "hold")
        check_eq(json.loads(run(["queue", "show", e["id"], "--json", "-c", cfg]).stdout)["hold"], True, "held")
        r = run(["queue", "show", "0" * len(e["id"]), "--json", "-c", cfg])
        check(r.returncode in (64, 67) and r.stdout == "", "unknown id: %d %r" % (r.returncode, r.stdout))


def test_db_migrate_outlasts_the_statement_timeout_and_bounds_lock_waits():
    """Review finding: db migrate ran each file under the backend's runtime statement_timeout
    (3s here), so a migration that builds an index over a big table was rolled back and
    reported as "database down". Now --timeout (10m) bounds a file and --lock-timeout (10s)
    the wait for a table lock, so an ALTER never holds live traffic behind it for long."""
    pg = P.PgServer()
    holder = None
    try:
        cfg = pg.ctl_config
        schema = os.path.join(pg.dir, "schema")
        shutil.copytree(os.path.join(SOURCE_DIR, "schema", "postgres"), schema)
        with open(os.path.join(schema, "900_slow.sql"), "w") as f:
            f.write("SELECT pg_sleep(4);\nCREATE TABLE slow_done (x integer);\n")
        r = run(["db", "migrate", "--schema-dir", schema, "-c", cfg])
        check_eq(r.returncode, 0, "a 4-s migration under a 3-s statement_timeout: " + r.stdout + r.stderr)
        check("applied 900_slow" in r.stdout, r.stdout)
        # Another session holds the table: the ALTER gives up after --lock-timeout.
        with open(os.path.join(schema, "901_lock.sql"), "w") as f:
            f.write("ALTER TABLE slow_done ADD COLUMN y integer;\n")
        holder = subprocess.Popen(P._as_server_user() + [
            "psql", "-X", "-q", "-h", pg.sockdir, "-p", str(pg.port), "-U", P.SUPERUSER, "-d", P.DATABASE,
            "-c", "BEGIN; LOCK TABLE slow_done IN ACCESS SHARE MODE; SELECT pg_sleep(60);"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        wait_for(lambda: pg.sql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                                " WHERE c.relname = 'slow_done'") == ["1"], 20, what="the lock held")
        t0 = time.monotonic()
        r = run(["db", "migrate", "--schema-dir", schema, "--lock-timeout", "1s", "-c", cfg])
        check_eq(r.returncode, 70, "a migration that cannot get its lock: " + r.stdout + r.stderr)
        check("lock timeout" in r.stderr, r.stderr)
        check(time.monotonic() - t0 < 10, "given up after about --lock-timeout")
        check_eq(run(["db", "migrate", "--timeout", "0s", "-c", cfg]).returncode, 64, "--timeout 0s")
    finally:
        if holder:
            holder.kill()
            holder.wait()
        pg.destroy()


def test_json_domain_alias_grant_lists():
    pg = P.PgServer()  # initdb, start, `posternctl db migrate` (schemas 001 and 002)
    try:
        cfg = pg.ctl_config
        for args in (["domain", "add", "pg.test"], ["domain", "add", "other.test"],
                     ["alias", "add", "sales@pg.test", "ann@pg.test", "bo@remote.example"]):
            r = run(args + ["-c", cfg])
            check_eq(r.returncode, 0, "%s: %s" % (" ".join(args), r.stderr))
        r = run(["user", "add", "ann@pg.test", "-c", cfg], input="ann-Pw-1\n")
        check_eq(r.returncode, 0, "user add: " + r.stderr)

        r = run(["-c", cfg, "domain", "list", "--json"])
        check_eq(r.returncode, 0, "domain list --json: " + r.stderr)
        domains = {d["domain"]: d for d in json.loads(r.stdout)}
        check_eq(domains["pg.test"], {"domain": "pg.test", "enabled": True, "users": 1, "aliases": 2}, "pg.test")
        check_eq(domains["other.test"]["users"], 0, "other.test users")

        r = run(["alias", "list", "pg.test", "--json", "-c", cfg])
        check_eq(sorted((a["alias"], a["destination"]) for a in json.loads(r.stdout)),
                 [("sales@pg.test", "ann@pg.test"), ("sales@pg.test", "bo@remote.example")], "alias list --json")

        # Test change: grants are cluster state (cluster.conninfo's database only); the
        # accounts' database plays that part here.
        cluster = ["-D", "cluster.conninfo=" + pg.conninfo() + " password=" + P.APP_PASSWORD]
        r = run(["grant", "add", "192.0.2.7", "ann@pg.test", "-c", cfg] + cluster)
        check_eq(r.returncode, 0, "grant add: " + r.stderr)
        r = run(["grant", "list", "--json", "-c", cfg] + cluster)
        check_eq(r.returncode, 0, "grant list --json: " + r.stderr)
        grants = json.loads(r.stdout)
        check_eq(len(grants), 1, "one grant")
        g = grants[0]
        check_eq((g["key"], g["user"], g["state"], g["last_used"]), ("192.0.2.7", "ann@pg.test", "live", None),
                 "grant")
        check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", g["expires"]), "expires %r" % g["expires"])
        user = json.loads(run(["user", "show", "ann@pg.test", "--json", "-c", cfg]).stdout)
        check_eq((user["aliases"], user["quota"]), (["sales@pg.test"], 0), "PostgreSQL user show --json")
        check(user["created"] is not None, "created timestamp from PostgreSQL")
    finally:
        pg.destroy()


if __name__ == "__main__":
    run_tests(globals())
