#include "QueueCommand.h"

#include "CtlSupport.h"
#include "core/LogValue.h"
#include "queue/FileOps.h"
#include "queue/OutboundQueue.h"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <grp.h>
#include <unistd.h>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <ostream>
#include <sys/stat.h>

namespace postern::ctl {

namespace {

std::string isoTime(std::chrono::system_clock::time_point t) {
    std::time_t tt = std::chrono::system_clock::to_time_t(t);
    if (tt <= 0) return "now";
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

struct QueueAccess {
    Options options;
    std::unique_ptr<queue::OutboundQueue> queue;
};

QueueAccess openQueue(CommandContext& c, const std::set<std::string>& flags = {}) {
    QueueAccess a;
    a.options = parseOptions(c.args, {"--queue-dir"}, flags);
    std::string dir = a.options.value("--queue-dir");
    if (dir.empty()) dir = loadConfig(a.options).queueDir;
    struct stat st{};
    if (::stat((dir + "/envelope").c_str(), &st) != 0)
        throw CtlError(ExitIoError, "no queue at " + dir + " (server.queue_dir)");
    // Run as root (sudo): act as the queue's owner, as Postfix's postsuper acts as the mail
    // owner. A rewritten envelope or a new envelope.lock owned by root (0600) was unreadable
    // to posternd serving as server.user: the message was never sent nor bounced.
    if (::geteuid() == 0 && st.st_uid != 0) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(st.st_gid) != 0 || ::setuid(st.st_uid) != 0)
            throw CtlError(ExitNoPerm, "cannot act as the owner of " + dir + "/envelope (uid " +
                                           std::to_string(st.st_uid) + "): " + std::strerror(errno));
    }
    try {
        // Limits do not matter here: posternctl never enqueues.
        a.queue = std::make_unique<queue::OutboundQueue>(dir, queue::QueueLimits{});
    } catch (const std::exception& e) {
        throw CtlError(ExitIoError, e.what());
    }
    return a;
}

std::string idArgument(const QueueAccess& a, const Command& command) {
    expectPositional(a.options, 1, 1, command);
    const std::string& id = a.options.positional.front();
    if (!queue::OutboundQueue::isValidId(id)) throw CtlError(ExitUsage, "'" + id + "' is not a queue id");
    return id;
}

// Locked change of one envelope; 67 if it is not queued.
int change(CommandContext& c, const Command& command, const char* name,
           const std::function<void(queue::QueueEnvelope&)>& edit, const char* done) {
    return guarded(c, name, [&] {
        QueueAccess a = openQueue(c);
        std::string id = idArgument(a, command);
        auto after = a.queue->modifyEnvelope(id, [&](queue::QueueEnvelope& e) {
            edit(e);
            return true;
        });
        if (!after) {
            if (!a.queue->readEnvelope(id)) throw CtlError(ExitNoUser, "no queued message " + id);
            throw CtlError(ExitIoError, "cannot update the envelope of " + id);
        }
        c.out << id << ": " << done << "\n";
        return ExitOk;
    });
}

Poco::JSON::Object::Ptr envelopeJson(const queue::QueueEnvelope& v) {
    auto j = jsonObject();
    j->set("id", v.id);
    j->set("arrival", isoTime(v.arrival));
    j->set("sender", v.sender);
    j->set("recipients", jsonArray(v.recipients));
    j->set("attempts", v.attempts);
    j->set("next_attempt", isoTime(v.nextAttempt));
    j->set("hold", v.hold);
    j->set("last_error", v.lastError.empty() ? Poco::Dynamic::Var() : Poco::Dynamic::Var(v.lastError));
    // Recipients that failed for good whose failure report is still owed (never sent again).
    Poco::JSON::Array::Ptr owed = new Poco::JSON::Array;
    for (const auto& r : v.recipients)
        if (auto it = v.owedReports.find(r); it != v.owedReports.end()) {
            auto o = jsonObject();
            o->set("recipient", r);
            o->set("status", it->second.status);
            o->set("diagnostic", it->second.diagnostic);
            owed->add(o);
        }
    j->set("report_owed", owed);
    return j;
}

// A stored value as the operator's terminal shows it: the envelope keeps clients' and remote
// servers' text as it came (HELO names, addresses, a remote reply's diagnostic), and a
// control character in it must not reach the terminal (an ESC sequence could rewrite the
// screen). Controls, invalid UTF-8, '"' and '\' are shown as \xHH, as in the log.
std::string shown(std::string_view value) {
    return core::logQuotedText(value, std::numeric_limits<std::size_t>::max());
}

}  // namespace

int runQueueList(CommandContext& c) {
    return guarded(c, "queue list", [&] {
        QueueAccess a = openQueue(c, {"--json"});
        expectPositional(a.options, 0, 0, QueueListCommand);
        auto entries = a.queue->list();
        if (a.options.has("--json")) {
            Poco::JSON::Array::Ptr out = new Poco::JSON::Array;
            for (const auto& e : entries) {
                auto j = envelopeJson(e.envelope);
                j->set("size", e.size);
                out->add(j);
            }
            writeJson(c.out, out);
            return ExitOk;
        }
        for (const auto& e : entries) {
            const auto& v = e.envelope;
            c.out << v.id << " " << isoTime(v.arrival) << " size=" << e.size << " attempts=" << v.attempts
                  << " next=" << isoTime(v.nextAttempt) << (v.hold ? " hold" : "") << " from=<" << shown(v.sender) << "> to=";
            for (std::size_t i = 0; i < v.recipients.size(); ++i)
                c.out << (i ? "," : "") << "<" << shown(v.recipients[i]) << ">"
                      << (v.owedReports.count(v.recipients[i]) ? "(failed, report owed)" : "");
            c.out << "\n";
            if (!v.lastError.empty()) c.out << "    last-error: " << shown(v.lastError) << "\n";
        }
        c.out << entries.size() << (entries.size() == 1 ? " message\n" : " messages\n");
        return ExitOk;
    });
}

