// AuthFacade with SMTPUTF8 addresses over the real passwd-file plugin: UTF-8 local parts
// compared byte for byte after ASCII-only lower-casing; domains in U-label and A-label form
// are one domain whichever spelling the backend stores (core/Idna).
#include "auth/AuthFacade.h"

#include "unit/auth/AuthTestSupport.h"
#include "auth/PluginLoader.h"

#include <boost/test/unit_test.hpp>

namespace postern::auth {
namespace {

using core::Answer;
using Strings = std::vector<std::string>;

struct IdnaFixture {
    IdnaFixture() {
        test::writeFile(tmp.file("passwd"),
                        "j\xC3\xB6rg@example.test:{PLAIN}joergpw\n"
                        "user@b\xC3\xBC" "cher.example:{PLAIN}userpw\n"
                        "anna@xn--caf-dma.example:{PLAIN}annapw::::::senders=Anna@Caf\xC3\xA9.example\n");
        test::writeFile(tmp.file("aliases"),
                        "gr\xC3\xBC\xC3\x9F" "e@b\xC3\xBC" "cher.example: J\xC3\xB6rg@example.test, "
                        "friend@m\xC3\xBCnchen.test, user\n");
        handle = loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}, {"aliases", tmp.file("aliases")}});
    }
    core::AuthRequest request(const std::string& user, const std::string& password) const {
        core::AuthRequest r;
        r.user = user;
        r.password = password;
        r.service = "smtp";
        r.client.ip = Poco::Net::IPAddress("192.0.2.7");
        r.sessionId = "1f3a";
        return r;
    }
    test::TempDir tmp;
    PluginLoader loader{test::pluginDir()};
    BackendHandle handle;
    Poco::AutoPtr<test::CaptureChannel> log = test::captureLog("postern.auth");
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(AuthFacadeIdnaTest, IdnaFixture)

BOOST_AUTO_TEST_CASE(domainsMatchInEitherSpelling) {
    // The binding names one domain as a U-label, the other as an A-label.
    AuthFacade facade({{"users", handle.get(), {"B\xC3\x9C" "CHER.example", "xn--caf-dma.example", "example.test"}}});
    BOOST_TEST((facade.isLocalDomain("xn--bcher-kva.example") == Answer::Yes));
    BOOST_TEST((facade.isLocalDomain("b\xC3\xBC" "cher.example") == Answer::Yes));
    BOOST_TEST((facade.isLocalDomain("xn--caf-dma.example") == Answer::Yes));
    BOOST_TEST((facade.isLocalDomain("caf\xC3\xA9.example") == Answer::Yes));
    BOOST_TEST((facade.isLocalDomain("xn--mnchen-3ya.test") == Answer::No));

    for (std::string a : {"user@xn--bcher-kva.example", "user@b\xC3\xBC" "cher.example", "USER@XN--BCHER-KVA.example"}) {
        auto r = facade.lookupRecipient(a);
        BOOST_TEST((r.answer == Answer::Yes), a);
        // The mailbox is named by the spelling the backend stores, whichever was asked.
        BOOST_TEST(r.mailboxes == Strings{"b\xC3\xBC" "cher.example/user"}, boost::test_tools::per_element());
    }
    auto anna = facade.lookupRecipient("anna@caf\xC3\xA9.example");
    BOOST_TEST((anna.answer == Answer::Yes));
    BOOST_TEST(anna.mailboxes == Strings{"xn--caf-dma.example/anna"}, boost::test_tools::per_element());
    BOOST_TEST((facade.lookupRecipient("nobody@xn--bcher-kva.example").answer == Answer::No));
}

BOOST_AUTO_TEST_CASE(utf8LocalPartsAreComparedByteForByte) {
    AuthFacade facade({{"users", handle.get(), {"*"}}});
    auto j = facade.lookupRecipient("J\xC3\xB6rg@Example.TEST");  // ASCII letters fold
    BOOST_TEST((j.answer == Answer::Yes));
    BOOST_TEST(j.mailboxes == Strings{"example.test/j\xC3\xB6rg"}, boost::test_tools::per_element());
    // Ö is not ö: no Unicode case folding (as Postfix), and no byte is changed.
    BOOST_TEST((facade.lookupRecipient("j\xC3\x96rg@example.test").answer == Answer::No));
    auto ok = facade.authenticate(request("j\xC3\xB6rg@example.test", "joergpw"));
    BOOST_TEST((ok.status == core::AuthStatus::Ok));
    BOOST_TEST(ok.identity.user == "j\xC3\xB6rg@example.test");
    BOOST_TEST(ok.identity.mailbox == "example.test/j\xC3\xB6rg");
    // Sender addresses are kept with A-label domains, as MAIL FROM paths are parsed.
    auto anna = facade.authenticate(request("anna@xn--caf-dma.example", "annapw"));
    BOOST_TEST((anna.status == core::AuthStatus::Ok));
    BOOST_TEST(anna.identity.senderAddresses == Strings{"anna@xn--caf-dma.example"}, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(aliasesWithUtf8AndIdnDestinations) {
    AuthFacade facade({{"users", handle.get(), {"*"}}});
    for (std::string a : {"gr\xC3\xBC\xC3\x9F" "e@xn--bcher-kva.example", "gr\xC3\xBC\xC3\x9F" "e@b\xC3\xBC" "cher.example"}) {
        auto r = facade.lookupRecipient(a);
        BOOST_TEST((r.answer == Answer::Yes), a);
        BOOST_TEST(r.mailboxes == (Strings{"example.test/j\xC3\xB6rg", "b\xC3\xBC" "cher.example/user"}),
                   boost::test_tools::per_element());
        // A remote destination leaves with its A-label domain (an ASCII envelope domain).
        BOOST_TEST(r.forwards == Strings{"friend@xn--mnchen-3ya.test"}, boost::test_tools::per_element());
    }
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::auth
