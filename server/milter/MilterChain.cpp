#include "milter/MilterChain.h"

#include "core/EventLine.h"
#include "net/HostResolver.h"
#include "milter/MessageEdit.h"

#include <Poco/Logger.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Timespan.h>

#include <algorithm>
#include <stdexcept>

namespace postern::milter {

namespace {

using Clock = std::chrono::steady_clock;
using Kind = core::MilterVerdict::Kind;

Poco::Logger& logger() { return Poco::Logger::get("postern.milter"); }

const char* defaultName(DefaultAction a) {
    return a == DefaultAction::Accept ? "accept" : a == DefaultAction::Reject ? "reject" : "tempfail";
}

struct Failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace

std::optional<MilterEndpoint> MilterEndpoint::parse(const std::string& text, std::string& error) {
    MilterEndpoint e;
    e.spec = text;
    if (text.rfind("unix:", 0) == 0) {
        e.kind = Kind::Unix;
        e.path = text.substr(5);
        if (e.path.empty() || e.path[0] != '/') {
            error = "unix: needs an absolute path";
            return std::nullopt;
        }
        return e;
    }
    if (text.rfind("inet:", 0) != 0) {
        error = "expected inet:host:port or unix:/path";
        return std::nullopt;
    }
    std::string rest = text.substr(5);
    auto colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= rest.size()) {
        error = "expected inet:host:port";
        return std::nullopt;
    }
    e.kind = Kind::Inet;
    e.host = rest.substr(0, colon);
    if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']') e.host = e.host.substr(1, e.host.size() - 2);
    std::string port = rest.substr(colon + 1);
    unsigned long p = 0;
    for (char c : port) {
        if (c < '0' || c > '9' || p > 65535) {
            error = "bad port '" + port + "'";
            return std::nullopt;
        }
        p = p * 10 + static_cast<unsigned long>(c - '0');
    }
    if (p == 0 || p > 65535) {
        error = "bad port '" + port + "'";
        return std::nullopt;
    }
    e.port = static_cast<std::uint16_t>(p);
    return e;
}

// One milter for one SMTP session.
class MilterConnection {
public:
    MilterConnection(const MilterSettings& s, MilterEndpoint e, core::EventCounters* events)
        : settings_(s), endpoint_(std::move(e)), events_(events) {}
    ~MilterConnection() {
        if (socket_) {
            try {
                send(packet(cmd::Quit), settings_.commandTimeout);
            } catch (...) {
            }
        }
    }

    core::MilterVerdict connect(const core::MilterFacts& f);
    core::MilterVerdict helo(const core::MilterFacts& f);
    core::MilterVerdict mail(const core::MilterFacts& f);
    core::MilterVerdict rcpt(const core::MilterFacts& f);
    core::MilterVerdict data(const core::MilterFacts& f);
    core::MilterVerdict message(const core::MilterFacts& f, MessageParts& m, core::MilterMessage& env);
    void abort();

private:
    enum class State { Live, Off, Failed };
    // One step: macros, the command, the reply unless the milter said it sends none.
    // Returns a verdict (Continue when no reply is expected). Throws Failure.
    Reply exchange(const std::string& macroPacket, const std::string& command, bool wantReply,
                   std::chrono::milliseconds timeout);
    Reply readReply(std::chrono::milliseconds timeout);
    void send(const std::string& bytes, std::chrono::milliseconds timeout);
    void open(const core::MilterFacts& f);
    core::MilterVerdict fail(const core::MilterFacts& f, std::string_view stage, const std::string& reason);
    // Maps a verdict reply to the port's verdict and logs it (stage: connect, ..., eom).
    core::MilterVerdict verdict(const core::MilterFacts& f, const Reply& r, std::string_view stage, bool session);
    bool active() const { return state_ == State::Live && !offForMessage_; }
    void count(std::string_view event, std::string_view label) {
        if (events_) events_->count(event, label);
    }
    template <typename Step>
    core::MilterVerdict guarded(const core::MilterFacts& f, std::string_view stage, Step step);

