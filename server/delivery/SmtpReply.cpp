#include "delivery/SmtpReply.h"

#include <cctype>

namespace postern::delivery {

namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// "d.ddd.ddd" at the start of `text` (RFC 3463 2: class.subject.detail).
std::size_t enhancedLength(std::string_view text) {
    std::size_t i = 0;
    if (text.size() < 5 || (text[0] != '2' && text[0] != '4' && text[0] != '5') || text[1] != '.') return 0;
    i = 2;
    for (int part = 0; part < 2; ++part) {
        std::size_t start = i;
        while (i < text.size() && isDigit(text[i]) && i - start < 3) ++i;
        if (i == start) return 0;
        if (part == 0) {
            if (i >= text.size() || text[i] != '.') return 0;
            ++i;
        }
    }
    if (i < text.size() && text[i] != ' ') return 0;
    return i;
}

}  // namespace

std::string SmtpReply::enhanced() const {
    if (code == 0 || lines.empty()) return "";
    std::size_t n = enhancedLength(lines.front());
    if (n == 0 || lines.front()[0] != static_cast<char>('0' + code / 100)) return "";
    return lines.front().substr(0, n);
}

std::string SmtpReply::status() const {
    std::string e = enhanced();
    if (!e.empty()) return e;
    if (code == 0) return "4.4.2";
    return std::to_string(code / 100) + ".0.0";
}

std::string SmtpReply::text() const {
    std::string out = code == 0 ? std::string() : std::to_string(code);
    for (const auto& l : lines) {
        if (!out.empty()) out += ' ';
        out += l;
    }
    return out;
}

SmtpReply SmtpReply::local(std::string reason) {
    SmtpReply r;
    r.lines.push_back(std::move(reason));
    return r;
}

ReplyParser::Result ReplyParser::feed(std::string_view line) {
    if (line.size() < 3 || !isDigit(line[0]) || !isDigit(line[1]) || !isDigit(line[2]) || line[0] < '2' ||
        line[0] > '5' || (line.size() > 3 && line[3] != ' ' && line[3] != '-'))
        return Result::Malformed;
    int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (!reply_.lines.empty() && code != reply_.code) return Result::Malformed;
    reply_.code = code;
    reply_.lines.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view());
    bool more = line.size() > 3 && line[3] == '-';
    return more ? Result::NeedMore : Result::Done;
}

}  // namespace postern::delivery
