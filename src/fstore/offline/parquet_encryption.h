#pragma once

// Parquet modular encryption for the Parquet files the store writes (offline
// store partitions, batch serving outputs), under the store's master key
// (security/encryption.h).
//
// Files are written through parquet::encryption::CryptoFactory: every file
// gets fresh data keys (AES-GCM, encrypted footer, every column encrypted
// with the footer key); the data keys are wrapped (double wrapping: by key
// encryption keys, which are wrapped in turn) by an in-process KMS client
// whose "master key" is our Cipher. The wrapped keys live in the footer's key
// metadata (internal key material), so a file is self-describing: any Parquet
// implementation with the same KMS client can read it. The KMS client's
// wrapped key is base64(Cipher::Seal(key, associated data = the master key
// identifier "fstore-master-key")); python/src/fstore/encryption.py is the
// same client for pyarrow.parquet.encryption.
//
// Reading: with a key, a file sealed with another key fails with "sealed with
// a different encryption key", a file written without encryption fails
// saying so; without a key an encrypted file fails saying a key is needed.
// Never garbage.

#include <memory>
#include <string>

#include <arrow/io/type_fwd.h>

#include "fstore/core/status.h"
#include "fstore/security/encryption.h"

namespace parquet {
class FileEncryptionProperties;
class FileDecryptionProperties;
class ReaderProperties;
namespace arrow {
class FileReader;
}
namespace encryption {
class CryptoFactory;
}
}  // namespace parquet

namespace fstore {

/// The KMS instance id and master key identifier written into key material.
inline constexpr char kParquetKmsInstanceId[] = "fstore";
inline constexpr char kParquetMasterKeyId[] = "fstore-master-key";

class ParquetEncryption {
 public:
  explicit ParquetEncryption(std::shared_ptr<const Cipher> cipher);
  ~ParquetEncryption();

  /// Properties for writing one file (fresh data keys each call).
  Result<std::shared_ptr<parquet::FileEncryptionProperties>> FileEncryption() const;
  /// Properties for reading one file (a new object per file).
  Result<std::shared_ptr<parquet::FileDecryptionProperties>> FileDecryption() const;

  const std::shared_ptr<const Cipher>& cipher() const { return cipher_; }

 private:
  std::shared_ptr<const Cipher> cipher_;
  std::shared_ptr<parquet::encryption::CryptoFactory> factory_;
};

/// Opens a Parquet file for reading with `encryption`'s keys (null: no
/// encryption). `path` names the file in errors. Errors say what is wrong:
/// encrypted without a key configured, written without encryption with a
/// key configured, sealed with a different key, corrupt.
Result<std::unique_ptr<parquet::arrow::FileReader>> OpenParquetFile(
    std::shared_ptr<arrow::io::RandomAccessFile> in, const std::string& path,
    const ParquetEncryption* encryption);

}  // namespace fstore
