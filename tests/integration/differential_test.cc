// A seeded randomized differential tester: applies thousands of random operations to the mount
// and to a plain reference directory on the backing file system, and compares results, errnos,
// contents, sizes, modes, links, xattrs and listings as it goes. A failure names the seed and
// the operation, so it can be replayed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <random>
#include <sstream>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

struct Outcome {
  int err = 0;       // 0 or errno
  std::string data;  // what a read returned
  bool operator==(const Outcome& o) const { return err == o.err && data == o.data; }
};

std::string Describe(const Outcome& o) {
  return o.err ? std::string("errno ") + std::strerror(o.err)
               : "ok (" + std::to_string(o.data.size()) + " bytes)";
}

int Err(int rc) { return rc < 0 ? errno : 0; }

class Differ {
 public:
  Differ(uint32_t seed, fs::path mnt, fs::path ref) : rng_(seed), mnt_(mnt), ref_(ref) {}

  // Picks and applies one random operation to both trees; returns its description and
  // whether both sides agreed.
  bool Step(std::string* description) {
    std::vector<std::string> entries = Entries();
    std::vector<std::string> dirs = {""};
    for (const auto& e : entries) {
      struct stat st;
      if (lstat((ref_ / e).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) dirs.push_back(e);
    }
    auto pick_entry = [&]() -> std::string {
      if (entries.empty() || rng_() % 8 == 0) return NewPath(dirs);
      return entries[rng_() % entries.size()];
    };
    std::ostringstream d;
    Outcome a, b;
    switch (rng_() % 14) {
      case 0:
      case 1:
      case 2: {  // write at a random offset, across chunk boundaries
        std::string p = rng_() % 3 == 0 ? NewPath(dirs) : pick_entry();
        uint64_t off = rng_() % 20000;
        std::string data = RandomString(1 + rng_() % 9000, rng_());
        d << "write " << p << " @" << off << " len " << data.size();
        auto f = [&](const fs::path& root) {
          int fd = open((root / p).c_str(), O_WRONLY | O_CREAT, 0644);
          if (fd < 0) return Outcome{errno, ""};
          ssize_t n = pwrite(fd, data.data(), data.size(), static_cast<off_t>(off));
          Outcome o{n < 0 ? errno : 0, std::to_string(n)};
          close(fd);
          return o;
        };
        a = f(mnt_), b = f(ref_);
        break;
      }
      case 3: {  // append
        std::string p = pick_entry();
        std::string data = RandomString(1 + rng_() % 300, rng_());
        d << "append " << p << " len " << data.size();
        auto f = [&](const fs::path& root) {
          int fd = open((root / p).c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
          if (fd < 0) return Outcome{errno, ""};
          ssize_t n = write(fd, data.data(), data.size());
          Outcome o{n < 0 ? errno : 0, std::to_string(n)};
          close(fd);
          return o;
        };
        a = f(mnt_), b = f(ref_);
        break;
      }
      case 4: {
        std::string p = pick_entry();
        off_t size = static_cast<off_t>(rng_() % 30000);
        d << "truncate " << p << " " << size;
        a = {Err(truncate((mnt_ / p).c_str(), size)), ""};
        b = {Err(truncate((ref_ / p).c_str(), size)), ""};
        break;
      }
      case 5: {
        std::string from = pick_entry(), to = rng_() % 2 ? NewPath(dirs) : pick_entry();
        d << "rename " << from << " -> " << to;
        a = {Err(rename((mnt_ / from).c_str(), (mnt_ / to).c_str())), ""};
        b = {Err(rename((ref_ / from).c_str(), (ref_ / to).c_str())), ""};
        break;
      }
      case 6: {
        std::string from = pick_entry(), to = NewPath(dirs);
        d << "link " << from << " -> " << to;
        a = {Err(link((mnt_ / from).c_str(), (mnt_ / to).c_str())), ""};
        b = {Err(link((ref_ / from).c_str(), (ref_ / to).c_str())), ""};
        break;
      }
      case 7: {
        std::string p = pick_entry();
        d << "unlink " << p;
        a = {Err(unlink((mnt_ / p).c_str())), ""};
        b = {Err(unlink((ref_ / p).c_str())), ""};
        break;
      }
      case 8: {
        std::string p = dirs.size() < 12 ? NewPath(dirs) : pick_entry();
        d << "mkdir " << p;
        a = {Err(mkdir((mnt_ / p).c_str(), 0755)), ""};
        b = {Err(mkdir((ref_ / p).c_str(), 0755)), ""};
        break;
      }
      case 9: {
        std::string p = dirs[rng_() % dirs.size()];
        if (p.empty()) p = pick_entry();
        d << "rmdir " << p;
        a = {Err(rmdir((mnt_ / p).c_str())), ""};
        b = {Err(rmdir((ref_ / p).c_str())), ""};
        break;
      }
      case 10: {
        std::string p = NewPath(dirs), target = "t/" + std::to_string(rng_() % 100);
        d << "symlink " << p << " -> " << target;
        a = {Err(symlink(target.c_str(), (mnt_ / p).c_str())), ""};
        b = {Err(symlink(target.c_str(), (ref_ / p).c_str())), ""};
        break;
      }
      case 11: {
        std::string p = pick_entry();
        mode_t mode = 0600 | (rng_() % 0100);
        d << "chmod " << p << " " << std::oct << mode;
        struct stat st;
        if (lstat((ref_ / p).c_str(), &st) == 0 && S_ISLNK(st.st_mode)) return Skip(description);
        a = {Err(chmod((mnt_ / p).c_str(), mode)), ""};
        b = {Err(chmod((ref_ / p).c_str(), mode)), ""};
        break;
      }
      case 12: {
        std::string p = pick_entry();
        struct stat st;
        if (lstat((ref_ / p).c_str(), &st) == 0 && S_ISLNK(st.st_mode)) return Skip(description);
        std::string name = "user.k" + std::to_string(rng_() % 3);
        std::string value = RandomString(rng_() % 100, rng_());
        d << "setxattr " << p << " " << name;
        a = {Err(lsetxattr((mnt_ / p).c_str(), name.c_str(), value.data(), value.size(), 0)), ""};
        b = {Err(lsetxattr((ref_ / p).c_str(), name.c_str(), value.data(), value.size(), 0)), ""};
        break;
      }
      default: {  // read a random range
        std::string p = pick_entry();
        uint64_t off = rng_() % 25000;
        size_t len = rng_() % 12000;
        d << "read " << p << " @" << off << " len " << len;
        auto f = [&](const fs::path& root) {
          int fd = open((root / p).c_str(), O_RDONLY);
          if (fd < 0) return Outcome{errno, ""};
          std::string buf(len, '\0');
          ssize_t n = pread(fd, buf.data(), len, static_cast<off_t>(off));
          Outcome o{n < 0 ? errno : 0, n < 0 ? "" : buf.substr(0, static_cast<size_t>(n))};
          close(fd);
          return o;
        };
        a = f(mnt_), b = f(ref_);
        break;
      }
    }
    *description = d.str() + ": mount " + Describe(a) + ", reference " + Describe(b);
    return a == b;
  }

  // Compares the whole trees; returns a description of the first difference, or "".
  std::string CompareTrees() {
    std::vector<std::string> ours = Entries(mnt_), theirs = Entries(ref_);
    if (ours != theirs) {
      std::ostringstream d;
      d << "listings differ:\n  mount:";
      for (auto& e : ours) d << " " << e;
      d << "\n  reference:";
      for (auto& e : theirs) d << " " << e;
      return d.str();
    }
    for (const std::string& e : ours) {
      struct stat sa, sb;
      lstat((mnt_ / e).c_str(), &sa);
      lstat((ref_ / e).c_str(), &sb);
      if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT)) return e + ": type differs";
      if (!S_ISLNK(sa.st_mode) && (sa.st_mode & 07777) != (sb.st_mode & 07777)) {
        return e + ": mode differs";
      }
      if (sa.st_nlink != sb.st_nlink && !S_ISDIR(sa.st_mode)) return e + ": link count differs";
      if (S_ISREG(sa.st_mode)) {
        if (sa.st_size != sb.st_size) {
          return e + ": size " + std::to_string(sa.st_size) + " vs " + std::to_string(sb.st_size);
        }
        if (ReadFile(mnt_ / e) != ReadFile(ref_ / e)) return e + ": content differs";
      }
      if (S_ISLNK(sa.st_mode) && fs::read_symlink(mnt_ / e) != fs::read_symlink(ref_ / e)) {
        return e + ": symlink target differs";
      }
      if (!S_ISLNK(sa.st_mode) && UserXattrs(mnt_ / e) != UserXattrs(ref_ / e)) {
        return e + ": xattrs differ";
      }
    }
    return "";
  }

