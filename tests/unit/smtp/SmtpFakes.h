// In-test fakes of the ports an SMTP session uses, shared by the session tests.
#pragma once

#include "smtp/SmtpSession.h"

#include <memory>
#include <string>
#include <vector>

namespace postern::smtp::test {

// A sink that keeps every committed message (queue ids Q1, Q2, ... in commit order) and
// counts how often it was opened.
struct RecordingSink : core::MessageSink {
    struct Committed {
        core::Envelope env;
        std::string data;
    };
    std::vector<Committed> committed;
    int opened = 0;
    struct Writer : core::MessageWriter {
        RecordingSink& sink;
        core::Envelope env;
        std::string data;
        Writer(RecordingSink& s, core::Envelope e) : sink(s), env(std::move(e)) {}
        bool write(const char* p, std::size_t n) override {
            data.append(p, n);
            return true;
        }
        core::SinkResult commit() override {
            sink.committed.push_back({env, data});
            return {core::SinkStatus::Ok, "Q" + std::to_string(sink.committed.size())};
        }
    };
    core::MessageWriterPtr open(const core::Envelope& e, core::SinkStatus& st) override {
        ++opened;
        st = core::SinkStatus::Ok;
        return std::make_unique<Writer>(*this, e);
    }
};

}  // namespace postern::smtp::test
