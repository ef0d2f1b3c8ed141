// Test support: the ErrorKind of the envelopefs::Error a callable throws (a test failure if it
// throws none), for tests that check how an operation is refused. Thread-safe (no state).
#pragma once

#include <gtest/gtest.h>

#include <functional>

#include "envelopefs/error.h"

namespace envelopefs::testing {

// The kind of the Error that `f` throws; if it throws none, a test failure and kInternal.
inline ErrorKind KindOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  ADD_FAILURE() << "no Error thrown";
  return ErrorKind::kInternal;
}

}  // namespace envelopefs::testing
