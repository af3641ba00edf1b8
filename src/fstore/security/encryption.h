#pragma once

// Encryption at rest (issue #7): one 256-bit key (FSTORE_ENCRYPTION_KEY, 64
// hex characters, or FSTORE_ENCRYPTION_KEY_FILE) protects what the store
// writes: offline Parquet files through Parquet modular encryption, online
// values and sensitive registry bodies with AES-256-GCM (OpenSSL).
//
// A sealed value is: magic "FSE1" | key id (8 bytes: the first 8 bytes of
// SHA-256("fstore-key-id" || key)) | 12-byte random nonce | ciphertext |
// 16-byte GCM tag. Opening with another key fails with a message saying the
// data was sealed with a different key (naming neither key); a changed byte
// fails authentication: never garbage.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fstore/core/status.h"

namespace fstore {

class Cipher {
 public:
  static constexpr size_t kKeyBytes = 32;
  /// Bytes a sealed value adds to its plaintext.
  static constexpr size_t kOverhead = 4 + 8 + 12 + 16;

  /// A cipher over the key the 64 hex characters give; InvalidArgument
  /// (field `field`) otherwise, without echoing the text.
  static Result<std::shared_ptr<const Cipher>> FromHex(std::string_view hex,
                                                       std::string field = "FSTORE_ENCRYPTION_KEY");
  /// From the configuration: the hex key, or the first line of the key file
  /// (surrounding whitespace ignored). Null (no encryption) when both are
  /// empty. Errors name FSTORE_ENCRYPTION_KEY_FILE for an unreadable or bad file
  /// and for both being set.
  static Result<std::shared_ptr<const Cipher>> FromConfig(const std::string& key_hex,
                                                          const std::string& key_file);

  /// Seals `plaintext`; `associated_data` is authenticated, not stored (the
  /// same must be given to Open).
  Result<std::string> Seal(std::string_view plaintext, std::string_view associated_data = {}) const;
  /// Opens what Seal made. InvalidArgument-free: errors are Internal with a
  /// clear message ("sealed with a different encryption key", "authentication
  /// failed: the data is corrupt", "not an encrypted value").
  Result<std::string> Open(std::string_view sealed, std::string_view associated_data = {}) const;
  /// True when `data` starts like a sealed value (magic).
  static bool LooksSealed(std::string_view data);

  const std::array<uint8_t, kKeyBytes>& key() const { return key_; }
  /// 16 hex characters identifying the key (not revealing it).
  std::string KeyId() const;

  explicit Cipher(const std::array<uint8_t, kKeyBytes>& key);

 private:
  std::array<uint8_t, kKeyBytes> key_;
  std::array<uint8_t, 8> key_id_;
};

}  // namespace fstore
