// Escaping of untrusted values put into LDAP search filters (RFC 4515 3) and
// distinguished names (RFC 4514 2.4). Pure functions, no libldap, table-tested.
#pragma once

#include <string>
#include <string_view>

namespace postern::plugins::ldap {

// RFC 4515 3: every '*', '(', ')', '\' and NUL in an assertion value becomes "\XX" (two
// lower-case hex digits), so a user name can never add wildcards or filter components.
// Other bytes (UTF-8 included) pass unchanged.
std::string escapeFilterValue(std::string_view value);

// RFC 4514 2.4: escapes an attribute value for use inside a DN: '"', '+', ',', ';', '<',
// '>', '\' and '=' get a backslash; a leading '#' or space and a trailing space get a
// backslash; NUL becomes "\00". An empty value stays empty.
std::string escapeDnValue(std::string_view value);

}  // namespace postern::plugins::ldap
