// SMTP command line parser (RFC 5321 4.1.1, 4.1.2; RFC 1870, 6152, 4954, 6531 parameters).
#include "smtpproto/SmtpCommand.h"

#include "smtpproto/DsnParams.h"

#include <limits>
#include <utility>

namespace postern::smtp {

namespace {

struct VerbEntry {
    std::string_view name;
    Verb verb;
};

constexpr VerbEntry VerbTable[] = {
    {"HELO", Verb::Helo}, {"EHLO", Verb::Ehlo}, {"MAIL", Verb::Mail},         {"RCPT", Verb::Rcpt},
    {"DATA", Verb::Data}, {"RSET", Verb::Rset}, {"NOOP", Verb::Noop},         {"QUIT", Verb::Quit},
    {"VRFY", Verb::Vrfy}, {"HELP", Verb::Help}, {"STARTTLS", Verb::StartTls}, {"AUTH", Verb::Auth},
    {"BDAT", Verb::Bdat},
};

// RFC 1870 6: SIZE adds 26 octets to the MAIL line; RFC 4954 5: AUTH= adds 500;
// RFC 3461 5: RET= and ENVID= add 110 to MAIL, NOTIFY= and ORCPT= 530 to RCPT.
constexpr std::size_t MailLineExtra = 26 + 500 + 110;
constexpr std::size_t RcptLineExtra = 530;

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool equalsNoCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (upper(a[i]) != upper(b[i]))
            return false;
    return true;
}

bool startsWithNoCase(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && equalsNoCase(s.substr(0, prefix.size()), prefix);
}

bool isAlnum(unsigned char c) { return (c >= '0' && c <= '9') || (upper(c) >= 'A' && upper(c) <= 'Z'); }

std::string_view trimTrailingSpaces(std::string_view s) {
    while (!s.empty() && s.back() == ' ')
        s.remove_suffix(1);
    return s;
}

// RFC 3461 4: xtext = *( xchar / hexchar ); xchar = "!".."~" except "+" and "=";
// hexchar = "+" 2(upper-case hex digit).
bool isXtext(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        unsigned char c = s[i];
        if (c == '+') {
            auto hex = [](unsigned char h) { return (h >= '0' && h <= '9') || (h >= 'A' && h <= 'F'); };
            if (i + 2 >= s.size())
                return false;
            if (!hex(s[i + 1]) || !hex(s[i + 2]))
                return false;
            i += 2;
        } else if (c < 33 || c > 126 || c == '=') {
            return false;
        }
    }
    return true;
}

Command failed(Command c, CommandError e, std::string detail = {}) {
    c.error = e;
    c.detail = std::move(detail);
    return c;
}

