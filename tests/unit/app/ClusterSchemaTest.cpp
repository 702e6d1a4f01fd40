// RequiredClusterSchema is the highest migration shipped in schema/postgres: a release that
// adds one and forgets the constant would start on a database that lacks it.
#include "app/ClusterSchema.h"

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <string>

BOOST_AUTO_TEST_SUITE(cluster_schema)

BOOST_AUTO_TEST_CASE(required_version_is_the_newest_migration) {
    const std::string source = POSTERN_SOURCE_DIR;  // the build's source tree
    const std::regex name(R"(^(\d{3,6})_[a-z0-9_]+\.sql$)");
    long newest = 0;
    for (const auto& entry : std::filesystem::directory_iterator(source + "/schema/postgres")) {
        std::smatch m;
        const std::string file = entry.path().filename().string();
        if (std::regex_match(file, m, name)) newest = std::max(newest, std::stol(m[1].str()));
    }
    BOOST_TEST(newest > 0);
    BOOST_TEST(postern::app::RequiredClusterSchema == newest);
}

BOOST_AUTO_TEST_SUITE_END()
