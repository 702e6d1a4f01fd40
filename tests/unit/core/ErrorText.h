// The text of the std::invalid_argument an expression throws, for tables of refused inputs.
#pragma once

#include <stdexcept>
#include <string>

namespace postern::test {

// The message of the std::invalid_argument `f` throws ("" if it does not throw).
template <class F>
std::string errorOf(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

}  // namespace postern::test
