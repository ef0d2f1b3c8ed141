// envelopectl init — creates a volume (config, keyring, root directory IV).
#include <cstdio>

#include "cli.h"
#include "envelopefs/audit_log.h"
#include "envelopefs/encoding.h"
#include "envelopefs/exit_codes.h"
#include "envelopefs/file_format.h"
#include "keys_master.h"

namespace envelopefs::cli {

int RunInit(const Args& args) {
  ExpectArgs(args, 1, 1,
             "init [KEY] [--pkcs11-create-key | --kmip-create-key] [--new-recovery-key [-o FILE]] "
             "[--chunk-size SIZE] "
             "[--plaintext-names] "
             "CIPHERDIR");
  const std::filesystem::path dir = args.words[1];
  auto source = args.KeySource(/*confirm=*/true);
  CreateOptions options;
  options.chunk_size = args.chunk_size;
  options.plaintext_names = args.plaintext_names;
  auto volume = Volume::Create(dir, options, *source);
  nlohmann::json fields = {{"kek_version", volume->ActiveKek().info.version},
                           {"kek_id", volume->ActiveKek().info.id},
                           {"chunk_size", volume->config().chunk_size},
                           {"plaintext_names", volume->config().plaintext_names},
                           {"format_version", volume->config().format_version}};
  for (const auto& [name, value] : source->AuditFields()) fields[name] = value;
  AppendAuditEvent(*volume, "volume_created", std::move(fields));
  if (args.new_recovery_key) AddRecoverySlot(args, *volume);
  if (!args.quiet) {
    const VolumeConfig& c = volume->config();
    std::printf("created envelopefs volume in %s (chunk size %u, %s names, KEK version %u)\n",
                dir.c_str(), c.chunk_size, c.plaintext_names ? "plaintext" : "encrypted",
                volume->ActiveKek().info.version);
    PrintKmipKeyId(volume->master_slots().front().params);
    std::printf("next: mount it with  envelopefs%s %s MOUNTPOINT  (see envelopefs(1))\n",
                KeyOptionHint(args).c_str(), ShellWord(dir.string()).c_str());
  }
  return kExitOk;
}

}  // namespace envelopefs::cli
