// SMTP reply formatting (RFC 5321 4.2) with enhanced status codes (RFC 3463, RFC 2034).
#include "smtpproto/ReplyCode.h"

#include <utility>

namespace postern::smtp {

std::string formatEnhanced(int code, Enhanced enh) {
    if (enh == Enhanced::None)
        return {};
    // RFC 3463 2: the class digit is 2, 4 or 5 and matches the basic reply code's class.
    int cls = code / 100;
    if (cls != 2 && cls != 4 && cls != 5)
        return {};
    int v = static_cast<int>(enh);
    return std::to_string(cls) + '.' + std::to_string(v / 100) + '.' + std::to_string(v % 100);
}

Reply::Reply(int c, Enhanced e, std::string t) : code(c), enh(e) { lines.push_back(std::move(t)); }

Reply::Reply(int c, Enhanced e, std::vector<std::string> l) : code(c), enh(e), lines(std::move(l)) {
    if (lines.empty())
        lines.emplace_back();
}

Reply::Reply(int c, Enhanced e, std::initializer_list<std::string> l) : Reply(c, e, std::vector<std::string>(l)) {}

const std::string& Reply::text() const {
    static const std::string empty;
    return lines.empty() ? empty : lines.front();
}

std::string Reply::format(bool enhancedCodes) const {
    const std::string codeText = std::to_string(code);
    const std::string enhText = enhancedCodes ? formatEnhanced(code, enh) : std::string();
    std::string out;
    const std::size_t n = lines.empty() ? 1 : lines.size();
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t lineStart = out.size();
        out += codeText;
        out += (i + 1 < n) ? '-' : ' ';
        if (!enhText.empty()) {
            out += enhText;
            out += ' ';
        }
        if (!lines.empty()) {
            // RFC 5321 4.2: textstring is HT, SP and printable characters; a CR or LF in a
            // text (e.g. an echoed client argument) must never end the reply line early.
            // RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF; a longer
            // text (a milter's or a policy server's) is cut, never inside a UTF-8 character.
            std::size_t room = MaxReplyLine - 2 - (out.size() - lineStart);
            std::string_view text = lines[i];
            if (text.size() > room) {
                while (room > 0 && (static_cast<unsigned char>(text[room]) & 0xC0) == 0x80) --room;
                text = text.substr(0, room);
            }
            for (char ch : text)
                out += (ch == '\r' || ch == '\n') ? ' ' : ch;
        }
        // An empty text: RFC 5321 4.2 allows "code [SP textstring]"; no trailing SP.
        if ((lines.empty() || lines[i].empty()) && out.back() == ' ')
            out.pop_back();
        out += "\r\n";
    }
    return out;
}

bool operator==(const Reply& a, const Reply& b) {
    return a.code == b.code && a.enh == b.enh && a.lines == b.lines;
}

namespace replies {

namespace {
std::string concat(std::string_view a, std::string_view b) {
    std::string s(a);
    s += b;
    return s;
}
}  // namespace

Reply greeting(std::string_view host) { return {220, Enhanced::None, concat(host, " ESMTP Postern")}; }
Reply closing(std::string_view host) { return {221, Enhanced::Other, concat(host, " closing connection")}; }
Reply serviceUnavailable(std::string_view host) {
    return {421, Enhanced::SystemNotAccepting, concat(host, " Service not available, closing connection")};
}
Reply tooBusy() { return {421, Enhanced::SystemNotAccepting, "Too many connections, try again later"}; }
Reply timeout() { return {421, Enhanced::BadConnection, "Timeout, closing connection"}; }
Reply ok() { return {250, Enhanced::Other, "Ok"}; }
Reply senderOk() { return {250, Enhanced::OtherAddress, "Ok"}; }
Reply recipientOk() { return {250, Enhanced::DestinationValid, "Ok"}; }
Reply queued(std::string_view id) { return {250, Enhanced::Other, concat("Ok: queued as ", id)}; }
Reply helo(std::string_view host) { return {250, Enhanced::None, std::string(host)}; }
Reply ehlo(std::string_view host, const std::vector<std::string>& keywords) {
    std::vector<std::string> lines;
    lines.reserve(keywords.size() + 1);
    lines.emplace_back(host);
    lines.insert(lines.end(), keywords.begin(), keywords.end());
    // RFC 2034 4: the EHLO response carries no enhanced status code.
    return {250, Enhanced::None, std::move(lines)};
}
Reply startMailInput() { return {354, Enhanced::None, "End data with <CR><LF>.<CR><LF>"}; }
Reply readyToStartTls() { return {220, Enhanced::Other, "Ready to start TLS"}; }
Reply authSucceeded() { return {235, Enhanced::OtherSecurity, "Authentication successful"}; }
Reply authChallenge(std::string_view b64) { return {334, Enhanced::None, std::string(b64)}; }
Reply cannotVerify() { return {252, Enhanced::Other, "Cannot VRFY user, but will accept message"}; }
Reply help() { return {214, Enhanced::Other, "See RFC 5321"}; }
Reply badSequence(std::string_view detail) { return {503, Enhanced::InvalidCommand, concat("Error: ", detail)}; }
Reply needMailFirst() { return badSequence("need MAIL command"); }
Reply needRcptFirst() { return badSequence("need RCPT command"); }
Reply nestedMail() { return badSequence("nested MAIL command"); }
Reply needHelo() { return badSequence("send HELO/EHLO first"); }
Reply commandNotImplemented() { return {502, Enhanced::InvalidCommand, "Command not implemented"}; }
Reply tooManyRecipients() { return {452, Enhanced::TooManyRecipients, "Too many recipients"}; }
Reply tooManyErrors() { return {421, Enhanced::OtherSecurity, "Too many errors, closing connection"}; }
Reply tempFailure() { return {451, Enhanced::OtherSystem, "Temporary failure, try again later"}; }
Reply queueFull() { return {452, Enhanced::SystemFull, "Insufficient system storage"}; }
Reply messageTooBig() { return {552, Enhanced::MessageTooBig, "Message size exceeds fixed limit"}; }
// RFC 5321 2.3.8 and 4.5.3.1.6, after the content: the transaction failed, not a command
// (so 554, not 500).
Reply bareLineEnding() { return {554, Enhanced::OtherMedia, "Message contains bare CR or LF"}; }
Reply lineTooLong() { return {554, Enhanced::OtherMedia, "Message line too long"}; }
Reply authRequired() { return {530, Enhanced::OtherSecurity, "Authentication required"}; }
Reply tlsRequired() { return {530, Enhanced::OtherSecurity, "Must issue a STARTTLS command first"}; }
Reply authInvalid() { return {535, Enhanced::AuthCredentialsInvalid, "Authentication credentials invalid"}; }
Reply authTempFailure() { return {454, Enhanced::OtherSecurity, "Temporary authentication failure"}; }
Reply authCancelled() { return {501, Enhanced::Other, "Authentication cancelled"}; }
Reply authAlreadyDone() { return badSequence("already authenticated"); }
Reply authMechanismUnknown() { return {504, Enhanced::InvalidArguments, "Unrecognized authentication type"}; }
Reply tlsNotAvailable() { return {454, Enhanced::OtherSecurity, "TLS not available due to temporary reason"}; }
Reply relayDenied() { return {554, Enhanced::DeliveryNotAuthorized, "Relay access denied"}; }
Reply userUnknown() { return {550, Enhanced::BadDestinationMailbox, "User unknown"}; }

}  // namespace replies

}  // namespace postern::smtp
