// The node's durable outbound queue: messages for remote recipients wait here for the
// delivery workers (RFC 5321 4.5.4 retry). One data file plus one envelope file each.
#pragma once

#include "queue/QueueEnvelope.h"

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace postern::queue {

struct QueueLimits {
    std::uint64_t maxBytes = 0;     // queue.max_size; 0 = unlimited
    std::uint64_t maxMessages = 0;  // queue.max_messages; 0 = unlimited

    bool operator==(const QueueLimits&) const = default;
};

struct QueueStats {
    std::uint64_t messages = 0;
    std::uint64_t bytes = 0;
};

struct QueueEntry {
    QueueEnvelope envelope;
    std::uint64_t size = 0;  // bytes of the data file
};

// Directory layout under queueDir (directories 0700, files 0600):
//   incoming/        temp files of messages still being received (SpoolSink writes here;
//                    on the queue's file system so placing a message is a link, not a copy)
//   data/<id>        message bytes exactly as received (CRLF)
//   envelope/<id>    the envelope (QueueEnvelope.h); written last, so its presence is the
//                    commit point: a message is queued iff its envelope exists
//   envelope/.<id>.tmp   an envelope being written (never read)
//
// Thread-safe. Size accounting (isFull, stats) is kept in memory, seeded by a scan at
// construction and updated by enqueue/remove: every change to a running queue must go
// through the one OutboundQueue of the daemon. The limits are soft: admission is checked
// when a message starts (isFull), so concurrent sessions can overshoot by their sizes.
class OutboundQueue {
public:
    // Creates the directories if missing and scans the queue. Throws std::runtime_error
    // if the directories cannot be created or read (fail closed at start-up).
    OutboundQueue(std::string queueDir, QueueLimits limits);
    ~OutboundQueue();
    OutboundQueue(const OutboundQueue&) = delete;
    OutboundQueue& operator=(const OutboundQueue&) = delete;

    // Daemon start-up only (no writer may be active): removes leftovers of a crash
    // (incoming/*, data files without an envelope, envelope temp files). Returns the
    // number of files removed.
    std::size_t recover();

    // True when the queue is at or over a limit: new messages with remote recipients
    // are refused (452 4.3.1) until delivery drains it.
    bool isFull() const;
    QueueStats stats() const;

    // 16 lower-case hex digits: seconds (8) + process counter (4) + random (4).
    // Unique per queue because enqueue() places data with link(2), which fails on a clash.
    static std::string newId();
    static bool isValidId(std::string_view id);

    const std::string& directory() const { return dir_; }
    std::string incomingDirectory() const;
    std::string dataPath(const std::string& id) const;
    std::string envelopePath(const std::string& id) const;

    // Places the file `dataPath` (normally in incomingDirectory(), already fsynced) of `size`
    // bytes into the queue with `envelope`, durably: link (copy+fsync on EXDEV) into data/,
    // write the envelope temp file, fsync it, fsync data/, rename, fsync envelope/.
    // envelope.id: used if set and free, else (or on a clash) a new id is chosen and
    // stored back. The caller still owns and removes dataPath.
    // true: queued (durable). false: nothing of it is left in the queue (logged).
    bool enqueue(const std::string& dataPath, std::uint64_t size, QueueEnvelope& envelope);

    // The same for a caller that still has its file open and may give it up (a message
    // only for remote recipients, written to incomingDirectory()). With `fd` the data file
    // is fsynced right before the envelope's temp file; with its write-back started by the
    // caller (sync_file_range), ext4 commits both files and the link in one journal commit.
    struct Source {
        std::string path;
        int fd = -1;             // open on `path`, not yet fsynced: enqueue fsyncs this descriptor
                                 // instead of opening the file again (the caller closes it)
        bool move = false;       // rename(2) into data/ instead of link(2): no unlink afterwards
        bool moved = false;      // out: `path` is gone (in the queue on success, removed on failure)
    };
    bool enqueue(Source& source, std::uint64_t size, QueueEnvelope& envelope);

    // Removes a queued message (envelope first, so it is never half-queued). true if it
    // was removed or did not exist; false on an I/O error or an invalid id.
    // syncDirectory: fsync envelope/ so the removal survives a crash (posternctl queue
    // delete); false after delivery, where a crash may at worst deliver the message again.
    bool remove(const std::string& id, bool syncDirectory = true);

    // For the delivery worker: atomically replaces the envelope of a queued message
    // (attempts, next attempt, last error). false if it is not queued or on I/O error.
    bool updateEnvelope(const QueueEnvelope& envelope);
    std::optional<QueueEnvelope> readEnvelope(const std::string& id) const;

    // Read-modify-write of one envelope under the queue's envelope lock (a mutex for this
    // process plus flock(2) on <queueDir>/envelope.lock, shared with posternctl), so the
    // daemon and posternctl never lose each other's changes. `change` edits the envelope
    // and returns true to write it (false: leave it). An envelope left without recipients
    // removes the message: remove() with the directory fsync when syncRemoval (posternctl
    // queue delete: a deleted message must not come back after a crash and be delivered),
    // without it after a delivery (nothing is left to deliver; at worst a duplicate).
    // Returns the envelope as written (nullopt: not queued, change declined, or I/O error).
    std::optional<QueueEnvelope> modifyEnvelope(const std::string& id,
                                                const std::function<bool(QueueEnvelope&)>& change,
                                                bool syncRemoval = false);

    // Called after every successful enqueue() with the new envelope (from the enqueuing
    // thread, under a lock: must be quick and must not call back into the queue). The
    // delivery runner uses it to pick up new mail at once; an empty function removes it.
    void setEnqueueListener(std::function<void(const QueueEnvelope&)> listener);

    // Recounts messages and bytes from the directory (another process, posternctl,
    // may have removed messages). false if the directory cannot be read.
    bool refreshStats();

    // Every queued message, oldest arrival first (for posternctl and the workers).
    // Envelopes that cannot be parsed are skipped and logged.
    std::vector<QueueEntry> list() const;

private:
    bool writeEnvelope(const QueueEnvelope& envelope);
    // The envelope in its fsynced temp file (`tmp` set on success), then renamed into place
    // and envelope/ fsynced; publishEnvelope removes `tmp` on failure.
    // `alsoSync`: a file to fsync right before the temp file (-1: none); write-back of both
    // is under way first, so on ext4 the first fsync's commit covers the second.
    bool writeEnvelopeTemp(const QueueEnvelope& envelope, std::string& tmp, int alsoSync = -1);
    bool publishEnvelope(const std::string& id, const std::string& tmp);
    void rescan();
    // fsync(2) of data/ or envelope/ through a descriptor opened once (two open/close pairs
    // per queued message less).
    bool syncDataDirectory() const;
    bool syncEnvelopeDirectory() const;

    std::string dir_;
    QueueLimits limits_;
    mutable std::mutex mutex_;  // guards stats_
    QueueStats stats_;
    std::mutex modifyMutex_;    // serialises modifyEnvelope() within this process
    std::mutex listenerMutex_;  // guards enqueueListener_ (held while it runs)
    std::function<void(const QueueEnvelope&)> enqueueListener_;
    int dataDirFd_ = -1;      // data/, open for fsync(2) (-1: reopened per call)
    int envelopeDirFd_ = -1;  // envelope/
};

}  // namespace postern::queue
