#include "smtpproto/DsnParams.h"

#include "smtpproto/Xtext.h"

namespace postern::smtp {

namespace {

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool equalsNoCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (upper(a[i]) != upper(b[i])) return false;
    return true;
}

// addr-type = atom (RFC 3461 4.2): RFC 5322 atext.
bool isAtom(std::string_view s) {
    if (s.empty()) return false;
    for (unsigned char c : s) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) != std::string_view::npos;
        if (!ok) return false;
    }
    return true;
}

DsnParamResult bad(std::string& why, std::string_view what) {
    why = std::string(what);
    return DsnParamResult::Bad;
}

}  // namespace

unsigned parseNotify(std::string_view value) {
    if (equalsNoCase(value, "NEVER")) return core::notify::Never;
    unsigned bits = 0;
    while (true) {
        auto comma = value.find(',');
        std::string_view item = value.substr(0, comma);
        unsigned bit = equalsNoCase(item, "SUCCESS")   ? core::notify::Success
                       : equalsNoCase(item, "FAILURE") ? core::notify::Failure
                       : equalsNoCase(item, "DELAY")   ? core::notify::Delay
                                                       : 0;  // unknown, empty, or NEVER among others
        if (bit == 0 || (bits & bit) != 0) return 0;
        bits |= bit;
        if (comma == std::string_view::npos) break;
        value.remove_prefix(comma + 1);
    }
    return bits;
}

std::string formatNotify(unsigned bits) {
    if (bits & core::notify::Never) return "NEVER";
    std::string out;
    auto add = [&](unsigned bit, const char* name) {
        if (!(bits & bit)) return;
        if (!out.empty()) out += ',';
        out += name;
    };
    add(core::notify::Success, "SUCCESS");
    add(core::notify::Failure, "FAILURE");
    add(core::notify::Delay, "DELAY");
    return out;
}

std::string formatRet(core::DsnRet ret) {
    switch (ret) {
    case core::DsnRet::Full: return "FULL";
    case core::DsnRet::Headers: return "HDRS";
    case core::DsnRet::Unspecified: break;
    }
    return "";
}

DsnParamResult parseMailDsnParam(std::string_view key, std::optional<std::string_view> value, core::MessageDsn& dsn,
                                 std::string& why) {
    if (equalsNoCase(key, "RET")) {
        if (dsn.ret != core::DsnRet::Unspecified) return bad(why, "RET given twice");
        if (!value) return bad(why, "RET without value");
        if (equalsNoCase(*value, "FULL")) dsn.ret = core::DsnRet::Full;
        else if (equalsNoCase(*value, "HDRS")) dsn.ret = core::DsnRet::Headers;
        else return bad(why, "RET value");
        return DsnParamResult::Ok;
    }
    if (equalsNoCase(key, "ENVID")) {
        if (!dsn.envid.empty()) return bad(why, "ENVID given twice");
        if (!value || value->empty()) return bad(why, "ENVID without value");
        if (value->size() > MaxEnvidLength) return bad(why, "ENVID longer than 100 characters");
        auto decoded = decodeXtext(*value);
        if (!decoded || decoded->empty()) return bad(why, "ENVID is not xtext");
        dsn.envid = std::move(*decoded);
        return DsnParamResult::Ok;
    }
    return DsnParamResult::NotDsn;
}

DsnParamResult parseRcptDsnParam(std::string_view key, std::optional<std::string_view> value,
                                 core::RecipientDsn& dsn, std::string& why) {
    if (equalsNoCase(key, "NOTIFY")) {
        if (dsn.notify != 0) return bad(why, "NOTIFY given twice");
        if (!value) return bad(why, "NOTIFY without value");
        unsigned bits = parseNotify(*value);
        if (bits == 0) return bad(why, "NOTIFY value");
        dsn.notify = bits;
        return DsnParamResult::Ok;
    }
    if (equalsNoCase(key, "ORCPT")) {
        if (!dsn.orcptType.empty()) return bad(why, "ORCPT given twice");
        if (!value) return bad(why, "ORCPT without value");
        if (value->size() > MaxOrcptLength) return bad(why, "ORCPT longer than 500 characters");
        auto semi = value->find(';');
        if (semi == std::string_view::npos) return bad(why, "ORCPT without ';'");
        std::string_view type = value->substr(0, semi);
        if (!isAtom(type)) return bad(why, "ORCPT address type");
        auto decoded = decodeXtext(value->substr(semi + 1));
        if (!decoded || decoded->empty()) return bad(why, "ORCPT address is not xtext");
        dsn.orcptType = std::string(type);
        dsn.orcpt = std::move(*decoded);
        return DsnParamResult::Ok;
    }
    return DsnParamResult::NotDsn;
}

}  // namespace postern::smtp
