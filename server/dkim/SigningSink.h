// DKIM signing at acceptance: a MessageSink decorator in front of the spool. A message from
// an authenticated user or a POP-before-SMTP grant holder whose (single) From address is one
// of the user's own (Envelope::senderOwns) and whose domain has keys is held in memory until the end of data, signed with
// every key of that domain (RSA and Ed25519 both when both are configured), and handed to the
// inner writer with the DKIM-Signature fields in front, before the inner commit makes it
// durable. Every other message streams through untouched (an authorised one from the end of
// its header on). One log line and one counter per message:
//   event=dkim.signed domain=.. selector=.. alg=..     (one per signature)
//   event=dkim.skip reason=not_authenticated|from_not_own|no_key|no_from|multiple_from|
//                          bad_from|bare_line_ending|sign_failed
// counted as postern_events_total{event="dkim",label="signed"|<reason>}.
#pragma once

#include "core/EventCounters.h"
#include "core/MessageSink.h"
#include "dkim/Canonical.h"
#include "dkim/KeyStore.h"

#include <ctime>
#include <functional>

namespace postern::dkim {

// What to do with one finished message (pure; the sink and the tests call it).
struct SignOutcome {
    std::string prefix;             // the DKIM-Signature fields to put in front (may be empty)
    std::string skipReason;         // empty when signed
    std::string domain;             // the From domain (A-label), when found
    std::vector<SigningKey> used;   // the keys that signed
};
// owns: the lower-cased addresses the sending user owns (Envelope::senderOwns); only a From
// address among them is signed.
SignOutcome signIfWanted(std::string_view message, bool authorised, const std::vector<std::string>& owns,
                         const KeyStore& keys, std::time_t now);
// The decision from the header fields alone: "" = sign (keys in *domainKeys when asked), else
// the skip reason; *domain is the From domain (A-label) when found.
std::string signingDecision(const std::vector<HeaderField>& headers, const std::vector<std::string>& owns,
                            const KeyStore& keys, std::string& domain, std::vector<SigningKey>* domainKeys);

class SigningSink : public core::MessageSink {
public:
    using Clock = std::function<std::time_t()>;
    SigningSink(core::MessageSink& inner, const KeyStore& keys, core::EventCounters& counters,
                Clock clock = [] { return std::time(nullptr); })
        : inner_(inner), keys_(keys), counters_(counters), clock_(std::move(clock)) {}

    core::MessageWriterPtr open(const core::Envelope& envelope, core::SinkStatus& status) override;

    // The writers' report (one call per finished message).
    void report(const std::string& sessionId, const SignOutcome& outcome);

private:
    core::MessageSink& inner_;
    const KeyStore& keys_;
    core::EventCounters& counters_;
    Clock clock_;
    friend class SigningWriter;
};

}  // namespace postern::dkim