    const MilterSettings& settings_;
    MilterEndpoint endpoint_;
    core::EventCounters* events_;
    std::unique_ptr<Poco::Net::StreamSocket> socket_;
    PacketReader reader_;
    State state_ = State::Live;
    std::uint32_t version_ = 6;  // the protocol version in use: min(offered, the milter's)
    core::MilterVerdict failed_;   // State::Failed: answered to every later step
    bool offForMessage_ = false;   // accepted this message: nothing more until the next MAIL
    bool inMessage_ = false;       // MAIL sent, no end of message yet (abort needed)
    bool lostAtAbort_ = false;     // the socket broke sending ABORT: the next step fails
    std::uint32_t actions_ = 0, protocol_ = 0;
};

void MilterConnection::send(const std::string& bytes, std::chrono::milliseconds timeout) {
    socket_->setSendTimeout(Poco::Timespan(std::chrono::duration_cast<std::chrono::microseconds>(timeout).count()));
    std::size_t done = 0;
    while (done < bytes.size()) {
        int n = socket_->sendBytes(bytes.data() + done, static_cast<int>(bytes.size() - done));
        if (n <= 0) throw Failure("write failed");
        done += static_cast<std::size_t>(n);
    }
}

Reply MilterConnection::readReply(std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    char buf[16384];
    while (true) {
        if (auto p = reader_.next()) {
            std::string error;
            auto r = parseReply(*p, error);
            if (!r) throw Failure("protocol: " + error);
            if (r->kind == Reply::Kind::Progress) {  // still working: the timer starts again
                deadline = Clock::now() + timeout;
                continue;
            }
            return *r;
        }
        if (reader_.bad()) throw Failure("protocol: bad packet length");
        auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
        if (left.count() <= 0) throw Failure("timeout");
        socket_->setReceiveTimeout(Poco::Timespan(left.count()));
        int n = 0;
        try {
            n = socket_->receiveBytes(buf, sizeof buf);
        } catch (const Poco::TimeoutException&) {
            throw Failure("timeout");
        }
        if (n <= 0) throw Failure("closed by milter");
        reader_.feed(buf, static_cast<std::size_t>(n));
    }
}

Reply MilterConnection::exchange(const std::string& macroPacket, const std::string& command, bool wantReply,
                                 std::chrono::milliseconds timeout) {
    send(macroPacket + command, timeout);
    if (!wantReply) return Reply{};
    return readReply(timeout);
}

void MilterConnection::open(const core::MilterFacts&) {
    // connect_timeout covers the host name's lookup too (getaddrinfo has no timeout).
    const auto deadline = Clock::now() + settings_.connectTimeout;
    Poco::Net::SocketAddress addr;
    if (endpoint_.kind == MilterEndpoint::Kind::Unix) {
        addr = Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, endpoint_.path);
    } else {
        std::string error;
        auto found = net::HostResolver::forHost(endpoint_.host, endpoint_.port).resolve(deadline, error);
        if (!found) throw Failure("connect: " + error);
        addr = *found;
    }
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
    if (left.count() <= 0) throw Failure("connect: timeout");
    socket_ = std::make_unique<Poco::Net::StreamSocket>();
    try {
        socket_->connect(addr, Poco::Timespan(left.count()));
    } catch (const Poco::TimeoutException&) {
        socket_.reset();
        throw Failure("connect: timeout");
    } catch (const Poco::Exception& e) {
        socket_.reset();
        throw Failure("connect: " + e.displayText());
    }
    // TCP only: on a unix socket TCP_NODELAY is EOPNOTSUPP (every unix: milter failed here).
    if (endpoint_.kind != MilterEndpoint::Kind::Unix) socket_->setNoDelay(true);
    // An older milter is offered only the steps its version has (HDR_LEADSPC, header values
    // exactly as stored, from protocol 6 on).
    const std::uint32_t offered = proto::offeredFor(settings_.protocolVersion);
    send(optNeg(settings_.protocolVersion, act::All, offered), settings_.commandTimeout);
    Reply r = readReply(settings_.commandTimeout);
    if (r.kind != Reply::Kind::OptNeg) throw Failure("protocol: no option negotiation reply");
    if (r.version < 2) throw Failure("protocol: milter version " + std::to_string(r.version));
    actions_ = r.actions & act::All;
    // The older of the two versions decides which steps exist (Postfix masks by both): a
    // version-2 milter answering a version-6 offer gets no DATA step either.
    version_ = std::min(settings_.protocolVersion, r.version);
    protocol_ = r.protocol & proto::offeredFor(version_);  // steps we cannot skip are sent anyway
}

