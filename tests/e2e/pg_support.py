"""A real PostgreSQL for e2e tests: initdb + pg_ctl in a temp dir, on a free loopback port,
its unix socket in the temp dir too; plus helpers to run posternctl against it.

    pg = PgServer()            # initdb, start, create role + database, `posternctl db migrate`
    pg.sql("SELECT 1")         # psql as the superuser over the unix socket
    pg.stop(); pg.start()      # simulate an outage
    pg.destroy()

As root the server runs as the `postgres` system user (initdb refuses root), via runuser.
Standard library only.
"""

import atexit
import os
import shutil
import subprocess
import tempfile
import time

from postern_harness import BUILD_DIR, TestFailure, free_port, wait_for

PG_BIN = os.environ.get("POSTERN_PG_BIN") or "/usr/lib/postgresql/15/bin"
POSTERNCTL = os.path.join(BUILD_DIR, "bin", "posternctl")
SUPERUSER = "pgadmin"
APP_USER = "postern"
APP_PASSWORD = "postern-Db-Secret9"
DATABASE = "postern"


def _as_server_user():
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PgServer:
    def __init__(self, migrate=True):
        self.dir = tempfile.mkdtemp(prefix="postern-pg-")
        self.data = os.path.join(self.dir, "data")
        self.sockdir = os.path.join(self.dir, "sock")
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port = free_port()
        os.makedirs(self.sockdir)
        if os.geteuid() == 0:
            # The server user must own its directories (and reach them: mkdtemp is 0700).
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.sockdir, "postgres", "postgres")
        pwfile = os.path.join(self.dir, "superuser.pw")
        with open(pwfile, "w") as f:
            f.write("unused-superuser-password\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        # Socket connections (this harness, as the superuser) are trusted; TCP needs a
        # password (SCRAM), so posternd's password_file is really used.
        self._run([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", SUPERUSER,
                   "--pwfile", pwfile, "-E", "UTF8", "--locale=C", "--auth-local=trust",
                   "--auth-host=scram-sha-256", "--no-sync"])
        self.running = False
        atexit.register(self.destroy)
        self.start()
        self.sql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (APP_USER, APP_PASSWORD), db="postgres")
        self.sql("CREATE DATABASE %s OWNER %s" % (DATABASE, APP_USER), db="postgres")
        self.password_file = os.path.join(self.dir, "db.password")
        with open(self.password_file, "w") as f:
            f.write(APP_PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)
        # A config of its own for posternctl (only the backend block is needed).
        self.ctl_config = write_config(os.path.join(self.dir, "posternctl.properties"),
                                       dict(self.backend_config(), **{
                                           "auth.backends": "pg", "listeners": "mx",
                                           "listener.mx.port": "2525"}))
        if migrate:
            self.migrate()

    def migrate(self, config=None):
        return migrate(config or self.ctl_config)

    # ---- process
    def _run(self, cmd, input=None, check=True, timeout=60):
        r = subprocess.run(_as_server_user() + cmd, capture_output=True, input=input,
                           timeout=timeout, cwd="/")
        if check and r.returncode != 0:
            raise TestFailure("%s exited with %d\n%s\n%s" % (" ".join(cmd), r.returncode,
                                                            r.stdout.decode(errors="replace"),
                                                            r.stderr.decode(errors="replace")))
        return r

    def start(self):
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off" % (self.port, self.sockdir)
        self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.logfile,
                   "-o", opts, "-w", "-t", "60", "start"])
        self.running = True
        wait_for(lambda: self._run([os.path.join(PG_BIN, "pg_isready"), "-h", self.sockdir,
                                    "-p", str(self.port)], check=False).returncode == 0,
                 timeout=30, what="PostgreSQL ready")

    def stop(self, mode="fast"):
        if self.running:
            self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", mode, "-w",
                       "-t", "60", "stop"])
            self.running = False

    def destroy(self):
        try:
            self.stop(mode="immediate")
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        if os.environ.get("POSTERN_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- SQL
    def sql(self, text, db=DATABASE):
        """Runs SQL as the superuser over the unix socket; returns stdout rows (| separated)."""
        r = self._run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.sockdir,
                       "-p", str(self.port), "-U", SUPERUSER, "-d", db, "-f", "-"],
                      input=text.encode())
        return [l for l in r.stdout.decode().splitlines() if l]

    # ---- configuration
    def conninfo(self):
        """TCP with a password from password_file (the way a real node connects)."""
        return "host=127.0.0.1 port=%d dbname=%s user=%s" % (self.port, DATABASE, APP_USER)

    def backend_config(self, name="pg", domains="*", extra=None, password_file=None):
        p = "auth.backend.%s." % name
        c = {
            p + "plugin": "postgres",
            p + "domains": domains,
            p + "conninfo": self.conninfo(),
            p + "password_file": password_file or self.password_file,
            p + "pool_size": "4",
            p + "connect_timeout": "2s",
            p + "statement_timeout": "3s",
        }
        c.update(extra or {})
        return c


def write_config(path, lines):
    """A minimal posternctl/posternd config file from a dict."""
    with open(path, "w") as f:
        for k, v in lines.items():
            f.write("%s = %s\n" % (k, v))
    return path


def posternctl(args, config, input=None, timeout=60):
    """Runs posternctl with --config; returns CompletedProcess with text output."""
    if not os.access(POSTERNCTL, os.X_OK):
        raise TestFailure("posternctl not found at %s" % POSTERNCTL)
    cmd = [POSTERNCTL] + list(args)
    if config:
        cmd += ["--config", config]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          input=input if input is not None else "")


def migrate(config):
    r = posternctl(["db", "migrate"], config)
    if r.returncode != 0:
        raise TestFailure("posternctl db migrate failed (%d)\n%s%s" % (r.returncode, r.stdout, r.stderr))
    return r


_shared = []


def shared_server(setup_sql=""):
    """One PostgreSQL for the whole test file (each file runs in its own process): created on
    first use, schema migrated, `setup_sql` run once."""
    if not _shared:
        s = PgServer()
        if setup_sql:
            s.sql(setup_sql)
        _shared.append(s)
    return _shared[0]
