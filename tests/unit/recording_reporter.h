// Test support: a DamageReporter that records every report (a fake for the core's reporter
// parameter), so tests can check what was reported, with which file and chunk. Thread-safe.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "envelopefs/damage_reporter.h"

namespace envelopefs::testing {

class RecordingReporter : public DamageReporter {
 public:
  void Damaged(const Damage& damage) override {
    std::lock_guard<std::mutex> lock(mu_);
    damaged_.push_back(damage);
  }
  void Unsealed(const std::string& file) override {
    std::lock_guard<std::mutex> lock(mu_);
    unsealed_.push_back(file);
  }
  void CopyDamaged(const Damage& damage) override {
    std::lock_guard<std::mutex> lock(mu_);
    copy_damaged_.push_back(damage);
  }
  std::vector<Damage> damaged() const {
    std::lock_guard<std::mutex> lock(mu_);
    return damaged_;
  }
  std::vector<std::string> unsealed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return unsealed_;
  }
  std::vector<Damage> copy_damaged() const {
    std::lock_guard<std::mutex> lock(mu_);
    return copy_damaged_;
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    damaged_.clear();
    unsealed_.clear();
    copy_damaged_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::vector<Damage> damaged_;
  std::vector<std::string> unsealed_;
  std::vector<Damage> copy_damaged_;
};

}  // namespace envelopefs::testing
