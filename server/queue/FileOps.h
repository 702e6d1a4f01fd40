// Durable file primitives shared by the outbound queue and the Maildir store:
// write-all, fsync of files and directories, mkdir -p with a mode, durable copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

namespace postern::queue {

// Free functions, no state; thread-safe. All return false with errno set on failure
// (except where noted) and never throw.

// write(2) until everything is written, retrying EINTR.
bool writeAll(int fd, const char* data, std::size_t size);
// open(dir, O_RDONLY|O_DIRECTORY) + fsync: makes a link/rename/unlink in `dir` durable.
bool fsyncDirectory(const std::string& dir);
// Names in a directory, without "." and "..". false if it cannot be read.
bool listDirectory(const std::string& dir, std::vector<std::string>& names);
// mkdir -p with `mode` for every directory it creates (existing ones are left as they are).
bool makeDirectories(const std::string& path, unsigned mode);
// Copies `from` into a new file `to` (O_EXCL, mode 0600) and fsyncs it. On failure the
// partial `to` is removed. Used when link(2) fails with EXDEV.
bool copyFileSynced(const std::string& from, const std::string& to);
// rename(2) that never replaces: false with errno EEXIST when `to` is another file. renameat2
// with RENAME_NOREPLACE; on a file system without it (EINVAL, e.g. NFS), link(2) + unlink(2);
// without hard links either, a plain rename(2) if `to` does not exist. When `to` is already
// the same file (an earlier link whose unlink did not happen), `from` is removed: done.
bool renameNoReplace(const std::string& from, const std::string& to);
// `to` is the very file `from` names (same device and inode): an earlier link(2) of it
// succeeded (a crash before the unlink, an NFS LINK answered EEXIST after its
// retransmission was done). No allocation.
bool sameFile(const std::string& from, const std::string& to);
// Reads a whole file (a regular file: the size fstat(2) gives, in as few reads as it takes).
// false if it cannot be opened or read.
bool readFile(const std::string& path, std::string& out);
// The first `limit` octets of a file (all of it if it is shorter); `truncated` says whether
// there was more. false if it cannot be opened or read.
bool readFileHead(const std::string& path, std::size_t limit, std::string& out, bool& truncated);
// readFile for a file another program may have put there (a Maildir shared with other
// writers, all mailboxes under one uid): opened without following a symlink (ELOOP) and
// without blocking on a FIFO; anything but a regular file is refused (EINVAL).
bool readRegularFile(const std::string& path, std::string& out);
// The descriptor readRegularFile reads from, for a caller that reads in blocks (readSome):
// -1 with errno as above. The caller closes it. `size`, when given, gets the file's size.
int openRegularFile(const std::string& path, std::uint64_t* size = nullptr);
// read(2) retrying EINTR: the octets read, 0 at the end of the file, -1 with errno.
ssize_t readSome(int fd, char* buf, std::size_t size);
// Creates `path` (O_EXCL, mode 0600) with `data`, fsynced. Partial file removed on failure.
// `alsoSync` >= 0: that descriptor's file is fsynced first, after this file's write-back was
// started (on ext4 the first fsync's journal commit then covers both files).
bool writeFileSynced(const std::string& path, const std::string& data, int alsoSync = -1);
// "ENOSPC (No space left on device)"-style text for logs.
std::string errnoText(int err);

}  // namespace postern::queue
