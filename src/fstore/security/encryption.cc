#include "fstore/security/encryption.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "fstore/core/text.h"

namespace fstore {
namespace {

constexpr std::string_view kMagic = "FSE1";
constexpr size_t kKeyIdBytes = 8;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr size_t kHeaderBytes = 4 + kKeyIdBytes + kNonceBytes;

constexpr std::string_view kSpace = " \t\r\n\v\f";

// Frees an EVP_CIPHER_CTX on every return path.
struct ContextDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using Context = std::unique_ptr<EVP_CIPHER_CTX, ContextDeleter>;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

Cipher::Cipher(const std::array<uint8_t, kKeyBytes>& key) : key_(key), key_id_{} {
  // The key id lets Open tell "another key" from "corrupt data" without
  // revealing the key: a domain-separated hash, truncated.
  std::string input = "fstore-key-id";
  input.append(reinterpret_cast<const char*>(key_.data()), key_.size());
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(Bytes(input), input.size(), digest);
  std::memcpy(key_id_.data(), digest, kKeyIdBytes);
  OPENSSL_cleanse(input.data(), input.size());
}

Result<std::shared_ptr<const Cipher>> Cipher::FromHex(std::string_view hex, std::string field) {
  // Never echo the text: it is (or is close to) key material.
  if (hex.size() != 2 * kKeyBytes) {
    return InvalidArgument(field, "must be 64 hexadecimal characters (a 256-bit key); got " +
                                      std::to_string(hex.size()) + " characters");
  }
  std::optional<std::string> bytes = HexDecode(hex);
  if (!bytes) {
    return InvalidArgument(field, "must be 64 hexadecimal characters (a 256-bit key); "
                                  "it contains a character that is not 0-9, a-f or A-F");
  }
  std::array<uint8_t, kKeyBytes> key{};
  std::memcpy(key.data(), bytes->data(), kKeyBytes);
  OPENSSL_cleanse(bytes->data(), bytes->size());
  auto cipher = std::make_shared<const Cipher>(key);
  OPENSSL_cleanse(key.data(), key.size());
  return cipher;
}

Result<std::shared_ptr<const Cipher>> Cipher::FromConfig(const std::string& key_hex,
                                                         const std::string& key_file) {
  if (key_hex.empty() && key_file.empty()) return std::shared_ptr<const Cipher>();
  if (!key_hex.empty() && !key_file.empty()) {
    return InvalidArgument("FSTORE_ENCRYPTION_KEY_FILE",
                           "set either FSTORE_ENCRYPTION_KEY or FSTORE_ENCRYPTION_KEY_FILE, not both");
  }
  if (!key_hex.empty()) return FromHex(Trim(key_hex, kSpace), "FSTORE_ENCRYPTION_KEY");
  std::ifstream in(key_file, std::ios::binary);
  if (!in) {
    return InvalidArgument("FSTORE_ENCRYPTION_KEY_FILE",
                           "cannot read the key file '" + key_file + "': " + std::strerror(errno));
  }
  std::string line;
  std::getline(in, line);
  auto cipher = FromHex(Trim(line, kSpace), "FSTORE_ENCRYPTION_KEY_FILE");
  OPENSSL_cleanse(line.data(), line.size());
  if (!cipher.ok()) {
    return InvalidArgument("FSTORE_ENCRYPTION_KEY_FILE",
                           "the first line of '" + key_file + "' " + ErrorMessageOf(cipher.status()));
  }
  return cipher;
}

Result<std::string> Cipher::Seal(std::string_view plaintext, std::string_view associated_data) const {
  std::string out(kHeaderBytes + plaintext.size() + kTagBytes, '\0');
  std::memcpy(out.data(), kMagic.data(), kMagic.size());
  std::memcpy(out.data() + 4, key_id_.data(), kKeyIdBytes);
  unsigned char* nonce = reinterpret_cast<unsigned char*>(out.data() + 4 + kKeyIdBytes);
  if (RAND_bytes(nonce, kNonceBytes) != 1) return Internal("encryption: no random nonce available");

  Context ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  unsigned char* body = reinterpret_cast<unsigned char*>(out.data() + kHeaderBytes);
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) != 1 ||
      (!associated_data.empty() &&
       EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(associated_data),
                         static_cast<int>(associated_data.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), body, &len, Bytes(plaintext), static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), body + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes,
                          out.data() + kHeaderBytes + plaintext.size()) != 1) {
    return Internal("encryption: AES-256-GCM sealing failed");
  }
  return out;
}

Result<std::string> Cipher::Open(std::string_view sealed, std::string_view associated_data) const {
  if (!LooksSealed(sealed)) {
    return Internal("not an encrypted value (it was written without encryption)");
  }
  if (sealed.size() < kOverhead) return Internal("encrypted value is truncated");
  if (std::memcmp(sealed.data() + 4, key_id_.data(), kKeyIdBytes) != 0) {
    return Internal("the data was sealed with a different encryption key");
  }
  const unsigned char* nonce = Bytes(sealed.substr(4 + kKeyIdBytes, kNonceBytes));
  std::string_view body = sealed.substr(kHeaderBytes, sealed.size() - kOverhead);
  std::string tag(sealed.substr(sealed.size() - kTagBytes));
  std::string out(body.size(), '\0');

  Context ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  unsigned char* dst = reinterpret_cast<unsigned char*>(out.data());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) != 1 ||
      (!associated_data.empty() &&
       EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(associated_data),
                         static_cast<int>(associated_data.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), dst, &len, Bytes(body), static_cast<int>(body.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1) {
    return Internal("encryption: AES-256-GCM opening failed");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), dst + len, &len) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return Internal("authentication failed: the encrypted data is corrupt or was altered");
  }
  return out;
}

bool Cipher::LooksSealed(std::string_view data) { return data.substr(0, 4) == kMagic; }

std::string Cipher::KeyId() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : key_id_) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

}  // namespace fstore
