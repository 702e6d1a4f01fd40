// posternctl queue list|show|flush|delete|hold|release: the node's outbound queue
// (server.queue_dir), safe while posternd runs: every change is a locked
// read-modify-write of the envelope (OutboundQueue::modifyEnvelope) or its removal.
#pragma once

#include "Command.h"

namespace postern::ctl {

// Options: -c/--config FILE (default: see Layout.h) and -D key=value to find
// server.queue_dir, or --queue-dir DIR directly.
// A running posternd notices flush/hold/release/delete at its next queue scan
// (delivery.scan_interval, 30 s by default).
// Exit: 0 done; 64 usage; 67 no such message; 74 queue I/O error; 78 configuration.
int runQueueList(CommandContext& context);
int runQueueShow(CommandContext& context);
int runQueueFlush(CommandContext& context);
int runQueueDelete(CommandContext& context);
int runQueueHold(CommandContext& context);
int runQueueRelease(CommandContext& context);

#define POSTERN_CTL_QUEUE_OPTS "[-c FILE] [-D key=value] [--queue-dir DIR]"

inline constexpr Command QueueListCommand{"queue list", "[--json] " POSTERN_CTL_QUEUE_OPTS,
                                          "list queued messages: id, arrival, size, attempts, next attempt, hold, sender, recipients",
                                          &runQueueList};
inline constexpr Command QueueShowCommand{"queue show", "ID [--json] " POSTERN_CTL_QUEUE_OPTS,
                                          "show one message's envelope and header", &runQueueShow};
inline constexpr Command QueueFlushCommand{"queue flush", POSTERN_CTL_QUEUE_OPTS,
                                           "make every message (not held) due now", &runQueueFlush};
inline constexpr Command QueueDeleteCommand{"queue delete", "ID " POSTERN_CTL_QUEUE_OPTS,
                                            "remove a message from the queue (no bounce)", &runQueueDelete};
inline constexpr Command QueueHoldCommand{"queue hold", "ID " POSTERN_CTL_QUEUE_OPTS,
                                          "keep a message from being delivered until released", &runQueueHold};
inline constexpr Command QueueReleaseCommand{"queue release", "ID " POSTERN_CTL_QUEUE_OPTS,
                                             "release a held message and make it due now", &runQueueRelease};

}  // namespace postern::ctl
