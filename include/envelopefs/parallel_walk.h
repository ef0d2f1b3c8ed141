// ParallelWalk — the streaming walk of a cipher dir for the offline tools (rewrap, audit,
// verify): WalkCipherDir runs on the calling thread and hands entries through a bounded queue to
// `jobs` worker threads, so memory does not grow with the tree (at most `queue_capacity`
// entries wait at any time). Workers fold what they find into per-worker accumulators (indexed
// by the worker number) that the caller merges after ParallelWalk returns.
//
// Each entry carries its index in the walk (0, 1, 2, ... counting every entry, wanted or not):
// a caller that keeps a few results (problems) sorts them by it to report in walk order, the
// order a single-threaded walk would give. Thread-safety: `wanted` runs on the calling thread;
// `work` and `worker_done` run on the worker threads (concurrently for different workers, never
// for the same worker number), or on the calling thread when jobs is 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>

#include "envelopefs/cipher_dir.h"
#include "envelopefs/name_transform.h"

namespace envelopefs {

// A few thousand entries (about 200 bytes each with their paths): enough to keep the workers
// busy while the walk reads a directory, small next to any tree worth walking in parallel.
inline constexpr size_t kWalkQueueCapacity = 4096;

struct ParallelWalkOptions {
  unsigned jobs = 1;                           // worker threads (1: everything on the caller)
  size_t queue_capacity = kWalkQueueCapacity;  // entries waiting for a worker, at most
};

// Calls work(worker, entry, index) for every entry of WalkCipherDir(cipher_dir, names) for
// which `wanted` (may be null: every entry) returns true, on worker `worker` in [0, jobs), each
// entry exactly once; then worker_done(worker) (may be null) on each worker once it has no more
// work (e.g. to finish a batch; also after another worker failed, so that it can finish what it
// started). Returns the number of entries walked (wanted or not). The first exception thrown by
// the walk, `wanted`, `work` or `worker_done` stops the walk and is rethrown once every thread
// has stopped.
uint64_t ParallelWalk(
    const std::filesystem::path& cipher_dir, const NameTransform& names,
    const ParallelWalkOptions& options, const std::function<bool(const CipherEntry&)>& wanted,
    const std::function<void(unsigned worker, const CipherEntry& entry, uint64_t index)>& work,
    const std::function<void(unsigned worker)>& worker_done = nullptr);

}  // namespace envelopefs
