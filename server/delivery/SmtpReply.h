// Replies of a remote SMTP server as the client sees them (RFC 5321 4.2: multi-line
// "250-...", last line "250 ..."; RFC 3463 enhanced status codes), and their parser.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace postern::delivery {

struct SmtpReply {
    int code = 0;                    // 0 = no reply: connection lost, timeout, malformed
    std::vector<std::string> lines;  // text after "NNN-" / "NNN " (or the local reason if code == 0)

    bool isPositive() const { return code >= 200 && code < 400; }
    bool isPermanent() const { return code >= 500; }
    // Temporary: 4xx and every "no reply" (a lost connection is retried, never bounced).
    bool isTemporary() const { return !isPositive() && !isPermanent(); }
    // "5.1.1" if the first line starts with an enhanced code of the reply's class, else "".
    std::string enhanced() const;
    // enhanced() or a default by class: 2.0.0 / 4.0.0 / 5.0.0 (4.4.2 for no reply).
    std::string status() const;
    // "550 5.1.1 No such user" (lines joined with a space; code 0: the local reason).
    std::string text() const;

    static SmtpReply local(std::string reason);  // code 0 with a reason
};

// Feeds reply lines (without CRLF) one by one.
class ReplyParser {
public:
    enum class Result { NeedMore, Done, Malformed };
    // Done: reply() holds the complete reply. Malformed: not "NNN[ -]text" or the code
    // changed within a multi-line reply (RFC 5321 4.2.1).
    Result feed(std::string_view line);
    const SmtpReply& reply() const { return reply_; }
    void reset() { reply_ = SmtpReply{}; }

private:
    SmtpReply reply_;
};

}  // namespace postern::delivery
