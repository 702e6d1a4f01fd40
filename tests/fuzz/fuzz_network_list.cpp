// Fuzz target: the core address vocabulary (core::NetworkList / Network / addressKey /
// parseAddressKey / parseDuration) on arbitrary text. Invariants: never crashes; a refusal is
// a std::invalid_argument naming the bad entry; every parsed network contains its own base
// address (and that address IPv4-mapped, for IPv4 networks) and prints a canonical text that
// parses back to the same network; a list's canonical text parses back to the same list;
// address keys are fixed points of parseAddressKey; a duration is never negative.
#include "FuzzAssert.h"
#include "core/Duration.h"
#include "core/Network.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

using namespace postern::core;

namespace {

Poco::Net::IPAddress mappedOf(const Poco::Net::IPAddress& v4) {
    unsigned char b[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    std::memcpy(b + 12, v4.addr(), 4);
    return Poco::Net::IPAddress(b, 16);
}

void checkList(std::string_view text) {
    NetworkList list;
    try {
        list = NetworkList::parse(text);
    } catch (const std::invalid_argument& e) {
        FUZZ_CHECK(std::string_view(e.what()).rfind("bad network '", 0) == 0);
        return;
    }
    for (const Network& n : list.networks()) {
        FUZZ_CHECK(n.prefix() <= (n.isIPv4() ? 32u : 128u));
        FUZZ_CHECK(n.contains(n.address()));
        FUZZ_CHECK(list.contains(n.address()));
        if (n.isIPv4()) FUZZ_CHECK(n.contains(mappedOf(n.address())));
        const Network again = Network::parse(n.toString());
        FUZZ_CHECK(again == n);
        FUZZ_CHECK(again.toString() == n.toString());
    }
    const std::string canonical = list.toString();
    const NetworkList reparsed = NetworkList::parse(canonical);
    FUZZ_CHECK(reparsed.size() == list.size());
    FUZZ_CHECK(reparsed.toString() == canonical);
}

void checkKey(std::string_view text, unsigned prefix) {
    auto key = parseAddressKey(text, prefix);
    if (!key) return;
    FUZZ_CHECK(!key->empty());
    auto again = parseAddressKey(*key, prefix);
    FUZZ_CHECK(again && *again == *key);
    if (auto ip = parseAddress(text)) FUZZ_CHECK(addressKey(*ip, prefix) == *key);
}

void checkDuration(std::string_view text) {
    try {
        FUZZ_CHECK(parseDuration(text).count() >= 0);
    } catch (const std::invalid_argument& e) {
        FUZZ_CHECK(std::string_view(e.what()).rfind("bad duration '", 0) == 0);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    checkList(text);
    checkKey(text, static_cast<unsigned>(size % 130));  // 129: more than 128 counts as 128
    checkDuration(text);
    return 0;
}