core::MilterVerdict MilterConnection::fail(const core::MilterFacts& f, std::string_view stage,
                                           const std::string& reason) {
    socket_.reset();
    count("milter_fail", defaultName(settings_.defaultAction));
    logger().warning(core::EventLine::inSession(f.sessionId, "milter.fail")
                         .add("milter", endpoint_.spec)
                         .add("stage", stage)
                         .text("reason", reason)
                         .add("action", defaultName(settings_.defaultAction))
                         .str());
    core::MilterVerdict v;
    v.milter = endpoint_.spec;
    switch (settings_.defaultAction) {
    case DefaultAction::Accept:
        state_ = State::Off;  // as if the milter were not there, for the rest of the session
        return v;
    case DefaultAction::TempFail: v.kind = Kind::TempFail; break;
    case DefaultAction::Reject: v.kind = Kind::Reject; break;
    }
    state_ = State::Failed;
    failed_ = v;
    return v;
}

core::MilterVerdict MilterConnection::verdict(const core::MilterFacts& f, const Reply& r, std::string_view stage,
                                              bool session) {
    core::MilterVerdict v;
    v.milter = endpoint_.spec;
    const char* action = kindName(r.kind);
    switch (r.kind) {
    case Reply::Kind::Continue:
    case Reply::Kind::Skip: return v;
    case Reply::Kind::Accept:
        // At connect or HELO: nothing more for this session; later: for this message.
        if (session) state_ = State::Off;
        else offForMessage_ = true;
        v.kind = Kind::Continue;  // logged: an accept ends what this milter is asked
        break;
    case Reply::Kind::Reject: v.kind = Kind::Reject; break;
    case Reply::Kind::TempFail: v.kind = Kind::TempFail; break;
    case Reply::Kind::ConnFail:
    case Reply::Kind::Shutdown:
        v.kind = Kind::TempFail;
        socket_.reset();
        state_ = State::Failed;
        failed_ = v;
        break;
    case Reply::Kind::Discard: v.kind = Kind::Discard; break;
    case Reply::Kind::ReplyCode:
        v.kind = r.text[0] == '5' ? Kind::Reject : Kind::TempFail;
        v.reply = r.text;
        break;
    default: throw Failure(std::string("protocol: unexpected '") + action + "' at " + std::string(stage));
    }
    count("milter_action", action);
    core::EventLine l = core::EventLine::inSession(f.sessionId, "milter.action");
    l.add("milter", endpoint_.spec).add("action", action).add("stage", stage);
    if (stage == "rcpt") l.address("to", f.recipient);
    if (!v.reply.empty()) l.text("reply", v.reply);
    logger().notice(l.str());
    if (session && socket_) {
        // A verdict at connect or HELO is the milter's last word for the session: QUIT and
        // close now (Postfix's milter8 does), or a client the milter refused would hold a
        // milter connection, and its libmilter thread, until it left. A refusal answers
        // every later step the same way (never a Continue from a closed milter). A DISCARD
        // there has no message to discard: ignored, as Postfix does (else every message of
        // the session would be accepted and dropped).
        if (v.kind == Kind::Discard) {
            v.kind = Kind::Continue;
            state_ = State::Off;
        }
        if (state_ != State::Off) {
            state_ = State::Failed;
            failed_ = v;
        }
        try {
            send(packet(cmd::Quit), settings_.commandTimeout);
        } catch (...) {
        }
        socket_.reset();
    }
    return v;
}

template <typename Step>
core::MilterVerdict MilterConnection::guarded(const core::MilterFacts& f, std::string_view stage, Step step) {
    if (state_ == State::Failed) return failed_;
    if (state_ == State::Off) return {};
    if (lostAtAbort_) {
        lostAtAbort_ = false;
        return fail(f, stage, "connection lost while aborting the previous message");
    }
    try {
        if (!socket_) open(f);
        return step();
    } catch (const Failure& e) {
        return fail(f, stage, e.what());
    } catch (const Poco::Exception& e) {
        return fail(f, stage, e.displayText());
    } catch (const std::exception& e) {
        return fail(f, stage, e.what());
    }
}

