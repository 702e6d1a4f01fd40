"""pgmode -- bench/run --pg: Postern with its users in PostgreSQL (the postgres auth plugin)
and its cluster state (grants, penalties, rate counters, maildrop leases) in the same
PostgreSQL, which the bench starts itself with pg_stat_statements. Every load generator run
is then also counted in database work per operation:

  db_stmts_per_op     statements executed (pg_stat_statements calls, every statement of the
                      postern database, background sweeps included)
  db_writes_per_op    calls of write statements: INSERT / UPDATE / DELETE / MERGE, and any
                      statement that wrote WAL at least once (a data-modifying CTE, a
                      function that writes); primary-only work
  db_rows_per_op      rows inserted + updated + deleted (pg_stat_database)
  db_wal_kib_per_op   WAL written (pg_stat_wal.wal_bytes)
  db_cpu_s_per_1000   CPU of the PostgreSQL process tree per 1000 operations

An operation is one session of the scenario (S1/S2: one message; S3: one POP3 session).
Standard library only; needs the PostgreSQL 15 server binaries (postgresql-15).
"""
import os
import shutil
import subprocess
import tempfile
import time

PG_BIN = os.environ.get("POSTERN_PG_BIN") or "/usr/lib/postgresql/15/bin"
DB, ROLE, PASSWORD = "postern", "postern", "bench-Db-Secret1"


class BenchPg:
    def __init__(self, work, port, posternctl):
        # Outside WORK (mode 0700, root's): the server runs as the postgres user.
        self.dir = os.path.join(tempfile.gettempdir(), f"postern-bench-pg-{port}")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.port = port
        self.posternctl = posternctl
        self.password_file = os.path.join(work, "db.password")

    # ---- process
    def _as_pg(self):
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, cmd, input=None, check=True):
        r = subprocess.run(self._as_pg() + cmd, input=input, capture_output=True, text=True, cwd="/")
        if check and r.returncode != 0:
            raise SystemExit(f"bench --pg: {' '.join(cmd)} failed:\n{r.stdout[-800:]}\n{r.stderr[-800:]}")
        return r

    def start(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.sock)
        if os.geteuid() == 0:
            for d in (self.dir, self.sock):
                shutil.chown(d, "postgres", "postgres")
        self._run([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", "pgadmin", "-E", "UTF8", "--locale=C",
                   "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"])
        # Durable commits (fsync on, synchronous_commit on: what a production primary does);
        # pg_stat_statements to count statements per operation.
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all "
                "-c pg_stat_statements.max=5000")
        self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "postgres.log"),
                   "-o", opts, "-w", "-t", "60", "start"])
        self.sql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'", db="postgres")
        self.sql(f"CREATE DATABASE {DB} OWNER {ROLE}", db="postgres")
        self.sql("CREATE EXTENSION pg_stat_statements")
        with open(self.password_file, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)

    def stop(self):
        if os.path.isdir(self.data):
            self._run([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"], check=False)
            shutil.rmtree(self.dir, ignore_errors=True)

    def pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def sql(self, text, db=DB):
        r = self._run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.sock, "-p",
                       str(self.port), "-U", "pgadmin", "-d", db, "-f", "-"], input=text)
        return [l for l in r.stdout.splitlines() if l]

    # ---- postern
    def conninfo(self):
        return f"host=127.0.0.1 port={self.port} dbname={DB} user={ROLE}"

    def config(self, pool_size=16):
        """posternd keys: the postgres backend for every domain + the cluster stores."""
        return {
            "auth.backends": "pg",
            "auth.backend.pg.plugin": "postgres",
            "auth.backend.pg.domains": "*",
            "auth.backend.pg.conninfo": self.conninfo(),
            "auth.backend.pg.password_file": self.password_file,
            "auth.backend.pg.pool_size": pool_size,
            "cluster.conninfo": self.conninfo(),
            "cluster.password_file": self.password_file,
            "cluster.pool_size": pool_size,
        }

    def migrate_and_load(self, conf, users_passwd):
        """`posternctl db migrate`, then the bench users (the passwd-file's hashes) as rows."""
        r = subprocess.run([self.posternctl, "db", "migrate", "--config", conf], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"bench --pg: posternctl db migrate failed:\n{r.stdout}\n{r.stderr}")
        rows = []
        with open(users_passwd) as f:
            for line in f:
                addr, h = line.split(":", 2)[:2]
                rows.append("('%s', 'example.test', '%s')" % (addr, h.replace("'", "''")))
        self.sql("INSERT INTO domains (name) VALUES ('example.test') ON CONFLICT DO NOTHING;"
                 "DELETE FROM users; INSERT INTO users (address, domain, password) VALUES "
                 + ",".join(rows) + "; ANALYZE;")

    # ---- accounting
    def snapshot(self):
        """Counters now: (calls, write calls, rows written, wal bytes) + per-statement calls."""
        stm = {}
        for line in self.sql("SELECT s.calls, s.wal_records > 0 OR s.query ~* '^\\s*(insert|update|delete|merge)\\M',"
                             " regexp_replace(left(s.query, 90), '\\s+', ' ', 'g')"
                             " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                             f" WHERE d.datname = '{DB}'"):
            calls, wrote, q = line.split("|", 2)
            c, w = stm.get(q, (0, False))
            stm[q] = (c + int(calls), w or wrote == "t")
        db = self.sql("SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database"
                      f" WHERE datname = '{DB}'")
        wal = self.sql("SELECT wal_bytes FROM pg_stat_wal")
        return {"stm": stm, "rows": int(db[0]), "wal": int(float(wal[0])), "t": time.monotonic()}

    @staticmethod
    def delta(a, b, ops, cpu_s):
        """Per-operation figures between two snapshots (ops = completed operations)."""
        ops = max(1, ops)
        calls = writes = 0
        top = []
        for q, (c, w) in b["stm"].items():
            d = c - a["stm"].get(q, (0, False))[0]
            if d <= 0 or "pg_stat_" in q:
                continue
            calls += d
            if w:
                writes += d
            top.append((d, w, q))
        top.sort(reverse=True)
        return {
            "db_stmts_per_op": round(calls / ops, 2),
            "db_writes_per_op": round(writes / ops, 2),
            "db_rows_per_op": round((b["rows"] - a["rows"]) / ops, 2),
            "db_wal_kib_per_op": round((b["wal"] - a["wal"]) / 1024 / ops, 2),
            "db_cpu_s_per_1000": round(cpu_s * 1000 / ops, 3),
            "db_top": [[round(d / ops, 2), "W" if w else "R", q] for d, w, q in top[:12]],
        }