// MAIL/RCPT: "FROM:"/"TO:" [SP] Path *(SP esmtp-param)
Command parseMailRcpt(Command c, std::string_view arg, const CommandOptions& options) {
    const bool isMail = c.verb == Verb::Mail;
    const std::string_view keyword = isMail ? "FROM:" : "TO:";
    if (!startsWithNoCase(arg, keyword))
        return failed(std::move(c), CommandError::Syntax, isMail ? "expected FROM:" : "expected TO:");
    arg.remove_prefix(keyword.size());
    // RFC 5321 4.1.1.2 has no space here, but many clients send one; tolerate exactly one.
    if (!arg.empty() && arg.front() == ' ')
        arg.remove_prefix(1);

    PathOptions popts;
    popts.allowUtf8 = options.smtpUtf8;
    std::size_t used = 0;
    c.path = parsePath(arg, isMail ? PathKind::Reverse : PathKind::Forward, popts, &used);
    const CommandError addressError = isMail ? CommandError::BadSenderAddress : CommandError::BadRecipientAddress;
    if (!c.path.ok)
        return failed(std::move(c), addressError, c.path.message);
    arg.remove_prefix(used);

    // Mail-parameters = esmtp-param *(SP esmtp-param) (RFC 5321 4.1.2)
    arg = trimTrailingSpaces(arg);
    if (!arg.empty() && arg.front() != ' ')
        return failed(std::move(c), CommandError::Syntax, "junk after path");
    while (!arg.empty()) {
        while (!arg.empty() && arg.front() == ' ')
            arg.remove_prefix(1);
        std::size_t end = arg.find(' ');
        std::string_view param = arg.substr(0, end);
        arg.remove_prefix(end == std::string_view::npos ? arg.size() : end);

        // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
        std::size_t eq = param.find('=');
        std::string_view key = param.substr(0, eq);
        bool keyOk = !key.empty() && isAlnum(key.front());
        for (unsigned char ch : key)
            keyOk = keyOk && (isAlnum(ch) || ch == '-');
        // esmtp-value = 1*(%d33-60 / %d62-126)
        std::optional<std::string_view> value;
        if (eq != std::string_view::npos) {
            value = param.substr(eq + 1);
            keyOk = keyOk && !value->empty();
            for (unsigned char ch : *value)
                keyOk = keyOk && ch >= 33 && ch <= 126 && ch != '=';
        }
        if (!keyOk)
            return failed(std::move(c), CommandError::BadParamValue, "malformed parameter " + std::string(param));

        if (options.dsn) {
            std::string why;
            DsnParamResult d = isMail ? parseMailDsnParam(key, value, c.dsn, why)
                                      : parseRcptDsnParam(key, value, c.rcptDsn, why);
            if (d == DsnParamResult::Bad)
                return failed(std::move(c), CommandError::BadParamValue, why);
            if (d == DsnParamResult::Ok)
                continue;
        }
        // RFC 5321 4.1.1.11: parameters not supported (all others on RCPT) -> 555.
        if (!isMail)
            return failed(std::move(c), CommandError::UnknownParam, std::string(key));
        if (equalsNoCase(key, "SIZE")) {
            // RFC 1870 3: SIZE=1*20DIGIT. Overflow saturates so the session answers 552.
            if (c.size || !value)
                return failed(std::move(c), CommandError::BadParamValue, "SIZE");
            std::uint64_t n = 0;
            constexpr std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
            for (char ch : *value) {
                if (ch < '0' || ch > '9')
                    return failed(std::move(c), CommandError::BadParamValue, "SIZE");
                unsigned d = static_cast<unsigned>(ch - '0');
                n = (n > (max - d) / 10) ? max : n * 10 + d;
            }
            c.size = n;
        } else if (equalsNoCase(key, "BODY")) {
            // RFC 6152 2: BODY=7BIT / BODY=8BITMIME; RFC 3030 3: BODY=BINARYMIME.
            if (c.body != BodyType::Unspecified || !value)
                return failed(std::move(c), CommandError::BadParamValue, "BODY");
            if (equalsNoCase(*value, "7BIT"))
                c.body = BodyType::SevenBit;
            else if (equalsNoCase(*value, "8BITMIME"))
                c.body = BodyType::EightBitMime;
            else if (equalsNoCase(*value, "BINARYMIME"))
                c.body = BodyType::BinaryMime;
            else
                return failed(std::move(c), CommandError::BadParamValue, "BODY");
        } else if (equalsNoCase(key, "AUTH")) {
            // RFC 4954 5: AUTH=<xtext> or AUTH=<>. Accepted and ignored: we never trust a
            // client's claim about the original submitter.
            if (c.authParam || !value || (*value != "<>" && !isXtext(*value)))
                return failed(std::move(c), CommandError::BadParamValue, "AUTH");
            c.authParam = std::string(*value);
        } else if (options.smtpUtf8 && equalsNoCase(key, "SMTPUTF8")) {
            // RFC 6531 3.4: SMTPUTF8 takes no value.
            if (c.smtpUtf8 || value)
                return failed(std::move(c), CommandError::BadParamValue, "SMTPUTF8");
            c.smtpUtf8 = true;
        } else if (equalsNoCase(key, "REQUIRETLS")) {
            // RFC 8689 4: REQUIRETLS takes no value.
            if (c.requireTls || value)
                return failed(std::move(c), CommandError::BadParamValue, "REQUIRETLS");
            c.requireTls = true;
        } else {
            return failed(std::move(c), CommandError::UnknownParam, std::string(key));
        }
    }
    // RFC 6531 3.4: a UTF-8 reverse-path needs the SMTPUTF8 parameter. (RCPT's check
    // depends on the transaction: the session compares path.hasUtf8 with MAIL's flag.)
    if (isMail && c.path.hasUtf8 && !c.smtpUtf8)
        return failed(std::move(c), CommandError::NeedsSmtpUtf8, "UTF-8 address without SMTPUTF8");
    c.error = CommandError::None;
    return c;
}

