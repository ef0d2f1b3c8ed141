// Unit tests of CipherFile, the data path, on real files in a temp volume (no FUSE).
#include "envelopefs/cipher_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "envelopefs/error.h"
#include "envelopefs/key_source.h"
#include "envelopefs/volume.h"

namespace envelopefs {
namespace {

namespace fs = std::filesystem;

class CipherFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/envelopefs-cf-XXXXXX";
    ASSERT_NE(nullptr, mkdtemp(tmpl));
    dir_ = tmpl;
    std::ofstream(dir_ / "key", std::ios::binary).write("0123456789abcdef0123456789abcdef", 32);
    source_ = MakeKeyFileSource(dir_ / "key");
    CreateOptions options;
    options.chunk_size = 4096;
    volume_ = Volume::Create(dir_ / "vol", options, *source_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::shared_ptr<CipherFile> Create(const std::string& name) {
    int fd = open((dir_ / "vol" / name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    return CipherFile::Create(UniqueFd(fd), *volume_, name);
  }
  std::shared_ptr<CipherFile> Reopen(const std::string& name) {
    int fd = open((dir_ / "vol" / name).c_str(), O_RDWR);
    return CipherFile::Open(UniqueFd(fd), *volume_, name);
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

  fs::path dir_;
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
  auto g = Reopen("b");
  std::string buf(5 * 4096, '\0');
  EXPECT_EQ(-EIO, g->Read({reinterpret_cast<uint8_t*>(buf.data()), buf.size()}, 0));
  EXPECT_EQ(4096, g->Read({reinterpret_cast<uint8_t*>(buf.data()), 4096}, 0));  // intact part
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
  auto g = Reopen("e");
  std::string buf(4096, '\0');
  EXPECT_EQ(-EIO, g->Read({reinterpret_cast<uint8_t*>(buf.data()), buf.size()}, 4096));
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
  auto g = Reopen("h1");
  std::string buf(4096, '\0');
  EXPECT_EQ(-EIO, g->Read({reinterpret_cast<uint8_t*>(buf.data()), buf.size()}, 0));
}

TEST_F(CipherFileTest, GarbageFileIsRejected) {
  std::ofstream(dir_ / "vol" / "garbage") << std::string(2000, 'g');
  int fd = open((dir_ / "vol" / "garbage").c_str(), O_RDWR);
  EXPECT_THROW(CipherFile::Open(UniqueFd(fd), *volume_, "garbage"), Error);
}

}  // namespace
}  // namespace envelopefs
