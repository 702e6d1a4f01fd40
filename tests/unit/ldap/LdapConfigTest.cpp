// LDAP backend configuration: defaults, validation (unknown keys by name, bad values),
// and the secret file's permission check.
#include "LdapBackend.h"
#include "LdapConfig.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <ostream>
#include <stdexcept>
#include <string>

using namespace postern::plugins::ldap;
namespace bdata = boost::unit_test::data;
using Map = std::map<std::string, std::string>;

BOOST_AUTO_TEST_SUITE(ldap_config)

namespace {

struct TempSecret {
    std::string dir;
    std::string path;
    explicit TempSecret(mode_t mode, const std::string& text = "s3cret\n") {
        char tmpl[] = "/tmp/postern-ldap-test-XXXXXX";
        dir = ::mkdtemp(tmpl);
        path = dir + "/secret";
        std::ofstream(path) << text;
        ::chmod(path.c_str(), mode);
    }
    ~TempSecret() {
        ::unlink(path.c_str());
        ::rmdir(dir.c_str());
    }
};

Map minimal() {
    return {{"uris", "ldap://127.0.0.1:389"}, {"base", "dc=example,dc=test"}};
}

BOOST_AUTO_TEST_CASE(defaults) {
    auto c = LdapConfig::fromMap(minimal());
    BOOST_TEST(c.uris.size() == 1U);
    BOOST_TEST((c.mode == LdapMode::Search));
    BOOST_TEST(c.userFilter.text() == "(&(objectClass=inetOrgPerson)(mail=%u))");
    BOOST_TEST(c.recipientFilter.text() == "(|(mail=%u)(mailAlternateAddress=%u))");
    BOOST_TEST(c.aliasFilter.empty());
    BOOST_TEST(c.aliasAttribute == "mailForwardingAddress");
    BOOST_TEST(c.mailAttributes.size() == 2U);
    BOOST_TEST((c.tlsRequireCert == TlsRequireCert::Demand));
    BOOST_TEST(!c.startTls);
    BOOST_TEST(!c.referrals);
    BOOST_TEST(c.poolSize == 4);
    BOOST_TEST(c.probeInterval.count() == 5000);
    BOOST_TEST(c.networkTimeout.count() == 5000);
    BOOST_TEST(c.bindTimeout.count() == 5000);
    BOOST_TEST(c.searchTimeout.count() == 5000);
    BOOST_TEST(c.keepaliveIdle.count() == 60000);
    BOOST_TEST(c.keepaliveInterval.count() == 10000);
    BOOST_TEST(c.keepaliveProbes == 3);
}

BOOST_AUTO_TEST_CASE(fullConfig) {
    TempSecret secret(0600);
    Map m = minimal();
    m["uris"] = "ldap://a:389 ldap://b:389, ldap://c";
    m["bind_dn"] = "cn=postern,dc=example,dc=test";
    m["bind_password_file"] = secret.path;
    m["mail_attributes"] = "mail";
    m["disabled_attribute"] = "accountStatus";
    m["disabled_value"] = "disabled";
    m["local_domains"] = "Example.TEST., other.test";
    m["starttls"] = "yes";
    m["tls_require_cert"] = "allow";
    m["network_timeout"] = "250ms";
    m["search_timeout"] = "1m";
    m["pool_size"] = "2";
    m["probe_interval"] = "200ms";
    m["referrals"] = "yes";
    m["keepalive_idle"] = "2m";
    m["keepalive_interval"] = "5s";
    m["keepalive_probes"] = "5";
    auto c = LdapConfig::fromMap(m);
    BOOST_TEST(c.uris.size() == 3U);
    BOOST_TEST(c.uris[2] == "ldap://c");
    BOOST_TEST(c.bindPassword == "s3cret");
    BOOST_TEST(c.mailAttributes.size() == 1U);
    BOOST_TEST(c.localDomains.size() == 2U);
    BOOST_TEST(c.localDomains[0] == "example.test");
    BOOST_TEST(c.startTls);
    BOOST_TEST((c.tlsRequireCert == TlsRequireCert::Allow));
    BOOST_TEST(c.networkTimeout.count() == 250);
    BOOST_TEST(c.searchTimeout.count() == 60000);
    BOOST_TEST(c.poolSize == 2);
    BOOST_TEST(c.referrals);
    BOOST_TEST(c.keepaliveIdle.count() == 120000);
    BOOST_TEST(c.keepaliveInterval.count() == 5000);
    BOOST_TEST(c.keepaliveProbes == 5);
}

struct BadRow {
    Map changes;
    std::string error;
};
std::ostream& operator<<(std::ostream& o, const BadRow& r) { return o << r.error; }

const BadRow BadRows[] = {
    {{{"uri", "ldap://x"}}, "unknown config key 'uri'"},
    {{{"domains", "example.test"}}, "unknown config key 'domains'"},
    {{{"uris", ""}}, "'uris' is required"},
    {{{"uris", "http://x"}}, "not an ldap:// or ldaps:// URI"},
    {{{"uris", "ldaps://x"}, {"starttls", "yes"}}, "ldaps:// but starttls = yes"},
    {{{"base", ""}}, "'base' is required"},
    {{{"mode", "magic"}}, "for mode"},
    {{{"mode", "bind"}}, "needs dn_template"},
    {{{"dn_template", "uid=%n,dc=test"}}, "only used with mode = bind"},
    {{{"user_filter", "uid=%n"}}, "user_filter"},
    {{{"recipient_filter", "(mail=%q)"}}, "recipient_filter"},
    {{{"alias_filter", "(mail=%u"}}, "alias_filter"},
    {{{"bind_dn", "cn=x"}}, "bind_password_file is not"},
    {{{"bind_password_file", "/nonexistent"}}, "bind_dn is not"},
    {{{"bind_dn", "cn=x"}, {"bind_password_file", "/nonexistent/secret"}}, "cannot open"},
    {{{"disabled_attribute", "accountStatus"}}, "set together"},
    // Matched against the user's own entry: a placeholder would go out as it is, match
    // nothing, and let a disabled account log in.
    {{{"disabled_filter", "(&(mail=%u)(accountStatus=disabled))"}}, "takes no %u, %n or %d"},
    {{{"disabled_filter", "(uid=%n)"}}, "takes no %u, %n or %d"},
    {{{"mail_attributes", "mail, (bad)"}}, "invalid attribute name"},
    {{{"starttls", "maybe"}}, "starttls"},
    {{{"tls_require_cert", "hard"}}, "tls_require_cert"},
    {{{"ca_file", "/nonexistent/ca.pem"}}, "ca_file"},
    {{{"network_timeout", "5x"}}, "network_timeout"},
    {{{"network_timeout", "2d"}}, "network_timeout: at most 1d"},
    {{{"bind_timeout", "0s"}}, "bind_timeout must be greater than 0"},
    {{{"search_timeout", "-1s"}}, "search_timeout"},
    {{{"pool_size", "0"}}, "pool_size"},
    {{{"pool_size", "3x"}}, "pool_size"},
    {{{"probe_interval", "soon"}}, "probe_interval"},
    {{{"referrals", "sometimes"}}, "referrals"},
    {{{"keepalive_idle", "500ms"}}, "keepalive_idle must be a whole number of seconds"},
    {{{"keepalive_interval", "1500ms"}}, "keepalive_interval must be a whole number of seconds"},
    {{{"keepalive_probes", "0"}}, "keepalive_probes"},
    {{{"keepalive_probes", ""}}, "keepalive_probes"},
};

BOOST_DATA_TEST_CASE(rejects, bdata::make(BadRows), row) {
    Map m = minimal();
    for (const auto& [k, v] : row.changes) {
        m[k] = v;
    }
    try {
        LdapConfig::fromMap(m);
        BOOST_FAIL("accepted: " + row.error);
    } catch (const std::invalid_argument& e) {
        BOOST_TEST(std::string(e.what()).find(row.error) != std::string::npos, e.what());
    }
}

// The service password must not be readable (or writable) by group or others.
BOOST_DATA_TEST_CASE(secretFileModes, bdata::make({0600, 0400, 0640, 0604, 0620, 0602, 0644}), mode) {
    TempSecret secret(static_cast<mode_t>(mode));
    Map m = minimal();
    m["bind_dn"] = "cn=postern,dc=example,dc=test";
    m["bind_password_file"] = secret.path;
    const bool shouldPass = (mode & 077) == 0;
    try {
        auto c = LdapConfig::fromMap(m);
        BOOST_TEST(shouldPass);
        BOOST_TEST(c.bindPassword == "s3cret");
    } catch (const std::invalid_argument& e) {
        BOOST_TEST(!shouldPass, e.what());
        BOOST_TEST(std::string(e.what()).find("group/world-accessible") != std::string::npos, e.what());
    }
}

BOOST_AUTO_TEST_CASE(emptySecretFileIsRefused) {
    TempSecret secret(0600, "\n");
    Map m = minimal();
    m["bind_dn"] = "cn=postern,dc=example,dc=test";
    m["bind_password_file"] = secret.path;
    BOOST_CHECK_THROW(LdapConfig::fromMap(m), std::invalid_argument);
}

// Without a reachable server: an empty password is refused before any network I/O
// (RFC 4513 5.1.2), and an unreachable server is TempFail, never BadCredentials.
BOOST_AUTO_TEST_CASE(emptyPasswordAndUnreachableServer) {
    Map m = minimal();
    m["uris"] = "ldap://127.0.0.1:1";  // nothing listens on port 1
    m["network_timeout"] = "500ms";
    LdapBackend backend(LdapConfig::fromMap(m));
    auto empty = backend.authenticate("alice@example.test", "", "smtp", "127.0.0.1");
    BOOST_TEST((empty.status == postern::plugins::api::Status::BadCredentials));
    BOOST_TEST(empty.verified);
    auto down = backend.authenticate("alice@example.test", "pw", "smtp", "127.0.0.1");
    BOOST_TEST((down.status == postern::plugins::api::Status::TempFail), down.detail);
    auto lookup = backend.lookup("alice@example.test");
    BOOST_TEST((lookup.status == postern::plugins::api::Status::TempFail), lookup.detail);
}

}  // namespace

BOOST_AUTO_TEST_SUITE_END()
