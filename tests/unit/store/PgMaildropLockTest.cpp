// PgMaildropLock and ClusterMaildropService against a real PostgreSQL (see
// tests/unit/grants/PgGrantStoreTest.cpp for how the database is chosen; skipped without
// POSTERN_TEST_PG_CONNINFO). Two lock objects on two pools play two nodes.
#include "store/ClusterMaildropService.h"
#include "store/MaildirStore.h"
#include "store/PgMaildropLock.h"

#include "StoreTestSupport.h"
#include "pg/Connection.h"

#include "support/PgTestSupport.h"

#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

using namespace postern;
using namespace postern::store;
using namespace std::chrono_literals;
using Status = PgMaildropLock::Status;

namespace {

using namespace postern::testing;



template <typename F>
bool eventually(F cond, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (cond())
            return true;
        std::this_thread::sleep_for(50ms);
    }
    return cond();
}

// Two nodes on one maildir root and one database (renewal rounds run by the tests), and a
// mailbox holding one message.
struct TwoNodes {
    Db db;
    bool cleaned = (db.sql("TRUNCATE maildrop_leases"), true);
    test::TempDir root;
    MaildirStore storeA{root.path.string(), "node-a"}, storeB{root.path.string(), "node-b"};
    pg::Pool poolA{settings(2)}, poolB{settings(2)};
    PgMaildropLock lockA{poolA, 60s, 1h}, lockB{poolB, 60s, 1h};
    ClusterMaildropService nodeA{storeA, lockA, "node-a"}, nodeB{storeB, lockB, "node-b"};

