// Unit tests of CipherFile, the data path, on real files in a temp volume (no FUSE).
#include "envelopefs/cipher_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include "common/temp_dir.h"
#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/volume.h"
#include "recording_reporter.h"

namespace envelopefs {
namespace {

namespace fs = std::filesystem;

class CipherFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_ / "key", std::ios::binary).write("0123456789abcdef0123456789abcdef", 32);
    fs::permissions(dir_ / "key", fs::perms::owner_read | fs::perms::owner_write);
    source_ = MakeKeyFileSource(dir_ / "key");
    CreateOptions options;
    options.chunk_size = 4096;
    volume_ = Volume::Create(dir_ / "vol", options, *source_);
  }

  std::shared_ptr<CipherFile> Create(const std::string& name) {
    int fd = open((dir_ / "vol" / name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    return CipherFile::Create(UniqueFd(fd), *volume_, name, damage_);
  }
  std::shared_ptr<CipherFile> Reopen(const std::string& name) {
    int fd = open((dir_ / "vol" / name).c_str(), O_RDWR);
    return CipherFile::Open(UniqueFd(fd), *volume_, name, damage_);
  }
  static std::string ReadAll(CipherFile& f) {
    std::string out(f.size(), '\0');
    ssize_t n = f.Read({reinterpret_cast<uint8_t*>(out.data()), out.size()}, 0);
    EXPECT_EQ(static_cast<ssize_t>(out.size()), n);
    return out;
  }
  static ssize_t Write(CipherFile& f, const std::string& s, uint64_t off) {
    return f.Write({reinterpret_cast<const uint8_t*>(s.data()), s.size()}, off);
  }
  static std::string ReadAt(CipherFile& f, uint64_t off, size_t n, ssize_t* rc = nullptr) {
    std::string out(n, '\0');
    ssize_t got = f.Read({reinterpret_cast<uint8_t*>(out.data()), out.size()}, off);
    if (rc != nullptr) *rc = got;
    out.resize(got < 0 ? 0 : static_cast<size_t>(got));
    return out;
  }
  // Reopening `name` fails with an authentication error whose message contains `what`.
  void ExpectRefused(const std::string& name, const std::string& what) {
    try {
      Reopen(name);
      ADD_FAILURE() << name << " opened";
    } catch (const Error& e) {
      EXPECT_EQ(ErrorKind::kAuthentication, e.kind()) << e.what();
      EXPECT_NE(std::string::npos, std::string(e.what()).find(what)) << e.what();
    }
  }
  fs::path Path(const std::string& name) const { return dir_ / "vol" / name; }
  std::vector<char> Bytes(const std::string& name, uint64_t off, size_t n) const {
    std::vector<char> out(n);
    std::ifstream in(Path(name), std::ios::binary);
    in.seekg(static_cast<std::streamoff>(off));
    in.read(out.data(), static_cast<std::streamsize>(n));
    return out;
  }
  void PutBytes(const std::string& name, uint64_t off, const std::vector<char>& bytes) const {
    int fd = open(Path(name).c_str(), O_WRONLY);
    ASSERT_EQ(static_cast<ssize_t>(bytes.size()),
              pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(off)));
    close(fd);
  }

  testing::RecordingReporter damage_;  // outlives every file (declared first)
  testing::TempDir tmp_{"envelopefs-cf"};
  const fs::path dir_ = tmp_.path();
  std::unique_ptr<MasterKeySource> source_;
  std::unique_ptr<Volume> volume_;
};

