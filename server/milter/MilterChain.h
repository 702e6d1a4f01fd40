// Milter client: one connection per milter per SMTP session (MilterConnection), the
// chain of the milters configured for a listener (MilterChain, the core::MilterSession),
// and the factory the daemon hands to the sessions.
#pragma once

#include "core/EventCounters.h"
#include "core/MilterPort.h"
#include "milter/MilterProtocol.h"

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace postern::milter {

enum class DefaultAction { TempFail, Accept, Reject };

struct MilterEndpoint {
    enum class Kind { Inet, Unix };
    Kind kind = Kind::Inet;
    std::string host;
    std::uint16_t port = 0;
    std::string path;
    std::string spec;  // as configured ("inet:127.0.0.1:11332"), the milter's name in logs
    // "inet:host:port", "inet:[v6]:port", "unix:/path"; nullopt + error otherwise.
    static std::optional<MilterEndpoint> parse(const std::string& text, std::string& error);
};

struct MilterSettings {
    // Set from the milter.* keys (server/config); their one default lives in the key table.
    std::vector<std::string> milters;                              // milter.smtpd_milters
    std::map<std::string, std::vector<std::string>> perListener;   // listener.<name>.milters (set = override)
    std::chrono::milliseconds connectTimeout{};                    // milter.connect_timeout
    std::chrono::milliseconds commandTimeout{};                    // milter.command_timeout
    std::chrono::milliseconds contentTimeout{};                    // milter.content_timeout
    DefaultAction defaultAction = DefaultAction::TempFail;         // milter.default_action
    std::uint32_t protocolVersion = 0;                             // milter.protocol
    bool operator==(const MilterSettings&) const = default;
};

class MilterConnection;

// The milters of one SMTP session, asked in the configured order.
class MilterChain final : public core::MilterSession {
public:
    MilterChain(const MilterSettings& settings, const std::vector<MilterEndpoint>& endpoints,
                core::EventCounters* events);
    ~MilterChain() override;

    core::MilterVerdict connect(const core::MilterFacts& f) override;
    core::MilterVerdict helo(const core::MilterFacts& f) override;
    core::MilterVerdict mail(const core::MilterFacts& f) override;
    core::MilterVerdict rcpt(const core::MilterFacts& f) override;
    core::MilterVerdict data(const core::MilterFacts& f) override;
    core::MilterVerdict message(const core::MilterFacts& f, core::MilterMessage& m) override;
    void abort() override;

private:
    std::vector<std::unique_ptr<MilterConnection>> milters_;
};

class MilterFactoryImpl final : public core::MilterFactory {
public:
    // Throws std::invalid_argument for a bad milter address.
    MilterFactoryImpl(MilterSettings settings, core::EventCounters* events);
    std::unique_ptr<core::MilterSession> open(std::string_view listener, bool submission) override;
    bool empty() const;

private:
    MilterSettings settings_;
    std::vector<MilterEndpoint> global_;
    std::map<std::string, std::vector<MilterEndpoint>, std::less<>> perListener_;
    core::EventCounters* events_;
};

}  // namespace postern::milter