    explicit TwoNodes(const std::string& mailbox) {
        BOOST_REQUIRE(MaildirStore::ensureMaildir((root.path / mailbox).string()));
        const std::string message = "Subject: x\r\n\r\nbody\r\n";
        test::spit(root.path / "msg", message);
        std::string placed;
        BOOST_REQUIRE(storeA.deliver((root.path / "msg").string(), message.size(), mailbox, placed));
    }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(pg_maildrop_lock)

BOOST_AUTO_TEST_CASE(acquire_in_use_release, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE maildrop_leases");
    pg::Pool poolA(settings(2)), poolB(settings(2));
    PgMaildropLock nodeA(poolA, 60s), nodeB(poolB, 60s);  // the shipped cluster.lock_lease
    auto a = nodeA.acquire("example.test/bob", "node-a");
    BOOST_REQUIRE((a.status == Status::Acquired));
    BOOST_TEST(!a.token.empty());
    BOOST_TEST(db.one("SELECT node_id || ' ' || token FROM maildrop_leases WHERE mailbox = 'example.test/bob'") ==
               "node-a " + a.token);
    BOOST_TEST((nodeB.acquire("example.test/bob", "node-b").status == Status::InUse));
    BOOST_TEST((nodeA.acquire("example.test/bob", "node-a").status == Status::InUse));  // this node too
    BOOST_TEST((nodeB.acquire("example.test/ann", "node-b").status == Status::Acquired));  // other mailbox
    BOOST_TEST((nodeA.verify(a.token) == core::Answer::Yes));
    BOOST_TEST(nodeA.release(a.token));
    BOOST_TEST(!nodeA.release(a.token));  // once
    auto b = nodeB.acquire("example.test/bob", "node-b");
    BOOST_TEST((b.status == Status::Acquired));
    BOOST_TEST(db.one("SELECT node_id FROM maildrop_leases WHERE mailbox = 'example.test/bob'") == "node-b");
}

BOOST_AUTO_TEST_CASE(crashed_node_lease_lapses, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE maildrop_leases");
    pg::Pool poolA(settings(2)), poolB(settings(2));
    PgMaildropLock nodeB(poolB, 3s);
    std::chrono::steady_clock::time_point acquiredAt;
    {
        // "Crash": the node stops renewing without releasing.
        PgMaildropLock nodeA(poolA, 3s);
        BOOST_REQUIRE((nodeA.acquire("example.test/bob", "node-a").status == Status::Acquired));
        acquiredAt = std::chrono::steady_clock::now();
    }
    BOOST_TEST((nodeB.acquire("example.test/bob", "node-b").status == Status::InUse));
    BOOST_TEST(eventually([&] { return nodeB.acquire("example.test/bob", "node-b").status == Status::Acquired; }, 6000ms));
    const auto waited = std::chrono::steady_clock::now() - acquiredAt;
    BOOST_TEST((waited >= 2500ms), "the lease was honoured until it lapsed");
    BOOST_TEST((waited < 5000ms), "and not much longer");
}

// Review finding: "d/bob/" and "d/bob" name one maildir but were two leases, so two nodes
// could both open it.
BOOST_AUTO_TEST_CASE(one_lease_per_maildir_however_spelled, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE maildrop_leases");
    pg::Pool poolA(settings(2)), poolB(settings(2));
    PgMaildropLock nodeA(poolA, 60s), nodeB(poolB, 60s);
    auto a = nodeA.acquire("example.test/bob/", "node-a");
    BOOST_REQUIRE((a.status == Status::Acquired));
    BOOST_TEST((nodeB.acquire("example.test/bob", "node-b").status == Status::InUse));
    BOOST_TEST(db.one("SELECT mailbox FROM maildrop_leases") == "example.test/bob");
    BOOST_TEST(PgMaildropLock::leaseKey("example.test/bob/") == "example.test/bob");
    BOOST_TEST(nodeA.release(a.token));
}

// Review finding: nothing deleted lapsed leases (a crashed node's, orphans), though the
// schema says every row expires and is swept.
BOOST_AUTO_TEST_CASE(sweep_deletes_lapsed_leases_only, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE maildrop_leases");
    pg::Pool pool(settings(2));
    PgMaildropLock node(pool, 60s);
    BOOST_REQUIRE((node.acquire("example.test/live", "node-a").status == Status::Acquired));
    db.sql("INSERT INTO maildrop_leases (mailbox, node_id, token, acquired, expires) SELECT 'example.test/old' || g,"
           " 'crashed', gen_random_uuid(), now() - interval '3 minutes', now() - interval '61 seconds'"
           " FROM generate_series(1, 5) g");
    // Lapsed for less than a lease (60 s): its holder may still renew it after an outage.
    db.sql("INSERT INTO maildrop_leases (mailbox, node_id, token, acquired, expires) VALUES ('example.test/recent',"
           " 'node-b', gen_random_uuid(), now() - interval '2 minutes', now() - interval '30 seconds')");
    auto removed = node.sweep(2);  // in batches of 2
    BOOST_REQUIRE(removed.has_value());
    BOOST_TEST(*removed == 5u);
    BOOST_TEST(db.one("SELECT string_agg(mailbox, ',' ORDER BY mailbox) FROM maildrop_leases") ==
               "example.test/live,example.test/recent");
}

BOOST_AUTO_TEST_CASE(renewal_keeps_a_lease_and_notices_loss, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE maildrop_leases");
    pg::Pool poolA(settings(2)), poolB(settings(2));
    PgMaildropLock nodeA(poolA, 3s), nodeB(poolB, 3s);
    auto a = nodeA.acquire("example.test/bob", "node-a");
    BOOST_REQUIRE((a.status == Status::Acquired));
    // Twice the lease: the renewal thread (every 1 s) keeps it.
    std::this_thread::sleep_for(6s);
    BOOST_TEST((nodeB.acquire("example.test/bob", "node-b").status == Status::InUse));
    BOOST_TEST(db.one("SELECT expires > now() + interval '1 second' FROM maildrop_leases") == "t");
    BOOST_TEST((nodeA.verify(a.token) == core::Answer::Yes));
    BOOST_TEST(nodeA.heldCount() == 1u);

    // Another holder has the row (here written by hand): the next renewal marks the lease lost.
    db.sql("UPDATE maildrop_leases SET token = gen_random_uuid(), node_id = 'node-c'");
    BOOST_TEST(nodeA.renewAll() == 0u);
    BOOST_TEST(nodeA.heldCount() == 0u);
    BOOST_TEST((nodeA.verify(a.token) == core::Answer::No));
}

// Review finding: a login on another node took this session's lapsed row (after an outage),
// found the maildrop in use (this session's flock) and released the lease it had just
// taken, deleting the row: this session's lease was then lost, and its deletions refused at
// QUIT. A row that is gone is written again with its holder's token; nobody else has it.
BOOST_AUTO_TEST_CASE(a_lease_whose_row_is_gone_is_written_again, *boost::unit_test::precondition(WithPg())) {
    Db db;
    db.sql("TRUNCATE maildrop_leases");
    pg::Pool poolA(settings(2)), poolB(settings(2));
    PgMaildropLock nodeA(poolA, 60s, 1h), nodeB(poolB, 60s, 1h);  // renewals run by the test
    auto a = nodeA.acquire("example.test/bob", "node-a");
    BOOST_REQUIRE((a.status == Status::Acquired));
    db.sql("UPDATE maildrop_leases SET acquired = now() - interval '2 minutes', expires = now() - interval '1 second'");
    auto b = nodeB.acquire("example.test/bob", "node-b");  // the lapsed row is taken over
    BOOST_REQUIRE((b.status == Status::Acquired));
    BOOST_TEST(nodeB.release(b.token));  // its maildrop was in use: the row is deleted
    BOOST_TEST(db.one("SELECT count(*) FROM maildrop_leases") == "0");
    BOOST_TEST((nodeA.verify(a.token) == core::Answer::Yes));
    BOOST_TEST(db.one("SELECT node_id || ' ' || (token = '" + a.token + "'::uuid) || ' ' || (expires > now())"
                      " FROM maildrop_leases") == "node-a true true");
    // The renewal round only renews (review finding: writing rows back there raced the
    // sessions' own releases, and resurrected leases nobody held): a row it finds gone (the
    // sweep deleted it after a long outage) is not renewed until the session's verify()
    // takes it back.
    db.sql("DELETE FROM maildrop_leases");
    BOOST_TEST(nodeA.renewAll() == 0u);
    BOOST_TEST(nodeA.heldCount() == 0u);
    BOOST_TEST(db.one("SELECT count(*) FROM maildrop_leases") == "0");
    BOOST_TEST((nodeA.verify(a.token) == core::Answer::Yes));
    BOOST_TEST(nodeA.heldCount() == 1u);
    BOOST_TEST(nodeA.renewAll() == 1u);
    // Meanwhile another node holds it: lost, and nothing is written over its row.
    db.sql("UPDATE maildrop_leases SET token = gen_random_uuid(), node_id = 'node-b'");
    BOOST_TEST((nodeA.verify(a.token) == core::Answer::No));
    BOOST_TEST(db.one("SELECT node_id FROM maildrop_leases") == "node-b");
}

BOOST_AUTO_TEST_CASE(cluster_maildrop_service, *boost::unit_test::precondition(WithPg())) {
    const std::string mailbox = "example.test/bob";
    TwoNodes n(mailbox);
    auto& [db, cleaned, root, storeA, storeB, poolA, poolB, lockA, lockB, nodeA, nodeB] = n;

    core::MaildropPtr dropA;
    BOOST_REQUIRE((nodeA.open(mailbox, dropA) == core::MaildropStatus::Ok));
    BOOST_TEST(dropA->entries().size() == 1u);
    core::MaildropPtr dropB;
    BOOST_TEST((nodeB.open(mailbox, dropB) == core::MaildropStatus::InUse));
    BOOST_TEST(db.one("SELECT node_id FROM maildrop_leases") == "node-a");

    // Lease lost (another holder has the row): nothing is deleted.
    db.sql("UPDATE maildrop_leases SET token = gen_random_uuid(), node_id = 'node-c'");
    BOOST_TEST(!dropA->expunge({0}));
    db.sql("DELETE FROM maildrop_leases");
    BOOST_TEST(test::filesIn(root.path / mailbox / "cur").size() == 1u);
    dropA.reset();

    // Closing releases both the local lock and the lease; the other node then opens it
    // and may delete.
    BOOST_REQUIRE((nodeA.open(mailbox, dropA) == core::MaildropStatus::Ok));
    dropA.reset();
    BOOST_TEST(db.one("SELECT count(*) FROM maildrop_leases") == "0");
    BOOST_REQUIRE((nodeB.open(mailbox, dropB) == core::MaildropStatus::Ok));
    BOOST_TEST(dropB->expunge({0}));
    BOOST_TEST(test::filesIn(root.path / mailbox / "cur").empty());
    // The local flock still excludes a second session on the same node when the lease
    // is taken by this node's first session.
    BOOST_TEST((nodeB.open(mailbox, dropA) == core::MaildropStatus::InUse));
    dropB.reset();
    BOOST_TEST(db.one("SELECT count(*) FROM maildrop_leases") == "0");
}

// Review finding: A's row lapses (an outage) and a login on B takes it over, finds the
// maildrop in use (A's flock) and lets go of it, deleting the row: A's lease was lost, and
// its deletions refused at QUIT. A still holds the maildrop, and its QUIT deletes.
BOOST_AUTO_TEST_CASE(a_failed_takeover_leaves_the_holder_its_deletions, *boost::unit_test::precondition(WithPg())) {
    const std::string mailbox = "example.test/carol";
    TwoNodes n(mailbox);
    auto& [db, cleaned, root, storeA, storeB, poolA, poolB, lockA, lockB, nodeA, nodeB] = n;

    core::MaildropPtr dropA, dropB;
    BOOST_REQUIRE((nodeA.open(mailbox, dropA) == core::MaildropStatus::Ok));
    BOOST_REQUIRE(dropA->entries().size() == 1u);
    db.sql("UPDATE maildrop_leases SET acquired = now() - interval '2 minutes', expires = now() - interval '1 second'");
    BOOST_TEST((nodeB.open(mailbox, dropB) == core::MaildropStatus::InUse));
    BOOST_TEST(db.one("SELECT count(*) FROM maildrop_leases") == "0");
    BOOST_TEST(lockA.renewAll() == 0u);  // meanwhile A's renewal round found no row
    BOOST_TEST(dropA->expunge({0}));     // A's QUIT
    BOOST_TEST(test::filesIn(root.path / mailbox / "cur").empty());
    BOOST_TEST(test::filesIn(root.path / mailbox / "new").empty());
    BOOST_TEST(db.one("SELECT node_id || ' ' || (expires > now()) FROM maildrop_leases") == "node-a true");
    BOOST_TEST(lockA.heldCount() == 1u);  // taken back: the rounds renew it again
    BOOST_TEST(lockA.renewAll() == 1u);
    dropA.reset();
    BOOST_TEST(db.one("SELECT count(*) FROM maildrop_leases") == "0");
}

BOOST_AUTO_TEST_CASE(unreachable_database_is_tempfail) {
    pg::Pool pool(settingsFor("host=127.0.0.1 port=1 dbname=x user=x", 1));
    PgMaildropLock lock(pool, 3s);
    BOOST_TEST((lock.acquire("example.test/bob", "node-a").status == Status::TempFail));
    // The statement never reached the server (cannot connect): nothing can have committed.
    BOOST_TEST(lock.pendingForgets() == 0u);
    test::TempDir root;
    MaildirStore local(root.path.string(), "node-a");
    ClusterMaildropService service(local, lock, "node-a");
    core::MaildropPtr drop;
    // Degraded: readable under the local lock, never expunged without the lease.
    BOOST_TEST((service.open("example.test/bob", drop) == core::MaildropStatus::Ok));
    BOOST_REQUIRE(drop);
    BOOST_TEST(drop->entries().empty());
    BOOST_TEST(drop->expunge({}));  // nothing to delete is fine; deletions need the lease
    BOOST_CHECK_THROW(PgMaildropLock(pool, 1s), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(forget_later_keeps_a_token_while_the_database_cannot_answer) {
    // A statement that timed out may have committed: its token is kept while the database
    // cannot answer, and given up after one lease time.
    pg::Pool pool(settingsFor("host=127.0.0.1 port=1 dbname=x user=x", 1));
    PgMaildropLock lock(pool, 3s, 1h);  // no renewal round of its own: the test runs them
    pg::QueryResult timedOut;
    timedOut.timedOut = true;
    lock.forgetLater("example.test/bob", "6f1c2a4e-0000-4000-8000-000000000003", timedOut);
    lock.forgetLater("example.test/ann", "6f1c2a4e-0000-4000-8000-000000000004", timedOut);
    BOOST_TEST(lock.pendingForgets() == 2u);
    BOOST_TEST(lock.forgetPending() == 0u);
    BOOST_TEST(lock.pendingForgets() == 2u);
    std::this_thread::sleep_for(3100ms);
    BOOST_TEST(lock.forgetPending() == 0u);
    BOOST_TEST(lock.pendingForgets() == 0u);
}

BOOST_AUTO_TEST_CASE(stopped_database_is_tempfail, *boost::unit_test::precondition(WithPgDown())) {
    pg::Pool pool(settingsFor(envOrNull("POSTERN_TEST_PG_DOWN_CONNINFO"), 1));
    PgMaildropLock lock(pool, 3s);
    BOOST_TEST((lock.acquire("example.test/bob", "node-a").status == Status::TempFail));
}

BOOST_AUTO_TEST_CASE(forget_later_removes_a_lease_whose_statement_failed_after_commit,
                     *boost::unit_test::precondition(WithPg())) {
    // The lease row a timed-out login statement committed anyway: nobody holds its token,
    // and without forgetLater() the next logins would be "in use" for a whole lease time.
    Db db;
    db.sql("TRUNCATE maildrop_leases");
    pg::Pool pool(settings(2));
    PgMaildropLock node(pool, 60s);
    const std::string orphan = "6f1c2a4e-0000-4000-8000-000000000001";
    db.sql("INSERT INTO maildrop_leases (mailbox, node_id, token, acquired, expires) VALUES "
           "('example.test/bob', 'node-a', '" + orphan + "', now(), now() + interval '60 seconds')");
    BOOST_TEST((node.acquire("example.test/bob", "node-a").status == Status::InUse));
    pg::QueryResult timedOut;  // what the login statement got: no answer in time
    timedOut.timedOut = true;
    node.forgetLater("example.test/bob", "6f1c2a4e-0000-4000-8000-000000000002", timedOut);  // not its token
    node.forgetLater("example.test/bob", orphan, timedOut);
    // Refused by the pool or answered with an error by the server: nothing to forget.
    node.forgetLater("example.test/bob", orphan, pg::QueryResult::failure("no free database connection", "08000"));
    node.forgetLater("example.test/bob", orphan, pg::QueryResult::failure("deadlock detected", "40P01"));
    BOOST_TEST(node.pendingForgets() == 2u);
    BOOST_TEST(db.one("SELECT count(*) FROM maildrop_leases") == "1");  // later, not now
    BOOST_TEST(node.forgetPending() == 1u);  // the renewal thread's round
    BOOST_TEST(node.pendingForgets() == 0u);  // both answered: nothing kept
    BOOST_TEST(db.one("SELECT count(*) FROM maildrop_leases") == "0");
    auto a = node.acquire("example.test/bob", "node-a");
    BOOST_TEST((a.status == Status::Acquired));
    BOOST_TEST(node.release(a.token));
}

BOOST_AUTO_TEST_SUITE_END()
