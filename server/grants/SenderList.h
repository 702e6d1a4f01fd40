// The sender addresses of a POP-before-SMTP grant as PostgreSQL stores them
// (pop_before_smtp_grants.senders, and the senders argument of postern_pop3_login):
// one address per line (an address never contains a line break).
#pragma once

#include <map>
#include <string>
#include <vector>

namespace postern::grants {

// Addresses one per line; an address containing a line break is left out.
std::string joinSenders(const std::vector<std::string>& senders);

// The inverse of joinSenders: empty lines are skipped.
std::vector<std::string> splitSenders(const std::string& text);

// A grant's limit attributes as PostgreSQL stores them (pop_before_smtp_grants.limits, and
// the limits argument of postern_pop3_login): "name=value", one per line. A pair whose name
// is empty or holds '=' or a line break, or whose value holds a line break, is left out.
std::string joinLimits(const std::map<std::string, std::string>& limits);

// The inverse of joinLimits: lines without '=' are skipped.
std::map<std::string, std::string> splitLimits(const std::string& text);

}  // namespace postern::grants
