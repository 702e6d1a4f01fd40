#include "dkim/SigningSink.h"

#include "core/EventLine.h"
#include "core/Idna.h"
#include "dkim/Signer.h"

#include <Poco/Logger.h>

#include <algorithm>

namespace postern::dkim {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.dkim"); }

// True if the message has a CR or LF that is not part of a CRLF (stored byte-exact from
// BDAT): DKIM's canonical forms are defined over CRLF lines only, and such a message goes
// out with BINARYMIME exactly as stored, so no verifier would see the lines we signed.
bool hasBareLineEnding(std::string_view m) {
    for (std::size_t i = 0; i < m.size(); ++i) {
        if (m[i] == '\r' && (i + 1 >= m.size() || m[i + 1] != '\n')) return true;
        if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r')) return true;
    }
    return false;
}

}  // namespace

std::string signingDecision(const std::vector<HeaderField>& headers, const std::vector<std::string>& owns,
                            const KeyStore& keys, std::string& domain, std::vector<SigningKey>* domainKeys) {
    FromDomain from = fromDomain(headers);
    if (!from.problem.empty()) return from.problem;
    auto ascii = core::domainToAscii(from.domain);
    if (!ascii) return "bad_from";
    domain = *ascii;
    // Only a From address the user owns is signed (its login or a sender address of its
    // account, as for MAIL FROM): nobody else checks the From field. Without this a customer
    // could sign as another hosted domain, or as support@ of the ISP's own shared domain.
    auto owned = [&](const std::string& d) {
        return std::find(owns.begin(), owns.end(), from.local + "@" + d) != owns.end();
    };
    if (from.local.empty() || !(owned(domain) || owned(from.domain))) return "from_not_own";
    std::vector<SigningKey> found = keys.keysFor(domain);
    if (found.empty()) return "no_key";
    if (domainKeys != nullptr) *domainKeys = std::move(found);
    return "";
}

SignOutcome signIfWanted(std::string_view message, bool authorised, const std::vector<std::string>& owns,
                         const KeyStore& keys, std::time_t now) {
    SignOutcome o;
    if (!authorised) {
        o.skipReason = "not_authenticated";
        return o;
    }
    MessageParts parts = splitMessage(message);
    std::vector<SigningKey> domainKeys;
    o.skipReason = signingDecision(parts.headers, owns, keys, o.domain, &domainKeys);
    if (!o.skipReason.empty()) return o;
    if (hasBareLineEnding(message)) {
        o.skipReason = "bare_line_ending";
        return o;
    }
    try {
        const std::string bh = bodyHash(parts.body);
        for (const auto& k : domainKeys) {
            o.prefix += signParts(parts, bh, k, now);
            o.used.push_back(k);
        }
    } catch (const KeyError&) {
        o.prefix.clear();
        o.used.clear();
        o.skipReason = "sign_failed";
    }
    return o;
}

// Holds an authorised message until its header ends, then either streams it through (a
// message that will not be signed: its decision needs no body) or holds it to the end of
// data, to sign it whole.
class SigningWriter : public core::MessageWriter {
public:
    SigningWriter(core::MessageWriterPtr inner, SigningSink& sink, const core::Envelope& envelope, bool authorised)
        : inner_(std::move(inner)),
          sink_(sink),
          sessionId_(envelope.sessionId),
          owns_(envelope.senderOwns),
          streaming_(!authorised) {
        if (!authorised) skip_.skipReason = "not_authenticated";
    }

    bool write(const char* data, std::size_t size) override {
        if (streaming_) return inner_->write(data, size);
        if (failed_) return false;
        const std::size_t before = held_.size();
        try {
            held_.append(data, size);
        } catch (const std::bad_alloc&) {
            failed_ = true;
            std::string().swap(held_);
            return false;
        }
        return decided_ || decideAtHeaderEnd(before);
    }

    core::SinkResult commit() override {
        if (failed_) return {core::SinkStatus::TempFail, ""};
        SignOutcome o = skip_;
        if (!streaming_) {
            o = signIfWanted(held_, true, owns_, sink_.keys_, sink_.clock_());
            // The signatures go first, then the message exactly as received (incl. our Received).
            if (!o.prefix.empty() && !inner_->write(o.prefix.data(), o.prefix.size()))
                return {core::SinkStatus::TempFail, ""};
            if (!inner_->write(held_.data(), held_.size())) return {core::SinkStatus::TempFail, ""};
            std::string().swap(held_);
        }
        core::SinkResult r = inner_->commit();
        if (r.status == core::SinkStatus::Ok) sink_.report(sessionId_, o);
        return r;
    }

private:
    // Once the held octets contain the empty line that ends the header, a message that will
    // not be signed goes to the inner writer and streams from then on.
    bool decideAtHeaderEnd(std::size_t before) {
        const std::size_t from = before < 3 ? 0 : before - 3;  // "\r\n\r\n" may straddle two writes
        const std::size_t end = held_.find("\r\n\r\n", from);
        if (end == std::string::npos) return true;
        MessageParts head = splitMessage(std::string_view(held_).substr(0, end + 4));
        skip_.skipReason = signingDecision(head.headers, owns_, sink_.keys_, skip_.domain, nullptr);
        if (skip_.skipReason.empty()) {
            decided_ = true;  // to be signed: held to the end of data (and decided again then)
            return true;
        }
        streaming_ = true;
        const bool ok = inner_->write(held_.data(), held_.size());
        std::string().swap(held_);
        return ok;
    }

    core::MessageWriterPtr inner_;
    SigningSink& sink_;
    std::string sessionId_;
    std::vector<std::string> owns_;
    bool streaming_;
    bool decided_ = false;
    bool failed_ = false;
    SignOutcome skip_;  // why it is not signed, once streaming
    std::string held_;
};

core::MessageWriterPtr SigningSink::open(const core::Envelope& envelope, core::SinkStatus& status) {
    core::MessageWriterPtr inner = inner_.open(envelope, status);
    if (!inner) return inner;
    const bool authorised = !envelope.authUser.empty() || envelope.viaGrant;
    return std::make_unique<SigningWriter>(std::move(inner), *this, envelope, authorised);
}

void SigningSink::report(const std::string& sessionId, const SignOutcome& o) {
    if (!o.skipReason.empty()) {
        counters_.count("dkim", o.skipReason);
        core::EventLine l = core::EventLine::inSession(sessionId, "dkim.skip");
        l.add("reason", o.skipReason);
        if (!o.domain.empty()) l.add("domain", o.domain);
        logger().information(l.str());
        return;
    }
    counters_.count("dkim", "signed");
    for (const auto& k : o.used)
        logger().information(core::EventLine::inSession(sessionId, "dkim.signed")
                                 .add("domain", k.domain)
                                 .add("selector", k.selector)
                                 .add("alg", signatureAlgorithm(k.algorithm))
                                 .str());
}

}  // namespace postern::dkim
