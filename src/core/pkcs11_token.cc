// Pkcs11Token — see pkcs11_token.h.
#include "pkcs11_token.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstring>

#include "envelopefs/error.h"

// p11-kit's header: the GNU names (no macros such as `value` leak into our code).
#define CRYPTOKI_GNU 1
#include <p11-kit/pkcs11.h>

namespace envelopefs {

namespace {

std::mutex& ModuleMutex() {
  static std::mutex mu;
  return mu;
}

// The label field of CK_TOKEN_INFO: 32 bytes padded with blanks.
std::string TrimmedLabel(const unsigned char (&label)[32]) {
  size_t n = sizeof label;
  while (n > 0 && (label[n - 1] == ' ' || label[n - 1] == '\0')) --n;
  return std::string(reinterpret_cast<const char*>(label), n);
}

}  // namespace

std::string Pkcs11ReturnName(unsigned long rv) {
  static const std::pair<unsigned long, const char*> kNames[] = {
      {CKR_OK, "CKR_OK"},
      {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
      {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
      {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
      {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
      {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
      {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID"},
      {CKR_KEY_FUNCTION_NOT_PERMITTED, "CKR_KEY_FUNCTION_NOT_PERMITTED"},
      {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
      {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
      {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
      {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
      {CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE"},
      {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
      {CKR_TOKEN_WRITE_PROTECTED, "CKR_TOKEN_WRITE_PROTECTED"},
      {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
      {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
      {CKR_TEMPLATE_INCONSISTENT, "CKR_TEMPLATE_INCONSISTENT"},
      {CKR_ATTRIBUTE_VALUE_INVALID, "CKR_ATTRIBUTE_VALUE_INVALID"},
      {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
      {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
      {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
      {CKR_ACTION_PROHIBITED, "CKR_ACTION_PROHIBITED"},
      {CKR_SESSION_READ_ONLY, "CKR_SESSION_READ_ONLY"},
  };
  for (const auto& [code, name] : kNames) {
    if (code == rv) return name;
  }
  char hex[32];
  std::snprintf(hex, sizeof hex, "CKR 0x%lx", rv);
  return hex;
}

void Pkcs11Token::Check(unsigned long rv, const std::string& what) const {
  if (rv == CKR_OK) return;
  throw Error(ErrorKind::kIo, "PKCS#11 token \"" + token_label_ + "\": " + what + " failed (" +
                                  Pkcs11ReturnName(rv) + ")");
}

Pkcs11Token::Pkcs11Token(const std::string& module, const std::string& token_label,
                         const SecureBytes& pin)
    : lock_(ModuleMutex()), module_(module), token_label_(token_label) {
  // Never dlclose'd (see the header). RTLD_LOCAL: the module's symbols stay its own.
  void* handle = ::dlopen(module.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    throw Error(ErrorKind::kUsage, "cannot load PKCS#11 module " + module + ": " +
                                       (why != nullptr ? why : "dlopen failed"));
  }
  using GetFunctionList = ck_rv_t (*)(struct ck_function_list**);
  auto get = reinterpret_cast<GetFunctionList>(::dlsym(handle, "C_GetFunctionList"));
  struct ck_function_list* list = nullptr;
  if (get == nullptr || get(&list) != CKR_OK || list == nullptr) {
    throw Error(ErrorKind::kUsage, module + " is not a PKCS#11 module (no C_GetFunctionList)");
  }
  functions_ = list;
  try {
    struct ck_c_initialize_args args {};
    args.flags = CKF_OS_LOCKING_OK;
    ck_rv_t rv = functions_->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      throw Error(ErrorKind::kIo, "PKCS#11 module " + module + ": C_Initialize failed (" +
                                      Pkcs11ReturnName(rv) + ")");
    }
    initialized_ = rv == CKR_OK;  // finalise only what we initialised

    unsigned long count = 0;
    Check(functions_->C_GetSlotList(1, nullptr, &count), "C_GetSlotList");
    std::vector<ck_slot_id_t> slots(count);
    if (count > 0) Check(functions_->C_GetSlotList(1, slots.data(), &count), "C_GetSlotList");
    slots.resize(count);
    std::optional<ck_slot_id_t> found;
    for (ck_slot_id_t slot : slots) {
      struct ck_token_info info {};
      if (functions_->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
      if (TrimmedLabel(info.label) != token_label) continue;
      if (found) {
        throw Error(ErrorKind::kUsage, "several PKCS#11 tokens are labelled \"" + token_label +
                                           "\" (module " + module + ")");
      }
      found = slot;
    }
    if (!found) {
      throw Error(ErrorKind::kUsage,
                  "no PKCS#11 token labelled \"" + token_label + "\" (module " + module + ")");
    }
    ck_session_handle_t session = 0;
    Check(functions_->C_OpenSession(*found, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                    &session),
          "C_OpenSession");
    session_ = session;
    has_session_ = true;
    rv =
        functions_->C_Login(session_, CKU_USER, const_cast<unsigned char*>(pin.data()), pin.size());
    if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE) {
      throw Error(ErrorKind::kWrongKey, "wrong PIN for PKCS#11 token \"" + token_label + "\"");
    }
    if (rv == CKR_PIN_LOCKED) {
      throw Error(ErrorKind::kWrongKey, "the PIN of PKCS#11 token \"" + token_label +
                                            "\" is locked (too many wrong PINs)");
    }
    if (rv != CKR_USER_ALREADY_LOGGED_IN) Check(rv, "C_Login");
    logged_in_ = rv == CKR_OK;
  } catch (...) {
    Close();
    throw;
  }
}

Pkcs11Token::~Pkcs11Token() { Close(); }

void Pkcs11Token::Close() {
  if (functions_ == nullptr) return;
  if (logged_in_) functions_->C_Logout(session_);
  if (has_session_) functions_->C_CloseSession(session_);
  if (initialized_) functions_->C_Finalize(nullptr);
  logged_in_ = has_session_ = initialized_ = false;
  functions_ = nullptr;
}

std::optional<Pkcs11Token::Handle> Pkcs11Token::FindAesKey(const std::string& label) {
  ck_object_class_t klass = CKO_SECRET_KEY;
  ck_key_type_t type = CKK_AES;
  struct ck_attribute tmpl[] = {
      {CKA_CLASS, &klass, sizeof klass},
      {CKA_KEY_TYPE, &type, sizeof type},
      {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
  };
  Check(functions_->C_FindObjectsInit(session_, tmpl, 3), "C_FindObjectsInit");
  ck_object_handle_t found[2] = {0, 0};
  unsigned long n = 0;
  ck_rv_t rv = functions_->C_FindObjects(session_, found, 2, &n);
  functions_->C_FindObjectsFinal(session_);
  Check(rv, "C_FindObjects");
  if (n > 1) {
    throw Error(ErrorKind::kUsage, "PKCS#11 token \"" + token_label_ +
                                       "\" holds several AES keys labelled \"" + label + "\"");
  }
  if (n == 0) return std::nullopt;
  return found[0];
}

std::vector<uint8_t> Pkcs11Token::KeyId(Handle key) {
  struct ck_attribute attr {
    CKA_ID, nullptr, 0
  };
  ck_rv_t rv = functions_->C_GetAttributeValue(session_, key, &attr, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || attr.value_len == static_cast<unsigned long>(-1)) {
    return {};
  }
  Check(rv, "C_GetAttributeValue");
  if (attr.value_len > 256) throw Error(ErrorKind::kIo, "PKCS#11 key has an oversized CKA_ID");
  std::vector<uint8_t> id(attr.value_len);
  attr.value = id.data();
  Check(functions_->C_GetAttributeValue(session_, key, &attr, 1), "C_GetAttributeValue");
  id.resize(attr.value_len);
  return id;
}

Pkcs11Token::Handle Pkcs11Token::CreateAesKey(const std::string& label,
                                              std::span<const uint8_t> id) {
  ck_object_class_t klass = CKO_SECRET_KEY;
  ck_key_type_t type = CKK_AES;
  unsigned long length = 32;
  unsigned char yes = 1, no = 0;
  struct ck_attribute tmpl[] = {
      {CKA_CLASS, &klass, sizeof klass},
      {CKA_KEY_TYPE, &type, sizeof type},
      {CKA_VALUE_LEN, &length, sizeof length},
      {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
      {CKA_ID, const_cast<uint8_t*>(id.data()), id.size()},
      {CKA_TOKEN, &yes, 1},
      {CKA_PRIVATE, &yes, 1},
      {CKA_SENSITIVE, &yes, 1},
      {CKA_EXTRACTABLE, &no, 1},
      {CKA_ENCRYPT, &yes, 1},
      {CKA_DECRYPT, &yes, 1},
      {CKA_SIGN, &no, 1},
      {CKA_VERIFY, &no, 1},
      {CKA_WRAP, &no, 1},
      {CKA_UNWRAP, &no, 1},
  };
  struct ck_mechanism mech {
    CKM_AES_KEY_GEN, nullptr, 0
  };
  ck_object_handle_t key = 0;
  Check(functions_->C_GenerateKey(session_, &mech, tmpl, sizeof tmpl / sizeof tmpl[0], &key),
        "creating AES key \"" + label + "\" (C_GenerateKey)");
  return key;
}

bool Pkcs11Token::DestroyKey(Handle key) {
  ck_rv_t rv = functions_->C_DestroyObject(session_, key);
  if (rv == CKR_OBJECT_HANDLE_INVALID) return false;
  Check(rv, "destroying a key (C_DestroyObject)");
  return true;
}

namespace {

struct ck_gcm_params GcmParams(std::span<const uint8_t> iv, std::span<const uint8_t> aad) {
  struct ck_gcm_params p {};
  p.iv_ptr = const_cast<unsigned char*>(iv.data());
  p.iv_len = iv.size();
  p.iv_bits = iv.size() * 8;
  p.aad_ptr = const_cast<unsigned char*>(aad.data());
  p.aad_len = aad.size();
  p.tag_bits = 128;
  return p;
}

}  // namespace

std::vector<uint8_t> Pkcs11Token::EncryptGcm(Handle key, std::span<const uint8_t> iv,
                                             std::span<const uint8_t> aad,
                                             std::span<const uint8_t> plain) {
  struct ck_gcm_params params = GcmParams(iv, aad);
  struct ck_mechanism mech {
    CKM_AES_GCM, &params, sizeof params
  };
  Check(functions_->C_EncryptInit(session_, &mech, key), "C_EncryptInit (CKM_AES_GCM)");
  std::vector<uint8_t> out(plain.size() + 16);
  unsigned long len = out.size();
  Check(functions_->C_Encrypt(session_, const_cast<unsigned char*>(plain.data()), plain.size(),
                              out.data(), &len),
        "C_Encrypt (CKM_AES_GCM)");
  if (len != out.size()) Check(CKR_GENERAL_ERROR, "C_Encrypt (unexpected length)");
  return out;
}

SecureBytes Pkcs11Token::DecryptGcm(Handle key, std::span<const uint8_t> iv,
                                    std::span<const uint8_t> aad, std::span<const uint8_t> sealed) {
  struct ck_gcm_params params = GcmParams(iv, aad);
  struct ck_mechanism mech {
    CKM_AES_GCM, &params, sizeof params
  };
  Check(functions_->C_DecryptInit(session_, &mech, key), "C_DecryptInit (CKM_AES_GCM)");
  SecureBytes out(sealed.size());
  unsigned long len = out.size();
  ck_rv_t rv = functions_->C_Decrypt(session_, const_cast<unsigned char*>(sealed.data()),
                                     sealed.size(), out.data(), &len);
  if (rv != CKR_OK || sealed.size() < 16 || len != sealed.size() - 16) {
    throw Error(ErrorKind::kWrongKey,
                "PKCS#11 token \"" + token_label_ +
                    "\" cannot decrypt this volume's master key with that key (" +
                    Pkcs11ReturnName(rv) + "): another key with the same label?");
  }
  return SecureBytes::Copy(out.span().first(len));
}

}  // namespace envelopefs
