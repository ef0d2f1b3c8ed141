// Keyring internals shared by keyring.cc (the file and its MAC) and keyring_slots.cc (master
// slots): the keys derived from the keyring key, and AES-256-GCM wrapping of one 32-byte key
// (nonce, wrapped key, tag: kWrappedKeySize bytes). The labels are part of the on-disk format
// (envelopefs-format(5), VOLUME FILES). Pure, thread-safe.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <vector>

#include "envelopefs/crypto.h"
#include "envelopefs/secure_bytes.h"
#include "envelopefs/volume_config.h"

namespace envelopefs::keyring_wrap {

inline constexpr size_t kWrappedKeySize = kGcmNonceSize + kKeySize + kGcmTagSize;

// Keys derived from the keyring key (in formats 1 and 2: the master key).
struct KeyringKeys {
  SecureBytes wrap;
  SecureBytes mac;
  SecureBytes check;
  explicit KeyringKeys(const SecureBytes& keyring_key);
};

// Concatenates byte strings (the associated data of the keyring's wraps).
std::vector<uint8_t> Concat(std::initializer_list<std::span<const uint8_t>> parts);

// Wraps `key` under `wrap_key` with associated data `aad`.
std::vector<uint8_t> Wrap(const SecureBytes& wrap_key, std::span<const uint8_t> aad,
                          const SecureBytes& key);
// The key, or nullopt if `wrapped` does not authenticate under `wrap_key` and `aad`.
std::optional<SecureBytes> Unwrap(const SecureBytes& wrap_key, std::span<const uint8_t> aad,
                                  std::span<const uint8_t> wrapped);

// The keyring key as master slot `number` of volume `volume` wraps it under `master_key`.
std::vector<uint8_t> WrapForSlot(const SecureBytes& master_key, const VolumeId& volume,
                                 uint32_t number, const SecureBytes& keyring_key);
std::optional<SecureBytes> UnwrapSlot(const SecureBytes& master_key, const VolumeId& volume,
                                      uint32_t number, std::span<const uint8_t> wrapped);

}  // namespace envelopefs::keyring_wrap
