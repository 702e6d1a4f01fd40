// Tests for PluginLoader: loads the real passwd-file plugin from the build tree and refuses
// missing, group-/world-writable, non-regular, wrong-ABI and misconfigured plugins.
#include "auth/PluginLoader.h"

#include "unit/auth/AuthTestSupport.h"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <filesystem>
#include <ostream>

namespace postern::auth {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// Runs f and returns the message of the std::runtime_error it throws ("" if none).
template <typename F>
std::string errorOf(F&& f) {
    try {
        f();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

// A copy of the built plugin in dir with the given permissions.
void copyPlugin(const std::string& dir, fs::perms perms) {
    const std::string to = dir + "/postern-auth-passwd-file.so";
    fs::copy_file(test::pluginDir() + "/postern-auth-passwd-file.so", to, fs::copy_options::overwrite_existing);
    fs::permissions(to, perms);
}

struct ConfigRow {
    std::string key;
    std::string value;
    std::string expectedError;  // substring
};

std::ostream& operator<<(std::ostream& out, const ConfigRow& r) {
    return out << r.key << "=" << r.value << " -> " << r.expectedError;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(PluginLoaderTest)

BOOST_AUTO_TEST_CASE(loadsThePasswdFilePluginFromTheBuildTree) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}pw\n");
    PluginLoader loader(test::pluginDir());
    BackendHandle handle = loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}});
    BOOST_REQUIRE(handle);
    BOOST_TEST(handle.pluginName() == "passwd-file");
    BOOST_TEST(!handle.pluginVersion().empty());
    BOOST_TEST(handle.instance() == "users");
    BOOST_TEST((handle->hasDomain("example.test") == plugins::api::Status::Ok));
    BOOST_TEST((handle->hasDomain("other.test") == plugins::api::Status::NotFound));

    // A second instance from the same library, and moving handles around.
    BackendHandle second = loader.load("passwd-file", "more", {{"path", tmp.file("passwd")}});
    BackendHandle moved = std::move(second);
    BOOST_TEST(!second);
    BOOST_TEST((moved->authenticate("alice@example.test", "pw", "smtp", "192.0.2.1").status ==
                plugins::api::Status::Ok));
}

BOOST_AUTO_TEST_CASE(refusesAMissingFile) {
    TempDir tmp;
    PluginLoader loader(tmp.path());
    std::string error = errorOf([&] { loader.load("passwd-file", "users", {{"path", "/x"}}); });
    BOOST_TEST(error.find("postern-auth-passwd-file.so") != std::string::npos, error);
    BOOST_TEST(error.find("No such file") != std::string::npos, error);
}

BOOST_AUTO_TEST_CASE(refusesAGroupWritableCopy) {
    TempDir tmp;
    copyPlugin(tmp.path(), fs::perms::owner_all | fs::perms::group_all | fs::perms::others_read);
    PluginLoader loader(tmp.path());
    std::string error = errorOf([&] { loader.load("passwd-file", "users", {{"path", "/x"}}); });
    BOOST_TEST(error.find("group- or world-writable") != std::string::npos, error);
}

BOOST_AUTO_TEST_CASE(refusesACopyInAWritableDirectoryOrOwnedByAnotherUser) {
    {
        TempDir tmp;
        copyPlugin(tmp.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
        fs::permissions(tmp.path(), fs::perms::owner_all | fs::perms::group_all);
        PluginLoader loader(tmp.path());
        std::string error = errorOf([&] { loader.load("passwd-file", "users", {{"path", "/x"}}); });
        BOOST_TEST(error.find("its directory") != std::string::npos, error);
    }
    if (::geteuid() == 0) {  // only root can give a file away
        TempDir tmp;
        copyPlugin(tmp.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
        BOOST_REQUIRE(::chown((fs::path(tmp.path()) / "postern-auth-passwd-file.so").c_str(), 65534, 65534) == 0);
        PluginLoader loader(tmp.path());
        std::string error = errorOf([&] { loader.load("passwd-file", "users", {{"path", "/x"}}); });
        BOOST_TEST(error.find("owned by uid 65534") != std::string::npos, error);
    }
}

BOOST_AUTO_TEST_CASE(refusesAWorldWritableCopy) {
    TempDir tmp;
    copyPlugin(tmp.path(), fs::perms::owner_all | fs::perms::others_all);
    PluginLoader loader(tmp.path());
    std::string error = errorOf([&] { loader.load("passwd-file", "users", {{"path", "/x"}}); });
    BOOST_TEST(error.find("group- or world-writable") != std::string::npos, error);
}

BOOST_AUTO_TEST_CASE(acceptsAnOwnerOnlyCopy) {
    TempDir tmp;
    copyPlugin(tmp.path(), fs::perms::owner_read | fs::perms::owner_exec);
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}pw\n");
    PluginLoader loader(tmp.path());
    BOOST_TEST(static_cast<bool>(loader.load("passwd-file", "users", {{"path", tmp.file("passwd")}})));
}

BOOST_AUTO_TEST_CASE(refusesADirectory) {
    TempDir tmp;
    fs::create_directory(tmp.file("postern-auth-odd.so"));
    PluginLoader loader(tmp.path());
    std::string error = errorOf([&] { loader.load("odd", "odd", {}); });
    BOOST_TEST(error.find("not a regular file") != std::string::npos, error);
}

BOOST_AUTO_TEST_CASE(refusesAnotherAbiWithOneLineNamingBoth) {
    PluginLoader loader(test::pluginDir(), plugins::api::AbiVersion + 1);
    std::string error = errorOf([&] { loader.load("passwd-file", "users", {{"path", "/x"}}); });
    BOOST_TEST(error == "plugin passwd-file was built for ABI " + std::to_string(plugins::api::AbiVersion) +
                            ", posternd speaks ABI " + std::to_string(plugins::api::AbiVersion + 1));
}

BOOST_AUTO_TEST_CASE(refusesNamesThatAreNotPlainWords) {
    PluginLoader loader(test::pluginDir());
    for (std::string bad : {"../passwd-file", "", "a/b", "Passwd-File", "x.so"}) {
        std::string error = errorOf([&] { loader.load(bad, "users", {}); });
        BOOST_TEST(error.find("invalid plugin name") != std::string::npos, bad + ": " + error);
    }
}

const std::vector<ConfigRow> ConfigRows{
    {"colour", "blue", "unknown config key 'colour'"},
    {"check_interval", "soon", "invalid value 'soon' for check_interval"},
    {"check_interval", "5m", "invalid value '5m' for check_interval"},
    {"path", "", "config key 'path' is required"},
    {"path", "/nonexistent/passwd", "cannot open /nonexistent/passwd"},
    {"aliases", "/nonexistent/aliases", "cannot open /nonexistent/aliases"},
};

BOOST_DATA_TEST_CASE(createFailsWithTheKeyNamed, boost::unit_test::data::make(ConfigRows), row) {
    TempDir tmp;
    test::writeFile(tmp.file("passwd"), "alice@example.test:{PLAIN}pw\n");
    std::map<std::string, std::string> config{{"path", tmp.file("passwd")}};
    config[row.key] = row.value;
    PluginLoader loader(test::pluginDir());
    std::string error = errorOf([&] { loader.load("passwd-file", "users", config); });
    BOOST_TEST(error.find("auth backend users (plugin passwd-file): passwd-file: ") == 0u, error);
    BOOST_TEST(error.find(row.expectedError) != std::string::npos, error);
}

BOOST_AUTO_TEST_SUITE_END()

}  // namespace postern::auth