TEST_F(CipherFileTest, RandomWritesMatchAModelAndSurviveReopen) {
  auto f = Create("a");
  std::string model;
  std::mt19937 rng(5);
  for (int i = 0; i < 500; ++i) {
    uint64_t off = rng() % 40000;
    std::string data(1 + rng() % 10000, static_cast<char>('a' + i % 26));
    ASSERT_EQ(static_cast<ssize_t>(data.size()), Write(*f, data, off));
    if (model.size() < off + data.size()) model.resize(off + data.size(), '\0');
    model.replace(off, data.size(), data);
    if (i % 50 == 0) {
      uint64_t t = rng() % 45000;
      ASSERT_EQ(0, f->Truncate(t));
      model.resize(t, '\0');
    }
  }
  EXPECT_EQ(model, ReadAll(*f));
  ASSERT_EQ(0, f->Sync());
  f.reset();
  auto g = Reopen("a");
  EXPECT_EQ(model.size(), g->size());
  EXPECT_EQ(model, ReadAll(*g));
}

TEST_F(CipherFileTest, SyncSealsTheSizeAndACutIsDetected) {
  auto f = Create("b");
  ASSERT_EQ(5 * 4096, Write(*f, std::string(5 * 4096, 'x'), 0));
  ASSERT_EQ(0, f->Sync());
  f.reset();
  fs::resize_file(dir_ / "vol" / "b", 512 + 3 * (4096 + 28));
  // A closed file reads back exactly as last written, or not at all.
  ExpectRefused("b", "sealed size");
}

TEST_F(CipherFileTest, UnsealedFileIsNotCheckedButIsAfterSealing) {
  auto f = Create("c");
  ASSERT_EQ(4096, Write(*f, std::string(4096, 'y'), 0));
  uint64_t count = f->ModificationCount();
  EXPECT_TRUE(f->NeedsSeal());
  ASSERT_EQ(0, f->SealIfUnchanged(count));
  EXPECT_FALSE(f->NeedsSeal());
  ASSERT_EQ(4096, Write(*f, std::string(4096, 'z'), 4096));  // extends: unseals first
  EXPECT_TRUE(f->NeedsSeal());
  EXPECT_EQ(0, f->SealIfUnchanged(count));  // stale count: not sealed
  EXPECT_TRUE(f->NeedsSeal());
}

TEST_F(CipherFileTest, HolesAreSparseAndZeroChunksOutsideSparseFilesFail) {
  auto f = Create("d");
  ASSERT_EQ(3, Write(*f, "end", 100 * 4096));
  std::string all = ReadAll(*f);
  EXPECT_EQ(std::string(100 * 4096, '\0') + "end", all);
  struct stat st;
  ASSERT_EQ(0, stat((dir_ / "vol" / "d").c_str(), &st));
  EXPECT_LT(st.st_blocks * 512, 64 * 1024);  // the holes take no space

  auto e = Create("e");
  ASSERT_EQ(3 * 4096, Write(*e, std::string(3 * 4096, 'q'), 0));
  ASSERT_EQ(0, e->Sync());
  e.reset();
  std::vector<char> zeros(4096 + 28, 0);
  int fd = open((dir_ / "vol" / "e").c_str(), O_WRONLY);
  ASSERT_EQ(static_cast<ssize_t>(zeros.size()), pwrite(fd, zeros.data(), zeros.size(), 512 + 4124));
  close(fd);
  ExpectRefused("e", "chunk 1: all-zero chunk in a file without holes");
}

TEST_F(CipherFileTest, HugeSparseTruncateIsInstant) {
  auto f = Create("big");
  ASSERT_EQ(0, f->Truncate(1ull << 40));
  EXPECT_EQ(1ull << 40, f->size());
  std::string buf(100, 'x');
  EXPECT_EQ(100, f->Read({reinterpret_cast<uint8_t*>(buf.data()), 100}, (1ull << 40) - 100));
  EXPECT_EQ(std::string(100, '\0'), buf);
  ASSERT_EQ(0, f->Truncate(0));
  EXPECT_EQ(0u, f->size());
}