 private:
  bool Skip(std::string* description) {
    *description = "(skipped)";
    return true;
  }

  std::string NewPath(const std::vector<std::string>& dirs) {
    static const char* kNames[] = {"a", "b", "c", "data.parquet", "part-0001.csv", "x y"};
    std::string dir = dirs[rng_() % dirs.size()];
    std::string name = kNames[rng_() % 6];
    if (rng_() % 40 == 0) name = std::string(180 + rng_() % 75, 'L');  // a long name
    return dir.empty() ? name : dir + "/" + name;
  }

  std::vector<std::string> Entries() { return Entries(ref_); }

  static std::vector<std::string> Entries(const fs::path& root) {
    std::vector<std::string> out;
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
      out.push_back(fs::relative(it->path(), root).string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::mt19937 rng_;
  fs::path mnt_, ref_;
};

void RunDifferential(uint32_t seed, int steps, const std::string& init_flags) {
  MountedVolume v(VolumeOptions{init_flags, ""});
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  TempDir ref;
  Differ differ(seed, v.mnt(), ref.path());
  for (int i = 0; i < steps; ++i) {
    std::string what;
    ASSERT_TRUE(differ.Step(&what))
        << "seed " << seed << " step " << i << ": " << what << "\ndaemon log:\n"
        << v.DaemonLog();
    if (i % 100 == 99) {
      std::string diff = differ.CompareTrees();
      ASSERT_EQ("", diff) << "seed " << seed << " after step " << i;
    }
  }
  v.Unmount();  // and what survives a remount is the same tree
  v.Mount();
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  EXPECT_EQ("", differ.CompareTrees()) << "seed " << seed << " after remount";
}

TEST(Differential, EncryptedNamesSmallChunks) { RunDifferential(1, 2000, "--chunk-size 4096"); }
TEST(Differential, EncryptedNamesDefaultChunks) { RunDifferential(2, 2000, ""); }
TEST(Differential, PlaintextNames) { RunDifferential(3, 1500, "--plaintext-names"); }

}  // namespace
}  // namespace envelopefs::testing
