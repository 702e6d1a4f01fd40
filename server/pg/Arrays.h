// PostgreSQL array literals in text form, for $n::text[] / $n::bigint[] parameters (bound as
// parameters, so this is array syntax, not SQL quoting), and the text form of a bigint[]
// result.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace postern::pg {

// '{"a","b\"c"}': every element double-quoted, '\' and '"' escaped; "{}" when empty.
std::string textArray(const std::vector<std::string>& items);

// '{1,2,3}'.
std::string bigintArray(const std::vector<std::uint64_t>& items);

// A bigint[] as PostgreSQL writes it ("{1,2,3}", non-negative elements, no NULLs); nullopt
// if it is not one.
std::optional<std::vector<std::uint64_t>> parseBigintArray(const std::string& text);

}  // namespace postern::pg