TEST_F(CipherFileTest, HeaderFromAnotherFileDoesNotDecryptTheChunks) {
  auto a = Create("h1");
  auto b = Create("h2");
  ASSERT_EQ(4096, Write(*a, std::string(4096, 'a'), 0));
  ASSERT_EQ(4096, Write(*b, std::string(4096, 'b'), 0));
  ASSERT_EQ(0, a->Sync());
  ASSERT_EQ(0, b->Sync());
  a.reset();
  b.reset();
  std::ifstream in(dir_ / "vol" / "h2", std::ios::binary);
  std::vector<char> header(512);
  in.read(header.data(), 512);
  int fd = open((dir_ / "vol" / "h1").c_str(), O_WRONLY);
  ASSERT_EQ(512, pwrite(fd, header.data(), 512, 0));
  close(fd);
  ExpectRefused("h1", "chunk 0: authentication failed");
}

TEST_F(CipherFileTest, GarbageFileIsRejected) {
  std::ofstream(dir_ / "vol" / "garbage") << std::string(2000, 'g');
  int fd = open((dir_ / "vol" / "garbage").c_str(), O_RDWR);
  EXPECT_THROW(CipherFile::Open(UniqueFd(fd), *volume_, "garbage", damage_), Error);
}

// --- format 2: the chunk index --------------------------------------------------------------

constexpr uint64_t kStride = 4096 + 28;
constexpr uint64_t kGroupBytes = 256 * 4096;  // plaintext of one group of chunks
uint64_t ChunkOffset(uint64_t i) { return 512 + i * kStride + i / 256 * 4096; }
uint64_t IndexBlock(uint64_t g) { return ChunkOffset((g + 1) * 256 - 1) + kStride; }

TEST_F(CipherFileTest, RandomOperationsAcrossIndexGroupsSurviveSealAndReopen) {
  // Writes, appends, truncates and sparse extensions over three groups of chunks, sealed and
  // reopened often: every reopen checks the on-disk index against its sealed digest.
  auto f = Create("g");
  std::string model;
  std::mt19937 rng(11);
  for (int i = 0; i < 300; ++i) {
    const uint64_t limit = 3 * kGroupBytes + 5000;
    switch (rng() % 6) {
      case 0:
      case 1:
      case 2: {
        uint64_t off = rng() % limit;
        std::string data(1 + rng() % (3 * 4096), static_cast<char>('A' + i % 26));
        ASSERT_EQ(static_cast<ssize_t>(data.size()), Write(*f, data, off)) << i;
        if (model.size() < off + data.size()) model.resize(off + data.size(), '\0');
        model.replace(off, data.size(), data);
        break;
      }
      case 3: {
        std::string data(1 + rng() % 9000, static_cast<char>('a' + i % 26));
        ASSERT_EQ(static_cast<ssize_t>(data.size()),
                  f->Append({reinterpret_cast<const uint8_t*>(data.data()), data.size()}));
        model += data;
        break;
      }
      case 4: {
        uint64_t size = rng() % limit;
        ASSERT_EQ(0, f->Truncate(size)) << i;
        model.resize(size, '\0');
        break;
      }
      case 5:
        ASSERT_EQ(0, f->Sync());
        f.reset();
        f = Reopen("g");
        break;
    }
    ASSERT_EQ(model.size(), f->size()) << i;
  }
  EXPECT_EQ(model, ReadAll(*f));
  ASSERT_EQ(0, f->Sync());
  f.reset();
  auto g = Reopen("g");
  EXPECT_EQ(model, ReadAll(*g));
  EXPECT_EQ(2, g->format_version());
}

TEST_F(CipherFileTest, IndexBlocksMatchTheChunksOnDisk) {
  auto f = Create("ib");
  ASSERT_EQ(static_cast<ssize_t>(600 * 4096), Write(*f, std::string(600 * 4096, 'i'), 0));
  ASSERT_EQ(4096, Write(*f, std::string(4096, 'j'), 3 * 4096));  // a chunk in a closed group
  ASSERT_EQ(0, f->Sync());
  f.reset();
  EXPECT_EQ(ChunkOffset(599) + kStride, fs::file_size(Path("ib")));
  for (uint64_t g : {0u, 1u}) {
    std::vector<char> block = Bytes("ib", IndexBlock(g), 4096);
    for (uint64_t i = 0; i < 256; ++i) {
      std::vector<char> tag = Bytes("ib", ChunkOffset(g * 256 + i) + 12 + 4096, 16);
      ASSERT_TRUE(std::equal(tag.begin(), tag.end(), block.begin() + i * 16)) << g << " " << i;
    }
  }
  auto g = Reopen("ib");
  EXPECT_EQ(std::string(4096, 'j'), ReadAt(*g, 3 * 4096, 4096));
}

