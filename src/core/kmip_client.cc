// KmipClient — see kmip_client.h. Tags and enumerations are KMIP 1.4's (OASIS, section 9.1.3).
#include "envelopefs/kmip_client.h"

#include <algorithm>

#include "envelopefs/encoding.h"
#include "envelopefs/error.h"

namespace envelopefs {
namespace {

// Tags.
constexpr uint32_t kAttribute = 0x420008;
constexpr uint32_t kAttributeName = 0x42000A;
constexpr uint32_t kAttributeValue = 0x42000B;
constexpr uint32_t kAuthTag = 0x4200FF;
constexpr uint32_t kAad = 0x4200FE;
constexpr uint32_t kBatchCount = 0x42000D;
constexpr uint32_t kBatchItem = 0x42000F;
constexpr uint32_t kBlockCipherMode = 0x420011;
constexpr uint32_t kCryptographicAlgorithm = 0x420028;
constexpr uint32_t kCryptographicParameters = 0x42002B;
constexpr uint32_t kData = 0x4200C2;
constexpr uint32_t kIvCounterNonce = 0x42003D;
constexpr uint32_t kNameType = 0x420054;
constexpr uint32_t kNameValue = 0x420055;
constexpr uint32_t kObjectType = 0x420057;
constexpr uint32_t kOperation = 0x42005C;
constexpr uint32_t kProtocolVersion = 0x420069;
constexpr uint32_t kProtocolVersionMajor = 0x42006A;
constexpr uint32_t kProtocolVersionMinor = 0x42006B;
constexpr uint32_t kRequestHeader = 0x420077;
constexpr uint32_t kRequestMessage = 0x420078;
constexpr uint32_t kRequestPayload = 0x420079;
constexpr uint32_t kResponseMessage = 0x42007B;
constexpr uint32_t kResponsePayload = 0x42007C;
constexpr uint32_t kResultMessage = 0x42007D;
constexpr uint32_t kResultReason = 0x42007E;
constexpr uint32_t kResultStatus = 0x42007F;
constexpr uint32_t kRevocationReason = 0x420081;
constexpr uint32_t kRevocationReasonCode = 0x420082;
constexpr uint32_t kTagLength = 0x4200CE;
constexpr uint32_t kTemplateAttribute = 0x420091;
constexpr uint32_t kUniqueIdentifier = 0x420094;

// Enumerations.
constexpr uint32_t kOpCreate = 0x01;
constexpr uint32_t kOpActivate = 0x12;
constexpr uint32_t kOpEncrypt = 0x1F;
constexpr uint32_t kOpDecrypt = 0x20;
constexpr uint32_t kOpRevoke = 0x13;
constexpr uint32_t kOpDestroy = 0x14;
constexpr uint32_t kCessationOfOperation = 0x06;
constexpr uint32_t kSymmetricKey = 0x02;
constexpr uint32_t kAes = 0x03;
constexpr uint32_t kGcm = 0x09;
constexpr uint32_t kUninterpretedText = 0x01;
constexpr int32_t kUsageEncryptDecrypt = 0x04 | 0x08;
// Result reasons that mean "this key is not there or not yours".
constexpr int64_t kItemNotFound = 0x01;
constexpr int64_t kPermissionDenied = 0x0C;
constexpr int64_t kCryptographicFailure = 0x0A;
constexpr int64_t kIllegalOperation = 0x0B;

constexpr size_t kMaxServerText = 160;

TtlvItem Attribute(const std::string& name, TtlvItem value) {
  value.tag = kAttributeValue;
  return TtlvStructure(kAttribute, {TtlvText(kAttributeName, name), std::move(value)});
}

TtlvItem GcmParameters() {
  return TtlvStructure(kCryptographicParameters,
                       {TtlvEnum(kBlockCipherMode, kGcm), TtlvEnum(kCryptographicAlgorithm, kAes),
                        TtlvInteger(kTagLength, static_cast<int32_t>(kKmipGcmTagSize))});
}

[[noreturn]] void Protocol(const std::string& endpoint, const std::string& what) {
  throw Error(ErrorKind::kIo, "KMS " + endpoint + ": unexpected response: " + what);
}

// A child of `parent` with `tag` and `type`, or a protocol error.
const TtlvItem& Need(const std::string& endpoint, const TtlvItem& parent, uint32_t tag,
                     TtlvType type, const char* name) {
  const TtlvItem* item = parent.Find(tag);
  if (item == nullptr || item->type != type) Protocol(endpoint, std::string("no ") + name);
  return *item;
}

// Zeroes every byte string below `item` (a response may hold the master key).
void Wipe(TtlvItem& item) {
  std::fill(item.bytes.begin(), item.bytes.end(), 0);
  for (auto& child : item.children) Wipe(child);
}

}  // namespace

KmipClient::KmipClient(const HostPort& server, const TlsClientOptions& tls) {
  endpoint_ = server.host + ":" + std::to_string(server.port);
  connection_ = TlsConnection::Connect(server, tls);
}

KmipClient::~KmipClient() = default;
KmipClient::KmipClient(KmipClient&&) noexcept = default;

const std::string& KmipClient::protocol() const { return connection_->protocol(); }
const std::string& KmipClient::cipher() const { return connection_->cipher(); }

TtlvItem KmipClient::Call(uint32_t operation, std::vector<TtlvItem> payload, const char* what,
                          std::initializer_list<int64_t> tolerated, int64_t* refused) {
  TtlvItem request = TtlvStructure(
      kRequestMessage,
      {TtlvStructure(kRequestHeader,
                     {TtlvStructure(kProtocolVersion, {TtlvInteger(kProtocolVersionMajor, 1),
                                                       TtlvInteger(kProtocolVersionMinor, 4)}),
                      TtlvInteger(kBatchCount, 1)}),
       TtlvStructure(kBatchItem, {TtlvEnum(kOperation, operation),
                                  TtlvStructure(kRequestPayload, std::move(payload))})});
  std::vector<uint8_t> bytes = EncodeTtlv(request);
  connection_->WriteAll(bytes);
  std::fill(bytes.begin(), bytes.end(), 0);  // may hold the master key
  Wipe(request);

  std::vector<uint8_t> message(kTtlvHeaderSize);
  connection_->ReadExactly(message);
  TtlvItem response;
  try {
    size_t total = TtlvMessageSize(message);
    message.resize(total);
    connection_->ReadExactly(std::span<uint8_t>(message).subspan(kTtlvHeaderSize));
    response = DecodeTtlv(message);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::kFormat) throw;
    throw Error(ErrorKind::kIo, "KMS " + endpoint_ + ": " + e.what());
  }
  std::fill(message.begin(), message.end(), 0);
  if (response.tag != kResponseMessage) Protocol(endpoint_, "not a response message");
  const TtlvItem& item = Need(endpoint_, response, kBatchItem, TtlvType::kStructure, "batch item");
  const TtlvItem& status =
      Need(endpoint_, item, kResultStatus, TtlvType::kEnumeration, "result status");
  if (status.number != 0) {
    const TtlvItem* reason = item.Find(kResultReason);
    const TtlvItem* text = item.Find(kResultMessage);
    std::string said;
    if (text != nullptr && text->type == TtlvType::kTextString) {
      said = EscapeName(text->text().substr(0, kMaxServerText));
    }
    int64_t why = reason != nullptr && reason->type == TtlvType::kEnumeration ? reason->number : 0;
    if (refused != nullptr && why != 0 &&
        std::find(tolerated.begin(), tolerated.end(), why) != tolerated.end()) {
      *refused = why;
      return TtlvStructure(kResponsePayload, {});
    }
    ErrorKind kind = why == kItemNotFound || why == kPermissionDenied ? ErrorKind::kUsage
                     : why == kCryptographicFailure                   ? ErrorKind::kWrongKey
                                                                      : ErrorKind::kIo;
    throw Error(kind, "KMS " + endpoint_ + " refused " + what +
                          (said.empty() ? std::string() : ": " + said));
  }
  const TtlvItem* out = item.Find(kResponsePayload);
  if (out == nullptr) return TtlvStructure(kResponsePayload, {});
  if (out->type != TtlvType::kStructure) Protocol(endpoint_, "payload is not a structure");
  TtlvItem result = *out;
  Wipe(response);
  return result;
}

