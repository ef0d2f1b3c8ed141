// The one place where error kinds become what each layer reports:
//   core    throws Error(kind), or returns -errno where its header says so (error.h);
//   daemon  replies an errno to the kernel: ErrnoFor(kind) for an exception, ErrnoOf(result)
//           for a core result; its own helpers return 0 or a positive errno (request_context.h);
//   tools   (and the daemon before it serves) exit with ExitCodeFor(kind) (exit_codes.h).
// ErrorKindOf classifies any exception that reaches a layer's boundary, so that a bug is never
// reported as an I/O error: Error by its kind, std::logic_error (std::invalid_argument,
// std::out_of_range, ...: a violated invariant) as kInternal, anything else (std::system_error,
// std::filesystem::filesystem_error, std::bad_alloc, ...) as kIo. Thread-safe: pure functions.
#pragma once

#include <sys/types.h>

#include <exception>
#include <string>

#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"

namespace envelopefs {

ErrorKind ErrorKindOf(const std::exception& e) noexcept;
// The one line a program prints for `e`: its message, after "internal error (a bug): " for a
// kInternal one.
std::string MessageOf(const std::exception& e);

// The errno the daemon replies for a failure of `kind`: EACCES for kKeyUnavailable (the file's
// key is retired or missing, or new files are refused until the keyring is readable), EIO for
// everything else (damaged data is never returned, whatever the kind).
int ErrnoFor(ErrorKind kind) noexcept;

// The exit code of a program that fails with `kind`.
int ExitCodeFor(ErrorKind kind) noexcept;

// A core result (a byte count, or 0, or -errno) as the daemon's convention: 0 or a positive
// errno.
inline int ErrnoOf(ssize_t result) noexcept { return result < 0 ? static_cast<int>(-result) : 0; }

}  // namespace envelopefs