// RFC 3030 2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF;
// chunk-size = 1*DIGIT; end-marker = "LAST". Exactly one space between the parts (trailing
// spaces tolerated, as for every command here).
bool parseBdat(Command& c, std::string_view arg) {
    arg = trimTrailingSpaces(arg);
    std::size_t sp = arg.find(' ');
    std::string_view digits = arg.substr(0, sp);
    if (digits.empty() || digits.size() > 20)
        return false;
    std::uint64_t n = 0;
    constexpr std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
    for (char ch : digits) {
        if (ch < '0' || ch > '9')
            return false;
        unsigned d = static_cast<unsigned>(ch - '0');
        if (n > (max - d) / 10)
            return false;
        n = n * 10 + d;
    }
    c.chunkSize = n;
    if (sp == std::string_view::npos)
        return true;
    if (!equalsNoCase(arg.substr(sp + 1), "LAST"))
        return false;
    c.lastChunk = true;
    return true;
}

}  // namespace

const char* verbName(Verb verb) {
    for (const auto& e : VerbTable)
        if (e.verb == verb)
            return e.name.data();
    return "UNKNOWN";
}

Command parseCommand(std::string_view line, const CommandOptions& options) {
    Command c;
    std::size_t sp = line.find(' ');
    std::string_view verbText = line.substr(0, sp);
    for (const auto& e : VerbTable)
        if (equalsNoCase(verbText, e.name))
            c.verb = e.verb;

    // RFC 5321 4.5.3.1.4: 512 octets including CRLF; AUTH and MAIL get their extensions'
    // allowances (RFC 4954 4 and 5, RFC 1870 6).
    std::size_t limit = options.maxLineLength;
    if (c.verb == Verb::Auth)
        limit = options.maxAuthLineLength;
    else if (c.verb == Verb::Mail)
        limit = options.maxLineLength + MailLineExtra;
    else if (c.verb == Verb::Rcpt && options.dsn)
        limit = options.maxLineLength + RcptLineExtra;
    if (line.size() + 2 > limit)
        return failed(std::move(c), CommandError::LineTooLong);

    // A command is text: NUL, a stray CR or LF (a line reader that split on bare LF) or
    // any other control octet is refused before it can reach a parser or a log line.
    for (unsigned char ch : line)
        if ((ch < 32 && ch != '\t') || ch == 127)
            return failed(std::move(c), CommandError::BadCharacter);

    if (c.verb == Verb::Unknown)
        return failed(std::move(c), CommandError::UnknownCommand, std::string(verbText.substr(0, 32)));

    std::string_view arg = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    std::string_view trimmed = trimTrailingSpaces(arg);
    // Lines like "MAIL" with no space but something glued on never reach here: the verb
    // would not have matched.
    switch (c.verb) {
    case Verb::Helo:
    case Verb::Ehlo:
        // RFC 5321 4.1.1.1: Domain / address-literal. Lenient like Postfix: one token.
        if (trimmed.empty() || trimmed.find_first_of(" \t") != std::string_view::npos)
            return failed(std::move(c), CommandError::BadArguments);
        c.argument = std::string(trimmed);
        break;
    case Verb::Mail:
    case Verb::Rcpt:
        if (sp == std::string_view::npos)
            return failed(std::move(c), CommandError::Syntax, "missing argument");
        return parseMailRcpt(std::move(c), arg, options);
    case Verb::Data:
    case Verb::Rset:
    case Verb::Quit:
    case Verb::StartTls:
        // RFC 3207 4: STARTTLS with parameters is 501; DATA, RSET, QUIT take none.
        if (!trimmed.empty())
            return failed(std::move(c), CommandError::BadArguments);
        break;
    case Verb::Bdat:
        if (!parseBdat(c, arg))
            return failed(std::move(c), CommandError::BadArguments);
        break;
    case Verb::Noop:
        // RFC 5321 4.1.1.9: a parameter string is ignored.
    case Verb::Help:
        c.argument = std::string(trimmed);
        break;
    case Verb::Vrfy:
        if (trimmed.empty())
            return failed(std::move(c), CommandError::BadArguments);
        c.argument = std::string(trimmed);
        break;
    case Verb::Auth: {
        // RFC 4954 4: AUTH mechanism [initial-response]
        std::size_t s2 = trimmed.find(' ');
        std::string_view mech = trimmed.substr(0, s2);
        if (mech.empty())
            return failed(std::move(c), CommandError::BadArguments);
        c.authMechanism = std::string(mech);
        if (s2 != std::string_view::npos) {
            std::string_view ir = trimmed.substr(s2 + 1);
            if (ir.empty() || ir.find(' ') != std::string_view::npos)
                return failed(std::move(c), CommandError::BadArguments);
            c.authInitialResponse = std::string(ir);
        }
        break;
    }
    case Verb::Unknown:
        break;
    }
    c.error = CommandError::None;
    return c;
}

