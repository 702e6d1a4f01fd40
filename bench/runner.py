#!/usr/bin/env python3
"""runner -- the body of bench/run: set up, start, measure, stop, report (see bench/README.md).

    bench/run                 Postern only, full matrix
    bench/run --reference     Postern, then the reference stack (Postfix + Dovecot from
                              /work/shared/reference/up.sh), same matrix, one table side by side
    bench/run --quick         smoke run: c = 1, 8; 1 repetition; small counts (< 3 minutes)
    bench/run --report DIR    re-print the table of an earlier run
    bench/run --pg            users and cluster state in a PostgreSQL the bench starts; every
                              run also reports database statements / writes per operation

Results: bench/results/<label>-<timestamp>/{results.jsonl,commands.sh,report.md,meta.json}.
"""
import argparse
import json
import re
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOADGEN = os.path.join(HERE, "loadgen.py")
sys.path.insert(0, HERE)
import pgmode  # noqa: E402  (bench/run --pg)
from loadgen import ServerTree  # noqa: E402
REFDIR = os.environ.get("BENCH_REFERENCE_SCRIPTS", "/work/shared/reference")
REFSTACK = os.environ.get("REFSTACK_DIR", "/tmp/refstack")
WORK = os.environ.get("BENCH_WORKDIR", "/tmp/postern-bench")
NUSERS = 1000
S3_USERS = 300          # bench0..299: POP3 mailboxes; bench300..999: S1 recipients, S2/S4 logins

FULL = dict(reps=3, conc=[1, 8, 32], duration=10.0, s3_users=S3_USERS, s5_max=10000, login_n=4000,
            login_reps=3)
QUICK = dict(reps=1, conc=[1, 8], duration=4.0, s3_users=60, s5_max=2000, login_n=400, login_reps=1)
# S1' (smtp-source): bounded by -d like S1 (loadgen stops smtp-source then and counts the
# completed DATAs) and by this many messages.
S1P_MESSAGES = 200000


