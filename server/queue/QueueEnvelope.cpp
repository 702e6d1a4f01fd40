#include "queue/QueueEnvelope.h"

#include <charconv>

namespace postern::queue {

namespace {

constexpr std::string_view Magic = "postern-queue";

bool isSafeValue(std::string_view v) { return v.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos; }

std::int64_t toUnix(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::chrono::system_clock::time_point fromUnix(std::int64_t s) {
    return std::chrono::system_clock::time_point(std::chrono::seconds(s));
}

template <typename T>
bool parseNumber(std::string_view s, T& out) {
    if (s.empty()) return false;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::optional<std::string> formatQueueEnvelope(const QueueEnvelope& e) {
    std::string out;
    bool ok = true;
    auto field = [&](std::string_view key, std::string_view value) {
        if (!isSafeValue(value)) ok = false;
        out.append(key).append(" ").append(value).append("\n");
    };
    field(Magic, std::to_string(QueueEnvelopeVersion));
    field("id", e.id);
    field("arrival", std::to_string(toUnix(e.arrival)));
    field("sender", e.sender);
    for (const auto& r : e.recipients) field("recipient", r);
    field("client", e.clientIp);
    field("helo", e.heloName);
    field("auth", e.authUser);
    field("session", e.sessionId);
    field("attempts", std::to_string(e.attempts));
    field("next-attempt", std::to_string(toUnix(e.nextAttempt)));
    field("last-error", e.lastError);
    if (e.hold) field("hold", "1");
    if (e.warned) field("warned", "1");
    if (e.smtpUtf8) field("smtputf8", "1");
    if (e.requireTls) field("requiretls", "1");
    if (!ok || e.id.empty() || e.recipients.empty()) return std::nullopt;
    return out;
}

std::optional<QueueEnvelope> parseQueueEnvelope(std::string_view text) {
    QueueEnvelope e;
    bool sawMagic = false, sawId = false, sawArrival = false, sawSender = false;
    bool first = true;
    while (!text.empty()) {
        auto nl = text.find('\n');
        // Every line, the last included, ends with LF: a missing one means a torn write.
        if (nl == std::string_view::npos) return std::nullopt;
        std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        auto sp = line.find(' ');
        std::string_view key = line.substr(0, sp);
        std::string_view value = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
        if (first) {
            int version = 0;
            if (key != Magic || !parseNumber(value, version) || version != QueueEnvelopeVersion) return std::nullopt;
            sawMagic = true;
            first = false;
            continue;
        }
        if (key == "id") {
            e.id = value;
            sawId = !value.empty();
        } else if (key == "arrival") {
            std::int64_t s = 0;
            if (!parseNumber(value, s)) return std::nullopt;
            e.arrival = fromUnix(s);
            sawArrival = true;
        } else if (key == "sender") {
            e.sender = value;
            sawSender = true;
        } else if (key == "recipient") {
            if (value.empty()) return std::nullopt;
            e.recipients.emplace_back(value);
        } else if (key == "client") {
            e.clientIp = value;
        } else if (key == "helo") {
            e.heloName = value;
        } else if (key == "auth") {
            e.authUser = value;
        } else if (key == "session") {
            e.sessionId = value;
        } else if (key == "attempts") {
            if (!parseNumber(value, e.attempts)) return std::nullopt;
        } else if (key == "next-attempt") {
            std::int64_t s = 0;
            if (!parseNumber(value, s)) return std::nullopt;
            e.nextAttempt = fromUnix(s);
        } else if (key == "last-error") {
            e.lastError = value;
        } else if (key == "hold") {
            e.hold = value == "1";
        } else if (key == "warned") {
            e.warned = value == "1";
        } else if (key == "smtputf8") {
            e.smtpUtf8 = value == "1";
        } else if (key == "requiretls") {
            e.requireTls = value == "1";
        }
        // Unknown keywords: ignored, so a newer writer can add fields.
    }
    if (!sawMagic || !sawId || !sawArrival || !sawSender || e.recipients.empty()) return std::nullopt;
    return e;
}

}  // namespace postern::queue