namespace {

char familyOf(const core::ClientAddress& c) { return c.ip.family() == Poco::Net::IPAddress::IPv6 && c.host().find(':') != std::string::npos ? '6' : '4'; }

Macros connectMacros(const core::MilterFacts& f) {
    return {{"j", f.hostname},
            {"{daemon_name}", f.daemonName},
            {"{daemon_addr}", f.serverAddr},
            {"{daemon_port}", std::to_string(f.serverPort)},
            {"v", "Postern"},
            {"_", f.clientName + " [" + f.client.host() + "]"},
            {"{client_addr}", f.client.host()},
            {"{client_port}", std::to_string(f.client.port)},
            {"{client_name}", f.clientName},
            {"{client_ptr}", f.clientName}};
}

}  // namespace

core::MilterVerdict MilterConnection::connect(const core::MilterFacts& f) {
    return guarded(f, "connect", [&] {
        if (protocol_ & proto::NoConnect) return core::MilterVerdict{};
        Reply r = exchange(macros(cmd::Connect, connectMacros(f)),
                           milter::connect(f.clientName, familyOf(f.client), f.client.port, f.client.host()),
                           !(protocol_ & proto::NrConn), settings_.commandTimeout);
        return verdict(f, r, "connect", true);
    });
}

core::MilterVerdict MilterConnection::helo(const core::MilterFacts& f) {
    return guarded(f, "helo", [&] {
        if (protocol_ & proto::NoHelo) return core::MilterVerdict{};
        Macros m;
        if (!f.tlsVersion.empty()) m = {{"{tls_version}", f.tlsVersion}, {"{cipher}", f.cipher}};
        Reply r = exchange(macros(cmd::Helo, m), milter::helo(f.heloName), !(protocol_ & proto::NrHelo),
                           settings_.commandTimeout);
        return verdict(f, r, "helo", true);
    });
}

core::MilterVerdict MilterConnection::mail(const core::MilterFacts& f) {
    offForMessage_ = false;
    return guarded(f, "mail", [&] {
        inMessage_ = true;
        if (protocol_ & proto::NoMail) return core::MilterVerdict{};
        Macros m = {{"i", f.queueId}, {"{mail_addr}", f.sender}};
        if (!f.authUser.empty()) {
            m.emplace_back("{auth_type}", f.authType);
            m.emplace_back("{auth_authen}", f.authUser);
        }
        Reply r = exchange(macros(cmd::Mail, m), envelope(cmd::Mail, f.sender), !(protocol_ & proto::NrMail),
                           settings_.commandTimeout);
        return verdict(f, r, "mail", false);
    });
}

core::MilterVerdict MilterConnection::rcpt(const core::MilterFacts& f) {
    if (offForMessage_) return {};
    return guarded(f, "rcpt", [&] {
        if (protocol_ & proto::NoRcpt) return core::MilterVerdict{};
        Reply r = exchange(macros(cmd::Rcpt, {{"{rcpt_addr}", f.recipient}}), envelope(cmd::Rcpt, f.recipient),
                           !(protocol_ & proto::NrRcpt), settings_.commandTimeout);
        // Accept at RCPT accepts the message for this milter; a refusal is this recipient's.
        return verdict(f, r, "rcpt", false);
    });
}

core::MilterVerdict MilterConnection::data(const core::MilterFacts& f) {
    if (offForMessage_) return {};
    return guarded(f, "data", [&] {
        // Before protocol 4 there is no DATA step: never sent (libmilter would disconnect).
        if (!proto::hasDataStep(version_) || (protocol_ & proto::NoData)) return core::MilterVerdict{};
        Reply r = exchange(macros(cmd::Data, {{"i", f.queueId}}), packet(cmd::Data), !(protocol_ & proto::NrData),
                           settings_.commandTimeout);
        return verdict(f, r, "data", false);
    });
}

