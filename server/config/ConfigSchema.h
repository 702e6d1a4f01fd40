// The one table of configuration keys: name, default, kind and documentation.
// Every key the daemon reads is declared here; anything else is rejected at start-up.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace postern::config {

enum class ValueKind { String, Bool, Integer, Duration, Size, List, Enum, Path };

struct KeyDef {
    std::string_view name;   // dotted key; "*" stands for one listener / backend name
                             // (a trailing ".*" for a domain name, dots included)
    std::string_view defaultValue;
    ValueKind kind;
    std::string_view doc;
    std::string_view choices = {};  // for Enum: "a|b|c"
};

// All keys, in the order they are documented in etc/postern.properties.
const std::vector<KeyDef>& keyTable();

// The definition matching a concrete key ("listener.mx.port" matches "listener.*.port"),
// or nullptr if the key is unknown. Keys under auth.backend.<name>. other than the host's
// own are passed to the plugin, which validates them itself.
const KeyDef* findKey(std::string_view key);

// Validates a value for a definition; returns an error text or "" when valid.
std::string validateValue(const KeyDef& def, const std::string& value);

// Parsers shared by the loader (throw std::invalid_argument with a helpful text). Durations:
// core::parseDuration ("300s", "10m", "1h", "250ms", "5d").
unsigned long long parseSize(const std::string& text); // "25M", "512K", "1G", "1000"
bool parseBool(const std::string& text);               // true/false/yes/no/on/off/1/0
std::vector<std::string> parseList(const std::string& text);  // comma/space separated

}  // namespace postern::config
