// Many threads at once through one mount, each checked against a model of what it did: writers
// of interleaved stripes of one shared file (so that they share chunks), readers of it, appenders
// to one log, writers and truncaters of their own files, and a renamer that moves files between
// directories while reading them through open descriptors. scripts/test also runs these against
// a ThreadSanitizer build of the daemon (ENVELOPEFS_TEST_DAEMON); the fixture fails a test whose
// daemon reported a race.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mount_fixture.h"

namespace envelopefs::testing {
namespace {

constexpr int kOps = 300;         // per thread
constexpr size_t kStripe = 1000;  // not a multiple of the 4 KiB chunk: writers share chunks
constexpr size_t kStripes = 64;
constexpr int kStripeWriters = 3;

std::string ReadAt(int fd, size_t offset, size_t len) {
  std::string out(len, '\0');
  ssize_t n = pread(fd, out.data(), len, static_cast<off_t>(offset));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

// Writer `t` owns the stripes s with s % kStripeWriters == t and remembers what it wrote last.
void WriteStripes(const fs::path& file, int t, std::vector<char>* model) {
  int fd = open(file.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::mt19937 rng(100 + t);
  for (int i = 0; i < kOps; ++i) {
    const size_t stripe = (rng() % (kStripes / kStripeWriters)) * kStripeWriters + t;
    const char letter = static_cast<char>('A' + rng() % 26);
    const std::string data(kStripe, letter);
    ASSERT_EQ(static_cast<ssize_t>(kStripe), pwrite(fd, data.data(), kStripe, stripe * kStripe));
    (*model)[stripe] = letter;
  }
  close(fd);
}

void ReadStripes(const fs::path& file, int t) {
  int fd = open(file.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::mt19937 rng(200 + t);
  for (int i = 0; i < kOps; ++i) {
    const size_t offset = rng() % (kStripe * kStripes);
    const size_t len = 1 + rng() % (3 * kStripe);
    const std::string got = ReadAt(fd, offset, len);
    ASSERT_EQ(std::min(len, kStripe * kStripes - offset), got.size());
    for (char c : got) ASSERT_TRUE(c == '.' || (c >= 'A' && c <= 'Z')) << int(c);
  }
  close(fd);
}

void Append(const fs::path& log, int t) {
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0);
  const std::string line = std::string(99, static_cast<char>('a' + t)) + "\n";
  for (int i = 0; i < kOps; ++i) ASSERT_EQ(100, write(fd, line.data(), line.size()));
  close(fd);
}

// Writes, appends and truncations of one file of its own, mirrored in a string.
void WriteAndTruncate(const fs::path& file, int t, std::string* model) {
  int fd = open(file.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  std::mt19937 rng(300 + t);
  for (int i = 0; i < kOps; ++i) {
    switch (rng() % 4) {
      case 0: {  // truncate, shorter or longer
        const size_t size = rng() % 20000;
        ASSERT_EQ(0, ftruncate(fd, static_cast<off_t>(size)));
        model->resize(size, '\0');
        break;
      }
      case 1: {  // check a random range
        const size_t offset = model->empty() ? 0 : rng() % model->size();
        const size_t len = 1 + rng() % 9000;
        ASSERT_EQ(model->substr(offset, len), ReadAt(fd, offset, len)) << "op " << i;
        break;
      }
      default: {  // write, possibly past the end (a hole)
        const size_t offset = rng() % 24000;
        const std::string data = RandomString(1 + rng() % 6000, rng());
        ASSERT_EQ(static_cast<ssize_t>(data.size()),
                  pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset)));
        if (model->size() < offset + data.size()) model->resize(offset + data.size(), '\0');
        model->replace(offset, data.size(), data);
      }
    }
  }
  close(fd);
}

// Moves files between two directories (also over each other) while reading one of them through
// a descriptor opened before the moves; the model maps each name to its contents.
void Rename(const fs::path& root, std::map<std::string, std::string>* model) {
  fs::create_directories(root / "a");
  fs::create_directories(root / "b");
  for (int i = 0; i < 8; ++i) {
    const std::string name = "a/f" + std::to_string(i);
    (*model)[name] = "contents of " + name;
    WriteFile(root / name, (*model)[name]);
  }
  int held = open((root / "a/f0").c_str(), O_RDONLY);
  ASSERT_GE(held, 0);
  const std::string held_contents = (*model)["a/f0"];
  std::mt19937 rng(400);
  for (int i = 0; i < kOps; ++i) {
    auto from = model->begin();
    std::advance(from, rng() % model->size());
    const std::string to = std::string(rng() % 2 ? "a" : "b") + "/f" + std::to_string(rng() % 10);
    if (to == from->first) continue;
    ASSERT_EQ(0, rename((root / from->first).c_str(), (root / to).c_str()))
        << from->first << " -> " << to << ": " << std::strerror(errno);
    std::string contents = from->second;
    model->erase(from);
    (*model)[to] = contents;
    if (model->size() < 3) {  // keep some files around
      const std::string name = "a/new" + std::to_string(i);
      (*model)[name] = "contents of " + name;
      WriteFile(root / name, (*model)[name]);
    }
    ASSERT_EQ(held_contents, ReadAt(held, 0, 100));
  }
  close(held);
}

TEST(Concurrency, ManyWorkersAgreeWithTheirModels) {
  MountedVolume v(VolumeOptions{"--chunk-size 4096", ""});
  ASSERT_MOUNTED(v);
  const fs::path shared = v / "shared";
  WriteFile(shared, std::string(kStripe * kStripes, '.'));
  std::vector<char> stripes(kStripes, '.');
  std::vector<std::string> own(2);
  std::map<std::string, std::string> renamed;

  std::vector<std::thread> threads;
  for (int t = 0; t < kStripeWriters; ++t) {
    threads.emplace_back([&, t] { WriteStripes(shared, t, &stripes); });
  }
  for (int t = 0; t < 2; ++t) threads.emplace_back([&, t] { ReadStripes(shared, t); });
  for (int t = 0; t < 2; ++t) threads.emplace_back([&, t] { Append(v / "log", t); });
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] { WriteAndTruncate(v / ("own" + std::to_string(t)), t, &own[t]); });
  }
  threads.emplace_back([&] { Rename(v / "moves", &renamed); });
  for (auto& t : threads) t.join();

