// The cipher files of inodes: one CipherFile shared by all opens of an inode, created, opened
// (never twice at once for one inode), truncated, and handed to the Sealer after the last close;
// and the check that a regular file's header is ours before its metadata changes.
// Thread-safe. Lock order: Inode::open_mutex, then Inode::mutex, then the CipherFile's lock.
#pragma once

#include <fuse_lowlevel.h>

#include <memory>
#include <string>

#include "envelope_fs.h"
#include "envelopefs/cipher_file.h"

namespace envelopefs {

// What an open(2) of a regular file holds (fuse_file_info::fh).
struct FileHandle {
  std::shared_ptr<CipherFile> file;
  bool append = false;
  // Opened with O_DIRECT: served without the page cache (FOPEN_DIRECT_IO), so the kernel does
  // not clear set-ID bits before a write (DropSetIdBitsBeforeWrite does).
  bool direct = false;
};

inline FileHandle& GetFile(fuse_file_info* fi) { return *reinterpret_cast<FileHandle*>(fi->fh); }

// The shared CipherFile of regular file `inode`, opened if no one has it open. Throws Error.
std::shared_ptr<CipherFile> OpenCipherFile(EnvelopeFs& fs, Inode& inode);
// Creates a regular file's backing object `backing` in `dir` with a fresh header. 0 (and
// `out`), EEXIST when it exists and `excl` is false (the caller opens it), or an errno.
int CreateRegular(fuse_req_t req, Inode& dir, const std::string& backing, mode_t mode, bool excl,
                  std::shared_ptr<CipherFile>* out);
// Truncates `file`, the open file of `inode`. 0 or an errno.
int TruncateFile(Inode& inode, CipherFile& file, uint64_t size);
// OpenCipherFile, then what open(2)'s `flags` ask of the file itself: O_TRUNC empties it and
// sets its modification and change times (the kernel leaves that to us:
// FUSE_CAP_ATOMIC_O_TRUNC). 0 (and `out`) or an errno; throws Error as OpenCipherFile does.
int OpenWithFlags(EnvelopeFs& fs, Inode& inode, int flags, std::shared_ptr<CipherFile>* out);
// Drops one use of `file`; enqueues it for sealing if it was changed.
void ReleaseFile(EnvelopeFs& fs, std::shared_ptr<CipherFile> file);

// The authenticated file id of regular file `inode` (cached). 0 or an errno (EIO: the header does
// not open; ENOKEY: it names a KEK this volume does not have).
int FileIdOf(EnvelopeFs& fs, Inode& inode, FileId* id);
// 0 if `inode` is not a regular file or its header is ours, else an errno: a regular file's
// metadata changes only once its header authenticates.
int RequireOwnFile(EnvelopeFs& fs, Inode& inode);

}  // namespace envelopefs
