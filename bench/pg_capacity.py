#!/usr/bin/env python3
"""pg_capacity -- what one PostgreSQL primary on this machine can do, for docs/capacity.md.

    python3 bench/pg_capacity.py [--duration 30] [--clients 8,16] [--scale 10]

Starts its own PostgreSQL 15 (initdb in a temp dir, fsync and synchronous_commit ON, i.e.
durable commits), loads pgbench at --scale (100,000 accounts per unit), then runs:

  select   pgbench -S: one indexed single-row SELECT per transaction (a user, domain, alias
           or grant lookup)
  login    a custom script shaped like the POP3 login after issue 19.1 (3 statements, 2 of
           them writes, one transaction): the user row by key, an upsert of a grant row keyed
           by a random client address (INSERT .. ON CONFLICT DO UPDATE, as
           pop_before_smtp_grants), an update of a per-account counter row (as the penalty /
           login bookkeeping)

and prints transactions/s per run, the machine's CPU count, the load average before and the
CPU busy share of the whole machine during each run (other tenants included), as markdown.
Standard library only; runs as root through runuser -u postgres.
"""
import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time

PG_BIN = os.environ.get("POSTERN_PG_BIN") or "/usr/lib/postgresql/15/bin"

LOGIN_SCRIPT = r"""
\set aid random(1, 100000 * :scale)
\set ip random(1, 1000000)
BEGIN;
SELECT abalance, filler FROM pgbench_accounts WHERE aid = :aid;
INSERT INTO bench_grants AS g (key, user_name, created, expires) VALUES (:ip, :aid, now(), now() + interval '600 seconds')
  ON CONFLICT (key) DO UPDATE SET user_name = EXCLUDED.user_name, created = EXCLUDED.created, expires = EXCLUDED.expires;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;
END;
"""


def as_pg():
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def run(cmd, **kw):
    return subprocess.run(as_pg() + cmd, capture_output=True, text=True, check=True, cwd="/", **kw)


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v), idle


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--clients", default="8,16")
    ap.add_argument("--scale", type=int, default=10)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="postern-pgcap-")
    if os.geteuid() == 0:
        shutil.chown(d, "postgres", "postgres")
    data, sock, port = os.path.join(d, "data"), d, 54329
    run([os.path.join(PG_BIN, "initdb"), "-D", data, "-U", "bench", "--auth-local=trust", "--no-sync"])
    opts = f"-p {port} -k {sock} -c listen_addresses='' -c shared_buffers=256MB -c max_connections=100"
    run([os.path.join(PG_BIN, "pg_ctl"), "-D", data, "-l", os.path.join(d, "log"), "-o", opts, "-w", "start"])
    script = os.path.join(d, "login.sql")
    with open(script, "w") as f:
        f.write(LOGIN_SCRIPT)
    os.chmod(script, 0o644)
    conn = ["-h", sock, "-p", str(port), "-U", "bench"]
    rows = []
    try:
        run(["createdb"] + conn + ["bench"])
        run([os.path.join(PG_BIN, "pgbench"), "-i", "-q", "-s", str(a.scale)] + conn + ["bench"])
        run(["psql"] + conn + ["-d", "bench", "-c",
                              "CREATE TABLE bench_grants (key bigint PRIMARY KEY, user_name bigint, "
                              "created timestamptz, expires timestamptz); CREATE INDEX ON bench_grants (expires);"])
        ver = run(["psql", "-tA"] + conn + ["-d", "bench", "-c", "SHOW server_version"]).stdout.strip()
        for name, extra in (("select", ["-S"]), ("login", ["-f", script])):
            for c in [int(x) for x in a.clients.split(",")]:
                load = os.getloadavg()[0]
                t0, i0 = cpu_times()
                out = run([os.path.join(PG_BIN, "pgbench"), "-n", "-M", "prepared", "-c", str(c), "-j", str(min(c, 4)),
                           "-T", str(a.duration)] + extra + conn + ["bench"]).stdout
                t1, i1 = cpu_times()
                tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
                lat = re.search(r"latency average = ([0-9.]+) ms", out)
                rows.append((name, c, tps, float(lat.group(1)) if lat else None, load,
                             100.0 * (1 - (i1 - i0) / max(1, t1 - t0))))
                print(f"{name} c={c}: {tps:.0f} tps", flush=True)
    finally:
        subprocess.run(as_pg() + [os.path.join(PG_BIN, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
                       capture_output=True, cwd="/")
        shutil.rmtree(d, ignore_errors=True)
    print()
    print(f"PostgreSQL {ver}, scale {a.scale} ({a.scale * 100000} accounts), fsync on, synchronous_commit on, "
          f"{os.cpu_count()} CPUs, {a.duration} s per run, pgbench on the same machine, {time.strftime('%F %H:%M UTC', time.gmtime())}")
    print()
    print("| workload | clients | tx/s | latency ms | load avg (1 min) before | machine CPU busy during |")
    print("|---|---|---|---|---|---|")
    for name, c, tps, lat, load, busy in rows:
        print(f"| {name} | {c} | {tps:.0f} | {lat if lat is not None else '–'} | {load:.1f} | {busy:.0f} % |")


if __name__ == "__main__":
    main()
