#include "delivery/MxResolver.h"

#include <Poco/Net/IPAddress.h>

#include <algorithm>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>

namespace postern::delivery {

namespace {

enum class QueryOutcome { Answer, NoData, NxDomain, TempFail };

constexpr int TypeTlsa = 52;  // RFC 6698 7.1

// One resolver state per lookup: res_state is not shared between threads.
class Resolver {
public:
    explicit Resolver(const ResolverSettings& s) {
        std::memset(&state_, 0, sizeof state_);
        ok_ = ::res_ninit(&state_) == 0;
        if (!ok_) return;
        auto secs = static_cast<int>(std::max<long long>(1, (s.timeout.count() + 999) / 1000));
        state_.retrans = secs;
        state_.retry = 2;
        // DO bit, and keep the AD bit of the (trusted, validating) resolver's answer: glibc
        // clears it without RES_TRUSTAD (2.31+).
        if (s.dnssec) state_.options |= RES_USE_DNSSEC | RES_USE_EDNS0 | RES_TRUSTAD;
        if (!s.server.empty()) {
            auto colon = s.server.rfind(':');
            std::string host = s.server.substr(0, colon);
            int port = std::atoi(s.server.c_str() + colon + 1);
            sockaddr_in sa{};
            sa.sin_family = AF_INET;
            sa.sin_port = htons(static_cast<std::uint16_t>(port));
            if (::inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) {
                ok_ = false;
                return;
            }
            state_.nsaddr_list[0] = sa;
            state_.nscount = 1;
        }
    }
    ~Resolver() {
        if (ok_) ::res_nclose(&state_);
    }
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    bool ok() const { return ok_; }
    // The last query's answer carried the AD bit (meaningful only with settings.dnssec).
    bool authenticated() const { return authenticated_; }

    QueryOutcome query(const std::string& name, int type, std::vector<unsigned char>& answer) {
        answer.assign(65535, 0);
        int len = ::res_nquery(&state_, name.c_str(), ns_c_in, type, answer.data(), static_cast<int>(answer.size()));
        // The header's AD bit (RFC 4035 3.2.3), also of a negative answer: glibc leaves the
        // response in the buffer when it maps NXDOMAIN/NODATA to -1 (zeroed above otherwise).
        authenticated_ = (answer[3] & 0x20) != 0;
        if (len < 0) {
            // glibc maps the rcode: NXDOMAIN -> HOST_NOT_FOUND, NOERROR without answer ->
            // NO_DATA, SERVFAIL and timeouts -> TRY_AGAIN, REFUSED/FORMERR -> NO_RECOVERY.
            switch (state_.res_h_errno) {
            case HOST_NOT_FOUND: return QueryOutcome::NxDomain;
            case NO_DATA: return QueryOutcome::NoData;
            default: return QueryOutcome::TempFail;  // never a "no" for "could not ask"
            }
        }
        answer.resize(static_cast<std::size_t>(len));
        return QueryOutcome::Answer;
    }

private:
    struct __res_state state_;
    bool ok_ = false;
    bool authenticated_ = false;
};

// Records of `type` in the answer section (CNAMEs on the way are skipped).
template <typename F>
bool forEachAnswer(const std::vector<unsigned char>& answer, int type, F&& f) {
    ns_msg msg;
    if (::ns_initparse(answer.data(), static_cast<int>(answer.size()), &msg) != 0) return false;
    int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count; ++i) {
        ns_rr rr;
        if (::ns_parserr(&msg, ns_s_an, i, &rr) != 0) return false;
        if (ns_rr_type(rr) != type || ns_rr_class(rr) != ns_c_in) continue;
        if (!f(msg, rr)) return false;
    }
    return true;
}

std::string lowerNoDot(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    while (!s.empty() && s.back() == '.') s.pop_back();
    return s;
}

// A then AAAA of `name`. Ok with addresses, PermFail (NXDOMAIN / no address), TempFail.
// `secure`: every answer holding addresses was authenticated. `expanded`: the CNAME-expanded
// name the first answer showed, read only while the answers are authenticated ("" otherwise,
// or if none could be read).
LookupStatus addressesOf(Resolver& r, const std::string& name, std::vector<Poco::Net::IPAddress>& out,
                         bool& secure, std::string& expanded) {
    std::vector<unsigned char> answer;
    bool temp = false;
    bool anyAnswer = false;
    secure = true;
    for (int type : {static_cast<int>(ns_t_a), static_cast<int>(ns_t_aaaa)}) {
        QueryOutcome o = r.query(name, type, answer);
        if (o == QueryOutcome::TempFail) temp = true;
        if (o == QueryOutcome::NxDomain) break;  // the AAAA query would say the same
        if (o != QueryOutcome::Answer) continue;
        anyAnswer = true;
        secure = secure && r.authenticated();
        // Only DANE uses it, and only for secure hosts: no second parse of every answer otherwise.
        if (expanded.empty() && secure) expanded = cnameExpanded(answer.data(), answer.size(), name);
        bool parsed = forEachAnswer(answer, type, [&](const ns_msg&, const ns_rr& rr) {
            if (type == ns_t_a && ns_rr_rdlen(rr) == 4)
                out.emplace_back(ns_rr_rdata(rr), 4);
            else if (type == ns_t_aaaa && ns_rr_rdlen(rr) == 16)
                out.emplace_back(ns_rr_rdata(rr), 16);
            return true;
        });
        if (!parsed) temp = true;
    }
    if (!anyAnswer) secure = false;
    if (!out.empty()) return LookupStatus::Ok;
    return temp ? LookupStatus::TempFail : LookupStatus::PermFail;
}

MxResult failure(LookupStatus status, std::string enhanced, std::string error) {
    MxResult r;
    r.status = status;
    r.enhanced = std::move(enhanced);
    r.error = std::move(error);
    return r;
}

// "[192.0.2.1]" / "[IPv6:2001:db8::1]" -> the address.
bool parseLiteral(const std::string& domain, Poco::Net::IPAddress& out) {
    if (domain.size() < 3 || domain.front() != '[' || domain.back() != ']') return false;
    std::string inner = domain.substr(1, domain.size() - 2);
    if (inner.rfind("IPv6:", 0) == 0 || inner.rfind("ipv6:", 0) == 0) inner = inner.substr(5);
    return Poco::Net::IPAddress::tryParse(inner, out);
}

}  // namespace

