// In-test fakes of the ports a POP3 session uses, and a golden-transcript runner.
#pragma once

#include "pop3/Pop3Session.h"

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace postern::pop3::test {

// Users: bob/secret -> mailbox "bob", alice/wonder -> "alice"; "tempfail" -> TempFail.
class FakeAuth : public core::AuthService {
public:
    core::AuthResult authenticate(const core::AuthRequest& r) override {
        requests.push_back(r);
        core::AuthResult res;
        if (r.user == "tempfail") return res;  // TempFail
        auto it = users.find(r.user);
        if (it == users.end() || it->second.first != r.password) {
            res.status = core::AuthStatus::BadCredentials;
            return res;
        }
        res.status = core::AuthStatus::Ok;
        res.identity.user = r.user;
        res.identity.mailbox = it->second.second;
        return res;
    }
    std::map<std::string, std::pair<std::string, std::string>> users{{"bob", {"secret", "bob"}},
                                                                     {"alice", {"wonder", "alice"}}};
    std::vector<core::AuthRequest> requests;
};

class FakeMaildrops;

// A message in blocks of `block` octets; with `failAfter`, a read error after that many.
// `reads` (optional, outliving the stream, which its reader may destroy): blocks read.
class StringStream : public core::MessageStream {
public:
    StringStream(std::string bytes, std::size_t block, std::optional<std::size_t> failAfter = std::nullopt,
                 std::size_t* reads = nullptr)
        : bytes_(std::move(bytes)), block_(block), failAfter_(failAfter), reads_(reads) {}
    bool next(std::string& out) override {
        if (failAfter_ && blocks_ == *failAfter_) return false;
        ++blocks_;
        if (reads_) ++*reads_;
        out = bytes_.substr(std::min(pos_, bytes_.size()), block_);
        pos_ += out.size();
        return true;
    }

private:
    std::string bytes_;
    std::size_t block_;
    std::optional<std::size_t> failAfter_;
    std::size_t* reads_;
    std::size_t pos_ = 0;
    std::size_t blocks_ = 0;
};

class FakeMaildrop : public core::Maildrop {
public:
    FakeMaildrop(FakeMaildrops& owner, std::string mailbox);
    ~FakeMaildrop() override;
    const std::vector<core::MaildropEntry>& entries() const override { return entries_; }
    core::MessageRead openMessage(std::size_t index, core::MessageStreamPtr& out) override;
    bool expunge(const std::vector<std::size_t>& indexes) override;

private:
    FakeMaildrops& owner_;
    std::string mailbox_;
    std::vector<core::MaildropEntry> entries_;
};

class FakeMaildrops : public core::MaildropService {
public:
    struct Message {
        std::string uidl;
        std::string bytes;
    };
    core::MaildropStatus open(const std::string& mailbox, core::MaildropPtr& out) override {
        opened.push_back(mailbox);
        if (tempFail) return core::MaildropStatus::TempFail;
        if (locked.count(mailbox)) return core::MaildropStatus::InUse;
        locked.insert(mailbox);
        out = std::make_unique<FakeMaildrop>(*this, mailbox);
        return core::MaildropStatus::Ok;
    }
    std::map<std::string, std::vector<Message>> boxes;
    std::set<std::string> locked;
    std::vector<std::string> opened;
    std::map<std::string, std::vector<std::size_t>> expunged;  // per mailbox, indexes
    int expungeCalls = 0;
    bool tempFail = false;
    bool expungeFails = false;
    bool readFails = false;
    bool readGone = false;
    bool readNotAFile = false;
    std::size_t readBlock = 7;                 // octets per block of a message read
    std::optional<std::size_t> readFailAfter;  // blocks read before a read error
};

inline FakeMaildrop::FakeMaildrop(FakeMaildrops& owner, std::string mailbox)
    : owner_(owner), mailbox_(std::move(mailbox)) {
    for (const auto& m : owner_.boxes[mailbox_]) entries_.push_back({m.uidl, m.bytes.size()});
}
inline FakeMaildrop::~FakeMaildrop() { owner_.locked.erase(mailbox_); }
inline core::MessageRead FakeMaildrop::openMessage(std::size_t index, core::MessageStreamPtr& out) {
    if (owner_.readFails || index >= entries_.size()) return core::MessageRead::Failed;
    if (owner_.readGone) return core::MessageRead::Gone;
    if (owner_.readNotAFile) return core::MessageRead::NotAFile;
    out = std::make_unique<StringStream>(owner_.boxes[mailbox_][index].bytes, owner_.readBlock, owner_.readFailAfter);
    return core::MessageRead::Ok;
}
inline bool FakeMaildrop::expunge(const std::vector<std::size_t>& indexes) {
    ++owner_.expungeCalls;
    if (owner_.expungeFails) return false;
    auto& e = owner_.expunged[mailbox_];
    e.insert(e.end(), indexes.begin(), indexes.end());
    return true;
}

class FakeGrants : public core::GrantStore {
public:
    using core::GrantStore::grant;
    bool grant(const core::ClientAddress& client, const core::Grant& grant) override {
        grants.emplace_back(client.host(), grant.user);
        made.push_back(grant);
        return result;
    }
    using core::GrantStore::lookup;
    core::Answer lookup(const core::ClientAddress&, const std::string&, core::Grant*) override {
        return core::Answer::No;
    }
    std::vector<std::pair<std::string, std::string>> grants;  // (ip, user)
    std::vector<core::Grant> made;
    bool result = true;
};

// Messages used by most tests: one with lines starting with ".", one without a final CRLF.
inline const std::string Message1 = "From: a@example.org\r\nSubject: one\r\n\r\nHello\r\n.hidden dot\r\n.\r\nbye\r\n";
inline const std::string Message2 = "Subject: two\r\n\r\nno final crlf";

struct Pop3Fixture {
    FakeAuth auth;
    FakeMaildrops maildrops;
    FakeGrants grants;
    Pop3Settings settings;
    std::vector<Pop3Output> outputs;

    Pop3Fixture() {
        settings.greetingHost = "pop.example.org";
        settings.grantLifetime = std::chrono::seconds(600);  // POP-before-SMTP on (the struct's default is off)
        settings.maxBadCommands = 10;                         // pop3.max_errors' shipped value
        maildrops.boxes["bob"] = {{"uid-one", Message1}, {"uid-two", Message2}};
    }
    SessionContext context(bool tls = false) {
        SessionContext c;
        c.sessionId = "s1";
        c.client.ip = Poco::Net::IPAddress("192.0.2.7");
        c.client.port = 40000;
        c.tls = tls;
        return c;
    }
    std::unique_ptr<Pop3Session> session(bool tls = false, bool withGrants = true) {
        return std::make_unique<Pop3Session>(settings, Pop3Ports{auth, maildrops, withGrants ? &grants : nullptr},
                                             context(tls));
    }

    // What the connection sends for `out`: its bytes, then its body (RETR, TOP) part by
    // part; "<read failed>" where the body fails.
    static std::string sent(Pop3Output& out) {
        std::string all = out.bytes;
        if (!out.body) return all;
        for (std::string part;;) {
            const Pop3Body::Status st = out.body->next(part);
            if (st == Pop3Body::Status::Failed) return all + "<read failed>";
            all += part;
            if (st == Pop3Body::Status::Done) return all;
        }
    }

    // Golden transcript: "S: ..." lines before the first "C:" are the greeting; each
    // "C: line" is fed to onLine() and the "S: ..." lines after it must be exactly its
    // output (each followed by CRLF). Blank lines are ignored. Outputs are kept in
    // `outputs` so a test can check actions.
    void run(Pop3Session& s, std::string_view script, bool withGreeting = true) {
        outputs.clear();
        std::vector<std::pair<std::optional<std::string>, std::string>> steps;  // (client line, expected)
        if (withGreeting) steps.push_back({std::nullopt, ""});
        std::istringstream in{std::string(script)};
        std::string line;
        while (std::getline(in, line)) {
            auto start = line.find_first_not_of(' ');
            if (start == std::string::npos) continue;
            line = line.substr(start);
            if (line.rfind("C: ", 0) == 0 || line == "C:") {
                steps.push_back({line.size() > 3 ? line.substr(3) : "", ""});
            } else if (line.rfind("S: ", 0) == 0 || line == "S:") {
                BOOST_REQUIRE_MESSAGE(!steps.empty(), "S: line before any C: line");
                steps.back().second += (line.size() > 3 ? line.substr(3) : "") + "\r\n";
            } else {
                BOOST_FAIL("bad transcript line: " + line);
            }
        }
        for (auto& [client, expected] : steps) {
            Pop3Output out = client ? s.onLine(*client) : s.greeting();
            BOOST_TEST(sent(out) == expected, "after C: " << client.value_or("(connect)"));
            outputs.push_back(std::move(out));
        }
    }
};

}  // namespace postern::pop3::test