TEST_F(CipherFileTest, AChunkRolledBackToItsOlderSelfIsDetected) {
  // In the last group (no index block) and in a closed group (with its index entry rolled back
  // too): on reopen, and for a file that is open, on the next read.
  auto f = Create("rb");
  ASSERT_EQ(static_cast<ssize_t>(300 * 4096), Write(*f, std::string(300 * 4096, 'o'), 0));
  ASSERT_EQ(0, f->Sync());
  const std::vector<char> old_chunk290 = Bytes("rb", ChunkOffset(290), kStride);
  ASSERT_EQ(4096, Write(*f, std::string(4096, 'n'), 5 * 4096));
  ASSERT_EQ(4096, Write(*f, std::string(4096, 'n'), 290 * 4096));
  ASSERT_EQ(0, f->Sync());

  PutBytes("rb", ChunkOffset(290), old_chunk290);  // while open
  ssize_t rc = 0;
  ReadAt(*f, 290 * 4096, 4096, &rc);
  EXPECT_EQ(-EIO, rc);
  f.reset();
  ExpectRefused("rb", "not the versions last written");

  auto g = Create("rb2");
  ASSERT_EQ(static_cast<ssize_t>(300 * 4096), Write(*g, std::string(300 * 4096, 'o'), 0));
  ASSERT_EQ(0, g->Sync());
  const std::vector<char> c5 = Bytes("rb2", ChunkOffset(5), kStride);
  const std::vector<char> e5 = Bytes("rb2", IndexBlock(0) + 5 * 16, 16);
  ASSERT_EQ(4096, Write(*g, std::string(4096, 'n'), 5 * 4096));
  ASSERT_EQ(0, g->Sync());
  g.reset();
  PutBytes("rb2", ChunkOffset(5), c5);  // the chunk and its index entry, both rolled back
  PutBytes("rb2", IndexBlock(0) + 5 * 16, e5);
  ExpectRefused("rb2", "not the versions last written");
}

TEST_F(CipherFileTest, TruncationToZeroGivesAFreshKey) {
  // An old chunk copied back after the file was rewritten with O_TRUNC never reads.
  auto f = Create("t");
  ASSERT_EQ(8192, Write(*f, std::string(8192, 'a'), 0));
  ASSERT_EQ(0, f->Sync());
  f.reset();
  const std::vector<char> header = Bytes("t", 0, 512);
  const std::vector<char> old = Bytes("t", ChunkOffset(1), kStride);
  f = Reopen("t");
  ASSERT_EQ(0, f->Truncate(0));
  ASSERT_EQ(8192, Write(*f, std::string(8192, 'b'), 0));
  ASSERT_EQ(0, f->Sync());
  f.reset();
  EXPECT_NE(header, Bytes("t", 0, 512));
  PutBytes("t", ChunkOffset(1), old);
  ExpectRefused("t", "chunk 1");
  // The old header over the new chunks: never a mix of the two files.
  PutBytes("t", 0, header);
  ExpectRefused("t", "chunk 0: authentication failed");
}

TEST_F(CipherFileTest, ZeroedStateRecordAndACutAreDetected) {
  auto f = Create("z");
  ASSERT_EQ(5 * 4096, Write(*f, std::string(5 * 4096, 'z'), 0));
  ASSERT_EQ(0, f->Sync());
  f.reset();
  // Zero the newer state record, then cut the file at a chunk boundary or to the header.
  std::vector<char> header = Bytes("z", 0, 512);
  const uint64_t c0 = *reinterpret_cast<const uint64_t*>(header.data() + 256);
  const uint64_t c1 = *reinterpret_cast<const uint64_t*>(header.data() + 384);
  PutBytes("z", c0 > c1 ? 256 : 384, std::vector<char>(128, 0));
  fs::resize_file(Path("z"), ChunkOffset(3));
  ExpectRefused("z", "state record");
  fs::resize_file(Path("z"), 512);
  ExpectRefused("z", "state record");
}