def log(*a):
    print(*a, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# Per-IP connection limits like the reference's Postfix defaults: 50 concurrent sessions per
# client IP (smtpd_client_connection_count_limit), no connection-rate limit
# (smtpd_client_connection_rate_limit = 0); a global cap above S5's 10,000 sessions.
OPTIONAL = {"connections.max_total": 12000, "connections.max_per_ip": 50, "connections.rate_per_ip": 0}

# ============================================================================ targets
class Postern:
    name = "postern"

    def __init__(self, a):
        self.a = a
        self.bin = os.path.join(a.build_dir, "bin", "posternd")
        self.plugins = os.path.join(a.build_dir, "plugins")
        self.proc = None
        self.sink = None
        self.users = os.path.join(WORK, "users.txt")
        self.extra = {}
        self.pg = None  # pgmode.BenchPg with --pg

    # ---- one-time setup
    def prepare(self):
        os.makedirs(WORK, exist_ok=True)
        os.chmod(WORK, 0o700)
        for d in ("mail", "queue"):
            shutil.rmtree(os.path.join(WORK, d), ignore_errors=True)
            os.makedirs(os.path.join(WORK, d))
        self.make_users()
        self.make_tls()
        self.ports = {k: free_port() for k in ("mx", "sub", "pop3", "sink", "plain", "smtps")}
        self.start_sink()
        if getattr(self.a, "pg", False):
            self.pg = pgmode.BenchPg(WORK, free_port(), os.path.join(self.a.build_dir, "bin", "posternctl"))
            self.pg.stop()
            log("setup: PostgreSQL for --pg (users + cluster stores, pg_stat_statements)")
            self.pg.start()
            self.pg.migrate_and_load(self.write_config(), os.path.join(WORK, "users.passwd"))
            self.extra["database"] = (f"PostgreSQL 15 on 127.0.0.1:{self.pg.port} (fsync on), users and cluster "
                                      "stores (grants, penalties, rate counters, maildrop leases)")
        self.penalty = self.detect_penalty()
        self.optional = self.accepted(OPTIONAL)

    def make_users(self):
        pw = os.path.join(WORK, "users.passwd")
        if os.path.exists(pw) and os.path.exists(self.users):
            with open(self.users) as f:
                complete = sum(1 for l in f if l.startswith("bench")) == NUSERS
            # A run with rehash on login (an older bench, or --set auth.rehash_on_login=true)
            # leaves ARGON2ID hashes behind: every later S2/S4 login would verify those instead.
            with open(pw) as f:
                unchanged = all("{SHA512-CRYPT}" in l for l in f if l.strip())
            if complete and unchanged:
                return
        log(f"setup: hashing {NUSERS} bench users (SHA512-CRYPT, 5000 rounds, like the reference)")
        pairs = [(f"bench{i}@example.test", f"bench-pass-{i}") for i in range(NUSERS)]
        out = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input="\n".join(p for _, p in pairs) + "\n",
                             capture_output=True, text=True, check=True).stdout.split()
        assert len(out) == NUSERS, "openssl passwd -6 failed"
        with open(pw + ".tmp", "w") as f:
            for (addr, _), h in zip(pairs, out):
                f.write(f"{addr}:{{SHA512-CRYPT}}{h}::::::\n")
        os.chmod(pw + ".tmp", 0o600)
        os.replace(pw + ".tmp", pw)
        with open(self.users, "w") as f:
            f.writelines(f"{a} {p}\n" for a, p in pairs)

    def make_tls(self):
        d = os.path.join(WORK, "tls")
        os.makedirs(d, exist_ok=True)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        rc, rk = os.path.join(REFSTACK, "tls", "cert.pem"), os.path.join(REFSTACK, "tls", "key.pem")
        if os.path.exists(rc) and os.path.exists(rk):
            shutil.copyfile(rc, cert)
            shutil.copyfile(rk, key)
            self.extra["tls"] = f"reference certificate ({rc}, RSA-2048)"
        elif not (os.path.exists(cert) and os.path.exists(key)):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-sha256",
                            "-subj", "/CN=mx.example.test",
                            "-addext", "subjectAltName=DNS:mx.example.test,DNS:localhost,IP:127.0.0.1",
                            "-keyout", key, "-out", cert], check=True, capture_output=True)
            self.extra["tls"] = "own self-signed RSA-2048 (same parameters as the reference's)"
        else:
            self.extra["tls"] = "own self-signed RSA-2048 (same parameters as the reference's)"
        os.chmod(key, 0o600)
        if getattr(self.a, "ecdsa", False):
            # --ecdsa: an ECDSA P-256 chain beside the RSA one (tls.ecdsa_cert_file); clients
            # that support it (the load generators do) get it.
            ec, ek = os.path.join(d, "ecdsa-cert.pem"), os.path.join(d, "ecdsa-key.pem")
            if not (os.path.exists(ec) and os.path.exists(ek)):
                subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                "-nodes", "-days", "3650", "-sha256", "-subj", "/CN=mx.example.test",
                                "-addext", "subjectAltName=DNS:mx.example.test,DNS:localhost,IP:127.0.0.1",
                                "-keyout", ek, "-out", ec], check=True, capture_output=True)
            os.chmod(ek, 0o600)
            self.tls_extra = {"tls.ecdsa_cert_file": ec, "tls.ecdsa_key_file": ek}
            self.extra["tls"] += " + ECDSA P-256 beside it (--ecdsa)"

    def start_sink(self):
        port = self.ports["sink"]
        if shutil.which("smtp-sink"):
            cmd = ["smtp-sink"] + (["-u", "postfix"] if os.geteuid() == 0 else []) + [
                "-h", "sink.remote.test", "-m", "4096", f"127.0.0.1:{port}", "1024"]
            self.extra["sink"] = "Postfix smtp-sink"
        else:
            cmd = [sys.executable, os.path.join(HERE, "sink.py"), str(port)]
            self.extra["sink"] = "bench/sink.py (asyncio)"
        self.sink = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "sink.log"), "a"),
                                     start_new_session=True)
        if not wait_port(port, 10):
            raise SystemExit("bench: the relay sink did not start")

    def detect_penalty(self):
        """The failure penalty is on where the build has a switch for it (auth.penalty.*)."""
        self.write_config()
        self.penalty_keys = []
        r = subprocess.run([self.bin, "--config", self.conf, "--check", "-D", "auth.penalty.base_delay=1s"],
                           capture_output=True, text=True, cwd=WORK)
        if r.returncode == 0:
            return ("on, Postern defaults (auth.penalty.*: delay 1 s doubling to 8 s, block after 10 failures "
                    "per IP or per account within 15 min)")
        return "not available in this build (no auth.penalty.* keys): wrong passwords answered at once"

    def accepted(self, candidates):
        """The optional keys this build knows (the schema grows while the server is developed)."""
        self.write_config()
        ok = {}
        for k, v in candidates.items():
            r = subprocess.run([self.bin, "--config", self.conf, "--check", "-D", f"{k}={v}"],
                               capture_output=True, text=True, cwd=WORK)
            if r.returncode == 0:
                ok[k] = v
        self.extra["limits"] = ", ".join(f"{k}={v}" for k, v in ok.items()) or "none set"
        return ok

    # ---- config / process
    def write_config(self, overrides=None, name="postern.properties"):
        p = self.ports
        o = {
            "server.hostname": "mail.example.test",
            "server.mail_root": f"{WORK}/mail",
            "server.queue_dir": f"{WORK}/queue",
            "server.plugin_dir": self.plugins,
            "server.allow_root": "true",
            "server.ready_file": f"{WORK}/ready",
            "server.shutdown_grace": "2s",
            "tls.cert_file": f"{WORK}/tls/cert.pem",
            "tls.key_file": f"{WORK}/tls/key.pem",
            "listeners": "mx, submission, pop3",
            "listener.mx.port": p["mx"], "listener.mx.role": "mx", "listener.mx.tls": "starttls",
            "listener.mx.max_threads": 11000, "listener.mx.max_queued": 1024,
            "listener.submission.port": p["sub"], "listener.submission.role": "submission",
            "listener.submission.tls": "starttls", "listener.submission.max_threads": 2000,
            "listener.submission.max_queued": 1024,
            "listener.pop3.port": p["pop3"], "listener.pop3.protocol": "pop3", "listener.pop3.tls": "starttls",
            "listener.pop3.max_threads": 2000, "listener.pop3.max_queued": 1024,
            "auth.backends": "local",
            "auth.backend.local.plugin": "passwd-file",
            "auth.backend.local.domains": "*",
            "auth.backend.local.path": f"{WORK}/users.passwd",
            # The users are SHA512-CRYPT, the same hashes the reference's Dovecot checks. With
            # rehash on login (default on) every first login of a user would also compute an
            # ARGON2ID hash in the background: a one-time migration per user, not the steady
            # state S2-S4 measure (it made S2 cost ~38 ms of server CPU per message).
            "auth.rehash_on_login": "false",
            "delivery.enabled": "true",
            "delivery.relayhost": f"127.0.0.1:{p['sink']}",
            "delivery.relayhost_tls": "none",
            "delivery.dns_server": "127.0.0.1:9",   # never used with a relayhost; keeps DNS on loopback
            "logging.loggers.root.channel": "file",
            "logging.loggers.root.level": "information",
            "logging.channels.file.class": "FileChannel",
            "logging.channels.file.path": f"{WORK}/posternd.log",
            "logging.channels.file.pattern": "%Y-%m-%dT%H:%M:%S.%iZ %p %s: %t",
        }
        if self.pg:
            for k in [k for k in o if k.startswith("auth.backend.local.")]:
                del o[k]  # the users are in PostgreSQL (auth.backends = pg)
            o.update(self.pg.config())
        o.update(getattr(self, "tls_extra", {}))
        o.update(getattr(self, "optional", {}))
        o.update(getattr(self.a, "set_overrides", {}) or {})  # --set KEY=VALUE
        o.update(overrides or {})
        self.conf = os.path.join(WORK, name)
        with open(self.conf, "w") as f:
            f.write("# generated by bench/run -- overwritten on every run\n")
            for k, v in o.items():
                f.write(f"{k} = {v}\n")
        return self.conf

    def start(self, overrides=None):
        self.stop()
        conf = self.write_config(overrides)
        ready = os.path.join(WORK, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        cmd = [self.bin, "--config", conf]
        for k in getattr(self, "penalty_keys", []):
            cmd += ["-D", k]
        self.cmdline = " ".join(shlex.quote(x) for x in cmd)
        err = open(os.path.join(WORK, "posternd.stderr"), "a")
        self.proc = subprocess.Popen(cmd, cwd=WORK, stdout=err, stderr=err, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if os.path.exists(ready):
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        return False

    def start_retrying(self, overrides=None):
        for attempt in range(3):
            if self.start(overrides):
                return
            tail = open(os.path.join(WORK, "posternd.stderr")).read()[-800:]
            log(f"bench: posternd did not start (attempt {attempt + 1}); stderr tail:\n{tail}")
            time.sleep(20)
        raise SystemExit("bench: posternd does not start; see " + os.path.join(WORK, "posternd.stderr"))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self):
        self.stop()
        if self.pg:
            self.pg.stop()
        if self.sink and self.sink.poll() is None:
            self.sink.terminate()
            try:
                self.sink.wait(5)
            except subprocess.TimeoutExpired:
                self.sink.kill()

    def pid_args(self):
        return ["--pid", str(self.proc.pid)]

    def endpoints(self):
        p = self.ports
        return dict(mx=p["mx"], sub=p["sub"], sub_tls="starttls", pop3=p["pop3"], pop3_tls="stls",
                    users=self.users, log=os.path.join(WORK, "posternd.log"))

    def restart_for_s5(self):
        self.start_retrying()

    def fresh_state(self):
        if self.pg:
            # With --pg the penalty and rate counters outlive the process: start them afresh too.
            self.stop()
            self.pg.sql("TRUNCATE auth_penalties, rate_counters, pop_before_smtp_grants, maildrop_leases")
        self.start_retrying()
        time.sleep(1)

    def describe(self):
        return {"binary": self.bin, "config": self.conf, "penalty": self.penalty, "auth_cache": "default (100000, 300s)", "rehash_on_login": "off (users stay SHA512-CRYPT, as the reference's)",
                "durability": "fsync of the Maildir file / queue file (+ directory) before 250", **self.extra}


class Reference:
    name = "reference"

    def __init__(self, a):
        self.a = a
        self.users = os.path.join(REFSTACK, "users.txt")
        self.pidfiles = [os.path.join(REFSTACK, "postfix/spool/pid/master.pid"),
                         os.path.join(REFSTACK, "run/dovecot/master.pid")]

    def up(self):
        env = dict(os.environ, BENCH_USERS=str(NUSERS))
        r = subprocess.run([os.path.join(REFDIR, "up.sh")], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"bench: reference up.sh failed:\n{r.stdout[-1000:]}\n{r.stderr[-1000:]}")
        time.sleep(2)

    def prepare(self):
        log("setup: reference stack (up.sh, BENCH_USERS=1000)")
        self.up()

    def start_retrying(self, overrides=None):
        self.up()

    def alive(self):
        return all(os.path.exists(p) for p in self.pidfiles)

    def restart_for_s5(self):
        self.up()

    def fresh_state(self):
        pass  # Dovecot/Postfix keep per-IP state only; S4 attackers use a fresh /24 per run

    def close(self):
        subprocess.run([os.path.join(REFDIR, "down.sh")], capture_output=True)

    def pid_args(self):
        return sum((["--pidfile", p] for p in self.pidfiles), [])

    def endpoints(self):
        return dict(mx=10025, sub=10587, sub_tls="starttls", pop3=10110, pop3_tls="stls", users=self.users)

    def describe(self):
        return {"stack": "Postfix + Dovecot from /work/shared/reference/up.sh (defaults: process_limit 100, "
                         "auth_failure_delay 2s, no auth cache)", "pidfiles": self.pidfiles}


# ============================================================================ matrix
class Session:
    def __init__(self, a, plan):
        self.a, self.plan = a, plan
        ts = time.strftime("%Y%m%d-%H%M%S")
        self.dir = a.out or os.path.join(HERE, "results", f"{a.label}-{ts}")
        os.makedirs(self.dir, exist_ok=True)
        self.jsonl = os.path.join(self.dir, "results.jsonl")
        self.cmds = open(os.path.join(self.dir, "commands.sh"), "a")
        self.cmds.write("#!/bin/bash\n# every load generator invocation of this run, in order\n")

    def loadgen(self, target, args, rep, timeout):
        cmd = [sys.executable, LOADGEN] + [str(x) for x in args] + target.pid_args() + ["--label", target.name]
        self.cmds.write(" ".join(shlex.quote(x) for x in cmd) + "\n")
        self.cmds.flush()
        tag = f"[{target.name} rep {rep}] {args[0]} " + " ".join(str(x) for x in args[1:4])
        pg = getattr(target, "pg", None)
        if pg:
            pg_tree = ServerTree([pg.pid()], [])
            snap0, cpu0 = pg.snapshot(), pg_tree.cpu_s()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{tag}: TIMED OUT")
            return None
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if p.returncode != 0 or not lines:
            log(f"{tag}: FAILED rc={p.returncode} {p.stderr[-400:]}")
            return None
        r = json.loads(lines[-1])
        r.update(rep=rep, target=target.name)
        if pg:
            # Database work of this run per completed operation (bench/pgmode.py).
            r.update(pgmode.BenchPg.delta(snap0, pg.snapshot(), r.get("ok") or 0, pg_tree.cpu_s() - cpu0))
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(r) + "\n")
        keys = ("ok", "errors", "rate", "good_rate", "lat_p50_ms", "lat_p99_ms", "server_cpu_s_per_1000",
                "held", "peak_pss_kib", "incomplete", "other_cpu_s", "db_stmts_per_op", "db_writes_per_op",
                "db_cpu_s_per_1000", "disk_flushes_per_msg", "loadavg_before", "tls_resumed_ratio",
                "auth_cache_hits", "auth_cache_misses", "warmup_sessions", "warmup_errors")
        log(f"{tag}: " + " ".join(f"{k}={r[k]}" for k in keys if r.get(k) is not None))
        if r.get("warning"):
            log(f"!! {tag}: {r['warning']}")
        if not target.alive():
            log(f"!! {target.name} is no longer running after this step; restarting")
            target.start_retrying()
        return r

    def matrix(self, t):
        pl, a = self.plan, self.a
        e = t.endpoints()
        d = pl["duration"]
        common = ["--users", e["users"]]
        rest = ["--first", S3_USERS]
        scen = a.scenarios
        for rep in range(1, pl["reps"] + 1):
            # Postern keeps failed-login counters per account for auth.penalty.window (15 min):
            # S4's attackers would otherwise slow the next runs' logins (S2, S3, S4) of the
            # same accounts. Every repetition and every S4 run starts on a fresh process.
            t.fresh_state()
            for s in ("s1", "s1p", "s2", "s2r", "s3", "s4"):
                if s not in scen:
                    continue
                for c in pl["conc"]:
                    if s == "s4":
                        t.fresh_state()
                    if s == "s1":
                        self.loadgen(t, ["s1", "--port", e["mx"], "-c", c, "-n", 50000, "-d", d] + common + rest,
                                     rep, d + 180)
                    elif s == "s1p":
                        self.loadgen(t, ["s1p", "--port", e["mx"], "-c", c, "-n", S1P_MESSAGES, "-d", d]
                                     + common + rest, rep, d + 180)
                    elif s == "s2":
                        self.loadgen(t, ["s2", "--port", e["sub"], "--tls", e["sub_tls"], "-c", c, "-n", 50000,
                                         "-d", d] + common + rest, rep, d + 180)
                    elif s == "s2r":
                        # S2 as a returning mail program: resumed TLS, warm auth cache (the
                        # warm-up logs in all 700 users first, unmeasured: up to 120 s more)
                        log_args = ["--server-log", e["log"]] if e.get("log") else []
                        self.loadgen(t, ["s2r", "--port", e["sub"], "--tls", e["sub_tls"], "-c", c, "-n", 50000,
                                         "-d", d] + log_args + common + rest, rep, d + 400)
                    elif s == "s3":
                        f = self.loadgen(t, ["fill", "--port", e["mx"], "--pop3-port", e["pop3"], "--pop3-tls",
                                             e["pop3_tls"], "-c", 16, "--limit", pl["s3_users"], "-d", 120,
                                             "--wait", 120, "--mem-every", 0] + common, rep, 400)
                        if f is None or f.get("incomplete"):
                            log("!! S3 fill incomplete; the S3 run below reads what is there")
                        self.loadgen(t, ["s3", "--port", e["pop3"], "--tls", e["pop3_tls"], "-c", c,
                                         "--limit", pl["s3_users"], "-d", 3 * d] + common, rep, 3 * d + 180)
                    elif s == "s4":
                        self.loadgen(t, ["s4", "--port", e["sub"], "--tls", e["sub_tls"], "-c", c, "-d", d]
                                     + common + rest, rep, d + 180)
                        if "s4x" in scen and c == max(pl["conc"]):
                            t.fresh_state()
                            # diagnostic: attackers on accounts no good client uses (bench0..299)
                            self.loadgen(t, ["s4x", "--port", e["sub"], "--tls", e["sub_tls"], "-c", c, "-d", d,
                                             "--bad-first", 0, "--bad-limit", S3_USERS] + common + rest,
                                         rep, d + 180)
                    time.sleep(1)
        if "s5" in scen:
            for rep in range(1, pl["reps"] + 1):
                t.restart_for_s5()
                time.sleep(2)
                self.loadgen(t, ["s5", "--port", e["mx"], "--max", pl["s5_max"], "-d", 60, "--hold", 5,
                                 "--users", e["users"]], rep, 200)

    def login_cost(self, t):
        """Server CPU of one login: cache hit vs fresh SHA512-CRYPT verification (Postern only).
        A plaintext-AUTH listener takes TLS out of the difference; baseline = the same session
        without AUTH."""
        pl = self.plan
        port = t.ports["plain"]
        over = {"listeners": "mx, submission, pop3, plain", "listener.plain.port": port,
                "listener.plain.role": "submission", "listener.plain.tls": "none",
                "listener.plain.max_threads": 64, "smtp.allow_plaintext_auth": "true"}
        base = ["--port", port, "--users", t.users, "--user-index", S3_USERS, "-c", 4, "-n", pl["login_n"],
                "-d", 60, "--mem-every", 0]
        for label, extra in (("cache", {}), ("nocache", {"auth.cache.size": 0})):
            t.start_retrying({**over, **extra})
            time.sleep(1)
            for rep in range(1, pl["login_reps"] + 1):
                for scen in ("hello", "login"):
                    r = self.loadgen(t, [scen] + base, rep, 200)
                    if r:
                        r["variant"] = label
                        with open(self.jsonl) as f:
                            lines = f.readlines()
                        lines[-1] = json.dumps(r) + "\n"
                        with open(self.jsonl, "w") as f:
                            f.writelines(lines)
        hits = misses = 0
        try:
            with open(os.path.join(WORK, "posternd.log"), errors="replace") as f:
                for line in f:
                    if "event=auth.ok" in line:
                        hits += "cache=hit" in line
                        misses += "cache=miss" in line
        except OSError:
            pass
        log(f"login-cost: auth.ok log lines since start: cache=hit {hits}, cache=miss {misses}")
        t.start_retrying()

    def handshake_cost(self, t):
        """Server CPU of one TLS handshake (Postern only): `openssl s_time` against an implicit-TLS
        submission listener, full handshakes (TLS 1.3 with the client's default signature
        algorithms, TLS 1.2 with an RSA and, with --ecdsa, an ECDSA cipher suite) and TLS 1.2
        resumed sessions (-reuse: the session ticket / ID of the first connection). Each
        connection is a handshake, the greeting read by nobody, and a close: the cost of the
        connection itself is in every row (compare the rows, not the absolute figures)."""
        if not shutil.which("openssl"):
            log("tls: no openssl binary; skipped")
            return
        port = t.ports["smtps"]
        t.start_retrying({"listeners": "mx, submission, pop3, smtps", "listener.smtps.port": port,
                          "listener.smtps.role": "submission", "listener.smtps.tls": "implicit",
                          "listener.smtps.max_threads": 64})
        time.sleep(1)
        variants = [("tls13-full", ["-tls1_3", "-new"]),
                    ("tls12-rsa-full", ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-new"])]
        if getattr(t, "tls_extra", None):
            variants.append(("tls12-ecdsa-full", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-new"]))
        variants.append(("tls12-resumed", ["-tls1_2", "-reuse"]))
        secs = 5 if self.plan["reps"] == 1 else 8
        for rep in range(1, self.plan["reps"] + 1):
            for label, args in variants:
                pid = t.proc.pid
                def ticks():
                    with open(f"/proc/{pid}/stat") as f:
                        v = f.read().rsplit(")", 1)[1].split()
                    return int(v[11]) + int(v[12])
                c0 = ticks()
                cmd = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-time", str(secs)] + args
                self.cmds.write(" ".join(shlex.quote(x) for x in cmd) + "\n")
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 60)
                c1 = ticks()
                m = re.findall(r"(\d+) connections in (\d+) real seconds", p.stdout)
                if not m:
                    log(f"tls {label}: no result: {p.stdout[-300:]} {p.stderr[-300:]}")
                    continue
                n, real = int(m[-1][0]), int(m[-1][1])
                r = {"scenario": f"tls-{label}", "concurrency": 1, "ok": n, "errors": 0,
                     "rate": round(n / max(1, real), 1), "server_cpu_s": (c1 - c0) / os.sysconf("SC_CLK_TCK"),
                     "server_cpu_s_per_1000": round((c1 - c0) / os.sysconf("SC_CLK_TCK") * 1000 / max(1, n), 3),
                     "rep": rep, "target": t.name}
                with open(self.jsonl, "a") as f:
                    f.write(json.dumps(r) + "\n")
                log(f"[{t.name} rep {rep}] tls {label}: {n} handshakes, {r['rate']}/s, "
                    f"server {r['server_cpu_s_per_1000']} ms each")
        t.start_retrying()


# ============================================================================ report
def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def f1(v, nd=1):
    return "–" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def summarize(rows):
    """{(target, scenario, conc): {metric: median}}"""
    groups = {}
    for r in rows:
        if r["scenario"] in ("fill",):
            continue
        key = (r["target"], r["scenario"] + ("-" + r["variant"] if r.get("variant") else ""), r["concurrency"])
        groups.setdefault(key, []).append(r)
    out = {}
    for key, rs in groups.items():
        m = {}
        for k in ("rate", "good_rate", "bad_rate", "msg_rate", "lat_p50_ms", "lat_p99_ms", "good_p50_ms",
                  "good_p99_ms", "bad_p50_ms", "server_cpu_s_per_1000", "server_cpu_s_per_1000_msgs",
                  "pss_kib_per_session", "server_peak_pss_kib", "held", "peak_pss_kib", "idle_pss_kib",
                  "pss_kib_per_session", "ramp_s", "other_cpu_s", "client_cpu_ms_per_op", "drain_s",
                  "server_cpu_s", "ok", "peak_threads", "peak_procs", "db_stmts_per_op", "db_writes_per_op",
                  "db_rows_per_op", "db_wal_kib_per_op", "db_cpu_s_per_1000", "disk_flushes_per_msg",
                  "tls_resumed_ratio", "auth_cache_hits", "auth_cache_misses", "warmup_server_cpu_s"):
            m[k] = med([r.get(k) for r in rs])
        m["errors"] = sum(r.get("errors", 0) for r in rs)
        m["reps"] = len(rs)
        m["stop"] = rs[0].get("stop")
        m["db_top"] = rs[-1].get("db_top")
        m["warnings"] = [r["warning"] for r in rs if r.get("warning")]
        m["loadavg"] = [r.get("loadavg_before", [None])[0] for r in rs]
        out[key] = m
    return out


NAMES = {"s1": "S1 MX inbound, plain, 10 KiB", "s1p": "S1' same via smtp-source (C client)", "s2": "S2 submission STARTTLS+AUTH, 10 KiB relayed",
         "s2r": "S2r submission, resumed TLS + warm auth cache",
         "s3": "S3 POP3 STLS, 5×10 KiB RETR+DELE", "s4": "S4 auth storm (½ wrong passwords)",
         "s4x": "S4' storm on other accounts (diagnostic)", "s5": "S5 idle SMTP sessions"}
UNITS = {"s1": "msg/s", "s1p": "msg/s", "s2": "msg/s", "s2r": "msg/s", "s3": "sess/s", "s4": "good/s", "s4x": "good/s"}


def report(rdir):
    rows = [json.loads(l) for l in open(os.path.join(rdir, "results.jsonl")) if l.strip()]
    meta = json.load(open(os.path.join(rdir, "meta.json"))) if os.path.exists(os.path.join(rdir, "meta.json")) else {}
    S = summarize(rows)
    targets = [t for t in ("postern", "reference") if any(k[0] == t for k in S)]
    both = len(targets) == 2
    L = []
    L.append(f"Run `{os.path.basename(rdir)}`: {meta.get('mode', '')}, {meta.get('reps', '?')} repetition(s), "
             f"medians; S1/S2/S4 {meta.get('duration', '?')} s per run, S3 one session per mailbox "
             f"({meta.get('s3_users', '?')} mailboxes), S5 ramp to {meta.get('s5_max', '?')}.")
    if meta.get("git"):
        L.append(f"Source: `{meta['git']}`; {meta.get('nproc')} CPUs, kernel {meta.get('kernel')}.")
    if meta.get("overrides"):
        L.append("Postern config overrides (--set): " + ", ".join(f"`{k} = {v}`" for k, v in meta["overrides"].items()))
    L.append("")
    hdr = ("| scenario | c | target | rate | p50 ms | p99 ms | errors | srv CPU s/1000 ops | PSS/session KiB | "
           "peak PSS MiB | other CPU s |")
    if both:
        hdr += " rate × ref | CPU ÷ ref |"
    L.append(hdr)
    L.append("|" + "---|" * (hdr.count("|") - 1))
    for s in ("s1", "s1p", "s2", "s2r", "s3", "s4", "s4x"):
        concs = sorted({k[2] for k in S if k[1] == s})
        for c in concs:
            for t in targets:
                m = S.get((t, s, c))
                if not m:
                    continue
                s4 = s in ("s4", "s4x")
                rate = m["good_rate"] if s4 else m["rate"]
                rate_s = f"{f1(rate)} {UNITS[s]}"
                if s == "s3" and m.get("msg_rate"):
                    rate_s += f" ({f1(m['msg_rate'])} msg/s)"
                if s4:
                    rate_s += f" (bad {f1(m['bad_rate'])}/s)"
                if m["warnings"]:
                    rate_s += " **(see warning below)**"
                p50, p99 = (m["good_p50_ms"], m["good_p99_ms"]) if s4 else (m["lat_p50_ms"], m["lat_p99_ms"])
                row = (f"| {NAMES[s] if t == targets[0] else ''} | {c} | {t} | {rate_s} | {f1(p50)} | {f1(p99)} | "
                       f"{m['errors']} | {f1(m['server_cpu_s_per_1000'], 2)} | {f1(m['pss_kib_per_session'], 0)} | "
                       f"{f1((m['server_peak_pss_kib'] or 0) / 1024, 0)} | {f1(m['other_cpu_s'])} |")
                if both:
                    ref = S.get(("reference", s, c))
                    if t == "postern" and ref:
                        rr = ref["good_rate"] if s4 else ref["rate"]
                        ratio = f"{rate / rr:.2f}" if rate and rr else "–"
                        cr = (f"{m['server_cpu_s_per_1000'] / ref['server_cpu_s_per_1000']:.2f}"
                              if m["server_cpu_s_per_1000"] and ref["server_cpu_s_per_1000"] else "–")
                        row += f" **{ratio}** | **{cr}** |"
                    else:
                        row += " | |"
                L.append(row)
    L += s2r_report(S)
    L += db_report(S)
    s1p = sorted((k, m) for k, m in S.items() if k[1] == "s1p")
    if s1p:
        L.append("")
        L.append("S1' detail (load average = 1-min loadavg before each run; flushes = block-device cache "
                 "flushes of the whole machine per message, /proc/diskstats):")
        L.append("")
        L.append("| target | c | msg/s (median) | flushes/msg | load avg per rep |")
        L.append("|---|---|---|---|---|")
        for (t, _, c), m in s1p:
            L.append(f"| {t} | {c} | {f1(m['rate'])} | {f1(m['disk_flushes_per_msg'], 2)} | "
                     f"{', '.join(f1(x, 2) for x in m['loadavg'])} |")
    s5 = [(t, S[k]) for t in targets for k in S if k[0] == t and k[1] == "s5"]
    if s5:
        L.append("")
        L.append("| S5 idle SMTP sessions | target | held (median) | errors | server PSS idle → peak MiB | PSS/session KiB | threads/procs at peak | ramp s | stop (rep 1) |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for t, m in s5:
            L.append(f"| | {t} | {f1(m['held'], 0)} | {m['errors']} | {f1((m['idle_pss_kib'] or 0) / 1024, 0)} → "
                     f"{f1((m['peak_pss_kib'] or 0) / 1024, 0)} | {f1(m['pss_kib_per_session'], 1)} | "
                     f"{f1(m['peak_threads'], 0)} / {f1(m['peak_procs'], 0)} | {f1(m['ramp_s'])} | {m['stop']} |")
    lc = {k[1]: m for k, m in S.items() if k[0] == "postern" and k[1].startswith(("hello-", "login-"))}
    if lc:
        L.append("")
        L.append("Login cost (Postern, plaintext-AUTH listener, same user every time, c=4; server CPU per session):")
        L.append("")
        L.append("| variant | session | sessions/s | srv CPU ms/session | AUTH cost ms (− hello) |")
        L.append("|---|---|---|---|---|")
        cost = {}
        for v in ("cache", "nocache"):
            h, l = lc.get(f"hello-{v}"), lc.get(f"login-{v}")
            if h:
                L.append(f"| {v} | EHLO+QUIT | {f1(h['rate'])} | {f1(h['server_cpu_s_per_1000'], 3)} | |")
            if l and h:
                cost[v] = l["server_cpu_s_per_1000"] - h["server_cpu_s_per_1000"]
                L.append(f"| {v} | EHLO+AUTH+QUIT | {f1(l['rate'])} | {f1(l['server_cpu_s_per_1000'], 3)} | "
                         f"{cost[v]:.3f} |")
        if "cache" in cost and cost.get("nocache"):
            L.append("")
            L.append(f"Cached login ÷ fresh verification: **{100 * cost['cache'] / cost['nocache']:.1f} %** "
                     f"(target < 1 %; the CPU clock has 10 ms ticks over ~{meta.get('login_n', '?')} sessions, "
                     f"so ±{10 / max(1, meta.get('login_n', 1000)):.3f} ms per session).")
    hs = {k[1]: m for k, m in S.items() if k[0] == "postern" and k[1].startswith("tls-")}
    if hs:
        L.append("")
        L.append("TLS handshake cost (Postern, `openssl s_time` on an implicit-TLS listener, one client; "
                 "server CPU per connection: handshake + greeting + close):")
        L.append("")
        L.append("| handshake | connections/s | srv CPU ms/connection |")
        L.append("|---|---|---|")
        names = {"tls-tls13-full": "TLS 1.3 full (client's default signature algorithms)",
                 "tls-tls12-rsa-full": "TLS 1.2 full, RSA-2048", "tls-tls12-ecdsa-full": "TLS 1.2 full, ECDSA P-256",
                 "tls-tls12-resumed": "TLS 1.2 resumed (ticket)"}
        for k in ("tls-tls13-full", "tls-tls12-rsa-full", "tls-tls12-ecdsa-full", "tls-tls12-resumed"):
            if k in hs:
                L.append(f"| {names[k]} | {f1(hs[k]['rate'])} | {f1(hs[k]['server_cpu_s_per_1000'], 3)} |")
    if meta.get("targets"):
        L.append("")
        for t, d in meta["targets"].items():
            L.append(f"- {t}: " + "; ".join(f"{k}: {v}" for k, v in d.items()))
    txt = "\n".join(L) + "\n"
    with open(os.path.join(rdir, "report.md"), "w") as f:
        f.write(txt)
    return txt


def s2r_report(S):
    """S2r's checks: did the clients really resume TLS, was the auth cache really warm?"""
    keys = sorted(k for k in S if k[1] == "s2r")
    if not keys:
        return []
    L = ["", "S2r = S2 from returning mail programs: each user's client resumes the TLS session (ticket) of its "
             "previous connection, and an unmeasured warm-up logs in every user once first (auth cache warm, "
             "tickets issued). Checks in the measured window (medians):", ""]
    for k in keys:
        m = S[k]
        r = m["tls_resumed_ratio"]
        hm = (f", auth cache hits / misses {f1(m['auth_cache_hits'], 0)} / {f1(m['auth_cache_misses'], 0)}"
              if m["auth_cache_hits"] is not None else "")
        L.append(f"- {k[0]}, c={k[2]}: TLS resumed {'–' if r is None else f'{100 * r:.1f} %'} of connections{hm}; "
                 f"warm-up server CPU {f1(m['warmup_server_cpu_s'], 2)} s (not counted)")
        for w in m["warnings"]:
            L.append(f"  - **WARNING: {w}** (the S2r figures above do not show the returning-client case)")
    return L


def db_report(S):
    """bench/run --pg: database work per operation beside rate and CPU (medians)."""
    keys = sorted(k for k in S if k[0] == "postern" and S[k].get("db_stmts_per_op") is not None)
    if not keys:
        return []
    L = ["", "Database work per operation (--pg: postgres auth backend + cluster stores; pg_stat_statements of the "
             "postern database, background sweeps included; writes = INSERT/UPDATE/DELETE and statements that wrote WAL):", "",
         "| scenario | c | rate | stmts/op | writes/op | rows written/op | WAL KiB/op | srv CPU s/1000 | DB CPU s/1000 |",
         "|---|---|---|---|---|---|---|---|---|"]
    for k in keys:
        m = S[k]
        rate = m["good_rate"] if k[1] in ("s4", "s4x") else m["rate"]
        L.append(f"| {NAMES.get(k[1], k[1])} | {k[2]} | {f1(rate)} | {f1(m['db_stmts_per_op'], 2)} | "
                 f"{f1(m['db_writes_per_op'], 2)} | {f1(m['db_rows_per_op'], 2)} | {f1(m['db_wal_kib_per_op'], 2)} | "
                 f"{f1(m['server_cpu_s_per_1000'], 2)} | {f1(m['db_cpu_s_per_1000'], 2)} |")
    seen = set()
    for k in keys:
        if k[1] in seen or not S[k].get("db_top"):
            continue
        seen.add(k[1])
        L.append("")
        L.append(f"Statements per operation, {NAMES.get(k[1], k[1])} (c={k[2]}, last repetition; W = write):")
        L.append("")
        for per_op, kind, q in S[k]["db_top"]:
            if per_op >= 0.01:
                L.append(f"- {per_op:.2f} {kind} `{q.strip()}`")
    return L


# ============================================================================ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", action="store_true", help="also measure the reference stack, same sitting")
    ap.add_argument("--reference-only", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ecdsa", action="store_true", help="Postern: serve an ECDSA P-256 chain beside the RSA one")
    ap.add_argument("--pg", action="store_true",
                    help="Postern: users (postgres plugin) and cluster stores in a PostgreSQL the bench starts; "
                         "reports database statements and writes per operation")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--conc", help="e.g. 1,8,32")
    ap.add_argument("--duration", type=float)
    ap.add_argument("--scenarios", default="s1,s1p,s2,s2r,s3,s4,s4x,s5,login,tls")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="Postern config override, e.g. --set store.group_commit=false (repeatable)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build-release"))
    ap.add_argument("--label")
    ap.add_argument("--out")
    ap.add_argument("--report", metavar="DIR")
    a = ap.parse_args()
    if a.report:
        print(report(a.report))
        return
    plan = dict(QUICK if a.quick else FULL)
    if a.reps:
        plan["reps"] = a.reps
    if a.conc:
        plan["conc"] = [int(x) for x in a.conc.split(",")]
    if a.duration:
        plan["duration"] = a.duration
    a.scenarios = set(a.scenarios.split(","))
    a.set_overrides = dict(kv.split("=", 1) for kv in a.set)
    a.label = a.label or ("quick" if a.quick else ("side-by-side" if a.reference else "postern"))
    nofile = raise_nofile()
    if nofile[0] < plan["s5_max"] + 2000:
        log(f"bench: warning: open-file limit {nofile[0]} is too low for S5 at {plan['s5_max']} sessions")
    sess = Session(a, plan)
    log(f"bench: results in {sess.dir}")
    targets = []
    if not a.reference_only:
        targets.append(Postern(a))
    if a.reference or a.reference_only:
        if os.geteuid() != 0:
            raise SystemExit("bench: --reference needs root (reference/up.sh)")
        targets.append(Reference(a))
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.count("\n")
    meta = {"mode": "quick" if a.quick else "full", **plan, "start": time.strftime("%F %T"),
            "git": f"{git} + {dirty} modified files" if dirty else git,
            "nproc": os.cpu_count(), "kernel": os.uname().release, "targets": {},
            "overrides": a.set_overrides}
    t0 = time.monotonic()
    for t in targets:
        try:
            t.prepare()
            if isinstance(t, Postern):
                t.start_retrying()
                log(f"bench: posternd pid {t.proc.pid}: {t.cmdline}")
            meta["targets"][t.name] = t.describe()
            with open(os.path.join(sess.dir, "meta.json"), "w") as f:
                json.dump(meta, f, indent=1)
            if isinstance(t, Postern) and "login" in a.scenarios:
                sess.login_cost(t)
            if isinstance(t, Postern) and "tls" in a.scenarios:
                sess.handshake_cost(t)
            sess.matrix(t)
        finally:
            t.close()
        log(f"bench: {t.name} done after {time.monotonic() - t0:.0f} s")
    meta["end"] = time.strftime("%F %T")
    meta["wall_s"] = round(time.monotonic() - t0)
    with open(os.path.join(sess.dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print()
    print(report(sess.dir))


if __name__ == "__main__":
    main()