core::MilterVerdict MilterConnection::message(const core::MilterFacts& f, MessageParts& m, core::MilterMessage& env) {
    if (offForMessage_) {
        offForMessage_ = false;
        inMessage_ = false;
        return {};
    }
    auto v = guarded(f, "eom", [&]() -> core::MilterVerdict {
        const auto t = settings_.contentTimeout;
        if (!(protocol_ & proto::NoHdrs)) {
            for (const auto& [name, value] : m.headers) {
                // HDR_LEADSPC: the value as stored (its leading space included); else the way
                // Sendmail and Postfix pass it (one leading space left out).
                const std::string_view sent = (protocol_ & proto::HdrLeadSpc) ? std::string_view(value) : valueForMilter(value);
                Reply r = exchange({}, header(headerName(name), sent), !(protocol_ & proto::NrHdr), t);
                auto v = verdict(f, r, "header", false);
                if (v.kind != Kind::Continue || offForMessage_) return v;
            }
        }
        if (!(protocol_ & proto::NoEoh)) {
            Reply r = exchange(macros(cmd::Eoh, {{"i", f.queueId}}), packet(cmd::Eoh), !(protocol_ & proto::NrEoh), t);
            auto v = verdict(f, r, "eoh", false);
            if (v.kind != Kind::Continue || offForMessage_) return v;
        }
        if (!(protocol_ & proto::NoBody)) {
            for (std::size_t at = 0; at < m.body.size(); at += BodyChunk) {
                Reply r = exchange({}, packet(cmd::Body, std::string_view(m.body).substr(at, BodyChunk)),
                                   !(protocol_ & proto::NrBody), t);
                if (r.kind == Reply::Kind::Skip) break;
                auto v = verdict(f, r, "body", false);
                if (v.kind != Kind::Continue || offForMessage_) return v;
            }
        }
        send(macros(cmd::BodyEob, {{"i", f.queueId}}) + packet(cmd::BodyEob), t);
        bool bodyStarted = false;
        // The message before this milter's first edit: a milter that fails before its verdict
        // (a timeout, a closed socket, a bad packet) leaves the message as it was, never half
        // edited (a body replaced by its first chunks only): its default action means "as if
        // it were not there".
        std::optional<std::pair<MessageParts, core::MilterMessage>> before;
        struct Restore {
            std::optional<std::pair<MessageParts, core::MilterMessage>>& before;
            MessageParts& m;
            core::MilterMessage& env;
            bool done = false;
            ~Restore() {
                if (!done && before) {
                    m = std::move(before->first);
                    env = std::move(before->second);
                }
            }
        } restore{before, m, env};
        while (true) {
            Reply r = readReply(t);
            if (r.isVerdict()) {
                restore.done = true;
                inMessage_ = false;
                if (bodyStarted) m.body = toCrlf(m.body);
                return verdict(f, r, "eom", false);
            }
            if (r.kind == Reply::Kind::SetSymList) continue;
            const std::uint32_t need = r.neededAction();
            if (need == 0) throw Failure(std::string("protocol: unexpected '") + kindName(r.kind) + "' at eom");
            if (!(actions_ & need)) throw Failure(std::string("protocol: '") + kindName(r.kind) + "' not negotiated");
            if (!before) before.emplace(m, env);
            applyModification(r, m, env, bodyStarted, (protocol_ & proto::HdrLeadSpc) != 0);
            count("milter_action", kindName(r.kind));
            core::EventLine l = core::EventLine::inSession(f.sessionId, "milter.action");
            l.add("milter", endpoint_.spec).add("action", kindName(r.kind)).add("stage", "eom");
            if (!r.name.empty()) l.add("header", r.name);
            if (r.kind == Reply::Kind::AddRcpt || r.kind == Reply::Kind::DelRcpt) l.address("to", r.text);
            if (r.kind == Reply::Kind::ChgFrom) l.address("from", r.text);
            if (r.kind == Reply::Kind::Quarantine) l.text("reason", r.text);
            logger().notice(l.str());
        }
    });
    // A verdict before the end of message leaves the milter inside it: the chain's abort()
    // ends it there.
    offForMessage_ = false;
    return v;
}