TEST_F(CipherFileTest, ADamagedStateRecordBesideAWholeOneIsReportedAndTheFileReads) {
  auto f = Create("t");
  ASSERT_EQ(3 * 4096, Write(*f, std::string(3 * 4096, 't'), 0));
  ASSERT_EQ(0, f->Sync());
  f.reset();
  // What a torn write of the sealed pair leaves: the second record written does not
  // authenticate; the first holds the same sealed state.
  std::vector<char> header = Bytes("t", 0, 512);
  const uint64_t c0 = *reinterpret_cast<const uint64_t*>(header.data() + 256);
  const uint64_t c1 = *reinterpret_cast<const uint64_t*>(header.data() + 384);
  PutBytes("t", (c0 > c1 ? 256 : 384) + 30, std::vector<char>(7, 'x'));
  damage_.Clear();
  auto g = Reopen("t");
  ASSERT_TRUE(g->sealed());
  ssize_t rc = 0;
  EXPECT_EQ(std::string(3 * 4096, 't'), ReadAt(*g, 0, 3 * 4096, &rc));
  ASSERT_EQ(1u, damage_.copy_damaged().size());
  EXPECT_NE(std::string::npos, damage_.copy_damaged()[0].detail.find("does not authenticate"));
  EXPECT_TRUE(damage_.damaged().empty());
  // A write and a seal rewrite both records.
  ASSERT_EQ(1, Write(*g, "u", 0));
  ASSERT_EQ(0, g->Sync());
  g.reset();
  damage_.Clear();
  auto h = Reopen("t");
  EXPECT_TRUE(damage_.copy_damaged().empty());
}

TEST_F(CipherFileTest, AllZeroPartialLastChunkIsNotAHole) {
  auto f = Create("p");
  ASSERT_EQ(0, f->Truncate(20 * 4096));  // sparse
  ASSERT_EQ(100, Write(*f, std::string(100, 'p'), 20 * 4096));
  f.reset();  // not sealed: the index is rebuilt from the chunks on reopen
  PutBytes("p", ChunkOffset(20), std::vector<char>(100 + 28, 0));
  auto g = Reopen("p");
  ssize_t rc = 0;
  ReadAt(*g, 20 * 4096, 100, &rc);
  EXPECT_EQ(-EIO, rc);
}

