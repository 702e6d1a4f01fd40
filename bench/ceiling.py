#!/usr/bin/env python3
"""ceiling -- what this machine allows S1' at all: smtp-source against Postfix's smtp-sink.

smtp-sink (one process, event-driven, C) accepts every message and stores nothing: no file,
no fsync, no log. What smtp-source reaches against it at -s sessions is an upper bound for any
server on this machine under S1' (same client, same 10 KiB messages, same loopback), because
the load generator shares the CPUs with the server. Prints one line per repetition and the
median, with the CPU the machine spent (all processes) per message.

    python3 bench/ceiling.py               # -s 8 and 32, 3 repetitions of 30000 messages
    python3 bench/ceiling.py -s 32 --reps 5 -m 60000
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(v) - v[3] - v[4]) / hz  # all but idle and iowait


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(sessions, count, size):
    port = free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", os.environ.get("SINK_USER", "postfix"), f"127.0.0.1:{port}", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        m0, t0 = machine_busy_s(), time.perf_counter()
        # A fixed number of messages, timed: smtp-source's running count (-c) sits in its stdio
        # buffer when it is killed, so a time-bounded run would under-count.
        rc = subprocess.call(["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size),
                              "-f", "bench@client.test", "-t", "rcpt@example.test", f"127.0.0.1:{port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed, m1 = time.perf_counter() - t0, machine_busy_s()
    finally:
        sink.kill()
        sink.wait()
    if rc != 0:
        sys.exit(f"ceiling: smtp-source failed (exit {rc})")
    done = count
    return done / elapsed, (m1 - m0) * 1000 / max(1, done)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-s", type=int, action="append", help="concurrent sessions (repeatable; default 8 and 32)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-m", type=int, default=30000, help="messages per repetition (default 30000)")
    ap.add_argument("--size", type=int, default=10240)
    opt = ap.parse_args()
    for tool in ("smtp-source", "smtp-sink"):
        if not shutil.which(tool):
            sys.exit(f"ceiling: {tool} not found (Debian package postfix)")
    print(f"# S1' ceiling: smtp-source -> smtp-sink (nothing stored), {opt.size} B messages, "
          f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}")
    for s in opt.s or [8, 32]:
        rates, cpus = [], []
        for rep in range(opt.reps):
            rate, cpu = one_run(s, opt.m, opt.size)
            rates.append(rate)
            cpus.append(cpu)
            print(f"  -s {s} rep {rep + 1}: {rate:.0f} msg/s, machine CPU {cpu:.3f} ms/msg")
        print(f"| smtp-sink ceiling | {s} | {statistics.median(rates):.0f} msg/s | "
              f"{statistics.median(cpus):.3f} ms machine CPU per message |")


if __name__ == "__main__":
    main()
