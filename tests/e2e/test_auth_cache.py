#!/usr/bin/env python3
"""The server's authentication cache: a repeated login is answered from the cache (visible
in the log and in /metrics), so is a repeated wrong password, a failed login clears the
user's cached success, and the cache never turns a wrong password into a success."""

import os
import signal
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import (Postern, DEFAULT_USERS, check, check_eq, free_port, plain_ir, run_tests)

BOB, BOB_PW = "bob@example.test", DEFAULT_USERS["bob@example.test"]["password"]  # SHA512-CRYPT


def auth(p, user, password):
    s = p.smtp("submission", starttls=True)
    code, _ = s.docmd("AUTH", "PLAIN " + plain_ir(user, password))
    s.quit()
    return code


def metric(port, name):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_repeat_login_hits_cache_and_failure_clears_it():
    hport = free_port()
    with Postern(config={"health.port": str(hport)}) as p:
        check_eq(auth(p, BOB, BOB_PW), 235, "first login")
        check_eq(auth(p, BOB, BOB_PW), 235, "second login")
        p.log_contains(r"event=auth\.ok svc=smtp ip=127\.0\.0\.1 user=bob@example\.test backend=cache result=ok .*cache=hit")
        check(metric(hport, "postern_auth_cache_hits") >= 1, "cache hits in /metrics")
        check_eq(auth(p, BOB, "wrong-password"), 535, "wrong password never from a cached success")
        # The same wrong password again (a phone with an old one) is answered from memory
        # for auth.cache.negative_ttl, without a backend query and a hash check.
        check_eq(auth(p, BOB, "wrong-password"), 535, "the same wrong password again")
        p.log_contains(r"event=auth\.fail svc=smtp ip=127\.0\.0\.1 user=bob@example\.test backend=cache ")
        before = p.log_count(r"user=bob@example\.test backend=cache result=ok")
        check_eq(auth(p, BOB, BOB_PW), 235, "login after a failure")
        check_eq(p.log_count(r"user=bob@example\.test backend=cache result=ok"), before,
                 "a failed login cleared the cached success: this one asked the backend")
        check(metric(hport, 'postern_auth_results_total{service="smtp",backend="local",result="ok"}') >= 2,
              "auth results by backend in /metrics")
        # Queue size and age are exported too (delivery is off here: queued mail waits).
        s = p.submission(BOB, BOB_PW)
        s.sendmail(BOB, ["friend@remote.example"], b"Subject: q\r\n\r\nqueued\r\n")
        s.quit()
        check_eq(metric(hport, "postern_queue_messages"), 1.0, "queue size in /metrics")
        check(metric(hport, "postern_queue_oldest_age_seconds") is not None, "queue age gauge in /metrics")


def test_sighup_empties_the_cache():
    """After a password change in an incident the old password is accepted from the cache
    for up to auth.cache.ttl; SIGHUP (systemctl reload) empties the cache at once (review
    finding: the operator had no lever). Test changes: bob's password rewritten in the
    passwd-file, which posternd re-reads by itself, checked every 100ms
    (auth.backend.local.check_interval)."""
    with Postern(overrides={"auth.backend.local.check_interval": "100ms"}) as p:
        check_eq(auth(p, BOB, BOB_PW), 235, "login with the old password")
        p.users[BOB] = {"password": "bob-New-Secret9"}
        p._write_users()
        time.sleep(1.5)  # re-read by then (a failed login now would clear the cache itself)
        check_eq(auth(p, BOB, BOB_PW), 235, "the old one, from the cache (bounded staleness)")
        check_eq(auth(p, BOB, "bob-New-Secret9"), 235, "the new password (the file was re-read)")
        p.proc.send_signal(signal.SIGHUP)
        p.log_contains(r"event=auth\.cache_cleared entries=\d+", timeout=10)
        check_eq(auth(p, BOB, BOB_PW), 535, "the old password after SIGHUP")
        check_eq(auth(p, BOB, "bob-New-Secret9"), 235, "the new one still")


if __name__ == "__main__":
    run_tests(globals())
