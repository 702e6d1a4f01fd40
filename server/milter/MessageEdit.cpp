#include "milter/MessageEdit.h"

#include <algorithm>
#include <cctype>

namespace postern::milter {

namespace {

bool equalNoCase(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

// A header field line: ftext (RFC 5322 2.2), then blanks the obsolete syntax allows
// before the colon (RFC 5322 4.5 obs-optional, which a receiver must accept; Postfix's
// is_header() too), then ':'.
bool fieldName(std::string_view line, std::size_t& colon) {
    colon = line.find(':');
    if (colon == std::string_view::npos) return false;
    const std::size_t end = headerName(line.substr(0, colon)).size();
    if (end == 0) return false;
    for (std::size_t i = 0; i < end; ++i) {
        unsigned char c = static_cast<unsigned char>(line[i]);
        if (c <= 32 || c >= 127) return false;
    }
    return true;
}

// The stored value for one a milter gave (folded lines get CRLF): " value", or as given
// when HDR_LEADSPC was negotiated (the milter gives its own leading space).
std::string storedValue(std::string_view v, bool leadSpace) { return (leadSpace ? "" : " ") + toCrlf(v); }

}  // namespace

std::string_view headerName(std::string_view stored) {
    while (!stored.empty() && (stored.back() == ' ' || stored.back() == '\t')) stored.remove_suffix(1);
    return stored;
}

std::string toCrlf(std::string_view s) {
    std::string out;
    out.reserve(s.size() + s.size() / 32);
    for (std::size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '\r') {
            out += "\r\n";
            if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
        } else if (c == '\n') {
            out += "\r\n";
        } else {
            out += c;
        }
    }
    return out;
}

MessageParts splitMessage(std::string_view raw) {
    MessageParts m;
    std::size_t pos = 0;
    while (pos < raw.size()) {
        auto eol = raw.find("\r\n", pos);
        std::size_t next = eol == std::string_view::npos ? raw.size() : eol + 2;
        std::string_view line = raw.substr(pos, (eol == std::string_view::npos ? raw.size() : eol) - pos);
        if (line.empty() && eol != std::string_view::npos) {
            m.hasSeparator = true;
            m.body = std::string(raw.substr(next));
            return m;
        }
        std::size_t colon = 0;
        if ((line[0] == ' ' || line[0] == '\t') && !m.headers.empty()) {
            m.headers.back().second += "\r\n";
            m.headers.back().second += line;
        } else if (fieldName(line, colon)) {
            m.headers.emplace_back(std::string(line.substr(0, colon)), std::string(line.substr(colon + 1)));
        } else {
            m.body = std::string(raw.substr(pos));  // not a header field: the body starts here
            return m;
        }
        pos = next;
    }
    return m;
}

std::string joinMessage(const MessageParts& m) {
    std::string out;
    std::size_t size = m.body.size() + 2;
    for (const auto& [n, v] : m.headers) size += n.size() + v.size() + 3;
    out.reserve(size);
    for (const auto& [n, v] : m.headers) {
        out += n;
        out += ':';
        out += v;
        out += "\r\n";
    }
    if (m.hasSeparator) out += "\r\n";
    out += m.body;
    return out;
}

std::string_view valueForMilter(std::string_view v) {
    // Exactly one space after the colon is left out, as Sendmail and Postfix do for a milter
    // that did not ask for SMFIP_HDR_LEADSPC: one that rebuilds "Name: value" (rspamd) then
    // sees the field as stored, tabs and further spaces included.
    if (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    return v;
}

void applyModification(const Reply& r, MessageParts& m, core::MilterMessage& env, bool& bodyStarted, bool leadSpace) {
    using K = Reply::Kind;
    switch (r.kind) {
    case K::AddHeader:
        m.headers.emplace_back(r.name, storedValue(r.text, leadSpace));
        m.changed = true;
        break;
    case K::InsHeader: {
        auto at = std::min<std::size_t>(r.index, m.headers.size());
        m.headers.insert(m.headers.begin() + static_cast<std::ptrdiff_t>(at), {r.name, storedValue(r.text, leadSpace)});
        m.changed = true;
        break;
    }
    case K::ChgHeader: {
        // The index-th field of that name (1-based; 0 is taken as 1); an empty value deletes
        // it; a missing one is added (Sendmail's and Postfix's behaviour).
        std::uint32_t want = r.index == 0 ? 1 : r.index, seen = 0;
        auto it = std::find_if(m.headers.begin(), m.headers.end(),
                               [&](const auto& h) { return equalNoCase(headerName(h.first), r.name) && ++seen == want; });
        if (it == m.headers.end()) {
            if (!r.text.empty()) m.headers.emplace_back(r.name, storedValue(r.text, leadSpace));
        } else if (r.text.empty()) {
            m.headers.erase(it);
        } else {
            it->second = storedValue(r.text, leadSpace);
        }
        m.changed = true;
        break;
    }
    case K::AddRcpt:
        if (std::find(env.recipients.begin(), env.recipients.end(), r.text) == env.recipients.end()) {
            env.recipients.push_back(r.text);
            env.addedRecipients.push_back(r.text);
        }
        break;
    case K::DelRcpt: {
        auto before = env.recipients.size();
        env.recipients.erase(std::remove_if(env.recipients.begin(), env.recipients.end(),
                                          [&](const std::string& a) { return equalNoCase(a, r.text); }),
                           env.recipients.end());
        if (env.recipients.size() == before) break;
        // A recipient a milter added earlier in the chain is simply not added: "deleted"
        // means one of the envelope's own, and the session adds what is in addedRecipients
        // (edits count in the order they came, as in Postfix's cleanup).
        auto added = std::find_if(env.addedRecipients.begin(), env.addedRecipients.end(),
                                  [&](const std::string& a) { return equalNoCase(a, r.text); });
        if (added != env.addedRecipients.end())
            env.addedRecipients.erase(added);
        else
            env.deletedRecipients.push_back(r.text);
        break;
    }
    case K::ChgFrom:
        env.sender = r.text;
        env.senderChanged = true;
        break;
    case K::ReplBody:
        if (!bodyStarted) m.body.clear();
        // The new body follows an empty line, also where the message had none (a header-only
        // message): Postfix's cleanup writes one first as well. Without it the body would
        // join the header section.
        m.hasSeparator = true;
        bodyStarted = true;
        m.body += r.text;  // line ends are made CRLF once the body is complete (a CRLF may span chunks)
        m.changed = true;
        break;
    case K::Quarantine:
        env.quarantine = true;
        env.quarantineReason = r.text;
        break;
    default: break;
    }
}

}  // namespace postern::milter
