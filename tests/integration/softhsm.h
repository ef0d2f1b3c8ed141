// SoftHsm — a SoftHSM2 token store (Debian softhsm2) in a temporary directory with one token,
// for the tests of the PKCS#11 master-key source; SOFTHSM2_CONF points at it for this process and
// the programs it runs. Not thread-safe (it sets the environment).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "envelopectl_fixture.h"
#include "envelopefs/key_source.h"

namespace envelopefs::testing {

// Where Debian's softhsm2 puts its module.
inline std::string SoftHsmModule() {
  for (const char* p :
       {"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"}) {
    if (fs::exists(p)) return p;
  }
  return "";
}

// A SoftHSM2 token store in a temporary directory with one token; SOFTHSM2_CONF points at it
// for this process and the programs it runs.
class SoftHsm {
 public:
  explicit SoftHsm(const std::string& label = "envtest") : label_(label) {
    module_ = SoftHsmModule();
    EXPECT_FALSE(module_.empty()) << "SoftHSM2 is missing: run scripts/install-deps";
    fs::create_directories(dir_.path() / "tokens");
    WriteFile(dir_.path() / "softhsm2.conf",
              "directories.tokendir = " + (dir_.path() / "tokens").string() +
                  "\nobjectstore.backend = file\nlog.level = ERROR\n");
    ::setenv("SOFTHSM2_CONF", (dir_.path() / "softhsm2.conf").c_str(), 1);
    ::unsetenv("ENVELOPEFS_PKCS11_PIN");
    CommandResult r = RunCommand("softhsm2-util --init-token --free --label " + label_ +
                                 " --so-pin 1234 --pin 5678");
    EXPECT_EQ(0, r.exit_code) << r.output;
    WriteSecretFile(pin_file(), "5678\n");
    WriteSecretFile(dir_.path() / "wrong-pin", "0000\n");
  }
  const std::string& module() const { return module_; }
  const std::string& label() const { return label_; }
  fs::path pin_file() const { return dir_.path() / "pin"; }
  fs::path wrong_pin_file() const { return dir_.path() / "wrong-pin"; }
  // The key options for token key `key` ("new-" prefixed for change-master).
  std::string Flags(const std::string& key, const std::string& prefix = "",
                    const fs::path& pin = {}) const {
    return " --" + prefix + "pkcs11-module " + Quote(module_) + " --" + prefix + "pkcs11-token " +
           label_ + " --" + prefix + "pkcs11-key " + key + " --" + prefix + "pin-file " +
           Quote(pin.empty() ? pin_file() : pin) + " ";
  }
  // The PKCS#11 source of token key `key` (created by NewParams when missing), for in-process use.
  std::unique_ptr<MasterKeySource> Source(const std::string& key) const {
    Pkcs11SourceOptions options;
    options.module = module_;
    options.token_label = label_;
    options.key_label = key;
    options.pin_file = pin_file().string();
    options.create_key = true;
    return MakePkcs11Source(options);
  }
  // pkcs11-tool (opensc) on the token, logged in.
  CommandResult Tool(const std::string& args) const {
    return RunCommand("pkcs11-tool --module " + Quote(module_) + " --token-label " + label_ +
                      " --login --pin 5678 " + args + " 2>&1");
  }

 private:
  TempDir dir_;
  std::string label_, module_;
};

}  // namespace envelopefs::testing
