// The cluster database schema this release needs.
#pragma once

namespace postern::app {

// schema/postgres/NNN_*.sql up to this number (tests/unit/app/ClusterSchemaTest.cpp checks it
// is the highest shipped). posternd refuses to start (exit 78) on a cluster database whose
// schema_migrations says less: started before `posternctl db migrate`, a node's statements on
// the new tables (the account-security flush, the known-address check, grant writes) would
// fail for good.
inline constexpr long RequiredClusterSchema = 12;

}  // namespace postern::app
