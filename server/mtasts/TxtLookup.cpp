#include "mtasts/TxtLookup.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace postern::mtasts {

TxtAnswer lookupTxt(const std::string& name, const std::string& server, std::chrono::milliseconds timeout) {
    TxtAnswer out;
    struct __res_state state;
    std::memset(&state, 0, sizeof state);
    if (::res_ninit(&state) != 0) return out;
    struct Closer {
        struct __res_state* s;
        ~Closer() { ::res_nclose(s); }
    } closer{&state};
    state.retrans = static_cast<int>(std::max<long long>(1, (timeout.count() + 999) / 1000));
    state.retry = 2;
    if (!server.empty()) {
        auto colon = server.rfind(':');
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(static_cast<std::uint16_t>(std::atoi(server.c_str() + colon + 1)));
        if (colon == std::string::npos || ::inet_pton(AF_INET, server.substr(0, colon).c_str(), &sa.sin_addr) != 1)
            return out;
        state.nsaddr_list[0] = sa;
        state.nscount = 1;
    }
    std::vector<unsigned char> answer(65535);
    int len = ::res_nquery(&state, name.c_str(), ns_c_in, ns_t_txt, answer.data(), static_cast<int>(answer.size()));
    if (len < 0) {
        if (state.res_h_errno == HOST_NOT_FOUND || state.res_h_errno == NO_DATA) out.status = TxtStatus::NotFound;
        return out;  // anything else: could not ask, TempFail
    }
    ns_msg msg;
    if (::ns_initparse(answer.data(), len, &msg) != 0) return out;
    int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count; ++i) {
        ns_rr rr;
        if (::ns_parserr(&msg, ns_s_an, i, &rr) != 0) return out;
        if (ns_rr_type(rr) != ns_t_txt || ns_rr_class(rr) != ns_c_in) continue;
        // RDATA: one or more <length><bytes> character-strings, concatenated (RFC 8461 3.1).
        const unsigned char* p = ns_rr_rdata(rr);
        const unsigned char* end = p + ns_rr_rdlen(rr);
        std::string text;
        while (p < end) {
            std::size_t n = *p++;
            if (n > static_cast<std::size_t>(end - p)) return out;
            text.append(reinterpret_cast<const char*>(p), n);
            p += n;
        }
        out.records.push_back(std::move(text));
    }
    out.status = out.records.empty() ? TxtStatus::NotFound : TxtStatus::Found;
    return out;
}

}  // namespace postern::mtasts
