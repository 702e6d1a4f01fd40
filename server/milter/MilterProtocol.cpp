#include "milter/MilterProtocol.h"

namespace postern::milter {

namespace {

void put32(std::string& s, std::uint32_t v) {
    s += static_cast<char>((v >> 24) & 0xff);
    s += static_cast<char>((v >> 16) & 0xff);
    s += static_cast<char>((v >> 8) & 0xff);
    s += static_cast<char>(v & 0xff);
}

std::uint32_t get32(std::string_view s, std::size_t at) {
    return (std::uint32_t(static_cast<unsigned char>(s[at])) << 24) |
           (std::uint32_t(static_cast<unsigned char>(s[at + 1])) << 16) |
           (std::uint32_t(static_cast<unsigned char>(s[at + 2])) << 8) | std::uint32_t(static_cast<unsigned char>(s[at + 3]));
}

void putString(std::string& s, std::string_view v) {
    // A NUL inside a value would end it early on the milter side: cut there.
    auto nul = v.find('\0');
    s.append(v.substr(0, nul));
    s += '\0';
}

// Reads NUL-terminated strings from data; false if one is unterminated.
bool strings(std::string_view data, std::vector<std::string_view>& out) {
    std::size_t pos = 0;
    while (pos < data.size()) {
        auto nul = data.find('\0', pos);
        if (nul == std::string_view::npos) return false;
        out.push_back(data.substr(pos, nul - pos));
        pos = nul + 1;
    }
    return true;
}

bool printable(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return false;
    return true;
}

bool validReplyLine(std::string_view line, std::string_view code, bool last) {
    if (line.size() < 3 || line.substr(0, 3) != code) return false;
    if (line.size() == 3) return last;
    if (line[3] != (last ? ' ' : '-')) return false;
    return printable(line.substr(4));
}

}  // namespace

std::string packet(char command, std::string_view data) {
    std::string s;
    s.reserve(5 + data.size());
    put32(s, static_cast<std::uint32_t>(data.size() + 1));
    s += command;
    s.append(data);
    return s;
}

std::string optNeg(std::uint32_t version, std::uint32_t actions, std::uint32_t protocol) {
    std::string d;
    put32(d, version);
    put32(d, actions);
    put32(d, protocol);
    return packet(cmd::OptNeg, d);
}

std::string macros(char forCommand, const Macros& m) {
    std::string d(1, forCommand);
    for (const auto& [name, value] : m) {
        putString(d, name);
        putString(d, value);
    }
    return packet(cmd::Macro, d);
}

std::string connect(std::string_view hostname, char family, std::uint16_t port, std::string_view address) {
    std::string d;
    putString(d, hostname);
    d += family;
    if (family != 'U') {
        d += static_cast<char>(port >> 8);
        d += static_cast<char>(port & 0xff);
        putString(d, address);
    }
    return packet(cmd::Connect, d);
}

std::string helo(std::string_view name) {
    std::string d;
    putString(d, name);
    return packet(cmd::Helo, d);
}

std::string envelope(char command, std::string_view address, const std::vector<std::string>& args) {
    std::string d;
    putString(d, "<" + std::string(address) + ">");
    for (const auto& a : args) putString(d, a);
    return packet(command, d);
}

std::string header(std::string_view name, std::string_view value) {
    std::string d;
    putString(d, name);
    putString(d, value);
    return packet(cmd::Header, d);
}

std::uint32_t Reply::neededAction() const {
    switch (kind) {
    case Kind::AddHeader: return act::AddHdrs;
    case Kind::InsHeader: return act::AddHdrs;
    case Kind::ChgHeader: return act::ChgHdrs;
    // The command decides, not whether it has arguments: libmilter lets a milter that asked
    // for ADDRCPT_PAR only call smfi_addrcpt_par(ctx, rcpt, NULL).
    case Kind::AddRcpt: return withParams ? act::AddRcptPar : act::AddRcpt;
    case Kind::DelRcpt: return act::DelRcpt;
    case Kind::ChgFrom: return act::ChgFrom;
    case Kind::ReplBody: return act::ChgBody;
    case Kind::Quarantine: return act::Quarantine;
    default: return 0;
    }
}

bool Reply::isVerdict() const {
    switch (kind) {
    case Kind::Accept:
    case Kind::Continue:
    case Kind::Discard:
    case Kind::Reject:
    case Kind::TempFail:
    case Kind::ReplyCode:
    case Kind::Skip:
    case Kind::ConnFail:
    case Kind::Shutdown: return true;
    default: return false;
    }
}

bool validReplyCode(std::string_view text) {
    if (text.size() < 3) return false;
    if (text[0] != '4' && text[0] != '5') return false;
    if (text[1] < '0' || text[1] > '5' || text[2] < '0' || text[2] > '9') return false;
    const std::string_view code = text.substr(0, 3);
    std::size_t pos = 0;
    while (true) {
        auto end = text.find("\r\n", pos);
        bool last = end == std::string_view::npos;
        std::string_view line = text.substr(pos, last ? std::string_view::npos : end - pos);
        if (!validReplyLine(line, code, last)) return false;
        if (last) break;
        pos = end + 2;
    }
    // An enhanced code, when present, must be of the same class (RFC 3463).
    if (text.size() > 5 && (text[4] == '4' || text[4] == '5') && text[5] == '.' && text[4] != text[0]) return false;
    return true;
}

std::optional<Reply> parseReply(std::string_view p, std::string& error) {
    if (p.empty()) {
        error = "empty packet";
        return std::nullopt;
    }
    Reply r;
    const char c = p[0];
    std::string_view data = p.substr(1);
    std::vector<std::string_view> s;
    auto needStrings = [&](std::size_t min, std::size_t max) {
        s.clear();
        if (!strings(data, s) || s.size() < min || s.size() > max) {
            error = std::string("malformed '") + c + "' reply";
            return false;
        }
        return true;
    };
    auto noData = [&](Reply::Kind k) -> std::optional<Reply> {
        r.kind = k;
        return r;  // data after a verdict is ignored (as libmilter-based MTAs do)
    };
    switch (c) {
    case 'a': return noData(Reply::Kind::Accept);
    case 'c': return noData(Reply::Kind::Continue);
    case 'd': return noData(Reply::Kind::Discard);
    case 'r': return noData(Reply::Kind::Reject);
    case 't': return noData(Reply::Kind::TempFail);
    case 's': return noData(Reply::Kind::Skip);
    case 'p': return noData(Reply::Kind::Progress);
    case 'f': return noData(Reply::Kind::ConnFail);
    case '4': return noData(Reply::Kind::Shutdown);
    case 'y': {
        if (!needStrings(1, 1)) return std::nullopt;
        std::string t(s[0]);
        // libmilter sends multi-line replies with CRLF between lines.
        if (!validReplyCode(t)) {
            error = "bad reply code";
            return std::nullopt;
        }
        r.kind = Reply::Kind::ReplyCode;
        r.text = std::move(t);
        return r;
    }
    case 'h':
    case 'i':
    case 'm': {
        if (c != 'h') {
            if (data.size() < 4) {
                error = "short header reply";
                return std::nullopt;
            }
            r.index = get32(data, 0);
            data = data.substr(4);
        }
        if (!needStrings(2, 2)) return std::nullopt;
        r.name = std::string(s[0]);
        r.text = std::string(s[1]);
        if (r.name.empty() || !printable(r.name) || r.name.find(':') != std::string::npos ||
            r.name.find(' ') != std::string::npos) {
            error = "bad header name";
            return std::nullopt;
        }
        r.kind = c == 'h' ? Reply::Kind::AddHeader : c == 'i' ? Reply::Kind::InsHeader : Reply::Kind::ChgHeader;
        return r;
    }
    case '+':
    case '2':
    case '-':
    case 'e': {
        if (!needStrings(1, c == '+' || c == '-' ? 1 : 2)) return std::nullopt;
        std::string_view a = s[0];
        if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
        if (!printable(a) || a.find(' ') != std::string_view::npos || a.find('<') != std::string_view::npos ||
            a.find('>') != std::string_view::npos || (c != 'e' && a.empty())) {
            error = "bad address";
            return std::nullopt;
        }
        r.text = std::string(a);
        if (s.size() > 1) {
            if (!printable(s[1])) {
                error = "bad arguments";
                return std::nullopt;
            }
            r.args = std::string(s[1]);
        }
        r.kind = c == '-' ? Reply::Kind::DelRcpt : c == 'e' ? Reply::Kind::ChgFrom : Reply::Kind::AddRcpt;
        r.withParams = c == '2';
        return r;
    }
    case 'b':
        r.kind = Reply::Kind::ReplBody;
        r.text = std::string(data);
        return r;
    case 'q':
        if (!needStrings(1, 1)) return std::nullopt;
        r.kind = Reply::Kind::Quarantine;
        r.text = std::string(s[0]);
        return r;
    case 'l': return noData(Reply::Kind::SetSymList);
    case 'O': {
        if (data.size() < 12) {
            error = "short option negotiation";
            return std::nullopt;
        }
        r.kind = Reply::Kind::OptNeg;
        r.version = get32(data, 0);
        r.actions = get32(data, 4);
        r.protocol = get32(data, 8);
        return r;  // macro lists after the three words are not used
    }
    default: break;
    }
    error = "unknown reply '" + std::string(printable(std::string_view(&c, 1)) ? std::string(1, c) : "?") + "'";
    return std::nullopt;
}

std::optional<std::string> PacketReader::next() {
    if (bad_) return std::nullopt;
    if (buf_.size() - pos_ < 4) return std::nullopt;
    const std::uint32_t len = get32(buf_, pos_);
    if (len == 0 || len > MaxPacket) {
        bad_ = true;
        return std::nullopt;
    }
    if (buf_.size() - pos_ - 4 < len) return std::nullopt;
    std::string out = buf_.substr(pos_ + 4, len);
    pos_ += 4 + len;
    if (pos_ == buf_.size()) {
        buf_.clear();
        pos_ = 0;
    }
    return out;
}

const char* kindName(Reply::Kind k) {
    switch (k) {
    case Reply::Kind::Accept: return "accept";
    case Reply::Kind::Continue: return "continue";
    case Reply::Kind::Discard: return "discard";
    case Reply::Kind::Reject: return "reject";
    case Reply::Kind::TempFail: return "tempfail";
    case Reply::Kind::ReplyCode: return "reply_code";
    case Reply::Kind::Skip: return "skip";
    case Reply::Kind::Progress: return "progress";
    case Reply::Kind::ConnFail: return "conn_fail";
    case Reply::Kind::Shutdown: return "shutdown";
    case Reply::Kind::AddHeader: return "add_header";
    case Reply::Kind::InsHeader: return "insert_header";
    case Reply::Kind::ChgHeader: return "change_header";
    case Reply::Kind::AddRcpt: return "add_rcpt";
    case Reply::Kind::DelRcpt: return "delete_rcpt";
    case Reply::Kind::ChgFrom: return "change_from";
    case Reply::Kind::ReplBody: return "replace_body";
    case Reply::Kind::Quarantine: return "quarantine";
    case Reply::Kind::SetSymList: return "set_symlist";
    case Reply::Kind::OptNeg: return "optneg";
    }
    return "?";
}

}  // namespace postern::milter
