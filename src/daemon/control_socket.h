// ControlSocket — the daemon's control requests from envelopectl, on a Unix socket in a runtime
// directory (control_socket_path.h), never in the cipher dir.
//
// One request so far, from `envelopectl quiesce`: the client sends "quiesce SECONDS\n"; the
// daemon holds every change through the mount, seals every changed file, syncs the backing file
// system and answers "held\n" (or "error MESSAGE\n"). The hold lasts until the client sends a
// line or closes the connection (answer "released\n"), or until SECONDS pass (then it is
// released, logged, and the client's line is answered "expired\n"). Only root and the daemon's
// own user may connect (SO_PEERCRED). One client at a time, on the socket's own thread.
// Thread-safe: the object is only started and destroyed by the daemon's main thread.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "envelopefs/unique_fd.h"

namespace envelopefs {

class EnvelopeFs;

class ControlSocket {
 public:
  // Listens for `fs`'s volume; best effort: nullptr (and a log line saying why) if the user has
  // no runtime directory, it is unsafe, or another daemon serves a volume with the same id.
  static std::unique_ptr<ControlSocket> Start(EnvelopeFs& fs);
  ~ControlSocket();  // stops the thread (releasing a hold) and removes the socket

  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

 private:
  ControlSocket(EnvelopeFs& fs, std::string path, UniqueFd listener);
  void Run();
  void Serve(int client);
  // Waits up to `ms` (-1: for ever) for `fd` to be readable; false on stop or timeout.
  bool WaitReadable(int fd, int ms, bool* timed_out);

  EnvelopeFs& fs_;
  const std::string path_;
  UniqueFd listener_;
  UniqueFd stop_read_, stop_write_;
  std::thread thread_;
};

}  // namespace envelopefs
