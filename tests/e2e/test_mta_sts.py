#!/usr/bin/env python3
"""MTA-STS (RFC 8461) for outbound delivery, end to end: a real posternd relays to local SMTP
sinks found through a local dnsmasq (MX, A and the _mta-sts TXT record); the policy comes from
a local HTTPS server whose certificate (for mta-sts.<domain>) a test CA signed. enforce with a
matching MX and a valid certificate delivers; an MX the policy does not name, or a certificate
not valid for the MX name, defers (nothing reaches the sink); testing delivers and logs what
enforce would refuse; the policy cache survives a restart while the policy server is down; a
policy that is too large or too slow counts as no policy; /metrics counts fetches and the TLS
policy of deliveries."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import BUILD_DIR, DEFAULT_USERS, Postern, check, check_eq, make_message, run_tests, wait_for
from delivery_support import DnsServer, Sink, delivery_overrides
from mta_sts_support import PolicyServer, TestCa, free_port_on, policy_text

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
DOMAIN = "sts.test"
WEB_IP = "127.0.0.30"  # mta-sts.sts.test
BAD_WEB_IP = "127.0.0.32"  # mta-sts.sts.test too, in test_the_next_address_after_a_bad_handshake
MX_IP = "127.0.0.31"   # mx1.sts.test
POSTERNCTL = os.path.join(BUILD_DIR, "bin", "posternctl")


def submit(p, to, extra_headers=()):
    marker, msg = make_message(sender=ALICE, to=to, extra_headers=extra_headers)
    s = p.submission(ALICE, ALICE_PW)
    try:
        s.sendmail(ALICE, [to], msg)
    finally:
        s.quit()
    return marker


@contextlib.contextmanager
def world(policy, mx_cert_name="mx1.sts.test", txt_id="1", web=True, bad_web=False, **web_kw):
    """dnsmasq, a TLS sink for mx1.sts.test, the policy server; yields a dict of them and the
    overrides that point posternd at them. bad_web: mta-sts.sts.test has a second address,
    whose server shows a certificate for another name."""
    tmp = tempfile.mkdtemp(prefix="postern-e2e-mtasts-")
    try:
        ca = TestCa(os.path.join(tmp, "ca"))
        port = free_port_on([MX_IP, WEB_IP, BAD_WEB_IP])
        dns = DnsServer(mx={DOMAIN: [(10, "mx1.sts.test")]},
                        hosts={"mx1.sts.test": MX_IP,
                               "mta-sts.sts.test": [BAD_WEB_IP, WEB_IP] if bad_web else WEB_IP},
                        txt={"_mta-sts.sts.test": ["v=spf1 -all", "v=STSv1; id=%s" % txt_id]})
        with dns, Sink(MX_IP, port, tls=True, cert=ca.issue(mx_cert_name)) as sink:
            server = PolicyServer(WEB_IP, port, ca.issue("mta-sts.sts.test"), policy=policy, **web_kw)
            if web:
                server.start()
            bad = PolicyServer(BAD_WEB_IP, port, ca.issue("www.sts.test"), policy=policy)
            if bad_web:
                bad.start()
            try:
                overrides = delivery_overrides(dns, port)
                overrides.update({
                    "delivery.mta_sts": "on",                     # the feature under test (shipped on)
                    "delivery.mta_sts.ca_file": ca.pem,           # the policy server's cert is from the test CA
                    "delivery.mta_sts.https_port": str(port),     # no root for port 443 in tests
                    "delivery.mta_sts.fetch_timeout": "3s",       # generous, yet the timeout test stays short
                    "delivery.mta_sts.max_policy_size": "64K",    # the shipped default, stated
                    "delivery.tls_ca_file": ca.pem,               # MX certificates (enforce: verify) from the test CA
                    "delivery.tls_policy": "may",                 # the shipped default; MTA-STS raises it
                })
                yield {"dns": dns, "sink": sink, "web": server, "overrides": overrides, "ca": ca, "tmp": tmp}
            finally:
                server.stop()
                if bad_web:
                    bad.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------

def test_enforce_matching_mx_with_valid_certificate_is_delivered():
    with world(policy_text("enforce", ["*.sts.test"], newline="\r\n")) as w:
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            got = w["sink"].wait_for(marker)[0]
            check(got.tls, "delivered over TLS")
            p.log_contains(r"event=mta_sts\.fetch domain=sts\.test id=1 result=ok mode=enforce "
                           r"max_age=86400 mx=\*\.sts\.test")
            p.log_contains(r"event=delivery\.ok to=<bob@sts\.test> relay=mx1\.sts\.test\[127\.0\.0\.31\]:\d+ "
                           r"tls=yes .* tls_policy=mta-sts")
            check_eq(w["web"].requests, ["/.well-known/mta-sts.txt"], "one policy fetch")
            m = p.metrics_text()
            check('postern_events_total{event="mta_sts_fetch",label="ok"} 1' in m, "fetch counted:\n" + m)
            check('postern_delivery_tls_total{policy="mta-sts",result="ok"} 1' in m,
                  "delivery policy counted")
            # A second message uses the cached policy (same id): no second fetch.
            marker2 = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker2)
            check_eq(len(w["web"].requests), 1, "policy fetches after two messages")


def test_enforce_mx_not_in_policy_is_deferred():
    with world(policy_text("enforce", ["mail.elsewhere.test"])) as w:
        with Postern(overrides=w["overrides"]) as p:
            submit(p, "bob@sts.test")
            p.log_contains(r"event=mta_sts\.mx_skip domain=sts\.test mode=enforce hosts=mx1\.sts\.test", 20)
            p.log_contains(r"event=delivery\.defer to=<bob@sts\.test> relay=none tls=no status=4\.4\.4 "
                           r"reply=\"MTA-STS: no MX host of sts\.test matches its MTA-STS policy\" .*"
                           r"tls_policy=mta-sts mta_sts=\"no matching MX\"", 20)
            # Retried (delivery.retry_schedule 1s), never sent to the unlisted MX.
            wait_for(lambda: p.log_count(r"event=delivery\.defer to=<bob@sts\.test>") >= 2, 20,
                     what="a second deferral")
            check_eq(len(w["sink"].data_seen), 0, "messages at the unlisted MX")
            check('postern_events_total{event="mta_sts_defer",label="no_matching_mx"}' in p.metrics_text(),
                  "deferral counted")


def test_enforce_certificate_not_valid_for_mx_is_deferred_never_clear_text():
    with world(policy_text("enforce", ["mx1.sts.test"]), mx_cert_name="wrong.example") as w:
        with Postern(overrides=w["overrides"]) as p:
            submit(p, "bob@sts.test")
            p.log_contains(r"event=delivery\.defer to=<bob@sts\.test> relay=mx1\.sts\.test\[127\.0\.0\.31\]:\d+ "
                           r"tls=no status=4\.7\.5 .*tls_policy=mta-sts mta_sts=\"no verified TLS\"", 20)
            wait_for(lambda: p.log_count(r"event=delivery\.defer to=<bob@sts\.test>") >= 2, 20,
                     what="a second deferral")
            check_eq(len(w["sink"].data_seen), 0, "messages sent despite the bad certificate")
            check('postern_events_total{event="mta_sts_defer",label="no_verified_tls"}' in p.metrics_text(),
                  "deferral counted")


def test_enforce_certificate_names_partial_wildcards_refused_whole_label_wildcards_taken():
    """Review finding: the verified-TLS name check took a partial wildcard (mx*.sts.test),
    which RFC 6125 6.4.3 and RFC 8461 3.4 do not; a whole left-most label (*.sts.test) stays
    valid."""
    with world(policy_text("enforce", ["mx1.sts.test"]), mx_cert_name="mx*.sts.test") as w:
        with Postern(overrides=w["overrides"]) as p:
            submit(p, "bob@sts.test")
            p.log_contains(r"event=delivery\.defer to=<bob@sts\.test> .*status=4\.7\.5 .*"
                           r"tls_policy=mta-sts mta_sts=\"no verified TLS\"", 20)
            check_eq(len(w["sink"].data_seen), 0, "messages sent to a partial-wildcard certificate")
    with world(policy_text("enforce", ["mx1.sts.test"]), mx_cert_name="*.sts.test") as w:
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            check(w["sink"].wait_for(marker)[0].tls, "delivered to a *.sts.test certificate over TLS")


def test_testing_mode_delivers_and_logs_what_enforce_would_refuse():
    with world(policy_text("testing", ["mail.elsewhere.test"]), mx_cert_name="wrong.example") as w:
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            got = w["sink"].wait_for(marker)[0]
            check(got.tls, "delivered with (unverified) TLS under may")
            p.log_contains(r"event=mta_sts\.testing_fail domain=sts\.test mode=testing hosts=mx1\.sts\.test "
                           r"reason=\"MX host not named in the policy\"")
            p.log_contains(r"event=mta_sts\.testing_fail domain=sts\.test relay=mx1\.sts\.test\[127\.0\.0\.31\]:\d+ "
                           r"reason=\"TLS handshake with .* failed")
            p.log_contains(r"event=delivery\.ok to=<bob@sts\.test> .*tls=yes .*tls_policy=may")


def test_cached_policy_survives_restart_while_policy_server_is_down():
    with world(policy_text("enforce", ["mx1.sts.test"], max_age=3600)) as w:
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker)
            p.log_contains(r"event=delivery\.ok to=<bob@sts\.test> .*tls_policy=mta-sts")
            cache = os.path.join(p.queue_dir, "mta-sts.cache")
            with open(cache) as f:
                text = f.read()
            check("sts.test 1 " in text and " enforce 3600 mx1.sts.test" in text, "cache file:\n" + text)
            show = subprocess.run([POSTERNCTL, "mta-sts", "show", "STS.test", "--config", p.config_path],
                                  capture_output=True, text=True, timeout=30)
            check_eq(show.returncode, 0, "posternctl mta-sts show: " + show.stderr)
            for want in ("id       1\n", "mode     enforce\n", "max_age  3600\n", "mx       mx1.sts.test\n"):
                check(want in show.stdout, "%r in:\n%s" % (want, show.stdout))
            none = subprocess.run([POSTERNCTL, "mta-sts", "show", "other.test", "--config", p.config_path],
                                  capture_output=True, text=True, timeout=30)
            check_eq(none.returncode, 67, "no cached policy: " + none.stderr)
            w["web"].stop()  # the policy server is gone from here on
            p.restart()
            fetches = p.log_count(r"event=mta_sts\.fetch ")
            marker2 = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker2)
            wait_for(lambda: p.log_count(r"event=delivery\.ok to=<bob@sts\.test> .*tls_policy=mta-sts") == 2, 10,
                     what="the second delivery under the cached policy")
            check_eq(p.log_count(r"event=mta_sts\.fetch "), fetches, "fetches after the restart")


def test_cached_enforce_policy_still_defers_after_restart():
    # The cache is what enforces here: after the restart the server is down and the MX changed
    # to one the cached policy does not name.
    with world(policy_text("enforce", ["mx1.sts.test"], max_age=3600)) as w:
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker)
            w["web"].stop()
            p.stop()
            w["dns"].stop()
            w["dns"].mx = {DOMAIN: [(10, "other.sts.test")]}
            w["dns"].hosts["other.sts.test"] = MX_IP
            w["dns"].start()
            o = dict(w["overrides"])
            o["delivery.dns_server"] = w["dns"].address()
            p.restart(overrides=o)
            submit(p, "bob@sts.test")
            p.log_contains(r"event=delivery\.defer to=<bob@sts\.test> .*mta_sts=\"no matching MX\"", 20)
            check_eq(len(w["sink"].data_seen), 1, "messages at the sink (only the first)")


def test_policy_too_large_counts_as_no_policy():
    # An enforce policy that would refuse the MX, padded beyond max_policy_size: ignored.
    big = policy_text("enforce", ["mail.elsewhere.test"]) + "".join("x-pad%d: %s\n" % (i, "y" * 60) for i in range(40))
    with world(big) as w:
        w["overrides"]["delivery.mta_sts.max_policy_size"] = "1K"  # the body above is about 2.7K
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker)
            p.log_contains(r"event=mta_sts\.fetch domain=sts\.test id=1 result=fail cached=no "
                           r"error=\"policy larger than 1024 bytes\"")
            p.log_contains(r"event=delivery\.ok to=<bob@sts\.test> .*tls_policy=may")
            check('postern_events_total{event="mta_sts_fetch",label="fail"} 1' in p.metrics_text(), "failure counted")


def test_policy_fetch_timeout_counts_as_no_policy():
    with world(policy_text("enforce", ["mail.elsewhere.test"]), delay=8.0) as w:
        w["overrides"]["delivery.mta_sts.fetch_timeout"] = "1s"  # the server answers after 8 s
        with Postern(overrides=w["overrides"]) as p:
            t0 = time.monotonic()
            marker = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker, timeout=30)
            took = time.monotonic() - t0
            p.log_contains(r"event=mta_sts\.fetch domain=sts\.test id=1 result=fail cached=no "
                           r"error=\"timeout after 1000ms\"")
            check(took < 7.5, "delivered before the slow policy server answered (%.1fs)" % took)
            # delivery.mta_sts.fetch_retry (shipped 5m): the next message does not wait again.
            marker2 = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker2, timeout=30)
            check_eq(len(w["web"].requests), 1, "policy fetches within fetch_retry")
            check_eq(p.log_count(r"event=mta_sts\.fetch "), 1, "fetch log lines")


def test_redirect_and_wrong_content_type_are_failed_fetches():
    with world(policy_text("enforce", ["mail.elsewhere.test"]), status=301,
               headers={"Location": "https://mta-sts.sts.test/other"}) as w:
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker)
            p.log_contains(r"result=fail cached=no error=\"HTTP 301 \(redirects are not followed")
    with world(policy_text("enforce", ["mail.elsewhere.test"]), content_type="text/html") as w:
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker)
            p.log_contains(r"result=fail cached=no error=\"Content-Type is not text/plain\"")


def test_policy_server_certificate_must_be_valid():
    # The policy server presents a certificate for another name: no policy, mail flows as may.
    with world(policy_text("enforce", ["mail.elsewhere.test"])) as w:
        w["web"].stop()
        w["web"].cert = w["ca"].issue("www.sts.test")
        w["web"].start()
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker)
            p.log_contains(r"event=mta_sts\.fetch domain=sts\.test id=1 result=fail cached=no "
                           r"error=\"certificate of mta-sts\.sts\.test not valid")


def test_the_next_address_after_a_bad_handshake():
    """mta-sts.sts.test has two addresses; one serves a certificate for another name. The
    policy comes from the other (review finding: a failed handshake with the first address
    ended the fetch: no policy at all for such a domain), and enforce holds."""
    with world(policy_text("enforce", ["mx1.sts.test"]), bad_web=True) as w:
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker)
            p.log_contains(r"event=mta_sts\.fetch domain=sts\.test id=1 result=ok")
            p.log_contains(r"event=delivery\.ok .*tls_policy=mta-sts")


def test_tls_required_no_header_overrides_enforce():
    # RFC 8689 5: "TLS-Required: No" asks to deliver regardless of MTA-STS.
    with world(policy_text("enforce", ["mail.elsewhere.test"])) as w:
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test", extra_headers=("TLS-Required: No",))
            w["sink"].wait_for(marker)
            p.log_contains(r"event=delivery\.ok to=<bob@sts\.test> .*tls_policy=may")
            check_eq(w["web"].requests, [], "policy fetches")


def test_explicit_domain_tls_policy_wins_over_mta_sts():
    with world(policy_text("enforce", ["mail.elsewhere.test"])) as w:
        w["overrides"]["delivery.tls_policy.sts.test"] = "may"  # the operator's word for this domain
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            w["sink"].wait_for(marker)
            p.log_contains(r"event=delivery\.ok to=<bob@sts\.test> .*tls_policy=may")
            check_eq(w["web"].requests, [], "policy fetches")


def test_cluster_nodes_share_the_policy_in_postgresql():
    """Node a fetches the policy; node b (its own queue and state file, the policy server down
    by then) enforces it from table mta_sts_policies without a fetch of its own."""
    import pg_support as P
    pg = P.PgServer()  # schema migrated by posternctl db migrate, 007_mta_sts included
    try:
        with world(policy_text("enforce", ["mx1.sts.test"], max_age=3600)) as w:
            cluster = {"cluster.conninfo": pg.conninfo(), "cluster.password_file": pg.password_file}
            a = Postern(config=cluster, overrides=w["overrides"], name="node-a")
            with a:
                marker = submit(a, "bob@sts.test")
                w["sink"].wait_for(marker)
                a.log_contains(r"event=delivery\.ok to=<bob@sts\.test> .*tls_policy=mta-sts")
            rows = pg.sql("SELECT domain || ' ' || policy_id || ' ' || mode || ' ' || max_age || ' ' || mx "
                          "FROM mta_sts_policies")
            check_eq(rows, ["sts.test 1 enforce 3600 mx1.sts.test"], "mta_sts_policies rows")
            w["web"].stop()
            b = Postern(config=cluster, overrides=w["overrides"], name="node-b")
            with b:
                marker = submit(b, "bob@sts.test")
                w["sink"].wait_for(marker)
                b.log_contains(r"event=delivery\.ok to=<bob@sts\.test> .*tls_policy=mta-sts")
                check_eq(b.log_count(r"event=mta_sts\.fetch "), 0, "fetches on node b")
            check_eq(len(w["web"].requests), 1, "policy fetches in the cluster")
    finally:
        pg.destroy()


def test_max_age_above_rfc_maximum_is_capped_not_rejected():
    # RFC 8461 3.2: max_age is at most 31557600; a larger value is capped, the policy applies.
    with world(policy_text("enforce", ["mx1.sts.test"], max_age=40000000)) as w:
        with Postern(overrides=w["overrides"]) as p:
            marker = submit(p, "bob@sts.test")
            check(w["sink"].wait_for(marker)[0].tls, "delivered over TLS")
            p.log_contains(r"event=mta_sts\.fetch domain=sts\.test id=1 result=ok mode=enforce "
                           r"max_age=31557600 mx=mx1\.sts\.test max_age_capped=yes")
            p.log_contains(r"event=delivery\.ok to=<bob@sts\.test> .* tls_policy=mta-sts")


if __name__ == "__main__":
    run_tests(globals())
