// Fuzz target: app passwords (plugins/api/AppPassword.h and the passwd-file field). The
// password a client sends is untrusted: idOf() must only ever return a valid id taken from its
// first 8 bytes. The first line of the input is also tried as a network list, a scope list and
// a passwd-file app_password field; the second line as a client address. Invariants: never
// crashes; a refusal of a field is std::invalid_argument; a parsed field formats back to text
// that parses to the same entry; refusal() of an entry without networks, scope all and no
// expiry is "" for smtp and pop3 from any address. The whole input is also parsed as a
// passwd-file and as an aliases file (PasswdFile::parse): it either throws PasswdFileError or
// gives users and broken users that never overlap, each found under its own key.
#include "FuzzAssert.h"
#include "PasswdFile.h"
#include "api/AppPassword.h"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ap = postern::plugins::api::apppw;
namespace pf = postern::plugins::passwdfile;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    if (auto id = ap::idOf(text)) {
        FUZZ_CHECK(ap::validId(*id));
        FUZZ_CHECK(text.compare(0, ap::IdLength, *id) == 0);
    }
    const auto nl = text.find('\n');
    const std::string first = text.substr(0, nl);
    const std::string second = nl == std::string::npos ? std::string() : text.substr(nl + 1);

    if (ap::validNetworks(first)) {
        for (const auto& n : ap::splitList(first)) FUZZ_CHECK(ap::Network::parse(n).has_value());
    }
    if (unsigned s = ap::parseScopes(first); s != 0) FUZZ_CHECK(ap::parseScopes(ap::scopesText(s)) == s);

    try {
        ap::Entry e = pf::parseAppPasswordField("abcdefgh", first);
        const std::string again = pf::formatAppPasswordField(e);
        ap::Entry f = pf::parseAppPasswordField("abcdefgh", again);
        FUZZ_CHECK(f.scopes == e.scopes && f.created == e.created && f.expires == e.expires &&
                   f.networks == e.networks && f.label == e.label && f.hash == e.hash);
        (void)ap::refusal(e, "smtp", second, 0);
    } catch (const std::invalid_argument&) {
    }

    ap::Entry open;
    open.id = "abcdefgh";
    open.scopes = ap::ScopeAll;
    FUZZ_CHECK(ap::refusal(open, "smtp", second, 1).empty());
    FUZZ_CHECK(ap::refusal(open, "pop3", second, 1).empty());
    open.networks = "0.0.0.0/0,::/0";
    unsigned char ip[16];
    if (ap::parseAddress(second, ip)) FUZZ_CHECK(ap::refusal(open, "smtp", second, 1).empty());

    for (const bool asAliases : {false, true}) {
        try {
            const pf::PasswdFile file = asAliases ? pf::PasswdFile::parse("", "passwd", text, "aliases", {})
                                                  : pf::PasswdFile::parse(text, "passwd", "", "aliases", {});
            std::size_t users = 0;
            file.forEachUser([&](const pf::PasswdUser& u) {
                ++users;
                FUZZ_CHECK(file.findUser(u.user) == &u);
                FUZZ_CHECK(file.findBroken(u.user) == nullptr);
            });
            FUZZ_CHECK(users == file.userCount());
            if (file.brokenCount() > 0) {
                bool threw = false;
                try {
                    file.requireNoBrokenUsers();
                } catch (const pf::PasswdFileError&) {
                    threw = true;
                }
                FUZZ_CHECK(threw);
            }
        } catch (const pf::PasswdFileError&) {
        }
    }
    return 0;
}
