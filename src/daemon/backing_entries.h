// Backing entries and their plaintext view: finding and naming the backing object of a
// plaintext name (trying a directory's alternate IVs), looking one up into the inode table, and
// the attributes the mount shows for it (plaintext sizes, the change time our seals hide).
// Thread-safe; takes Inode::mutex for the cached parts of an inode.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <string>
#include <string_view>

#include "envelope_fs.h"

namespace envelopefs {

// The directory IVs of `dir`, read on first use. 0 or an errno.
int GetDirIvs(EnvelopeFs& fs, Inode& dir, DirIvs* ivs);

// The plaintext view of a backing object's attributes `st` (`inode` may be null; `fd`: a
// descriptor of the object).
void ToPlainAttr(EnvelopeFs& fs, Inode* inode, int fd, struct stat& st);
int GetAttr(EnvelopeFs& fs, Inode& inode, struct stat* st);

// Finds the backing name of an existing entry `name` in `dir`, trying alternate IVs.
// Returns 0 and fills `backing`, or an errno.
int FindBacking(EnvelopeFs& fs, Inode& dir, const char* name, std::string* backing);
// The backing name for a new entry `name` in `dir` (primary IV); writes a long name's side file.
int NewBacking(EnvelopeFs& fs, Inode& dir, const char* name, std::string* backing);
// Looks up backing entry `backing` in `dir` and fills `e` (incrementing its lookup count).
int LookupBacking(EnvelopeFs& fs, Inode& dir, const std::string& backing, std::string_view name,
                  fuse_entry_param* e);
// Gives a new entry to the requesting user when the daemon runs as root (allow_other).
void ChownToCaller(fuse_req_t req, Inode& dir, const std::string& backing);
// The same for a new file not yet in `dir` (open as `fd`).
void ChownFdToCaller(fuse_req_t req, Inode& dir, int fd);

}  // namespace envelopefs