  const std::string all = ReadFile(shared);
  ASSERT_EQ(kStripe * kStripes, all.size());
  for (size_t s = 0; s < kStripes; ++s) {
    EXPECT_EQ(std::string(kStripe, stripes[s]), all.substr(s * kStripe, kStripe)) << "stripe " << s;
  }
  const std::string log = ReadFile(v / "log");
  ASSERT_EQ(2u * kOps * 100, log.size());
  for (size_t i = 0; i < log.size(); i += 100) {
    ASSERT_EQ(std::string(99, log[i]) + "\n", log.substr(i, 100)) << i;
  }
  for (int t = 0; t < 2; ++t) {
    EXPECT_EQ(own[t], ReadFile(v / ("own" + std::to_string(t)))) << "own" << t;
  }
  size_t listed = 0;
  for (const char* dir : {"a", "b"}) {
    for (const auto& e : fs::directory_iterator(v / "moves" / dir)) {
      ++listed;
      const std::string name = std::string(dir) + "/" + e.path().filename().string();
      ASSERT_TRUE(renamed.count(name)) << name;
      EXPECT_EQ(renamed[name], ReadFile(e.path())) << name;
    }
  }
  EXPECT_EQ(renamed.size(), listed);

  // Everything again after the seals and a remount.
  v.Unmount();
  v.Mount();
  ASSERT_MOUNTED(v);
  EXPECT_EQ(all, ReadFile(shared));
  for (int t = 0; t < 2; ++t) EXPECT_EQ(own[t], ReadFile(v / ("own" + std::to_string(t))));
}

// Threads that all create the same new file at once (open with O_CREAT | O_APPEND, as loggers
// do) share one open file in the daemon: after the seals and a remount it holds every line.
TEST(Concurrency, ConcurrentCreatorsOfOneFileShareIt) {
  MountedVolume v;
  ASSERT_MOUNTED(v);
  constexpr int kThreads = 4, kRounds = 30, kLines = 20;
  for (int round = 0; round < kRounds; ++round) {
    const fs::path log = v / ("log" + std::to_string(round));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        ASSERT_GE(fd, 0) << std::strerror(errno);
        const std::string line = std::string(99, static_cast<char>('a' + t)) + "\n";
        for (int i = 0; i < kLines; ++i) ASSERT_EQ(100, write(fd, line.data(), line.size()));
        close(fd);
      });
    }
    for (auto& t : threads) t.join();
  }
  v.Unmount();
  v.Mount();
  ASSERT_MOUNTED(v);
  for (int round = 0; round < kRounds; ++round) {
    EXPECT_EQ(size_t{kThreads} * kLines * 100, ReadFile(v / ("log" + std::to_string(round))).size())
        << "round " << round << "\n"
        << v.DaemonLog();
  }
}

}  // namespace
}  // namespace envelopefs::testing
