#!/usr/bin/env python3
"""DANE for outbound delivery (RFC 7672) end to end: a real posternd delivers through a
validating unbound (trust anchor = the test zone's KSK) in front of nsd serving a zone
signed by ldns-signzone, to SMTP sinks whose certificates do or do not match the TLSA
records. DANE-EE(3) and DANE-TA(2) matches, a mismatch (next MX, or deferred with 4.7.5 and
nothing sent), an insecure zone (opportunistic TLS), dane-only without TLSA, a TLSA lookup
the resolver finds bogus, and the tls_policy= log field and /metrics counters; an alias
(CNAME) MX host's TLSA base domain (RFC 7672 2.2.2); REQUIRETLS met by DANE (RFC 8689 4.2.1)."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postern_harness import DEFAULT_USERS, Postern, check, check_eq, make_message, run_tests, wait_for  # noqa: E402
from delivery_support import Sink, delivery_overrides, sink_port  # noqa: E402
from dane_support import Certs, CertSink, SignedDns, tlsa_rdata  # noqa: E402

ALICE, ALICE_PW = "alice@example.test", DEFAULT_USERS["alice@example.test"]["password"]
MX1, MX2 = "127.0.0.20", "127.0.0.21"


def submit(p, to, mail_options=(), extra_headers=()):
    marker, msg = make_message(sender=ALICE, to=to, extra_headers=extra_headers)
    s = p.submission(ALICE, ALICE_PW)  # STARTTLS + AUTH
    try:
        s.sendmail(ALICE, [to], msg, mail_options=list(mail_options))
    finally:
        s.quit()
    return marker


def dane_overrides(dns, port, **extra):
    o = delivery_overrides(dns, port)
    # The policy under test; the shipped default is 'may' (DANE is opt-in).
    o["delivery.tls_policy"] = "dane"
    o.update({k.replace("__", "."): v for k, v in extra.items()})
    return o


def zone(port, mx, tlsa):
    """Lines of a zone: d MX -> hosts mx1/mx2 with addresses, TLSA of each host given."""
    lines = []
    for pref, host, ip in mx:
        lines += ["d MX %d %s" % (pref, host), "%s A %s" % (host, ip)]
    for host, rdata in tlsa:
        lines.append("_%d._tcp.%s TLSA %s" % (port, host, rdata))
    return lines


def test_dane_ee_match_is_delivered_with_sni():
    certs = Certs()
    try:
        cert, key = certs.self_signed("mx1", "other-name.example")  # DANE-EE: name is irrelevant
        port = sink_port((MX1,))
        z = zone(port, [(10, "mx1", MX1)], [("mx1", tlsa_rdata(cert, 3, 1, 1))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert, key) as sink:
            check_eq(dns.query("_%d._tcp.mx1.dane.test" % port, 52), (0, True), "TLSA answer is secure")
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.dane.test")
                got = sink.wait_for(marker)[0]
                check(got.tls, "delivered over TLS")
                check_eq(sink.sni, ["mx1.dane.test"], "SNI = the MX host name (RFC 7672 8.1)")
                p.log_contains(r"event=delivery\.ok to=<friend@d\.dane\.test> relay=mx1\.dane\.test\[127\.0\.0\.20\]"
                               r":%d tls=yes status=2\.0\.0 .* tls_policy=dane" % port)
                check_eq(p.metric("postern_delivery_tls_total", {"policy": "dane", "result": "ok"}), 1.0,
                         "/metrics counts the DANE delivery")
    finally:
        certs.close()


def test_dane_ee_mismatch_goes_to_next_mx():
    certs = Certs()
    try:
        cert1, key1 = certs.self_signed("mx1", "mx1.dane.test")
        other, _ = certs.self_signed("other", "mx1.dane.test")
        cert2, key2 = certs.self_signed("mx2", "mx2.dane.test")
        port = sink_port((MX1, MX2))
        # mx1's TLSA names another key; mx2's matches (full certificate, SHA-512).
        z = zone(port, [(10, "mx1", MX1), (20, "mx2", MX2)],
                 [("mx1", tlsa_rdata(other, 3, 1, 1)), ("mx2", tlsa_rdata(cert2, 3, 0, 2))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert1, key1) as s1, \
                CertSink(MX2, port, cert2, key2) as s2:
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.dane.test")
                s2.wait_for(marker)
                p.log_contains(r"event=delivery\.connect_fail relay=mx1\.dane\.test\[127\.0\.0\.20\]:%d "
                               r"tls_policy=dane dane_fail=no_match " % port)
                p.log_contains(r"event=delivery\.ok to=<friend@d\.dane\.test> relay=mx2\.dane\.test.* tls_policy=dane")
                check_eq(s1.data_seen, [], "the mismatching MX got no message")
                check_eq(s1.count(), 0, "nothing accepted at the mismatching MX")
    finally:
        certs.close()


def test_dane_mismatch_only_mx_is_deferred_never_clear():
    certs = Certs()
    try:
        cert, key = certs.self_signed("mx1", "mx1.dane.test")
        other, _ = certs.self_signed("other", "mx1.dane.test")
        port = sink_port((MX1,))
        z = zone(port, [(10, "mx1", MX1)], [("mx1", tlsa_rdata(other, 3, 1, 1))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert, key) as sink:
            with Postern(overrides=dane_overrides(dns, port)) as p:
                submit(p, "friend@d.dane.test")
                # Two attempts (retry_schedule 1s): deferred each time, nothing sent.
                p.log_contains(r"event=delivery\.defer to=<friend@d\.dane\.test> relay=mx1\.dane\.test\S+ tls=no "
                               r"status=4\.7\.5 reply=\"DANE: .*attempt=2 .* tls_policy=dane dane_fail=no_match",
                               timeout=30)
                check_eq(sink.data_seen, [], "the MX got no message")
                check(p.metric("postern_delivery_dane_failures_total", {"reason": "no_match"}) >= 2,
                      "/metrics counts the DANE failures")
                check(p.metric("postern_delivery_tls_total", {"policy": "dane", "result": "fail"}) >= 2,
                      "/metrics counts the failed DANE deliveries")
                # RFC 8689: "TLS-Required: No" asks that the recipient's TLS policy, DANE as
                # well as MTA-STS, be ignored (review finding: DANE was kept). Delivered, over
                # TLS all the same.
                marker = submit(p, "other@d.dane.test", extra_headers=("TLS-Required: No",))
                check(sink.wait_for(marker)[0].tls, "over TLS all the same")
                p.log_contains(r"event=delivery\.ok to=<other@d\.dane\.test> .*tls=yes .*tls_policy=may", timeout=20)
    finally:
        certs.close()


def test_dane_ta_full_certificate_and_spki():
    certs = Certs()
    try:
        ca = certs.ca("Test DANE CA")
        good1 = certs.leaf("mx1", "mx1.dane.test", ca)
        good2 = certs.leaf("mx2", "mx2.dane.test", ca)
        port = sink_port((MX1, MX2))
        z = zone(port, [(10, "mx1", MX1)], [("mx1", tlsa_rdata(ca[0], 2, 0, 1))])
        z2 = ["e MX 10 mx2", "mx2 A %s" % MX2, "_%d._tcp.mx2 TLSA %s" % (port, tlsa_rdata(ca[0], 2, 1, 1))]
        with SignedDns({"dane.test": z + z2}) as dns, CertSink(MX1, port, *good1) as s1, \
                CertSink(MX2, port, *good2) as s2:
            with Postern(overrides=dane_overrides(dns, port)) as p:
                m1 = submit(p, "friend@d.dane.test")
                m2 = submit(p, "friend@e.dane.test")
                s1.wait_for(m1)
                s2.wait_for(m2)
                p.log_contains(r"event=delivery\.ok to=<friend@d\.dane\.test> .* tls_policy=dane")
                p.log_contains(r"event=delivery\.ok to=<friend@e\.dane\.test> .* tls_policy=dane")
    finally:
        certs.close()


def test_dane_ta_name_mismatch_is_refused():
    certs = Certs()
    try:
        ca = certs.ca("Test DANE CA")
        wrong = certs.leaf("mx1", "somewhere-else.example", ca)  # chain fine, name not mx1's
        good2 = certs.leaf("mx2", "mx2.dane.test", ca)
        port = sink_port((MX1, MX2))
        z = zone(port, [(10, "mx1", MX1), (20, "mx2", MX2)],
                 [("mx1", tlsa_rdata(ca[0], 2, 0, 1)), ("mx2", tlsa_rdata(ca[0], 2, 0, 1))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, *wrong) as s1, \
                CertSink(MX2, port, *good2) as s2:
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.dane.test")
                s2.wait_for(marker)
                p.log_contains(r"event=delivery\.connect_fail relay=mx1\.dane\.test\S+ tls_policy=dane "
                               r"dane_fail=ta_name_mismatch ")
                check_eq(s1.data_seen, [], "the MX with the wrong name got no message")
    finally:
        certs.close()


def test_insecure_zone_falls_back_to_may():
    certs = Certs()
    try:
        cert, key = certs.self_signed("mx1", "mx1.plain.test")
        other, _ = certs.self_signed("other", "mx1.plain.test")
        port = sink_port((MX1,))
        # A mismatching TLSA in an unsigned zone must be ignored (RFC 7672 2.2).
        z = zone(port, [(10, "mx1", MX1)], [("mx1", tlsa_rdata(other, 3, 1, 1))])
        with SignedDns({"dane.test": ["x A 127.0.0.1"]}, unsigned={"plain.test": z}) as dns, \
                CertSink(MX1, port, cert, key) as sink:
            check_eq(dns.query("d.plain.test", 15), (0, False), "the unsigned zone is insecure")
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.plain.test")
                got = sink.wait_for(marker)[0]
                check(got.tls, "opportunistic TLS still used")
                p.log_contains(r"event=delivery\.ok to=<friend@d\.plain\.test> .*tls=yes .* tls_policy=may")
    finally:
        certs.close()


def test_dane_only_without_tlsa_is_deferred():
    certs = Certs()
    try:
        cert, key = certs.self_signed("mx1", "mx1.dane.test")
        port = sink_port((MX1,))
        z = zone(port, [(10, "mx1", MX1)], [])  # signed, but no TLSA
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert, key) as sink:
            # Per-domain dane-only over the default 'may' (the key under test).
            with Postern(overrides=dane_overrides(dns, port, delivery__tls_policy="may",
                                                  **{"delivery.tls_policy.d.dane.test": "dane-only"})) as p:
                submit(p, "friend@d.dane.test")
                p.log_contains(r"event=delivery\.dane_skip host=mx1\.dane\.test tls_policy=dane dane_fail=no_tlsa",
                               timeout=20)
                p.log_contains(r"event=delivery\.defer to=<friend@d\.dane\.test> .*status=4\.7\.5 .*"
                               r"tls_policy=dane dane_fail=no_tlsa", timeout=20)
                time.sleep(1.5)  # another retry (1s) would have connected if it were going to
                check_eq(sink.data_seen, [], "no message without TLSA under dane-only")
    finally:
        certs.close()


def test_unusable_tlsa_means_tls_without_authentication():
    certs = Certs()
    try:
        cert, key = certs.self_signed("mx1", "mx1.dane.test")
        other, _ = certs.self_signed("other", "mx1.dane.test")
        port = sink_port((MX1,))
        # PKIX-EE(1) only: not usable for SMTP (RFC 7672 3.1.3): "usable TLSA none".
        z = zone(port, [(10, "mx1", MX1)], [("mx1", tlsa_rdata(other, 1, 1, 1))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert, key) as sink:
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.dane.test")
                check(sink.wait_for(marker)[0].tls, "delivered over TLS")
                p.log_contains(r"event=delivery\.ok to=<friend@d\.dane\.test> .*tls=yes .* tls_policy=encrypt")
    finally:
        certs.close()


def test_dane_without_starttls_is_deferred():
    certs = Certs()
    try:
        cert, _ = certs.self_signed("mx1", "mx1.dane.test")
        port = sink_port((MX1,))
        z = zone(port, [(10, "mx1", MX1)], [("mx1", tlsa_rdata(cert, 3, 1, 1))])
        with SignedDns({"dane.test": z}) as dns, Sink(MX1, port) as sink:  # no STARTTLS offered
            with Postern(overrides=dane_overrides(dns, port)) as p:
                submit(p, "friend@d.dane.test")
                p.log_contains(r"event=delivery\.defer to=<friend@d\.dane\.test> .*status=4\.7\.5 .*"
                               r"tls_policy=dane dane_fail=no_starttls", timeout=20)
                check_eq(sink.data_seen, [], "nothing sent in clear to a DANE host")
    finally:
        certs.close()


def test_bogus_tlsa_is_deferred():
    certs = Certs()
    try:
        cert, key = certs.self_signed("mx1", "mx1.dane.test")
        port = sink_port((MX1,))
        z = zone(port, [(10, "mx1", MX1)], [("mx1", tlsa_rdata(cert, 3, 1, 1))])
        tlsa_name = "_%d._tcp.mx1.dane.test" % port
        with SignedDns({"dane.test": z}, bogus={tlsa_name}) as dns, CertSink(MX1, port, cert, key) as sink:
            check_eq(dns.query(tlsa_name, 52)[0], 2, "the resolver answers SERVFAIL for the bogus TLSA")
            with Postern(overrides=dane_overrides(dns, port)) as p:
                submit(p, "friend@d.dane.test")
                p.log_contains(r"event=delivery\.defer to=<friend@d\.dane\.test> .*status=4\.7\.5 .*"
                               r"tls_policy=dane dane_fail=tlsa_lookup_failed", timeout=20)
                check_eq(sink.data_seen, [], "no message when the TLSA lookup fails")
    finally:
        certs.close()


def test_a_dane_host_does_not_switch_off_mta_sts_for_the_other_hosts():
    """Review finding: one MX host under DANE (here its TLSA lookup made to fail, as an
    attacker on the path can) turned MTA-STS off for the whole domain, so the other MX host
    got opportunistic TLS with any certificate. Now DANE governs its own host only; the other
    keeps the domain's enforce policy: a certificate no CA vouches for defers the message
    (4.7.5), one for its name from a trusted CA gets it. Changed beyond dane_overrides: an
    MTA-STS policy server (test CA) and delivery.mta_sts.* pointing at it."""
    import tempfile
    import shutil
    from mta_sts_support import PolicyServer, TestCa, policy_text
    web_ip = "127.0.0.22"
    certs = Certs()
    tmp = tempfile.mkdtemp(prefix="postern-e2e-dane-sts-")
    try:
        ca = TestCa(os.path.join(tmp, "ca"))
        cert1, key1 = certs.self_signed("mx1", "mx1.dane.test")
        rogue, rogue_key = certs.self_signed("mx2-rogue", "mx2.dane.test")  # not from the CA
        port = sink_port((MX1, MX2, web_ip))
        z = zone(port, [(10, "mx1", MX1), (20, "mx2", MX2)], [("mx1", tlsa_rdata(cert1, 3, 1, 1))])
        z += ['_mta-sts.d TXT "v=STSv1; id=1"', "mta-sts.d A %s" % web_ip]
        tlsa_name = "_%d._tcp.mx1.dane.test" % port
        web = PolicyServer(web_ip, port, ca.issue("mta-sts.d.dane.test"),
                           policy=policy_text("enforce", ["*.dane.test"]))
        web.start()
        o = {"delivery.mta_sts": "on", "delivery.mta_sts.ca_file": ca.pem,
             "delivery.mta_sts.https_port": str(port), "delivery.tls_ca_file": ca.pem}
        try:
            with SignedDns({"dane.test": z}, bogus={tlsa_name}) as dns:
                check_eq(dns.query(tlsa_name, 52)[0], 2, "the resolver answers SERVFAIL for the bogus TLSA")
                with CertSink(MX1, port, cert1, key1) as sink1, CertSink(MX2, port, rogue, rogue_key) as sink2:
                    with Postern(overrides=dict(dane_overrides(dns, port), **o)) as p:
                        submit(p, "friend@d.dane.test")
                        p.log_contains(r"event=delivery\.defer to=<friend@d\.dane\.test> .*status=4\.7\.5 .*"
                                       r"tls_policy=mta-sts mta_sts=\"no verified TLS\"", timeout=20)
                        check_eq(sink1.data_seen + sink2.data_seen, [], "nothing sent to either MX host")
                good, good_key = ca.issue("mx2.dane.test")
                with CertSink(MX2, port, good, good_key) as sink2:
                    with Postern(overrides=dict(dane_overrides(dns, port), **o)) as p:
                        marker = submit(p, "friend@d.dane.test")
                        check(sink2.wait_for(marker)[0].tls, "delivered to mx2 over verified TLS")
                        p.log_contains(r"event=delivery\.ok to=<friend@d\.dane\.test> relay=mx2\.dane\.test.* "
                                       r"tls_policy=mta-sts")
        finally:
            web.stop()
    finally:
        certs.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_requiretls_is_satisfied_by_dane():
    """RFC 8689 4.2.1: a certificate authenticated by DANE (here self-signed, so not PKIX
    valid) satisfies REQUIRETLS; REQUIRETLS is passed on."""
    certs = Certs()
    try:
        cert, key = certs.self_signed("mx1", "mx1.dane.test")
        port = sink_port((MX1,))
        z = zone(port, [(10, "mx1", MX1)], [("mx1", tlsa_rdata(cert, 3, 1, 1))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert, key, requiretls=True) as sink:
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.dane.test", mail_options=["REQUIRETLS"])
                got = sink.wait_for(marker)[0]
                check(got.tls, "delivered over TLS")
                check("REQUIRETLS" in got.mail_options, "REQUIRETLS passed on: %r" % got.mail_options)
                p.log_contains(r"event=delivery\.ok to=<friend@d\.dane\.test> .*tls=yes .* tls_policy=dane")
    finally:
        certs.close()


def test_requiretls_with_tlsa_mismatch_bounces():
    """The same peer (offering REQUIRETLS) whose TLSA names another key: nothing is sent,
    the message bounces with 5.7.30 as before (no fallback to unauthenticated TLS)."""
    certs = Certs()
    try:
        cert, key = certs.self_signed("mx1", "mx1.dane.test")
        other, _ = certs.self_signed("other", "mx1.dane.test")
        port = sink_port((MX1,))
        z = zone(port, [(10, "mx1", MX1)], [("mx1", tlsa_rdata(other, 3, 1, 1))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert, key, requiretls=True) as sink:
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.dane.test", mail_options=["REQUIRETLS"])
                p.log_contains(r"event=delivery\.bounce to=<friend@d\.dane\.test> .*status=5\.7\.30", timeout=30)
                bounce = wait_for(lambda: p.maildir_find(ALICE, marker), 30, what="bounce to alice")[0]
                check(b"5.7.30" in bounce, "the bounce says 5.7.30")
                check_eq(sink.data_seen, [], "nothing sent to the peer whose certificate DANE refused")
    finally:
        certs.close()


def test_requiretls_without_tlsa_needs_pkix():
    """A signed zone without TLSA (dane falls back to opportunistic TLS): REQUIRETLS still
    needs a PKIX-verified certificate, which a self-signed one is not: 5.7.30, nothing sent."""
    certs = Certs()
    try:
        cert, key = certs.self_signed("mx1", "mx1.dane.test")
        port = sink_port((MX1,))
        z = zone(port, [(10, "mx1", MX1)], [])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert, key, requiretls=True) as sink:
            with Postern(overrides=dane_overrides(dns, port)) as p:
                submit(p, "friend@d.dane.test", mail_options=["REQUIRETLS"])
                p.log_contains(r"event=delivery\.bounce to=<friend@d\.dane\.test> .*status=5\.7\.30"
                               r".*tls_policy=verify", timeout=30)
                check_eq(sink.data_seen, [], "nothing sent over unauthenticated TLS")
    finally:
        certs.close()


def cname_zone(port, tlsa):
    """d MX 10 mx1, mx1 CNAME real1 (in the same signed zone), real1 A MX1; TLSA lines given
    as (owner, rdata) with owner "mx1" (original name) or "real1" (expanded name)."""
    return ["d MX 10 mx1", "mx1 CNAME real1", "real1 A %s" % MX1] + \
        ["_%d._tcp.%s TLSA %s" % (port, owner, rdata) for owner, rdata in tlsa]


def test_cname_mx_tlsa_at_expanded_name():
    """RFC 7672 2.2.2: the MX host is an alias; TLSA at the CNAME-expanded name is used, the
    SNI is that name (the TLSA base domain)."""
    certs = Certs()
    try:
        cert, key = certs.self_signed("real1", "real1.dane.test")
        port = sink_port((MX1,))
        z = cname_zone(port, [("real1", tlsa_rdata(cert, 3, 1, 1))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert, key) as sink:
            check_eq(dns.query("mx1.dane.test", 1), (0, True), "the CNAME chain is secure")
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.dane.test")
                check(sink.wait_for(marker)[0].tls, "delivered over TLS")
                check_eq(sink.sni, ["real1.dane.test"], "SNI = the expanded name (TLSA base domain)")
                p.log_contains(r"event=delivery\.ok to=<friend@d\.dane\.test> relay=mx1\.dane\.test\S+ "
                               r"tls=yes .* tls_policy=dane")
    finally:
        certs.close()


def test_cname_mx_tlsa_only_at_original_name():
    """No TLSA at the expanded name: those of the original MX host name are used, and the SNI
    is the original name."""
    certs = Certs()
    try:
        cert, key = certs.self_signed("mx1", "mx1.dane.test")
        port = sink_port((MX1,))
        z = cname_zone(port, [("mx1", tlsa_rdata(cert, 3, 1, 1))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert, key) as sink:
            check_eq(dns.query("_%d._tcp.real1.dane.test" % port, 52)[1], True, "secure absence at the expanded name")
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.dane.test")
                check(sink.wait_for(marker)[0].tls, "delivered over TLS")
                check_eq(sink.sni, ["mx1.dane.test"], "SNI = the original name (TLSA base domain)")
                p.log_contains(r"event=delivery\.ok to=<friend@d\.dane\.test> .*tls=yes .* tls_policy=dane")
    finally:
        certs.close()


def test_cname_mx_mismatch_at_expanded_name_is_deferred():
    """A mismatching TLSA at the expanded name wins over a matching one at the original name:
    deferred with 4.7.5, nothing received."""
    certs = Certs()
    try:
        cert, key = certs.self_signed("real1", "real1.dane.test")
        other, _ = certs.self_signed("other", "real1.dane.test")
        port = sink_port((MX1,))
        z = cname_zone(port, [("real1", tlsa_rdata(other, 3, 1, 1)), ("mx1", tlsa_rdata(cert, 3, 1, 1))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, cert, key) as sink:
            with Postern(overrides=dane_overrides(dns, port)) as p:
                submit(p, "friend@d.dane.test")
                p.log_contains(r"event=delivery\.defer to=<friend@d\.dane\.test> relay=mx1\.dane\.test\S+ tls=no "
                               r"status=4\.7\.5 .* tls_policy=dane dane_fail=no_match", timeout=30)
                check_eq(sink.data_seen, [], "the MX got no message")
                check_eq(sink.count(), 0, "nothing accepted")
    finally:
        certs.close()


def test_cname_mx_ta_name_check_accepts_original_name():
    """DANE-TA at the expanded name: a leaf naming the original MX host name (a reference
    identifier too, RFC 7672 3.2.3) is accepted."""
    certs = Certs()
    try:
        ca = certs.ca("Test DANE CA")
        leaf = certs.leaf("mx1", "mx1.dane.test", ca)
        port = sink_port((MX1,))
        z = cname_zone(port, [("real1", tlsa_rdata(ca[0], 2, 0, 1))])
        with SignedDns({"dane.test": z}) as dns, CertSink(MX1, port, *leaf) as sink:
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.dane.test")
                sink.wait_for(marker)
                check_eq(sink.sni, ["real1.dane.test"], "SNI = the expanded name")
                p.log_contains(r"event=delivery\.ok to=<friend@d\.dane\.test> .* tls_policy=dane")
    finally:
        certs.close()


def test_cname_mx_into_insecure_zone_is_not_dane():
    """The CNAME chain leads into an unsigned zone: the host is not DANE-protected (its
    mismatching TLSA there is ignored), opportunistic TLS as for any insecure host."""
    certs = Certs()
    try:
        cert, key = certs.self_signed("real1", "real1.plain.test")
        other, _ = certs.self_signed("other", "real1.plain.test")
        port = sink_port((MX1,))
        signed = ["d MX 10 mx1", "mx1 CNAME real1.plain.test."]
        unsigned = ["real1 A %s" % MX1, "_%d._tcp.real1 TLSA %s" % (port, tlsa_rdata(other, 3, 1, 1))]
        with SignedDns({"dane.test": signed}, unsigned={"plain.test": unsigned}) as dns, \
                CertSink(MX1, port, cert, key) as sink:
            check_eq(dns.query("mx1.dane.test", 1), (0, False), "the chain is insecure")
            with Postern(overrides=dane_overrides(dns, port)) as p:
                marker = submit(p, "friend@d.dane.test")
                check(sink.wait_for(marker)[0].tls, "opportunistic TLS still used")
                p.log_contains(r"event=delivery\.ok to=<friend@d\.dane\.test> .*tls=yes .* tls_policy=may")
    finally:
        certs.close()


if __name__ == "__main__":
    run_tests(globals())