std::vector<MxRecord> orderMxRecords(std::vector<MxRecord> records, std::mt19937& rng) {
    std::shuffle(records.begin(), records.end(), rng);
    std::stable_sort(records.begin(), records.end(),
                     [](const MxRecord& a, const MxRecord& b) { return a.preference < b.preference; });
    return records;
}

bool isNullMx(const std::vector<MxRecord>& records) {
    return records.size() == 1 && records.front().host.empty();
}

MxResolver::MxResolver(ResolverSettings settings) : settings_(std::move(settings)) {}

MxResult MxResolver::resolveHost(const std::string& host) {
    Poco::Net::IPAddress ip;
    std::string bare = host;
    if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') bare = bare.substr(1, bare.size() - 2);
    if (Poco::Net::IPAddress::tryParse(bare, ip)) {
        MxResult r;
        r.status = LookupStatus::Ok;
        r.hosts.push_back({bare, 0, {ip}});
        return r;
    }
    Resolver res(settings_);
    if (!res.ok()) return failure(LookupStatus::TempFail, "4.4.3", "resolver initialisation failed");
    MxHost h{lowerNoDot(host), 0, {}};
    LookupStatus s = addressesOf(res, h.name, h.addresses, h.secure, h.expanded);
    if (s == LookupStatus::PermFail) return failure(s, "5.1.2", "host " + h.name + " not found");
    if (s == LookupStatus::TempFail) return failure(s, "4.4.3", "DNS lookup of " + h.name + " failed (try again)");
    MxResult r;
    r.status = LookupStatus::Ok;
    r.mxSecure = h.secure;  // no MX involved: the name is as secure as its addresses
    r.hosts.push_back(std::move(h));
    return r;
}