std::string KmipClient::CreateAesKey(const std::string& name) {
  TtlvItem created =
      Call(kOpCreate,
           {TtlvEnum(kObjectType, kSymmetricKey),
            TtlvStructure(
                kTemplateAttribute,
                {Attribute("Cryptographic Algorithm", TtlvEnum(0, kAes)),
                 Attribute("Cryptographic Length", TtlvInteger(0, 256)),
                 Attribute("Cryptographic Usage Mask", TtlvInteger(0, kUsageEncryptDecrypt)),
                 Attribute("Name", TtlvStructure(0, {TtlvText(kNameValue, name),
                                                     TtlvEnum(kNameType, kUninterpretedText)}))})},
           "Create");
  std::string id =
      Need(endpoint_, created, kUniqueIdentifier, TtlvType::kTextString, "unique identifier")
          .text();
  Call(kOpActivate, {TtlvText(kUniqueIdentifier, id)}, "Activate");
  return id;
}

KmipClient::Sealed KmipClient::EncryptGcm(const std::string& key_id, std::span<const uint8_t> iv,
                                          std::span<const uint8_t> aad,
                                          std::span<const uint8_t> plaintext) {
  TtlvItem out =
      Call(kOpEncrypt,
           {TtlvText(kUniqueIdentifier, key_id), GcmParameters(), TtlvBytes(kData, plaintext),
            TtlvBytes(kIvCounterNonce, iv), TtlvBytes(kAad, aad)},
           "Encrypt");
  Sealed sealed;
  sealed.ciphertext = Need(endpoint_, out, kData, TtlvType::kByteString, "data").bytes;
  const TtlvItem& tag = Need(endpoint_, out, kAuthTag, TtlvType::kByteString, "tag");
  if (sealed.ciphertext.size() != plaintext.size() || tag.bytes.size() != sealed.tag.size()) {
    Protocol(endpoint_, "ciphertext or tag of the wrong size");
  }
  std::copy(tag.bytes.begin(), tag.bytes.end(), sealed.tag.begin());
  return sealed;
}

