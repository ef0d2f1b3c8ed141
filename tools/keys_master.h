// envelopectl keys: the master slots of the keyring (keyring.h) — change-master, add-master,
// remove-master, destroy-old-master, and the master-key part of retire --destroy-old-master.
// Every change is recorded in the audit log. Not thread-safe (one command per process).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "envelopefs/keyring.h"

namespace envelopefs::cli {

int KeysChangeMaster(const Args& args, const std::filesystem::path& dir);
int KeysAddMaster(const Args& args, const std::filesystem::path& dir);
int KeysRemoveMaster(const Args& args, const std::filesystem::path& dir);
int KeysDestroyOldMaster(const Args& args, const std::filesystem::path& dir);

// keys retire --destroy-old-master, once `kek` is known to be unused: retires it, replaces the
// volume's only master slot (an HSM or KMS key) by a new master key under a new HSM/KMS key, in
// one keyring replacement, then destroys the old HSM/KMS key. Returns the exit code.
// Error(kUsage) unless the volume is opened with an HSM or KMS master key (checked first).
void CheckCanDestroyOldMaster(const Args& args);
int RetireAndDestroyOldMaster(const Args& args, Volume& volume, const KekInfo& kek);

// init --new-recovery-key, keys add-master --new-recovery-key: adds a recovery slot to `volume`
// and shows its key once (to -o FILE, created mode 0600 and never overwritten, or stdout).
uint32_t AddRecoverySlot(const Args& args, Volume& volume);

// For a slot protected by a KMIP key: a line telling which --kmip-key-id opens the volume from
// now on (the id in the keyring is never used on its own). Prints nothing for other sources.
void PrintKmipKeyId(const MasterKeyParams& params);

// The master slots for keys list: JSON, and text lines (with the keys pending destruction).
// Unless `authenticated` (read with the master key), the text marks both as the keyring's
// claims: anyone who can write the cipher dir can change them.
nlohmann::json MasterSlotsJson(const std::vector<MasterSlot>& slots);
nlohmann::json PendingJson(const std::vector<MasterKeyParams>& pending);  // descriptions
void PrintMasterSlots(const std::vector<MasterSlot>& slots,
                      const std::vector<MasterKeyParams>& pending, bool authenticated);

}  // namespace envelopefs::cli