int runQueueShow(CommandContext& c) {
    return guarded(c, "queue show", [&] {
        QueueAccess a = openQueue(c, {"--json"});
        std::string id = idArgument(a, QueueShowCommand);
        auto v = a.queue->readEnvelope(id);
        if (!v) throw CtlError(ExitNoUser, "no queued message " + id);
        if (a.options.has("--json")) {
            auto j = envelopeJson(*v);
            j->set("client", v->clientIp);
            j->set("helo", v->heloName);
            j->set("auth", v->authUser.empty() ? Poco::Dynamic::Var() : Poco::Dynamic::Var(v->authUser));
            j->set("session", v->sessionId);
            std::string data;
            if (queue::readFile(a.queue->dataPath(id), data)) {
                auto end = data.find("\r\n\r\n");
                j->set("size", static_cast<std::uint64_t>(data.size()));
                j->set("header", data.substr(0, end == std::string::npos ? data.size() : end + 2));
            }
            writeJson(c.out, j);
            return ExitOk;
        }
        c.out << "id: " << v->id << "\narrival: " << isoTime(v->arrival) << "\nsender: <" << shown(v->sender) << ">\n";
        for (const auto& r : v->recipients) {
            c.out << "recipient: <" << shown(r) << ">";
            if (auto it = v->owedReports.find(r); it != v->owedReports.end())
                c.out << " failed " << it->second.status << ", report owed: " << shown(it->second.diagnostic);
            c.out << "\n";
        }
        c.out << "client: " << shown(v->clientIp) << "\nhelo: " << shown(v->heloName) << "\nauth: " << shown(v->authUser)
              << "\nsession: " << shown(v->sessionId) << "\nattempts: " << v->attempts << "\nnext-attempt: "
              << isoTime(v->nextAttempt) << "\nhold: " << (v->hold ? "yes" : "no") << "\nlast-error: " << shown(v->lastError)
              << "\n";
        std::string data;
        if (queue::readFile(a.queue->dataPath(id), data)) {
            auto end = data.find("\r\n\r\n");
            c.out << "size: " << data.size() << "\n\n" << data.substr(0, end == std::string::npos ? data.size() : end + 2);
        }
        return ExitOk;
    });
}

int runQueueFlush(CommandContext& c) {
    return guarded(c, "queue flush", [&] {
        QueueAccess a = openQueue(c);
        expectPositional(a.options, 0, 0, QueueFlushCommand);
        std::size_t n = 0;
        for (const auto& e : a.queue->list()) {
            if (e.envelope.hold) continue;
            auto after = a.queue->modifyEnvelope(e.envelope.id, [](queue::QueueEnvelope& v) {
                if (v.hold) return false;
                v.nextAttempt = {};
                return true;
            });
            if (after) ++n;
        }
        c.out << n << (n == 1 ? " message" : " messages") << " due now (posternd picks them up at its next queue scan)\n";
        return ExitOk;
    });
}

int runQueueDelete(CommandContext& c) {
    return guarded(c, "queue delete", [&] {
        QueueAccess a = openQueue(c);
        std::string id = idArgument(a, QueueDeleteCommand);
        // Under the envelope lock, as posternd's own changes: a delete between its read and
        // its rewrite of the envelope brought the message back without its data (and later
        // a bounce this command promises not to send).
        bool removing = false;  // the change ran: the envelope existed and is being removed
        auto gone = a.queue->modifyEnvelope(
            id,
            [&removing](queue::QueueEnvelope& e) {
                e.recipients.clear();
                e.owedReports.clear();
                removing = true;
                return true;
            },
            /*syncRemoval=*/true);
        if (!gone) {
            const int err = errno;
            // Removed, but the removal may not be on disk yet (the directory's sync failed).
            if (removing && !a.queue->readEnvelope(id))
                throw CtlError(ExitIoError, "removed " + id + ", but syncing the queue directory failed (" +
                                                std::strerror(err) + "): it may come back after a crash");
            if (!a.queue->readEnvelope(id)) throw CtlError(ExitNoUser, "no queued message " + id);
            throw CtlError(ExitIoError, "cannot remove " + id);
        }
        c.out << id << ": deleted\n";
        return ExitOk;
    });
}

int runQueueHold(CommandContext& c) {
    return change(c, QueueHoldCommand, "queue hold", [](queue::QueueEnvelope& e) { e.hold = true; }, "held");
}

int runQueueRelease(CommandContext& c) {
    return change(c, QueueReleaseCommand, "queue release",
                  [](queue::QueueEnvelope& e) {
                      e.hold = false;
                      e.nextAttempt = {};
                  },
                  "released");
}

}  // namespace postern::ctl
