// Unit tests of FlushPool: every job of a run runs exactly once, on several threads at once, and
// Run returns only when all have finished; runs follow each other on the same threads, and a run
// started before the threads are ready completes.
#include "flush_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace envelopefs::testing {
namespace {

TEST(FlushPool, EveryJobRunsOnceAndRunWaitsForAll) {
  FlushPool pool(4);
  for (size_t n : {0u, 1u, 3u, 100u, 1000u}) {
    std::vector<std::atomic<int>> runs(n);
    pool.Run(n, [&](size_t i) { runs[i].fetch_add(1); });
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(1, runs[i].load()) << "job " << i << " of " << n;
  }
}

// A Run right after construction, before the threads have started waiting, is not missed by
// them (it once was: a thread starting late took the run for one it had already seen).
TEST(FlushPool, ARunRightAfterConstructionCompletes) {
  for (int round = 0; round < 300; ++round) {
    FlushPool pool(8);
    std::atomic<int> ran{0};
    pool.Run(3, [&](size_t) { ++ran; });
    ASSERT_EQ(3, ran.load()) << "round " << round;
  }
}

TEST(FlushPool, JobsRunConcurrently) {
  FlushPool pool(8);
  std::atomic<int> inside{0}, peak{0};
  pool.Run(32, [&](size_t) {
    const int now = ++inside;
    int seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    --inside;
  });
  EXPECT_EQ(0, inside.load());
  EXPECT_GT(peak.load(), 1);  // blocking jobs (an fdatasync) overlap
  EXPECT_LE(peak.load(), 8);
}

}  // namespace
}  // namespace envelopefs::testing
