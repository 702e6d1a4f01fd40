// The one writer of operator log lines: "[s=<session> ]event=<name> key=value ...".
//
//   logger.warning(core::EventLine("grant.dropped").add("ip", key).add("user", user)
//                      .add("queued", n).text("error", err).str());
//
// Every value is escaped (core/LogValue.h): add() writes one token (a space, '=', quote,
// backslash, control or invalid UTF-8 byte becomes \xHH, empty is "-"), so a fail2ban
// pattern like `user=(\S+)` reads back exactly the value; numbers are written as they are;
// text() writes key="..." for free text (errors, replies, hints) with the same escapes
// except that spaces and '=' are kept. Event names and keys are ours (never client data).
#pragma once

#include "core/LogValue.h"

#include <concepts>
#include <string>
#include <string_view>

namespace postern::core {

template <typename N>
concept LogNumber = std::integral<N> && !std::same_as<N, bool> && !std::same_as<N, char>;

class EventLine {
public:
    explicit EventLine(std::string_view event) : line_("event=") { line_.append(event); }

    // "s=<sessionId> event=<event>": a line that belongs to one client session.
    static EventLine inSession(std::string_view sessionId, std::string_view event) {
        EventLine l(event);
        l.line_.insert(0, "s=" + logValue(sessionId) + " ");
        return l;
    }

    // key=<value as one token>.
    EventLine& add(std::string_view key, std::string_view value) { return raw(key, logValue(value)); }
    EventLine& add(std::string_view key, const std::string& value) { return add(key, std::string_view(value)); }
    EventLine& add(std::string_view key, const char* value) { return add(key, std::string_view(value ? value : "")); }
    // key=<number>; bool and char are not numbers here (write "yes"/"no" or a string).
    template <LogNumber N>
    EventLine& add(std::string_view key, N number) {
        return raw(key, std::to_string(number));
    }
    // key=<number><unit>, e.g. add("ttl", 300, "s") -> ttl=300s.
    template <LogNumber N>
    EventLine& add(std::string_view key, N number, std::string_view unit) {
        return raw(key, std::to_string(number) + logValue(unit));
    }
    // key=<<address>>: an envelope address in angle brackets; the null path stays "<>".
    EventLine& address(std::string_view key, std::string_view address) {
        return raw(key, "<" + (address.empty() ? std::string() : logValue(address)) + ">");
    }
    // key="<free text>" (errors, replies, operator hints).
    EventLine& text(std::string_view key, std::string_view value) {
        return raw(key, "\"" + logQuotedText(value) + "\"");
    }

    const std::string& str() const& { return line_; }
    std::string str() && { return std::move(line_); }

private:
    EventLine& raw(std::string_view key, const std::string& token) {
        line_ += ' ';
        line_.append(key);
        line_ += '=';
        line_ += token;
        return *this;
    }

    std::string line_;
};

}  // namespace postern::core
