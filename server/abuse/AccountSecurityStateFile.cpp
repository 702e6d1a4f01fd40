#include "abuse/AccountSecurityStateFile.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace postern::abuse {

namespace {

constexpr std::string_view Magic = "postern-account-security";
constexpr std::string_view Version = "1";

void encode(std::string& out, std::string_view field) {
    if (field.empty()) {
        out += '-';
        return;
    }
    if (field == "-") {
        out += "%2D";
        return;
    }
    static const char hex[] = "0123456789ABCDEF";
    for (unsigned char c : field) {
        if (c <= 0x20 || c == 0x7f || c == '%') {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
}

std::int64_t millis(core::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

struct Writer {
    std::string out;
    std::size_t records = 0;
    void record(std::initializer_list<std::string_view> fields) {
        bool first = true;
        for (auto f : fields) {
            if (!first) out += ' ';
            // The record type is a bare word.
            if (first) out += f; else encode(out, f);
            first = false;
        }
        out += '\n';
        ++records;
    }
};

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

class Parser {
public:
    explicit Parser(std::string_view text) : text_(text) {}

    AccountSecurityState run() {
        AccountSecurityState state;
        if (text_.empty()) fail("empty file");
        if (text_.back() != '\n') fail("the last line has no newline (file cut short)");
        bool header = false, ended = false;
        std::size_t records = 0;
        std::size_t pos = 0;
        while (pos < text_.size()) {
            std::size_t nl = text_.find('\n', pos);
            std::string_view line = text_.substr(pos, nl - pos);
            pos = nl + 1;
            ++line_;
            if (ended) fail("data after the end record");
            split(line);
            if (!header) {
                if (fields_.size() != 2 || fields_[0] != Magic) fail("not an account security state file");
                if (fields_[1] != Version) fail("unknown version " + std::string(fields_[1]));
                header = true;
                continue;
            }
            const std::string_view type = fields_[0];
            if (type == "end") {
                expect(2);
                if (number(fields_[1]) != records) fail("the end record counts a different number of records");
                ended = true;
                continue;
            }
            ++records;
            if (type == "flag") {
                expect(5);
                AccountFlag f{user(1), decode(fields_[2]), number(fields_[3]), number(fields_[4])};
                if (!state.flags.emplace(f.user, f).second) fail("the account is flagged twice");
            } else if (type == "ip") {
                expect(4);
                auto& a = state.accounts[user(1)];
                std::string ip = decode(fields_[2]);
                if (ip.empty()) fail("empty ip");
                if (!a.ips.emplace(std::move(ip), time(fields_[3])).second) fail("the ip is listed twice");
            } else if (type == "count") {
                expect(5);
                auto& a = state.accounts[user(1)];
                a.counts.push_back({time(fields_[2]), AccountCounts{number(fields_[3]), number(fields_[4])}});
            } else if (type == "login") {
                expect(8);
                auto& a = state.accounts[user(1)];
                a.logins.push_back({time(fields_[2]), decode(fields_[3]), decode(fields_[4]), decode(fields_[5]),
                                    decode(fields_[6]), decode(fields_[7])});
            } else {
                fail("unknown record type");
            }
        }
        if (!header) fail("no header");
        if (!ended) fail("no end record (file cut short)");
        return state;
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw StateFileError("line " + std::to_string(line_) + ": " + what);
    }
    void split(std::string_view line) {
        fields_.clear();
        std::size_t pos = 0;
        while (true) {
            std::size_t sp = line.find(' ', pos);
            std::string_view f = line.substr(pos, sp == std::string_view::npos ? std::string_view::npos : sp - pos);
            if (f.empty()) fail("empty field (two spaces, or a space at an end of the line)");
            fields_.push_back(f);
            if (sp == std::string_view::npos) break;
            pos = sp + 1;
        }
    }
    void expect(std::size_t n) const {
        if (fields_.size() != n)
            fail(std::string(fields_[0]) + " has " + std::to_string(fields_.size()) + " fields, not " +
                 std::to_string(n));
    }
    std::string decode(std::string_view f) const {
        if (f == "-") return {};
        std::string out;
        out.reserve(f.size());
        for (std::size_t i = 0; i < f.size(); ++i) {
            const unsigned char c = static_cast<unsigned char>(f[i]);
            if (c == '%') {
                int hi = i + 2 < f.size() ? hexValue(f[i + 1]) : -1;
                int lo = i + 2 < f.size() ? hexValue(f[i + 2]) : -1;
                if (hi < 0 || lo < 0) fail("bad percent escape");
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
            } else if (c < 0x20 || c == 0x7f) {
                fail("control character in a field");
            } else {
                out += static_cast<char>(c);
            }
        }
        return out;
    }
    std::string user(std::size_t i) const {
        std::string u = decode(fields_[i]);
        if (u.empty()) fail("empty account name");
        return u;
    }
    std::uint64_t number(std::string_view f) const {
        std::uint64_t v = 0;
        auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
        if (ec != std::errc() || end != f.data() + f.size() || f.empty()) fail("not a number: " + std::string(f));
        return v;
    }
    core::TimePoint time(std::string_view f) const {
        std::uint64_t ms = number(f);
        // Far beyond any real date (year ~ 292 million overflows nanoseconds much earlier).
        if (ms > std::uint64_t(1) << 43) fail("time out of range");
        return core::TimePoint(std::chrono::duration_cast<core::TimePoint::duration>(
            std::chrono::milliseconds(static_cast<std::int64_t>(ms))));
    }

    std::string_view text_;
    std::size_t line_ = 0;
    std::vector<std::string_view> fields_;
};

std::string errnoText(const std::string& what, const std::string& path) {
    return what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

std::string formatAccountSecurityState(const AccountSecurityState& state) {
    Writer w;
    w.out.append(Magic).append(" ").append(Version).append("\n");
    for (const auto& [user, f] : state.flags)
        w.record({"flag", user, f.reason, std::to_string(f.value), std::to_string(f.threshold)});
    for (const auto& [user, a] : state.accounts) {
        for (const auto& [ip, last] : a.ips) w.record({"ip", user, ip, std::to_string(std::max<std::int64_t>(0, millis(last)))});
        for (const auto& [at, c] : a.counts)
            w.record({"count", user, std::to_string(std::max<std::int64_t>(0, millis(at))),
                      std::to_string(c.remoteRejected), std::to_string(c.bounces)});
        for (const auto& r : a.logins)
            w.record({"login", user, std::to_string(std::max<std::int64_t>(0, millis(r.at))), r.ip, r.protocol,
                      r.mechanism, r.tls, r.result});
    }
    w.out.append("end ").append(std::to_string(w.records)).append("\n");
    return w.out;
}

AccountSecurityState parseAccountSecurityState(std::string_view text) { return Parser(text).run(); }

StateFileLoad loadAccountSecurityState(const std::string& path, std::size_t maxBytes) {
    StateFileLoad result;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return result;  // Missing
        throw std::runtime_error(errnoText("cannot open", path));
    }
    std::string text;
    char buf[65536];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            std::string err = errnoText("cannot read", path);
            ::close(fd);
            throw std::runtime_error(err);
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > maxBytes) {
            ::close(fd);
            result.status = StateFileLoad::Status::Corrupt;
            result.error = "larger than " + std::to_string(maxBytes) + " bytes";
            return result;
        }
    }
    ::close(fd);
    try {
        result.state = parseAccountSecurityState(text);
        result.status = StateFileLoad::Status::Loaded;
    } catch (const StateFileError& e) {
        result.status = StateFileLoad::Status::Corrupt;
        result.error = e.what();
    }
    return result;
}

void writeFileAtomically(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) throw std::runtime_error(errnoText("cannot create", tmp));
    std::size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            std::string err = errnoText("cannot write", tmp);
            ::close(fd);
            ::unlink(tmp.c_str());
            throw std::runtime_error(err);
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
        std::string err = errnoText("cannot fsync", tmp);
        ::close(fd);
        ::unlink(tmp.c_str());
        throw std::runtime_error(err);
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        std::string err = errnoText("cannot rename over", path);
        ::unlink(tmp.c_str());
        throw std::runtime_error(err);
    }
    const std::size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) throw std::runtime_error(errnoText("cannot open directory", dir));
    const int rc = ::fsync(dfd);
    ::close(dfd);
    if (rc != 0) throw std::runtime_error(errnoText("cannot fsync directory", dir));
}

}  // namespace postern::abuse
