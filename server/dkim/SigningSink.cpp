#include "dkim/SigningSink.h"

#include "core/EventLine.h"
#include "core/Idna.h"
#include "dkim/Signer.h"

#include <Poco/Logger.h>

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

SignOutcome signIfWanted(std::string_view message, bool authorised, const KeyStore& keys, std::time_t now) {
    SignOutcome o;
    if (!authorised) {
        o.skipReason = "not_authenticated";
        return o;
    }
    MessageParts parts = splitMessage(message);
    FromDomain from = fromDomain(parts.headers);
    if (!from.problem.empty()) {
        o.skipReason = from.problem;
        return o;
    }
    auto ascii = core::domainToAscii(from.domain);
    if (!ascii) {
        o.skipReason = "bad_from";
        return o;
    }
    o.domain = *ascii;
    std::vector<SigningKey> domainKeys = keys.keysFor(o.domain);
    if (domainKeys.empty()) {
        o.skipReason = "no_key";
        return o;
    }
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

// Streams through (nothing to sign) or holds the message until commit.
class SigningWriter : public core::MessageWriter {
public:
    SigningWriter(core::MessageWriterPtr inner, SigningSink& sink, std::string sessionId, bool authorised)
        : inner_(std::move(inner)), sink_(sink), sessionId_(std::move(sessionId)), authorised_(authorised) {}

    bool write(const char* data, std::size_t size) override {
        if (!authorised_) return inner_->write(data, size);
        if (failed_) return false;
        try {
            held_.append(data, size);
        } catch (const std::bad_alloc&) {
            failed_ = true;
            held_.clear();
            held_.shrink_to_fit();
        }
        return !failed_;
    }

    core::SinkResult commit() override {
        if (failed_) return {core::SinkStatus::TempFail, ""};
        SignOutcome o = signIfWanted(held_, authorised_, sink_.keys_, sink_.clock_());
        if (authorised_) {
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
    core::MessageWriterPtr inner_;
    SigningSink& sink_;
    std::string sessionId_;
    bool authorised_;
    bool failed_ = false;
    std::string held_;
};

core::MessageWriterPtr SigningSink::open(const core::Envelope& envelope, core::SinkStatus& status) {
    core::MessageWriterPtr inner = inner_.open(envelope, status);
    if (!inner) return inner;
    const bool authorised = !envelope.authUser.empty() || envelope.viaGrant;
    return std::make_unique<SigningWriter>(std::move(inner), *this, envelope.sessionId, authorised);
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