Reply Command::errorReply() const {
    switch (error) {
    case CommandError::None:
        return replies::ok();
    case CommandError::LineTooLong:
        // RFC 4954 6: x.5.6 for an AUTH line (its initial response) that is too long.
        return {500, verb == Verb::Auth ? Enhanced::LineTooLong : Enhanced::SyntaxError, "Line too long"};
    case CommandError::BadCharacter:
        return {500, Enhanced::SyntaxError, "Syntax error: invalid character"};
    case CommandError::UnknownCommand:
        return {500, Enhanced::InvalidCommand, "Command unrecognized"};
    case CommandError::Syntax:
        return {501, Enhanced::SyntaxError, "Syntax error"};
    case CommandError::BadArguments:
        switch (verb) {
        case Verb::Helo: return {501, Enhanced::InvalidArguments, "Syntax: HELO hostname"};
        case Verb::Ehlo: return {501, Enhanced::InvalidArguments, "Syntax: EHLO hostname"};
        case Verb::Vrfy: return {501, Enhanced::InvalidArguments, "Syntax: VRFY address"};
        case Verb::Auth: return {501, Enhanced::InvalidArguments, "Syntax: AUTH mechanism [initial-response]"};
        case Verb::Bdat: return {501, Enhanced::InvalidArguments, "Syntax: BDAT chunk-size [LAST]"};
        default: return {501, Enhanced::InvalidArguments, std::string("Syntax: ") + verbName(verb)};
        }
    case CommandError::BadSenderAddress:
        return {501, Enhanced::BadSenderSyntax, "Bad sender address syntax"};
    case CommandError::BadRecipientAddress:
        return {501, Enhanced::BadDestinationSyntax, "Bad recipient address syntax"};
    case CommandError::BadParamValue:
        return {501, Enhanced::InvalidArguments, "Bad parameter value"};
    case CommandError::UnknownParam:
        return {555, Enhanced::InvalidArguments, "Unsupported parameter"};
    case CommandError::NeedsSmtpUtf8:
        return {553, Enhanced::NonAsciiAddress, "Non-ASCII address requires the SMTPUTF8 parameter"};
    }
    return replies::tempFailure();
}

}  // namespace postern::smtp
