// Pkcs11Token — a logged-in session on one token of a PKCS#11 module, and the few operations the
// PKCS#11 master-key source needs: find, create or destroy an AES key by label, AES-GCM encrypt
// and decrypt with it. Knows nothing of volumes or FUSE.
//
// The module is loaded with dlopen (no link-time dependency; the PKCS#11 headers are p11-kit's)
// and never unloaded: some modules (SoftHSM2 with OpenSSL 3) register exit handlers that crash
// once their code is gone. The constructor initialises the module (C_Initialize), finds the
// token by label, opens a read-write session and logs in as the user; the destructor logs out,
// closes the session and finalises the module. Every failure throws Error with one line:
// kUsage for a module, token or key that is not there, kWrongKey for a wrong PIN or a key that
// cannot decrypt, kIo for anything else the module reports. Not thread-safe; instances in
// different threads are serialised by a process-wide mutex (a module is initialised once per
// process).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "envelopefs/secure_bytes.h"

struct ck_function_list;  // p11-kit's <p11-kit/pkcs11.h> with CRYPTOKI_GNU

namespace envelopefs {

class Pkcs11Token {
 public:
  using Handle = unsigned long;  // a PKCS#11 object handle

  Pkcs11Token(const std::string& module, const std::string& token_label, const SecureBytes& pin);
  ~Pkcs11Token();
  Pkcs11Token(const Pkcs11Token&) = delete;
  Pkcs11Token& operator=(const Pkcs11Token&) = delete;

  // The AES secret key labelled `label`, or nullopt if there is none. Error(kUsage) if several.
  std::optional<Handle> FindAesKey(const std::string& label);
  // Generates a 256-bit AES key labelled `label` with CKA_ID `id` on the token: CKA_TOKEN,
  // CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, for encrypting and decrypting only.
  Handle CreateAesKey(const std::string& label, std::span<const uint8_t> id);
  // The key's CKA_ID (empty if it has none).
  std::vector<uint8_t> KeyId(Handle key);
  // Destroys object `key` on the token (C_DestroyObject). Returns false if the token says the
  // object is no longer there (CKR_OBJECT_HANDLE_INVALID, e.g. destroyed by another session
  // since it was found); any other refusal is Error(kIo).
  bool DestroyKey(Handle key);
  // AES-GCM (CKM_AES_GCM, 128-bit tag) computed by the token: ciphertext followed by the tag.
  std::vector<uint8_t> EncryptGcm(Handle key, std::span<const uint8_t> iv,
                                  std::span<const uint8_t> aad, std::span<const uint8_t> plain);
  // The plaintext, in locked memory; Error(kWrongKey) if the token refuses it (wrong key, data
  // or AAD).
  SecureBytes DecryptGcm(Handle key, std::span<const uint8_t> iv, std::span<const uint8_t> aad,
                         std::span<const uint8_t> sealed);

  const std::string& token_label() const { return token_label_; }

 private:
  void Check(unsigned long rv, const std::string& what) const;
  void Close();  // logs out, closes the session, finalises the module; idempotent

  std::unique_lock<std::mutex> lock_;
  ck_function_list* functions_ = nullptr;  // the module's function list (owned by the module)
  std::string module_, token_label_;
  bool initialized_ = false, logged_in_ = false;
  unsigned long session_ = 0;
  bool has_session_ = false;
};

// The PKCS#11 return value `rv` as its CKR_ name (e.g. "CKR_PIN_INCORRECT"), or hex.
std::string Pkcs11ReturnName(unsigned long rv);

}  // namespace envelopefs
