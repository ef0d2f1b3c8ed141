// ParallelWalk (parallel_walk.h): every entry reaches exactly one worker, with its walk index,
// through a queue smaller than the tree, and failures stop the walk and come back to the caller.
#include "envelopefs/parallel_walk.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/temp_dir.h"
#include "envelopefs/file_format.h"
#include "envelopefs/secure_bytes.h"

namespace envelopefs {
namespace {

namespace fs = std::filesystem;

constexpr int kDirs = 25;
constexpr int kFilesPerDir = 20;  // 500 files, 525 entries

// A plaintext-names tree of kDirs directories of kFilesPerDir files, removed afterwards.
class WalkTree : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int d = 0; d < kDirs; ++d) {
      const fs::path sub = dir_ / ("d" + std::to_string(d));
      fs::create_directories(sub);
      for (int f = 0; f < kFilesPerDir; ++f) std::ofstream(sub / ("f" + std::to_string(f))) << f;
    }
  }

  // The entries of a plain single-threaded walk, in walk order (relative cipher paths).
  std::vector<std::string> SerialWalk() const {
    std::vector<std::string> out;
    WalkCipherDir(dir_, names_, [&](const CipherEntry& e) { out.push_back(e.relative); });
    return out;
  }

  testing::TempDir tmp_{"envelopefs-walk"};
  const fs::path dir_ = tmp_.path();
  NameTransform names_{SecureBytes(64), SecureBytes(32), /*plaintext_names=*/true,
                       format::kFormatVersion};
};

TEST_F(WalkTree, EveryFileReachesOneWorkerOnceThroughASmallQueue) {
  constexpr unsigned kJobs = 4;
  constexpr size_t kQueue = 8;
  const std::vector<std::string> serial = SerialWalk();
  ASSERT_EQ(static_cast<size_t>(kDirs * (kFilesPerDir + 1)), serial.size());

  std::mutex mu;
  std::vector<int> seen(serial.size(), 0);
  std::vector<std::string> path_at(serial.size());
  std::vector<int> done(kJobs, 0);
  std::atomic<uint64_t> offered{0}, started{0};
  std::atomic<bool> over_bound{false};
  std::atomic<bool> wrong_thread{false};
  const std::thread::id caller = std::this_thread::get_id();
  const uint64_t walked = ParallelWalk(
      dir_, names_, {kJobs, kQueue},
      [&](const CipherEntry& e) {
        // Entries handed over but not yet taken by a worker: never more than the queue holds
        // (plus one in each worker's hands, between taking it and starting on it).
        if (offered.load() - started.load() > kQueue + kJobs) over_bound = true;
        if (e.type != DT_REG) return false;
        ++offered;
        return true;
      },
      [&](unsigned worker, const CipherEntry& e, uint64_t index) {
        ++started;
        if (std::this_thread::get_id() == caller || worker >= kJobs) wrong_thread = true;
        if (index % 50 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        std::lock_guard<std::mutex> lock(mu);
        ASSERT_LT(index, seen.size());
        ++seen[index];
        path_at[index] = e.relative;
      },
      [&](unsigned worker) {
        std::lock_guard<std::mutex> lock(mu);
        ++done[worker];
      });

  EXPECT_EQ(serial.size(), walked);
  EXPECT_FALSE(over_bound) << "more entries waited than the queue holds";
  EXPECT_FALSE(wrong_thread);
  EXPECT_EQ(std::vector<int>(kJobs, 1), done) << "worker_done once per worker";
  int files = 0;
  for (size_t i = 0; i < serial.size(); ++i) {
    const bool is_file = serial[i].find("/f") != std::string::npos;
    EXPECT_EQ(is_file ? 1 : 0, seen[i]) << serial[i];
    if (is_file) {
      ++files;
      EXPECT_EQ(serial[i], path_at[i]) << "the index is the position in the walk";
    }
  }
  EXPECT_EQ(kDirs * kFilesPerDir, files);
}

TEST_F(WalkTree, OneJobRunsOnTheCallerInWalkOrder) {
  std::vector<std::string> order;
  std::vector<uint64_t> indices;
  bool finished = false;
  const uint64_t walked = ParallelWalk(
      dir_, names_, {1, 8}, nullptr,
      [&](unsigned worker, const CipherEntry& e, uint64_t index) {
        EXPECT_EQ(0u, worker);
        order.push_back(e.relative);
        indices.push_back(index);
      },
      [&](unsigned) { finished = true; });
  EXPECT_EQ(SerialWalk(), order);
  EXPECT_EQ(order.size(), walked);
  for (size_t i = 0; i < indices.size(); ++i) EXPECT_EQ(i, indices[i]);
  EXPECT_TRUE(finished);
}

TEST_F(WalkTree, AFailingWorkerStopsTheWalkAndItsErrorIsRethrown) {
  std::atomic<uint64_t> offered{0};
  try {
    ParallelWalk(
        dir_, names_, {3, 4},
        [&](const CipherEntry&) {
          ++offered;
          return true;
        },
        [&](unsigned, const CipherEntry&, uint64_t index) {
          if (index == 10) throw std::runtime_error("entry 10 failed");
        });
    FAIL() << "the worker's exception was not rethrown";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ("entry 10 failed", e.what());
  }
  EXPECT_LT(offered.load(), static_cast<uint64_t>(kDirs * (kFilesPerDir + 1)))
      << "the walk went on after the failure";
}

TEST_F(WalkTree, AWalkErrorReachesTheCaller) {
  EXPECT_ANY_THROW(ParallelWalk(dir_ / "missing", names_, {2, 8}, nullptr,
                                [](unsigned, const CipherEntry&, uint64_t) {}));
}

}  // namespace
}  // namespace envelopefs