void MilterConnection::abort() {
    offForMessage_ = false;
    if (!inMessage_ || !socket_ || state_ != State::Live) {
        inMessage_ = false;
        return;
    }
    inMessage_ = false;
    try {
        send(packet(cmd::Abort), settings_.commandTimeout);  // no reply (libmilter)
    } catch (...) {
        // Not opened again: a new connection would start at MAIL without CONNECT/HELO (the
        // milter would judge mail from an unknown client). The next step fails the milter
        // (its default action), as Postfix does.
        socket_.reset();
        lostAtAbort_ = true;
    }
}

MilterChain::MilterChain(const MilterSettings& settings, const std::vector<MilterEndpoint>& endpoints,
                         core::EventCounters* events) {
    for (const auto& e : endpoints) milters_.push_back(std::make_unique<MilterConnection>(settings, e, events));
}

MilterChain::~MilterChain() = default;

namespace {
template <typename F>
core::MilterVerdict each(std::vector<std::unique_ptr<MilterConnection>>& ms, F f) {
    for (auto& m : ms) {
        core::MilterVerdict v = f(*m);
        if (v.kind != Kind::Continue && v.kind != Kind::Accept) return v;
    }
    return {};
}
}  // namespace

core::MilterVerdict MilterChain::connect(const core::MilterFacts& f) {
    return each(milters_, [&](MilterConnection& m) { return m.connect(f); });
}
core::MilterVerdict MilterChain::helo(const core::MilterFacts& f) {
    return each(milters_, [&](MilterConnection& m) { return m.helo(f); });
}
core::MilterVerdict MilterChain::mail(const core::MilterFacts& f) {
    auto v = each(milters_, [&](MilterConnection& m) { return m.mail(f); });
    if (v.kind != Kind::Continue) abort();
    return v;
}
core::MilterVerdict MilterChain::rcpt(const core::MilterFacts& f) {
    // A refusal is this recipient's; Discard is the whole message's (the session notes it).
    return each(milters_, [&](MilterConnection& m) { return m.rcpt(f); });
}
core::MilterVerdict MilterChain::data(const core::MilterFacts& f) {
    auto v = each(milters_, [&](MilterConnection& m) { return m.data(f); });
    if (v.kind != Kind::Continue && v.kind != Kind::Discard) abort();
    return v;
}
core::MilterVerdict MilterChain::message(const core::MilterFacts& f, core::MilterMessage& m) {
    core::MilterVerdict result;
    MessageParts parts = splitMessage(m.content);
    for (auto& c : milters_) {
        core::MilterVerdict v = c->message(f, parts, m);
        if (v.kind == Kind::Continue || v.kind == Kind::Accept) continue;
        result = v;
        break;
    }
    abort();  // milters after a refusal never saw the end of this message
    if (parts.changed) {
        m.content = joinMessage(parts);
        m.contentChanged = true;
    }
    return result;
}
void MilterChain::abort() {
    for (auto& m : milters_) m->abort();
}

MilterFactoryImpl::MilterFactoryImpl(MilterSettings settings, core::EventCounters* events)
    : settings_(std::move(settings)), events_(events) {
    auto parseAll = [](const std::vector<std::string>& specs) {
        std::vector<MilterEndpoint> out;
        for (const auto& s : specs) {
            std::string error;
            auto e = MilterEndpoint::parse(s, error);
            if (!e) throw std::invalid_argument("milter '" + s + "': " + error);
            out.push_back(*e);
        }
        return out;
    };
    global_ = parseAll(settings_.milters);
    for (const auto& [listener, specs] : settings_.perListener) perListener_[listener] = parseAll(specs);
}

bool MilterFactoryImpl::empty() const {
    if (!global_.empty()) return false;
    for (const auto& [l, e] : perListener_)
        if (!e.empty()) return false;
    return true;
}

std::unique_ptr<core::MilterSession> MilterFactoryImpl::open(std::string_view listener, bool) {
    auto it = perListener_.find(listener);
    const auto& endpoints = it != perListener_.end() ? it->second : global_;
    if (endpoints.empty()) return nullptr;
    return std::make_unique<MilterChain>(settings_, endpoints, events_);
}

}  // namespace postern::milter
