"""A real PostgreSQL primary with a real streaming standby for e2e tests.

    primary = PrimaryPg()                  # pg_support.PgServer + pg_stat_statements, WAL senders
    standby = StandbyPg(primary)           # pg_basebackup -R, hot_standby, on its own free port
    standby.wait_replayed(primary)         # the standby has replayed the primary's current WAL
    standby.sql("SELECT pg_wal_replay_pause()")
    calls(primary, "FROM pop_before_smtp_grants")   # pg_stat_statements calls of matching statements

Both run pg_stat_statements (shared_preload_libraries) so a test can tell which server ran
which statement. The standby's data dir is a base backup of the primary, so roles, the
password and pg_hba are the primary's. Standard library only.
"""

import os
import shutil

import pg_support as P
from postern_harness import free_port, wait_for

# wal_level=replica is PostgreSQL's default; said explicitly because the test depends on it.
SERVER_OPTS = ("-c fsync=off -c wal_level=replica -c max_wal_senders=5 "
               "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all")


class PrimaryPg(P.PgServer):
    """pg_support.PgServer with replication and pg_stat_statements switched on."""

    def start(self):
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 %s" % (self.port, self.sockdir, SERVER_OPTS)
        self._run([os.path.join(P.PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.logfile,
                   "-o", opts, "-w", "-t", "60", "start"])
        self.running = True
        wait_for(lambda: self._run([os.path.join(P.PG_BIN, "pg_isready"), "-h", self.sockdir,
                                    "-p", str(self.port)], check=False).returncode == 0,
                 timeout=30, what="PostgreSQL primary ready")


class StandbyPg(P.PgServer):
    """A hot standby streaming from `primary` (pg_basebackup -R over the primary's socket)."""

    def __init__(self, primary):  # noqa: super().__init__ would initdb a new cluster
        import atexit
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="postern-pg-standby-")
        self.data = os.path.join(self.dir, "data")
        self.sockdir = os.path.join(self.dir, "sock")
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port = free_port()
        self.password_file = primary.password_file
        os.makedirs(self.sockdir)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.sockdir, "postgres", "postgres")
        self.running = False
        atexit.register(self.destroy)
        # -R writes primary_conninfo (the primary's socket) and standby.signal; -X stream
        # copies the WAL needed to start consistently; -c fast: checkpoint now, not spread.
        self._run([os.path.join(P.PG_BIN, "pg_basebackup"), "-h", primary.sockdir, "-p", str(primary.port),
                   "-U", P.SUPERUSER, "-D", self.data, "-R", "-X", "stream", "-c", "fast", "--no-sync"])
        self.start()

    def start(self):
        opts = "-p %d -k %s -c listen_addresses=127.0.0.1 -c hot_standby=on %s" % (
            self.port, self.sockdir, SERVER_OPTS)
        self._run([os.path.join(P.PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.logfile,
                   "-o", opts, "-w", "-t", "60", "start"])
        self.running = True
        wait_for(lambda: self._run([os.path.join(P.PG_BIN, "pg_isready"), "-h", self.sockdir,
                                    "-p", str(self.port)], check=False).returncode == 0,
                 timeout=30, what="PostgreSQL standby ready")

    def streaming(self):
        return self.sql("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'", db="postgres") == ["1"]

    def wait_replayed(self, primary, timeout=30):
        """Until the standby has replayed everything the primary has written so far."""
        lsn = primary.sql("SELECT pg_current_wal_lsn()", db="postgres")[0]
        wait_for(lambda: self.sql("SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn" % lsn, db="postgres") == ["t"],
                 timeout=timeout, what="standby replayed %s" % lsn)


def calls(server, *fragments):
    """Sum of pg_stat_statements.calls over statements containing every fragment."""
    where = " AND ".join("position(%s in query) > 0" % P_quote(f) for f in fragments)
    rows = server.sql("SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE %s" % where)
    return int(rows[0])


def reset_stats(*servers):
    for s in servers:
        s.sql("SELECT pg_stat_statements_reset()")


def P_quote(s):
    return "'" + s.replace("'", "''") + "'"