// Runs `body` with writes past `limit` bytes failing with EFBIG (RLIMIT_FSIZE, SIGXFSZ
// ignored): a disk that fills up part-way through a write, without filling a disk.
void WithFileSizeLimit(uint64_t limit, const std::function<void()>& body) {
  struct rlimit old;
  ASSERT_EQ(0, getrlimit(RLIMIT_FSIZE, &old));
  struct sigaction ignore {
  }, old_action{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(0, sigaction(SIGXFSZ, &ignore, &old_action));
  struct rlimit lim = old;
  lim.rlim_cur = limit;
  ASSERT_EQ(0, setrlimit(RLIMIT_FSIZE, &lim));
  body();
  setrlimit(RLIMIT_FSIZE, &old);
  sigaction(SIGXFSZ, &old_action, nullptr);
}

// A write that fails part-way (a damaged chunk it must merge with, a full disk) leaves the
// file's other chunks readable, and the file seals and reopens: the in-memory index and size
// never get ahead of the disk.
TEST_F(CipherFileTest, AWriteThatFailsOnADamagedChunkChangesNothingElse) {
  auto f = Create("d");
  ASSERT_EQ(static_cast<ssize_t>(300 * 4096), Write(*f, std::string(300 * 4096, 'o'), 0));
  ASSERT_EQ(0, f->Sync());
  std::vector<char> byte = Bytes("d", ChunkOffset(10) + 100, 1);
  byte[0] ^= 1;
  PutBytes("d", ChunkOffset(10), byte);  // chunk 10's nonce: it no longer authenticates
  // Chunks 8 (in part), 9 (whole) and 10 (in part, damaged).
  EXPECT_EQ(-EIO, Write(*f, std::string(2 * 4096, 'n'), 8 * 4096 + 100));
  EXPECT_EQ(std::string(2 * 4096, 'o'), ReadAt(*f, 8 * 4096, 2 * 4096));
  ASSERT_EQ(0, f->Sync());
  f.reset();
  auto g = Reopen("d");
  EXPECT_EQ(std::string(2 * 4096, 'o'), ReadAt(*g, 8 * 4096, 2 * 4096));
  ssize_t rc = 0;
  ReadAt(*g, 10 * 4096, 4096, &rc);
  EXPECT_EQ(-EIO, rc);
}

TEST_F(CipherFileTest, AWriteOrGrowthCutShortByAFullDiskLeavesAConsistentFile) {
  auto f = Create("full");
  const std::string old(5 * 4096 + 7, 'o');
  ASSERT_EQ(static_cast<ssize_t>(old.size()), Write(*f, old, 0));
  ASSERT_EQ(0, f->Sync());
  const uint64_t on_disk = fs::file_size(Path("full"));
  WithFileSizeLimit(on_disk + 2 * kStride + 100, [&] {
    EXPECT_EQ(-EFBIG, Write(*f, std::string(10 * 4096, 'n'), old.size()));  // an append
    EXPECT_EQ(-EFBIG, f->Truncate(100 * 4096 + 5));                         // a growth
    EXPECT_EQ(-EFBIG, f->Truncate(100 * 4096));                             // a sparse one
  });
  EXPECT_EQ(old.size(), f->size());
  EXPECT_EQ(old, ReadAll(*f));
  EXPECT_EQ(on_disk, fs::file_size(Path("full")));  // the failed writes' bytes are cut off
  ASSERT_EQ(0, f->Sync());
  f.reset();
  auto g = Reopen("full");
  EXPECT_TRUE(g->sealed());
  EXPECT_EQ(old, ReadAll(*g));
}

TEST_F(CipherFileTest, AFileLeftUnsealedByACrashStaysUnsealedUntilWritten) {
  auto f = Create("u");
  ASSERT_EQ(4096, Write(*f, std::string(4096, 'u'), 0));
  f.reset();  // "crash": never sealed
  auto g = Reopen("u");
  EXPECT_FALSE(g->sealed());
  EXPECT_EQ(std::string(4096, 'u'), ReadAll(*g));
  EXPECT_FALSE(g->NeedsSeal()) << "reading must not seal (it would launder a cut)";
  ASSERT_EQ(1, Write(*g, "v", 0));
  EXPECT_TRUE(g->NeedsSeal());
  ASSERT_EQ(0, g->Sync());
  EXPECT_TRUE(g->sealed());
}

TEST_F(CipherFileTest, HugeSparseFilesCostNoMemoryAndReopenFast) {
  auto f = Create("huge");
  ASSERT_EQ(3, Write(*f, "abc", 0));
  ASSERT_EQ(3, Write(*f, "xyz", (1ull << 40) - 3));
  ASSERT_EQ(0, f->Sync());
  f.reset();
  auto g = Reopen("huge");  // reads only the index blocks that hold data
  EXPECT_EQ(1ull << 40, g->size());
  EXPECT_EQ("abc", ReadAt(*g, 0, 3));
  EXPECT_EQ("xyz", ReadAt(*g, (1ull << 40) - 3, 3));
  EXPECT_EQ(std::string(10, '\0'), ReadAt(*g, 1ull << 39, 10));
}

}  // namespace
}  // namespace envelopefs
