// Unit tests of error_mapping.h: every error kind has its errno and exit code, exceptions are
// classified so that a bug (std::logic_error) is never an I/O error, and a core result becomes
// the daemon's positive errno.
#include "envelopefs/error_mapping.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <new>
#include <stdexcept>
#include <system_error>

namespace envelopefs {
namespace {

TEST(ErrorMapping, EveryKindHasItsDocumentedExitCode) {
  EXPECT_EQ(2, ExitCodeFor(ErrorKind::kUsage));
  EXPECT_EQ(3, ExitCodeFor(ErrorKind::kWrongKey));
  EXPECT_EQ(4, ExitCodeFor(ErrorKind::kConfig));
  EXPECT_EQ(5, ExitCodeFor(ErrorKind::kAuthentication));
  EXPECT_EQ(5, ExitCodeFor(ErrorKind::kFormat));
  EXPECT_EQ(6, ExitCodeFor(ErrorKind::kIo));
  EXPECT_EQ(7, ExitCodeFor(ErrorKind::kKeyUnavailable));
  EXPECT_EQ(8, ExitCodeFor(ErrorKind::kState));
  EXPECT_EQ(10, ExitCodeFor(ErrorKind::kInternal));
  EXPECT_EQ(kExitInternal, ExitCodeFor(ErrorKind::kInternal));
}

TEST(ErrorMapping, TheDaemonRepliesEaccesForAMissingKeyAndEioOtherwise) {
  EXPECT_EQ(EACCES, ErrnoFor(ErrorKind::kKeyUnavailable));
  for (ErrorKind kind :
       {ErrorKind::kUsage, ErrorKind::kWrongKey, ErrorKind::kConfig, ErrorKind::kAuthentication,
        ErrorKind::kFormat, ErrorKind::kIo, ErrorKind::kState, ErrorKind::kInternal}) {
    EXPECT_EQ(EIO, ErrnoFor(kind)) << static_cast<int>(kind);
  }
}

TEST(ErrorMapping, ExceptionsAreClassifiedAndBugsAreNotIoErrors) {
  EXPECT_EQ(ErrorKind::kState, ErrorKindOf(Error(ErrorKind::kState, "refused")));
  EXPECT_EQ(ErrorKind::kAuthentication, ErrorKindOf(Error(ErrorKind::kAuthentication, "x")));
  EXPECT_EQ(ErrorKind::kInternal, ErrorKindOf(std::logic_error("invariant")));
  EXPECT_EQ(ErrorKind::kInternal, ErrorKindOf(std::invalid_argument("bad sizes")));
  EXPECT_EQ(ErrorKind::kInternal, ErrorKindOf(std::out_of_range("index")));
  EXPECT_EQ(ErrorKind::kIo, ErrorKindOf(std::runtime_error("other")));
  EXPECT_EQ(ErrorKind::kIo, ErrorKindOf(std::system_error(EIO, std::generic_category())));
  EXPECT_EQ(ErrorKind::kIo, ErrorKindOf(std::filesystem::filesystem_error(
                                "stat", std::make_error_code(std::errc::permission_denied))));
  EXPECT_EQ(ErrorKind::kIo, ErrorKindOf(std::bad_alloc()));
  EXPECT_EQ(kExitInternal, ExitCodeFor(ErrorKindOf(std::logic_error("bug"))));
  EXPECT_EQ(kExitIo, ExitCodeFor(ErrorKindOf(std::runtime_error("disk"))));
}

TEST(ErrorMapping, ABugSaysSoInItsMessage) {
  EXPECT_EQ("internal error (a bug): WrapDek: the DEK must be 32 bytes",
            MessageOf(std::logic_error("WrapDek: the DEK must be 32 bytes")));
  EXPECT_EQ("f: chunk 1: authentication failed",
            MessageOf(Error(ErrorKind::kAuthentication, "f: chunk 1: authentication failed")));
  EXPECT_EQ("open x: No such file", MessageOf(std::runtime_error("open x: No such file")));
}

TEST(ErrorMapping, ACoreResultBecomesAPositiveErrno) {
  EXPECT_EQ(EIO, ErrnoOf(-EIO));
  EXPECT_EQ(ENOSPC, ErrnoOf(static_cast<ssize_t>(-ENOSPC)));
  EXPECT_EQ(0, ErrnoOf(0));
  EXPECT_EQ(0, ErrnoOf(4096));  // a byte count
}

}  // namespace
}  // namespace envelopefs
