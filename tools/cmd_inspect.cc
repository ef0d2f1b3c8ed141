// envelopectl inspect — shows a cipher file's header: format, chunk size, file id, the KEK
// version its DEK is wrapped under, sizes; with a key, also whether the header authenticates
// and a (non-secret) DEK fingerprint.
#include <cerrno>
#include <cstdio>

#include "cli.h"
#include "common.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "mounts.h"

namespace envelopefs::cli {

namespace {

namespace fs = std::filesystem;

constexpr size_t kFingerprintBytes = 8;

struct InspectReport {
  fs::path file;
  HeaderRead header;
  int slot = 0;  // the key slot whose KEK is reported
  uint64_t plaintext_size = 0;
  std::optional<HeaderCheck> check;  // set when a key was given

  std::string Fingerprint() const {
    return ToHex(std::span<const uint8_t>(check->dek_fingerprint.data(), kFingerprintBytes));
  }
};

nlohmann::json ReportJson(const InspectReport& r) {
  const HeaderRead& h = r.header;
  nlohmann::json slots = nlohmann::json::array();
  for (const KeySlotInfo& s : h.slots) {
    slots.push_back(
        {{"generation", s.generation}, {"kek_id", s.kek_id}, {"kek_version", s.kek_version}});
  }
  const bool ok = r.check && r.check->ok;
  return {{"file", r.file.string()},
          {"format_version", h.fixed.version},
          {"chunk_size", h.fixed.chunk_size},
          {"cipher", kCipherName},
          {"file_id", ToHex(h.fixed.file_id)},
          {"kek_id", h.slots[r.slot].kek_id},
          {"kek_version", h.slots[r.slot].kek_version},
          {"key_slots", slots},
          {"plaintext_size", r.plaintext_size},
          {"chunks", h.layout().ChunkCount(r.plaintext_size)},
          {"sealed", ok ? nlohmann::json(r.check->state.sealed()) : nlohmann::json(nullptr)},
          {"header_ok", r.check ? nlohmann::json(r.check->ok) : nlohmann::json(nullptr)},
          {"reason", r.check && !ok ? nlohmann::json(r.check->reason) : nlohmann::json(nullptr)},
          {"dek_fingerprint", ok ? nlohmann::json(r.Fingerprint()) : nlohmann::json(nullptr)}};
}

void PrintReport(const InspectReport& r) {
  const HeaderRead& h = r.header;
  const KeySlotInfo& kek = h.slots[r.slot];
  std::printf("file:            %s\n", r.file.c_str());
  std::printf("format version:  %u\n", h.fixed.version);
  std::printf("cipher:          %s\n", kCipherName);
  std::printf("chunk size:      %u\n", h.fixed.chunk_size);
  std::printf("file id:         %s\n", ToHex(h.fixed.file_id).c_str());
  std::printf("KEK:             %s (key slot %d)\n", KekLabel(kek.kek_id, kek.kek_version).c_str(),
              r.slot);
  for (int i = 0; i < 2; ++i) {
    std::printf("key slot %d:      generation %llu, KEK %s\n", i,
                static_cast<unsigned long long>(h.slots[i].generation),
                KekLabel(h.slots[i].kek_id, h.slots[i].kek_version).c_str());
  }
  const bool ok = r.check && r.check->ok;
  std::printf("plaintext size:  %llu%s\n", static_cast<unsigned long long>(r.plaintext_size),
              !r.check                  ? " (from the cipher file length)"
              : !ok                     ? ""
              : r.check->state.sealed() ? " (sealed)"
                                        : " (unsealed: open for writing, or not yet sealed)");
  std::printf("chunks:          %llu\n",
              static_cast<unsigned long long>(h.layout().ChunkCount(r.plaintext_size)));
  if (!r.check) {
    std::printf("header:          not checked (no key given)\n");
  } else if (ok) {
    std::printf("header:          authentic\n");
    std::printf("DEK fingerprint: %s\n", r.Fingerprint().c_str());
  } else {
    std::printf("header:          DAMAGED: %s\n", r.check->reason.c_str());
  }
}

// The cipher path of the plaintext path `relative` (below the mount's root) of the volume in
// `cipher_dir`, found with the key by walking the cipher dir; empty if not found.
std::string CipherPathOf(const Args& args, const fs::path& cipher_dir,
                         const std::string& relative) {
  auto volume = OpenVolume(args, cipher_dir, /*log_unlock=*/false);
  std::string found;  // the walk keeps nothing else: memory does not grow with the tree
  WalkCipherDir(volume->cipher_dir(), MakeNameTransform(*volume), [&](const CipherEntry& e) {
    if (found.empty() && e.plain_path == relative) found = e.cipher_path;
  });
  return found;
}

// Why `file`, which has no envelopefs header, is not something inspect can show: a plaintext
// path on a mount (pointing to its cipher file), a volume's own file, a file stored
// unencrypted in a cipher dir, or a file outside any cipher dir.
Error NotACipherFile(const Args& args, const fs::path& file, const HeaderRead& header) {
  const std::string name = EscapeName(file.string());
  const bool is_dir = header.status == HeaderStatus::kUnreadable && header.error == EISDIR;
  if (auto mount = FindEnvelopeMount(file)) {
    std::error_code ec;
    const fs::path absolute = fs::weakly_canonical(fs::absolute(file, ec), ec);
    const std::string relative = absolute.lexically_relative(mount->mount_point).string();
    const std::string cipher_dir = EscapeName(mount->cipher_dir.string());
    std::string where;
    if (args.HasKey() && relative != "." && !relative.empty()) {
      const std::string cipher = CipherPathOf(args, mount->cipher_dir, relative);
      if (!cipher.empty()) where = ": its cipher file is " + EscapeName(cipher);
    }
    if (where.empty()) {
      where = "; inspect takes its file in the cipher dir " + cipher_dir + " (" +
              SuggestCommand(args, "ls --json", mount->cipher_dir) + " shows each cipher_path)";
    }
    return Error(ErrorKind::kUsage, name + " is a plaintext path on the envelopefs mount " +
                                        EscapeName(mount->mount_point.string()) + " (cipher dir " +
                                        cipher_dir + "), not a cipher file" + where);
  }
  try {
    const fs::path root = FindVolumeRoot(file);
    if (file.filename().string().rfind("envelopefs.", 0) == 0) {
      return Error(ErrorKind::kUsage, name +
                                          " is one of the volume's own files (config, keyring, "
                                          "directory IV, lock or audit log), not a cipher file");
    }
    if (is_dir) {
      return Error(ErrorKind::kUsage, name + " is a directory of the cipher dir " +
                                          EscapeName(root.string()) + "; inspect takes a file");
    }
    return Error(ErrorKind::kFormat, name + ": not an envelopefs file: put into the cipher dir " +
                                         EscapeName(root.string()) +
                                         " directly, not through a mount, so not encrypted (see "
                                         "envelopectl audit)");
  } catch (const Error&) {
    return Error(ErrorKind::kUsage,
                 name + (is_dir ? ": a directory" : ": not an envelopefs cipher file") +
                     ", and not inside a cipher dir (no " + kConfigFileName +
                     " in its directory or above); inspect takes a file of a cipher dir");
  }
}

}  // namespace

int RunInspect(const Args& args) {
  ExpectArgs(args, 1, 1, "inspect FILE [--json] [--keyfile FILE | --passfile FILE]");
  InspectReport r;
  r.file = args.words[1];
  r.header = ReadHeaderAt(r.file);
  if (r.header.status == HeaderStatus::kNotEnvelope ||
      (r.header.status == HeaderStatus::kUnreadable && r.header.error == EISDIR)) {
    throw NotACipherFile(args, r.file, r.header);
  }
  if (r.header.status != HeaderStatus::kOk) {
    throw Error(r.header.status == HeaderStatus::kUnreadable ? ErrorKind::kIo : ErrorKind::kFormat,
                r.file.string() + ": " + r.header.reason);
  }
  r.slot = r.header.NewestSlot();
  r.plaintext_size = r.header.layout().ReportedPlainSize(r.header.cipher_size);
  if (args.HasKey()) {
    auto volume = OpenVolume(args, FindVolumeRoot(r.file), /*log_unlock=*/false);
    r.check = CheckHeader(r.header, KekTable(*volume));
    if (r.check->slot >= 0) r.slot = r.check->slot;
  }
  if (args.json) {
    PrintJson(ReportJson(r));
  } else {
    PrintReport(r);
  }
  return r.check && !r.check->ok ? kExitDamaged : kExitOk;
}

}  // namespace envelopefs::cli
