// ScopedEnv — sets an environment variable for the life of the object and then restores what it
// was (or unsets it), so a fixture's setting (e.g. ENVELOPEFS_STATE_DIR pointing into its
// temporary directory) does not outlive its test when the whole test binary runs as one process.
// Header-only. Not thread-safe (neither is setenv): create and destroy it on the test's thread.
#pragma once

#include <stdlib.h>

#include <optional>
#include <string>
#include <utility>

namespace envelopefs::testing {

class ScopedEnv {
 public:
  ScopedEnv(std::string name, const std::string& value) : name_(std::move(name)) {
    if (const char* old = getenv(name_.c_str())) old_ = old;
    setenv(name_.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace envelopefs::testing