MxResult MxResolver::resolveMx(const std::string& domainIn) {
    Poco::Net::IPAddress literal;
    if (parseLiteral(domainIn, literal)) {
        MxResult r;
        r.status = LookupStatus::Ok;
        r.hosts.push_back({literal.toString(), 0, {literal}});
        return r;
    }
    std::string domain = lowerNoDot(domainIn);
    Resolver res(settings_);
    if (!res.ok()) return failure(LookupStatus::TempFail, "4.4.3", "resolver initialisation failed");

    std::vector<unsigned char> answer;
    QueryOutcome o = res.query(domain, ns_t_mx, answer);
    const bool mxSecure = res.authenticated();
    if (o == QueryOutcome::NxDomain)
        return failure(LookupStatus::PermFail, "5.1.2", "domain " + domain + " not found (NXDOMAIN)");
    if (o == QueryOutcome::TempFail)
        return failure(LookupStatus::TempFail, "4.4.3", "MX lookup of " + domain + " failed (try again)");

    std::vector<MxRecord> records;
    if (o == QueryOutcome::Answer) {
        bool parsed = forEachAnswer(answer, ns_t_mx, [&](const ns_msg& msg, const ns_rr& rr) {
            if (ns_rr_rdlen(rr) < 3) return false;
            MxRecord m;
            m.preference = ns_get16(ns_rr_rdata(rr));
            char name[NS_MAXDNAME];
            if (::dn_expand(ns_msg_base(msg), ns_msg_end(msg), ns_rr_rdata(rr) + 2, name, sizeof name) < 0) return false;
            m.host = lowerNoDot(name);
            records.push_back(std::move(m));
            return true;
        });
        if (!parsed) return failure(LookupStatus::TempFail, "4.4.3", "malformed MX answer for " + domain);
    }
    // RFC 7505 3: a domain that publishes a null MX takes no mail: bounce, do not retry.
    if (isNullMx(records))
        return failure(LookupStatus::PermFail, "5.1.10", "domain " + domain + " does not accept mail (null MX)");
    records.erase(std::remove_if(records.begin(), records.end(), [](const MxRecord& m) { return m.host.empty(); }),
                  records.end());
    if (records.empty()) {
        // RFC 5321 5.1: no MX -> the domain itself is the implicit MX (preference 0).
        MxResult r = resolveHost(domain);
        if (r.status == LookupStatus::PermFail)
            return failure(LookupStatus::PermFail, "5.1.2", "domain " + domain + " has no MX and no address");
        r.mxSecure = r.mxSecure && mxSecure;  // the absence of MX records must be secure too
        return r;
    }
    thread_local std::mt19937 rng{std::random_device{}()};
    records = orderMxRecords(std::move(records), rng);

    MxResult r;
    r.mxSecure = mxSecure;
    bool temp = false;
    for (const auto& m : records) {
        MxHost h{m.host, m.preference, {}};
        LookupStatus s = addressesOf(res, m.host, h.addresses, h.secure, h.expanded);
        if (s == LookupStatus::TempFail) temp = true;
        if (s == LookupStatus::Ok) r.hosts.push_back(std::move(h));
    }
    if (!r.hosts.empty()) {
        r.status = LookupStatus::Ok;
        return r;
    }
    if (temp) return failure(LookupStatus::TempFail, "4.4.3", "address lookup of the MX hosts of " + domain + " failed");
    return failure(LookupStatus::PermFail, "5.4.4", "no MX host of " + domain + " has an address");
}

bool parseTlsaAnswer(const unsigned char* msg, std::size_t len, std::vector<TlsaRecord>& out) {
    std::vector<unsigned char> answer(msg, msg + len);
    return forEachAnswer(answer, TypeTlsa, [&](const ns_msg&, const ns_rr& rr) {
        auto rec = parseTlsaRdata(ns_rr_rdata(rr), ns_rr_rdlen(rr));
        // A malformed record is there but unusable (RFC 7672 2.2: "usable TLSA none").
        out.push_back(rec ? *rec : TlsaRecord{255, 255, 255, {}});
        return true;
    });
}

std::string cnameExpanded(const unsigned char* msg, std::size_t len, const std::string& qname) {
    std::vector<unsigned char> answer(msg, msg + len);
    std::vector<std::pair<std::string, std::string>> links;  // owner -> target
    bool parsed = forEachAnswer(answer, ns_t_cname, [&](const ns_msg& m, const ns_rr& rr) {
        char target[NS_MAXDNAME];
        if (::dn_expand(ns_msg_base(m), ns_msg_end(m), ns_rr_rdata(rr), target, sizeof target) < 0) return false;
        links.emplace_back(lowerNoDot(ns_rr_name(rr)), lowerNoDot(target));
        return true;
    });
    if (!parsed) return {};
    std::string name = lowerNoDot(qname);
    // Each step uses one record: more steps than records means a loop.
    for (std::size_t steps = 0;; ++steps) {
        auto next = std::find_if(links.begin(), links.end(), [&](const auto& l) { return l.first == name; });
        if (next == links.end()) return name;
        if (steps == links.size()) return {};
        name = next->second;
    }
}

TlsaResult MxResolver::resolveTlsa(const std::string& host, std::uint16_t port) {
    TlsaResult t;
    Resolver res(settings_);
    if (!res.ok()) {
        t.error = "resolver initialisation failed";
        return t;
    }
    const std::string name = "_" + std::to_string(port) + "._tcp." + lowerNoDot(host);
    std::vector<unsigned char> answer;
    QueryOutcome o = res.query(name, TypeTlsa, answer);
    if (o == QueryOutcome::TempFail) {
        // RFC 7672 2.2: SERVFAIL (a validating resolver's answer to bogus data too) leaves
        // the host unusable under DANE, never to be taken as "no TLSA".
        t.error = "TLSA lookup of " + name + " failed (try again)";
        return t;
    }
    t.status = LookupStatus::Ok;
    t.secure = res.authenticated();
    if (o != QueryOutcome::Answer) return t;
    if (!parseTlsaAnswer(answer.data(), answer.size(), t.records)) {
        t.status = LookupStatus::TempFail;
        t.records.clear();
        t.error = "malformed TLSA answer for " + name;
    }
    return t;
}

}  // namespace postern::delivery
