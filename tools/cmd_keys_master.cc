// envelopectl keys: master slots — see keys_master.h.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "common.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/encoding.h"
#include "envelopefs/error.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/recovery_key.h"
#include "envelopefs/unique_fd.h"
#include "keys_master.h"

namespace envelopefs::cli {

namespace {

namespace fs = std::filesystem;

// The HSM or KMS key that protects a master key: the same one in `a` and `b`?
bool SameProtectingKey(const MasterKeyParams& a, const MasterKeyParams& b) {
  if (a.kind != b.kind) return false;
  if (a.pkcs11 && b.pkcs11) {
    return a.pkcs11->token_label == b.pkcs11->token_label &&
           a.pkcs11->key_label == b.pkcs11->key_label;
  }
  if (a.kmip && b.kmip) return a.kmip->key_id == b.kmip->key_id;
  return false;
}

// The label of the token key that follows `label` at keyring generation `generation`:
// "LABEL-gN" (an earlier "-gM" suffix replaced), cut to the 32 characters a label may have.
std::string NextPkcs11Label(std::string label, uint64_t generation) {
  const size_t dash = label.rfind("-g");
  if (dash != std::string::npos && dash + 2 < label.size() &&
      label.find_first_not_of("0123456789", dash + 2) == std::string::npos) {
    label.erase(dash);
  }
  const std::string suffix = "-g" + std::to_string(generation);
  if (label.size() + suffix.size() > Pkcs11Params::kMaxLabel) {
    label.resize(Pkcs11Params::kMaxLabel - suffix.size());
  }
  return label + suffix;
}

// The source of the master key that replaces the volume's HSM/KMS master key on
// retire --destroy-old-master: the --new-* options if given, else a new key in the same token
// (labelled NextPkcs11Label) or on the same KMS (created there).
std::unique_ptr<MasterKeySource> SuccessorSource(const Args& args, const Volume& volume) {
  if (args.new_recovery_key) {
    throw Error(ErrorKind::kUsage,
                "--destroy-old-master replaces the master key by another HSM or KMS key: give "
                "--new-pkcs11-* or --new-kmip-* options, or none");
  }
  if (args.HasNewKey()) return args.NewKeySource();
  KeySourceOptions successor = args;
  if (args.current.HasPkcs11()) {
    successor.current.pkcs11_key =
        NextPkcs11Label(args.current.pkcs11_key.value_or(""), volume.keyring_generation() + 1);
    successor.pkcs11_create_key = true;
  } else {
    successor.current.kmip_key_id.reset();
    successor.kmip_create_key = true;
  }
  return successor.KeySource(/*confirm=*/false);
}

// Error(kUsage) if the successor SuccessorSource makes would be protected by the HSM/KMS key that
// protects the master key of `volume`'s unlocked slot now (a derived label that is the current
// one, or --new-* options naming the current key): that key could never be destroyed, and the
// retirement would not hold against old copies. Checked before anything changes.
void CheckSuccessorIsAnotherKey(const Args& args, const Volume& volume) {
  MasterKeyParams successor;
  if (args.HasNewKey() ? args.next.HasPkcs11() : args.current.HasPkcs11()) {
    const KeySourceChoice& from = args.HasNewKey() ? args.next : args.current;
    successor.kind = MasterKeyKind::kPkcs11;
    successor.pkcs11.emplace();
    successor.pkcs11->token_label = from.pkcs11_token.value_or("");
    successor.pkcs11->key_label =
        args.HasNewKey()
            ? from.pkcs11_key.value_or("")
            : NextPkcs11Label(from.pkcs11_key.value_or(""), volume.keyring_generation() + 1);
  } else if (args.HasNewKey() && args.next.kmip_key_id) {
    successor.kind = MasterKeyKind::kKmip;
    successor.kmip.emplace();
    successor.kmip->key_id = *args.next.kmip_key_id;
  } else {
    return;  // a key the KMS creates now
  }
  for (const MasterSlot& slot : volume.master_slots()) {
    if (slot.number == volume.unlocked_slot() && SameProtectingKey(slot.params, successor)) {
      throw Error(ErrorKind::kUsage,
                  "--destroy-old-master: the new master key would be protected "
                  "by " +
                      DescribeMasterKey(slot.params) +
                      ", the key it replaces: give another key with --new-pkcs11-key "
                      "or --new-kmip-key-id");
    }
  }
}

// A one-line description of `params` with its source's name, for messages and the audit log.
std::string SlotLine(uint32_t number, const MasterKeyParams& params) {
  return "master slot " + std::to_string(number) + " (" + DescribeMasterKey(params) + ")";
}

// The file -o names, created now (mode 0600, never over an existing file) so that a name that
// cannot be used is refused before anything changes; or an invalid descriptor for stdout.
UniqueFd OpenRecoveryKeyOutput(const Args& args) {
  if (!args.output) return UniqueFd();
  UniqueFd fd(::open(args.output->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) ThrowSystemError("cannot create " + *args.output);
  return fd;
}

// Destroys every pending old master key the volume records, with `source` (which reaches the
// same token or KMS). Returns how many could not be destroyed (each named on stderr).
size_t DestroyPending(const Args& args, Volume& volume, const MasterKeySource& source) {
  size_t failed = 0;
  for (const MasterKeyParams& old : volume.pending_destroy()) {
    try {
      for (const MasterSlot& slot : volume.master_slots()) {
        if (SameProtectingKey(slot.params, old)) {
          throw Error(ErrorKind::kState, DescribeMasterKey(old) + " still protects " +
                                             SlotLine(slot.number, slot.params) +
                                             ": not destroyed");
        }
      }
      const std::string what = source.DestroyProtectingKey(old, volume.config().volume_id);
      volume.UpdateKeyring([&](Keyring& k) { k.RemovePendingDestroy(old); });
      nlohmann::json fields = {{"destroyed", what}};
      for (const auto& [name, value] : source.AuditFields()) fields[name] = value;
      AppendAuditEvent(volume, "old_master_destroyed", std::move(fields));
      if (!args.quiet) std::printf("destroyed %s\n", what.c_str());
    } catch (const Error& e) {
      ++failed;
      AppendAuditEvent(volume, "old_master_destroy_failed",
                       {{"master_key", DescribeMasterKey(old)}, {"reason", e.what()}});
      std::fprintf(stderr, "envelopectl: %s: %s\n", DescribeMasterKey(old).c_str(), e.what());
    }
  }
  return failed;
}

}  // namespace

uint32_t AddRecoverySlot(const Args& args, Volume& volume) {
  if (args.json && !args.output) {
    // The key is never put into a JSON string (ordinary memory): it goes to a file.
    throw Error(ErrorKind::kUsage, "--json with --new-recovery-key needs -o FILE for the key");
  }
  UniqueFd out = OpenRecoveryKeyOutput(args);
  const SecureBytes key = NewRecoveryKey();
  uint32_t slot = 0;
  try {
    slot = volume.AddMasterSlot(*MakeNewRecoveryKeySource(key));
  } catch (...) {
    if (out.valid()) ::unlink(args.output->c_str());
    throw;
  }
  AppendAuditEvent(volume, "master_slot_added", {{"slot", slot}, {"source", "recovery"}});
  const SecureBytes text = FormatRecoveryKey(key);
  if (out.valid()) {
    WriteAll(out.get(), text.span(), *args.output);
    WriteAll(out.get(), AsBytes("\n"), *args.output);
    if (::fsync(out.get()) != 0) ThrowSystemError("write " + *args.output);
    if (!args.json) {
      std::printf(
          "recovery key for master slot %u written to %s: keep it offline (open the volume "
          "with --recovery-key FILE)\n",
          slot, args.output->c_str());
    }
  } else {
    std::printf(
        "recovery key for master slot %u (shown once: print it or write it down and keep "
        "it offline; open the volume with --recovery-key FILE):\n",
        slot);
    std::fflush(stdout);
    WriteAll(STDOUT_FILENO, text.span(), "standard output");
    WriteAll(STDOUT_FILENO, AsBytes("\n"), "standard output");
  }
  return slot;
}

void PrintKmipKeyId(const MasterKeyParams& params) {
  if (params.kind != MasterKeyKind::kKmip || !params.kmip) return;
  std::printf(
      "the master key is protected by KMIP key \"%s\": open the volume with "
      "--kmip-key-id %s\n",
      params.kmip->key_id.c_str(), ShellWord(params.kmip->key_id).c_str());
}

nlohmann::json MasterSlotsJson(const std::vector<MasterSlot>& slots) {
  nlohmann::json out = nlohmann::json::array();
  for (const MasterSlot& s : slots) {
    out.push_back({{"slot", s.number},
                   {"source", MasterKeyKindName(s.params.kind)},
                   {"description", DescribeMasterKey(s.params)},
                   {"created", s.created_unix != 0 ? nlohmann::json(FormatUtc(s.created_unix))
                                                   : nlohmann::json(nullptr)}});
  }
  return out;
}

nlohmann::json PendingJson(const std::vector<MasterKeyParams>& pending) {
  nlohmann::json out = nlohmann::json::array();
  for (const MasterKeyParams& p : pending) out.push_back(DescribeMasterKey(p));
  return out;
}

void PrintMasterSlots(const std::vector<MasterSlot>& slots,
                      const std::vector<MasterKeyParams>& pending, bool authenticated) {
  const char* claimed = authenticated ? "" : " (as claimed, not authenticated)";
  std::printf("master slots%s:\n", claimed);
  for (const MasterSlot& s : slots) {
    std::printf("  %u  %-10s  %s%s\n", s.number, MasterKeyKindName(s.params.kind),
                DescribeMasterKey(s.params).c_str(),
                s.created_unix != 0 ? ("  (added " + FormatUtc(s.created_unix) + ")").c_str() : "");
  }
  for (const MasterKeyParams& p : pending) {
    std::printf("old master key not yet destroyed%s: %s\n", claimed, DescribeMasterKey(p).c_str());
  }
}

int KeysChangeMaster(const Args& args, const fs::path& dir) {
  if (!args.HasNewKey() || args.new_recovery_key) {
    throw Error(ErrorKind::kUsage,
                "keys change-master needs --new-keyfile, --new-passfile, --new-master-command, "
                "--new-pkcs11-module/--new-pkcs11-token/--new-pkcs11-key or "
                "--new-kmip-server/--new-tls-cert/--new-tls-key/--new-tls-ca");
  }
  auto volume = OpenVolume(args, dir);
  auto source = args.NewKeySource();
  volume->ChangeMasterKey(*source);
  const char* kind = args.next.KindName();
  nlohmann::json fields = {{"source", kind}, {"slot", volume->unlocked_slot()}};
  for (const auto& [name, value] : source->AuditFields()) fields[name] = value;
  AppendAuditEvent(*volume, "master_key_changed", std::move(fields));
  if (!args.quiet) {
    // With other slots the keyring key stays (Keyring::ReplaceSlot): the old secret, through a
    // copy of the keyring made before now, still opens this keyring.
    std::printf("master key changed (now from a %s)%s\n", kind,
                volume->master_slots().size() > 1
                    ? ". Copies of the keyring made before now still open with the old secret, and "
                      "through them it still opens this keyring (its keyring key is renewed only "
                      "when a single slot is left)"
                    : "");
    for (const MasterSlot& s : volume->master_slots()) {
      if (s.number == volume->unlocked_slot()) PrintKmipKeyId(s.params);
    }
  }
  return kExitOk;
}

int KeysAddMaster(const Args& args, const fs::path& dir) {
  if (!args.HasNewKey()) {
    throw Error(ErrorKind::kUsage,
                "keys add-master needs the new source: --new-recovery-key, --new-keyfile, "
                "--new-passfile, --new-master-command, --new-pkcs11-* or --new-kmip-*");
  }
  auto volume = OpenVolume(args, dir);
  if (args.new_recovery_key) {
    const uint32_t slot = AddRecoverySlot(args, *volume);
    if (args.json) PrintJson({{"slot", slot}, {"source", "recovery"}});
    return kExitOk;
  }
  auto source = args.NewKeySource();
  const uint32_t slot = volume->AddMasterSlot(*source);
  const char* kind = args.next.KindName();
  nlohmann::json fields = {{"slot", slot}, {"source", kind}};
  for (const auto& [name, value] : source->AuditFields()) fields[name] = value;
  AppendAuditEvent(*volume, "master_slot_added", std::move(fields));
  if (args.json) {
    PrintJson({{"slot", slot}, {"source", kind}});
  } else if (!args.quiet) {
    std::printf("added master slot %u (a %s)\n", slot, kind);
    for (const MasterSlot& s : volume->master_slots()) {
      if (s.number == slot) PrintKmipKeyId(s.params);
    }
  }
  return kExitOk;
}

int KeysRemoveMaster(const Args& args, const fs::path& dir) {
  if (!args.slot) throw Error(ErrorKind::kUsage, "keys remove-master needs --slot N");
  auto volume = OpenVolume(args, dir);
  std::optional<MasterSlot> removed;
  for (const MasterSlot& s : volume->master_slots()) {
    if (s.number == *args.slot) removed = s;
  }
  volume->RemoveMasterSlot(*args.slot);
  const char* kind = removed ? MasterKeyKindName(removed->params.kind) : "unknown";
  AppendAuditEvent(*volume, "master_slot_removed", {{"slot", *args.slot}, {"source", kind}});
  if (!args.quiet) {
    // With other slots left the keyring key stays (Volume::RemoveMasterSlot), and the removed
    // secret reaches it through any older copy: say so.
    const bool key_kept = volume->master_slots().size() > 1;
    std::printf(
        "removed master slot %u (%s). Copies of the keyring made before now still open with "
        "its secret%s: destroy that secret (see envelopectl(1), KEY CUSTODY).\n",
        *args.slot, removed ? DescribeMasterKey(removed->params).c_str() : "?",
        key_kept ? ", and through them it still opens this keyring (its keyring key is renewed "
                   "only when a single slot is left)"
                 : "");
  }
  return kExitOk;
}

int KeysDestroyOldMaster(const Args& args, const fs::path& dir) {
  auto volume = OpenVolume(args, dir);
  if (volume->pending_destroy().empty()) {
    if (!args.quiet) std::printf("no old master key is waiting to be destroyed\n");
    return kExitOk;
  }
  auto source = args.KeySource(/*confirm=*/false);
  return DestroyPending(args, *volume, *source) == 0 ? kExitOk : kExitIo;
}

void CheckCanDestroyOldMaster(const Args& args) {
  if (!args.current.HasPkcs11() && !args.current.HasKmip()) {
    throw Error(ErrorKind::kUsage,
                "--destroy-old-master needs a volume opened with its HSM (--pkcs11-*) or KMS "
                "(--kmip-*) master key: a key file, passphrase, command or recovery key cannot be "
                "destroyed by envelopectl (see envelopectl(1), KEY CUSTODY)");
  }
}

int RetireAndDestroyOldMaster(const Args& args, Volume& volume, const KekInfo& kek) {
  CheckCanDestroyOldMaster(args);
  CheckSuccessorIsAnotherKey(args, volume);
  // The old key must be one envelopefs may destroy (made for this volume): checked before
  // anything changes.
  args.KeySource(/*confirm=*/false)
      ->CheckCanDestroy(volume.master_slots().front().params, volume.config().volume_id);
  auto successor = SuccessorSource(args, volume);
  volume.ReplaceOnlyMasterSlot(*successor, [&](Keyring& k) { k.Retire(kek.version); });
  AppendAuditEvent(volume, "version_retired", {{"kek_version", kek.version}, {"kek_id", kek.id}});
  const MasterSlot now = volume.master_slots().front();
  nlohmann::json fields = {{"slot", now.number},
                           {"source", MasterKeyKindName(now.params.kind)},
                           {"master_key", DescribeMasterKey(now.params)}};
  for (const auto& [name, value] : successor->AuditFields()) fields[name] = value;
  AppendAuditEvent(volume, "master_key_changed", std::move(fields));
  if (!args.quiet) {
    std::printf("KEK version %u retired: its key material is destroyed.\n", kek.version);
    std::printf("the keyring is now protected by %s: open the volume with it from now on\n",
                DescribeMasterKey(now.params).c_str());
    PrintKmipKeyId(now.params);
  }
  if (DestroyPending(args, volume, *successor) != 0) {
    std::fprintf(stderr,
                 "envelopectl: the old master key is recorded as still to destroy: run "
                 "envelopectl keys destroy-old-master with the options of %s\n",
                 DescribeMasterKey(now.params).c_str());
    return kExitIo;
  }
  return kExitOk;
}

}  // namespace envelopefs::cli
