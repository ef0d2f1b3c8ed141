// libFuzzer target: the volume config, envelopefs.toml (TOML), as every program loads it from
// the cipher dir before anything can be authenticated. A config that loads and is in the
// current format must save and load back unchanged.
// Input: the config's text (the test volume's real config in the seeds).
#include "envelopefs/error.h"
#include "envelopefs/volume_config.h"
#include "fuzz_support.h"

using namespace envelopefs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::filesystem::path path;
  UniqueFd dir = fuzz::FreshDir("config", &path);
  fuzz::WriteFileAt(dir.get(), kConfigFileName, {data, size});
  VolumeConfig config;
  try {
    config = VolumeConfig::LoadAt(dir.get(), path);
  } catch (const Error&) {
    return 0;
  }
  config.IdentityBytes();
  config.LegacyAuthenticatedBytes();
  if (config.format_version != kVolumeFormat2) return 0;
  UniqueFd again = fuzz::FreshDir("config-saved", &path);
  config.SaveAt(again.get(), path);
  const VolumeConfig back = VolumeConfig::LoadAt(again.get(), path);
  fuzz::Check(back.IdentityBytes() == config.IdentityBytes(), "a saved config loads back");
  return 0;
}
