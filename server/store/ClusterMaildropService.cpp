// POP3 maildrops for clustered nodes: PostgreSQL lease first, then the local maildrop.
#include "store/ClusterMaildropService.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

namespace postern::store {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.store"); }

// The local maildrop plus the lease; destruction releases them in that order, so the lease
// (what other nodes wait for) is the last thing to go.
class ClusterMaildrop : public core::Maildrop {
public:
    ClusterMaildrop(core::MaildropPtr inner, PgMaildropLock& lock, std::string token, std::string mailbox)
        : inner_(std::move(inner)), lock_(lock), token_(std::move(token)), mailbox_(std::move(mailbox)) {}
    ~ClusterMaildrop() override {
        inner_.reset();
        if (!token_.empty()) lock_.release(token_);
    }
    ClusterMaildrop(const ClusterMaildrop&) = delete;
    ClusterMaildrop& operator=(const ClusterMaildrop&) = delete;

    const std::vector<core::MaildropEntry>& entries() const override { return inner_->entries(); }
    core::MessageRead openMessage(std::size_t index, core::MessageStreamPtr& out) override {
        return inner_->openMessage(index, out);
    }

    bool expunge(const std::vector<std::size_t>& indexes) override {
        // Deleting is irreversible: only while the lease is provably ours (renewed just now).
        // A maildrop opened without a lease (shared PostgreSQL down) never deletes.
        if (indexes.empty()) return true;
        const core::Answer held = token_.empty() ? core::Answer::TempFail : lock_.verify(token_);
        if (held != core::Answer::Yes) {
            logger().error(core::EventLine("store.expunge_refused")
                               .add("mailbox", mailbox_)
                               .add("reason", (held == core::Answer::No ? "lease_lost" : "lease_unverifiable"))
                               .str());
            return false;
        }
        return inner_->expunge(indexes);
    }

private:
    core::MaildropPtr inner_;
    PgMaildropLock& lock_;
    std::string token_;
    std::string mailbox_;
};

}  // namespace

ClusterMaildropService::ClusterMaildropService(core::MaildropService& local, PgMaildropLock& lock, std::string nodeId)
    : local_(local), lock_(lock), nodeId_(std::move(nodeId)) {}

core::MaildropStatus ClusterMaildropService::open(const std::string& mailbox, core::MaildropPtr& out) {
    PgMaildropLock::Acquisition a = lock_.acquire(mailbox, nodeId_);
    if (a.status == PgMaildropLock::Status::InUse)
        return core::MaildropStatus::InUse;
    if (a.status != PgMaildropLock::Status::Acquired) {
        // The shared PostgreSQL cannot answer: the user may still read mail (under the local
        // lock only), but nothing is deleted without the cluster-wide lease (expunge refuses,
        // QUIT answers -ERR [SYS/TEMP] and the messages stay).
        logger().warning(core::EventLine("store.lease_unavailable")
                             .add("mailbox", mailbox)
                             .text("detail", "read-only session")
                             .str());
        a.token.clear();
    }
    return openHeld(mailbox, a.token, out);
}

core::MaildropStatus ClusterMaildropService::openHeld(const std::string& mailbox, const std::string& token,
                                                      core::MaildropPtr& out) {
    const PgMaildropLock::Acquisition a{PgMaildropLock::Status::Acquired, token};
    core::MaildropPtr inner;
    core::MaildropStatus s = core::MaildropStatus::TempFail;
    try {
        s = local_.open(mailbox, inner);
    } catch (...) {
        if (!a.token.empty()) lock_.release(a.token);
        throw;
    }
    if (s != core::MaildropStatus::Ok || !inner) {
        if (!a.token.empty()) lock_.release(a.token);
        return s == core::MaildropStatus::Ok ? core::MaildropStatus::TempFail : s;
    }
    out = std::make_unique<ClusterMaildrop>(std::move(inner), lock_, a.token, mailbox);
    return core::MaildropStatus::Ok;
}

}  // namespace postern::store
