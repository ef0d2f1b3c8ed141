// Tests of what envelopectl tells the user, run as a separate process: inspect of a path that is
// not a cipher file (a plaintext path on a mount, a volume's own file, a file put into the
// cipher dir, a path outside any volume), an edited config field blamed on the config, an empty
// keyring, suggested commands that carry the key option the user gave, the next step after
// init, and the progress bars of rewrap and decrypt (drawn only on a terminal: a pseudo-terminal
// made by script(1) here).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "envelopectl_fixture.h"

namespace envelopefs::testing {
namespace {

// --- inspect of something that is not a cipher file ------------------------------------------

TEST(EnvelopectlMessages, InspectSaysWhatAPathOutsideOrInsideAVolumeIs) {
  OfflineVolume v;
  TempDir t;
  WriteFile(t.path() / "notes.txt", "plain text\n");
  CommandResult outside = RunCommand(kCtl + " inspect " + Quote(t.path() / "notes.txt"));
  EXPECT_EQ(2, outside.exit_code) << outside.output;
  EXPECT_EQ(1u, LineCount(outside.output)) << outside.output;
  EXPECT_TRUE(Contains(outside.output, "not inside a cipher dir")) << outside.output;
  EXPECT_FALSE(Contains(outside.output, "unencrypted")) << outside.output;

  CommandResult own = RunCommand(kCtl + " inspect " + Quote(v.cipher() / "envelopefs.toml"));
  EXPECT_EQ(2, own.exit_code) << own.output;
  EXPECT_TRUE(Contains(own.output, "one of the volume's own files")) << own.output;

  // A file put into the cipher dir by hand really is stored as it is: said so, exit 5.
  WriteFile(v.cipher() / "planted", "plain text\n");
  CommandResult planted = RunCommand(kCtl + " inspect " + Quote(v.cipher() / "planted"));
  EXPECT_EQ(5, planted.exit_code) << planted.output;
  EXPECT_EQ(1u, LineCount(planted.output)) << planted.output;
  EXPECT_TRUE(Contains(planted.output, "put into the cipher dir " + v.cipher().string()))
      << planted.output;

  CommandResult dir = RunCommand(kCtl + " inspect " + Quote(t.path()));
  EXPECT_EQ(2, dir.exit_code) << dir.output;
  EXPECT_TRUE(Contains(dir.output, "a directory")) << dir.output;
}

TEST(EnvelopectlMessagesMounted, InspectOfAPlaintextPathPointsToItsCipherFile) {
  MountedVolume v;
  ASSERT_TRUE(v.mounted()) << v.DaemonLog();
  fs::create_directories(v / "sub");
  WriteFile(v / "sub/report.csv", "a,b\n1,2\n");
  const fs::path cipher = CipherOf(v, v / "sub/report.csv");
  ASSERT_FALSE(cipher.empty());

  CommandResult keyless = RunCommand(kCtl + " inspect " + Quote(v / "sub/report.csv"));
  EXPECT_EQ(2, keyless.exit_code) << keyless.output;
  EXPECT_EQ(1u, LineCount(keyless.output)) << keyless.output;
  EXPECT_TRUE(Contains(keyless.output, "plaintext path on the envelopefs mount " +
                                           v.mnt().string() + " (cipher dir " +
                                           v.cipher().string() + ")"))
      << keyless.output;
  EXPECT_FALSE(Contains(keyless.output, "unencrypted")) << keyless.output;

  CommandResult keyed = RunCommand(kCtl + " inspect " + Quote(v / "sub/report.csv") +
                                   " --keyfile " + Quote(v.keyfile()));
  EXPECT_EQ(2, keyed.exit_code) << keyed.output;
  EXPECT_TRUE(Contains(keyed.output, "its cipher file is " + cipher.string())) << keyed.output;
  // And that path is what inspect takes.
  EXPECT_EQ(0, RunCommand(kCtl + " inspect " + Quote(cipher)).exit_code);
  v.Unmount();
}

// --- config and keyring ----------------------------------------------------------------------

TEST(EnvelopectlMessages, AnEditedConfigIsBlamedOnTheConfigAndAnEmptyKeyringSaysSo) {
  OfflineVolume v;
  const fs::path config = v.cipher() / "envelopefs.toml";
  const std::string original = ReadFile(config);
  std::string edited = original;
  edited.replace(edited.find("chunk_size = 4096"), 17, "chunk_size = 65536");
  WriteFile(config, edited);
  CommandResult r = RunCommand(v.Ctl("ls " + Quote(v.cipher())));
  EXPECT_EQ(4, r.exit_code) << r.output;
  EXPECT_EQ(1u, LineCount(r.output)) << r.output;
  EXPECT_EQ(0u, r.output.find("envelopectl: " + config.string() + ": chunk_size was edited"))
      << r.output;
  EXPECT_TRUE(Contains(r.output, "chunk_size = 4096")) << r.output;
  WriteFile(config, original);

  WriteFile(v.cipher() / "envelopefs.keyring", "");
  for (const std::string& command :
       {v.Ctl("ls " + Quote(v.cipher())), kCtl + " audit " + Quote(v.cipher())}) {
    r = RunCommand(command);
    EXPECT_EQ(4, r.exit_code) << r.output;
    EXPECT_TRUE(Contains(r.output, "envelopefs.keyring: empty (0 bytes)")) << r.output;
    EXPECT_TRUE(Contains(r.output, "truncated")) << r.output;
    EXPECT_FALSE(Contains(r.output, "unsupported")) << r.output;
  }
}

// --- suggested commands ----------------------------------------------------------------------

TEST(EnvelopectlMessages, InitAndRotationHintsCarryTheKeyOptionUsed) {
  TempDir t;
  const fs::path key = t.path() / "my key", pass = t.path() / "pass";
  WriteSecretFile(key, RandomString(32, 3));
  WriteSecretFile(pass, "a passphrase\n");
  const fs::path cipher = t.path() / "cipher";
  CommandResult init = RunCommand(kCtl + " init --keyfile " + Quote(key) + " " + Quote(cipher));
  ASSERT_EQ(0, init.exit_code) << init.output;
  EXPECT_TRUE(Contains(init.output, "envelopefs --keyfile '" + key.string() + "' " +
                                        cipher.string() + " MOUNTPOINT"))
      << init.output;
  EXPECT_EQ("",
            RunCommand(kCtl + " init -q --keyfile " + Quote(key) + " " + Quote(t.path() / "quiet"))
                .output);

  const std::string with_key = " --keyfile " + Quote(key) + " " + Quote(cipher);
  CommandResult rotate = RunCommand(kCtl + " keys rotate" + with_key);
  ASSERT_EQ(0, rotate.exit_code) << rotate.output;
  EXPECT_TRUE(Contains(rotate.output,
                       "envelopectl rewrap --keyfile '" + key.string() + "' " + cipher.string()))
      << rotate.output;
  CommandResult active = RunCommand(kCtl + " keys retire --kek-version 2" + with_key);
  EXPECT_EQ(8, active.exit_code) << active.output;
  EXPECT_TRUE(Contains(active.output, "envelopectl keys rotate --keyfile '" + key.string() + "'"))
      << active.output;

  // A passphrase volume: the hint names --passfile.
  const fs::path pcipher = t.path() / "pcipher";
  const std::string env = "ENVELOPEFS_TEST_FAST_KDF=1 ";
  init = RunCommand(env + kCtl + " init --passfile " + Quote(pass) + " " + Quote(pcipher));
  ASSERT_EQ(0, init.exit_code) << init.output;
  EXPECT_TRUE(Contains(init.output, "envelopefs --passfile " + pass.string())) << init.output;
  rotate = RunCommand(kCtl + " keys rotate --passfile " + Quote(pass) + " " + Quote(pcipher));
  EXPECT_TRUE(Contains(rotate.output, "envelopectl rewrap --passfile " + pass.string()))
      << rotate.output;
}

// --- progress bars ---------------------------------------------------------------------------

// Runs `command` with stdin, stdout and stderr on a pseudo-terminal, the bar redrawn every
// millisecond; returns what the terminal got.
CommandResult OnTerminal(const std::string& command) {
  return RunCommand("ENVELOPEFS_TEST_PROGRESS_MS=1 script -qec " + Quote(command) + " /dev/null",
                    120);
}

// The counts "N" of every "] N/TOTAL files" the bar drew.
std::vector<uint64_t> BarCounts(const std::string& screen, uint64_t total) {
  std::vector<uint64_t> counts;
  const std::string tail = "/" + std::to_string(total) + " files";
  for (size_t at = screen.find(tail); at != std::string::npos; at = screen.find(tail, at + 1)) {
    size_t start = screen.rfind("] ", at);
    if (start == std::string::npos) continue;
    counts.push_back(std::stoull(screen.substr(start + 2, at - start - 2)));
  }
  return counts;
}

TEST(EnvelopectlMessages, RewrapAndDecryptDrawAMovingProgressBarOnATerminalOnly) {
  constexpr uint64_t kFiles = 3000;  // two batches of kRewrapBatch (2048) on one thread
  OfflineVolume v;
  for (uint64_t i = 0; i < kFiles; ++i) v.Write("f" + std::to_string(i), std::to_string(i));
  ASSERT_EQ(0, RunCommand(v.Ctl("keys rotate " + Quote(v.cipher()))).exit_code);

  CommandResult rewrap = OnTerminal(v.Ctl("rewrap --jobs 1 " + Quote(v.cipher())));
  ASSERT_EQ(0, rewrap.exit_code) << rewrap.output;
  EXPECT_TRUE(Contains(rewrap.output, "rewrapped 3000,")) << rewrap.output;
  // The bar moves file by file: counts inside the first batch, not only 0, 2048 and 3000.
  std::set<uint64_t> inside;
  for (uint64_t n : BarCounts(rewrap.output, kFiles)) {
    if (n > 0 && n < 2048) inside.insert(n);
  }
  EXPECT_GE(inside.size(), 3u) << rewrap.output.substr(0, 2000);

  TempDir t;
  CommandResult decrypt =
      OnTerminal(v.Ctl("decrypt " + Quote(v.cipher()) + " -o " + Quote(t.path() / "out")));
  ASSERT_EQ(0, decrypt.exit_code) << decrypt.output;
  EXPECT_FALSE(BarCounts(decrypt.output, kFiles).empty()) << decrypt.output.substr(0, 2000);
  EXPECT_TRUE(Contains(decrypt.output, "restored 3000 files")) << decrypt.output;

  // Not a terminal (or --quiet on one): no bar.
  CommandResult piped =
      RunCommand(v.Ctl("decrypt " + Quote(v.cipher()) + " -o " + Quote(t.path() / "piped")));
  ASSERT_EQ(0, piped.exit_code) << piped.output;
  EXPECT_FALSE(Contains(piped.output, "files  ")) << piped.output;
  CommandResult quiet = OnTerminal(v.Ctl("rewrap -q " + Quote(v.cipher())));
  EXPECT_EQ(0, quiet.exit_code);
  EXPECT_TRUE(BarCounts(quiet.output, kFiles).empty()) << quiet.output;
}

}  // namespace
}  // namespace envelopefs::testing
