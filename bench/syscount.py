#!/usr/bin/env python3
"""syscount -- durability system calls per accepted message (S1', smtp-source).

Starts posternd (the bench/run set-up: users, config, relay sink) under `strace -f -c`
limited to the durability calls, sends -m messages of 10 KiB with smtp-source at -s sessions
to one local user, stops posternd and prints each call's count per accepted message.
strace slows the server down a lot: the counts are what matters, not the rate.

    bench/syscount.py [--build-dir build-release] [-m 2000] [-s 32] [--set store.group_commit=false]
    bench/syscount.py --all      # every system call, not only the durability ones
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import runner  # noqa: E402

CALLS = "fsync,fdatasync,syncfs,sync_file_range,link,rename,unlink"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(runner.ROOT, "build-release"))
    ap.add_argument("-m", type=int, default=2000, help="messages")
    ap.add_argument("-s", type=int, default=32, help="concurrent sessions")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--all", action="store_true", help="count every system call")
    a = ap.parse_args()
    a.set_overrides = dict(kv.split("=", 1) for kv in a.set)
    t = runner.Postern(a)
    t.prepare()
    conf = t.write_config()
    out = os.path.join(runner.WORK, "strace.txt")
    ready = os.path.join(runner.WORK, "ready")
    if os.path.exists(ready):
        os.unlink(ready)
    p = subprocess.Popen(["strace", "-f", "-c", "-o", out] + ([] if a.all else ["-e", "trace=" + CALLS]) + [t.bin, "--config", conf],
                         cwd=runner.WORK, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 60
        while not os.path.exists(ready) and time.monotonic() < end:
            time.sleep(0.1)
        before = open(os.path.join(runner.WORK, "posternd.log")).read().count("event=message.accept ")
        r = subprocess.run(["smtp-source", "-s", str(a.s), "-m", str(a.m), "-l", "10240", "-f", "sender@outside.test",
                            "-t", "bench300@example.test", "-M", "client.smtp-source.test",
                            f"127.0.0.1:{t.ports['mx']}"], capture_output=True, text=True, timeout=600)
        time.sleep(1)
    finally:
        # SIGTERM to posternd itself (strace would only detach); strace then writes its table.
        try:
            with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                for child in f.read().split():
                    os.kill(int(child), signal.SIGTERM)
        except OSError:
            p.send_signal(signal.SIGTERM)
        p.wait(60)
        t.close()
    accepted = open(os.path.join(runner.WORK, "posternd.log")).read().count("event=message.accept ") - before
    print(f"smtp-source rc={r.returncode}; accepted {accepted} messages; overrides {a.set_overrides or 'none'}")
    counts = {}
    for line in open(out):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            counts[m.group(2)] = int(m.group(1))
    names = sorted(counts, key=lambda c: -counts[c]) if a.all else CALLS.split(",")
    if a.all:
        print(f"  {'all':16s} {sum(counts.values()):8d}  {sum(counts.values()) / max(1, accepted):6.3f} per message")
    for c in names:
        n = counts.get(c, 0)
        print(f"  {c:16s} {n:8d}  {n / max(1, accepted):6.3f} per message")


if __name__ == "__main__":
    main()
