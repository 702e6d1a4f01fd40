#include "mtasts/PgPolicyStore.h"

#include "core/EventLine.h"

#include <Poco/Logger.h>

namespace postern::mtasts {

namespace {

Poco::Logger& logger() { return Poco::Logger::get("postern.delivery"); }

const pg::Statement LoadStatement{
    "postern_mta_sts_load",
    "SELECT policy_id, mode, max_age::text, mx, extract(epoch FROM fetched)::bigint::text, "
    "extract(epoch FROM expires)::bigint::text FROM mta_sts_policies WHERE domain = $1"};
const pg::Statement SaveStatement{
    "postern_mta_sts_save",
    "INSERT INTO mta_sts_policies (domain, policy_id, mode, max_age, mx, fetched, expires) "
    "VALUES ($1, $2, $3, $4::integer, $5, to_timestamp($6::bigint), to_timestamp($7::bigint)) "
    "ON CONFLICT (domain) DO UPDATE SET policy_id = EXCLUDED.policy_id, mode = EXCLUDED.mode, "
    "max_age = EXCLUDED.max_age, mx = EXCLUDED.mx, fetched = EXCLUDED.fetched, expires = EXCLUDED.expires "
    "WHERE mta_sts_policies.fetched <= EXCLUDED.fetched"};

}  // namespace

std::optional<CachedPolicy> PgPolicyStore::load(const std::string& domain, bool* failed) {
    if (failed != nullptr) *failed = false;
    pg::QueryResult r = pool_.execute(LoadStatement, {domain});
    if (r.failed()) {
        logger().warning(core::EventLine("mta_sts.db_fail").add("op", "load").text("error", r.error).str());
        if (failed != nullptr) *failed = true;
        return std::nullopt;
    }
    if (r.rows.empty() || r.rows[0].size() < 6) return std::nullopt;
    const auto& row = r.rows[0];
    for (const auto& v : row)
        if (!v) return std::nullopt;
    auto policy = parsePolicyLine(*row[1] + " " + *row[2] + " " + *row[3]);
    if (!policy) return std::nullopt;
    try {
        return CachedPolicy{domain, *row[0], *policy, std::stoll(*row[4]), std::stoll(*row[5])};
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

void PgPolicyStore::save(const CachedPolicy& p) {
    std::string mx;
    for (const auto& m : p.policy.mx) mx += (mx.empty() ? "" : ",") + m;
    pg::QueryResult r = pool_.execute(SaveStatement, {p.domain, p.id, std::string(modeName(p.policy.mode)),
                                                      std::to_string(p.policy.maxAge), mx.empty() ? "-" : mx,
                                                      std::to_string(p.fetched), std::to_string(p.expires)});
    if (r.failed())
        logger().warning(core::EventLine("mta_sts.db_fail").add("op", "save").text("error", r.error).str());
}

}  // namespace postern::mtasts