SecureBytes KmipClient::DecryptGcm(const std::string& key_id, std::span<const uint8_t> iv,
                                   std::span<const uint8_t> aad,
                                   std::span<const uint8_t> ciphertext,
                                   std::span<const uint8_t> tag) {
  TtlvItem out =
      Call(kOpDecrypt,
           {TtlvText(kUniqueIdentifier, key_id), GcmParameters(), TtlvBytes(kData, ciphertext),
            TtlvBytes(kIvCounterNonce, iv), TtlvBytes(kAad, aad), TtlvBytes(kAuthTag, tag)},
           "Decrypt");
  TtlvItem* data = nullptr;
  for (auto& child : out.children) {
    if (child.tag == kData && child.type == TtlvType::kByteString) data = &child;
  }
  if (data == nullptr) Protocol(endpoint_, "no data");
  SecureBytes plain = SecureBytes::Copy(data->bytes);
  std::fill(data->bytes.begin(), data->bytes.end(), 0);
  return plain;
}

KmipClient::Outcome KmipClient::CallOnKey(uint32_t operation, std::vector<TtlvItem> payload,
                                          const std::string& key_id, const char* what,
                                          std::initializer_list<int64_t> tolerated) {
  int64_t refused = 0;
  TtlvItem out = Call(operation, std::move(payload), what, tolerated, &refused);
  if (refused == kItemNotFound) return Outcome::kNotFound;
  if (refused == kIllegalOperation) return Outcome::kNotActive;
  const TtlvItem& id =
      Need(endpoint_, out, kUniqueIdentifier, TtlvType::kTextString, "unique identifier");
  if (id.text() != key_id) Protocol(endpoint_, std::string(what) + " of another key");
  return Outcome::kDone;
}

KmipClient::Outcome KmipClient::Revoke(const std::string& key_id) {
  return CallOnKey(
      kOpRevoke,
      {TtlvText(kUniqueIdentifier, key_id),
       TtlvStructure(kRevocationReason, {TtlvEnum(kRevocationReasonCode, kCessationOfOperation)})},
      key_id, "Revoke", {kItemNotFound, kIllegalOperation});
}

KmipClient::Outcome KmipClient::Destroy(const std::string& key_id) {
  return CallOnKey(kOpDestroy, {TtlvText(kUniqueIdentifier, key_id)}, key_id, "Destroy",
                   {kItemNotFound});
}

}  // namespace envelopefs
