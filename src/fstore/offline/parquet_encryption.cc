#include "fstore/offline/parquet_encryption.h"

#include <arrow/io/interfaces.h>
#include <arrow/util/base64.h>
#include <arrow/util/secure_string.h>
#include <parquet/arrow/reader.h>
#include <parquet/encryption/crypto_factory.h>
#include <parquet/encryption/encryption.h>
#include <parquet/encryption/kms_client.h>
#include <parquet/encryption/kms_client_factory.h>
#include <parquet/exception.h>
#include <parquet/file_reader.h>
#include <parquet/metadata.h>
#include <parquet/properties.h>

namespace fstore {
namespace {

namespace pe = parquet::encryption;

// The KMS client: wraps data keys (or key encryption keys) with the Cipher.
// Errors are ParquetExceptions: the CryptoFactory's contract.
class CipherKmsClient : public pe::KmsClient {
 public:
  explicit CipherKmsClient(std::shared_ptr<const Cipher> cipher) : cipher_(std::move(cipher)) {}

  std::string WrapKey(const arrow::util::SecureString& key_bytes,
                      const std::string& master_key_identifier) override {
    auto sealed = cipher_->Seal(key_bytes.as_view(), master_key_identifier);
    if (!sealed.ok()) throw parquet::ParquetException(ErrorMessageOf(sealed.status()));
    return arrow::util::base64_encode(*sealed);
  }

  arrow::util::SecureString UnwrapKey(const std::string& wrapped_key,
                                      const std::string& master_key_identifier) override {
    auto decoded = arrow::util::base64_decode(wrapped_key);
    if (!decoded.ok()) throw parquet::ParquetException("a wrapped file key is not base64");
    auto opened = cipher_->Open(*decoded, master_key_identifier);
    if (!opened.ok()) {
      throw parquet::ParquetException("cannot unwrap the file's key: " +
                                      ErrorMessageOf(opened.status()));
    }
    return arrow::util::SecureString(std::move(*opened));
  }

 private:
  std::shared_ptr<const Cipher> cipher_;
};

class CipherKmsClientFactory : public pe::KmsClientFactory {
 public:
  explicit CipherKmsClientFactory(std::shared_ptr<const Cipher> cipher)
      : cipher_(std::move(cipher)) {}
  std::shared_ptr<pe::KmsClient> CreateKmsClient(const pe::KmsConnectionConfig&) override {
    return std::make_shared<CipherKmsClient>(cipher_);
  }

 private:
  std::shared_ptr<const Cipher> cipher_;
};

pe::KmsConnectionConfig KmsConfig() {
  pe::KmsConnectionConfig config;
  config.kms_instance_id = kParquetKmsInstanceId;
  return config;
}

// The Parquet magic at the end of a file: "PAR1" (clear footer) or "PARE"
// (encrypted footer); empty when it cannot be read.
std::string TrailingMagic(arrow::io::RandomAccessFile& in) {
  auto size = in.GetSize();
  if (!size.ok() || *size < 4) return "";
  auto bytes = in.ReadAt(*size - 4, 4);
  if (!bytes.ok()) return "";
  return (*bytes)->ToString();
}

}  // namespace

ParquetEncryption::ParquetEncryption(std::shared_ptr<const Cipher> cipher)
    : cipher_(std::move(cipher)), factory_(std::make_shared<pe::CryptoFactory>()) {
  factory_->RegisterKmsClientFactory(std::make_shared<CipherKmsClientFactory>(cipher_));
}

ParquetEncryption::~ParquetEncryption() = default;

Result<std::shared_ptr<parquet::FileEncryptionProperties>> ParquetEncryption::FileEncryption() const {
  pe::EncryptionConfiguration config(kParquetMasterKeyId);
  // Every column with the footer key: no column is left in clear.
  config.uniform_encryption = true;
  config.data_key_length_bits = 256;
  try {
    return factory_->GetFileEncryptionProperties(KmsConfig(), config);
  } catch (const std::exception& e) {
    return Internal(std::string("Parquet encryption: ") + e.what());
  }
}

Result<std::shared_ptr<parquet::FileDecryptionProperties>> ParquetEncryption::FileDecryption() const {
  try {
    return factory_->GetFileDecryptionProperties(KmsConfig(), pe::DecryptionConfiguration());
  } catch (const std::exception& e) {
    return Internal(std::string("Parquet decryption: ") + e.what());
  }
}

Result<std::unique_ptr<parquet::arrow::FileReader>> OpenParquetFile(
    std::shared_ptr<arrow::io::RandomAccessFile> in, const std::string& path,
    const ParquetEncryption* encryption) {
  parquet::ReaderProperties properties = parquet::default_reader_properties();
  if (encryption != nullptr) {
    ARROW_ASSIGN_OR_RAISE(auto decryption, encryption->FileDecryption());
    properties.file_decryption_properties(std::move(decryption));
  }
  parquet::arrow::FileReaderBuilder builder;
  Status st;
  try {
    st = builder.Open(in, properties);
  } catch (const std::exception& e) {
    st = Status::IOError(e.what());
  }
  if (st.ok()) {
    auto reader = builder.Build();
    if (reader.ok()) {
      // Parquet reads a file in clear even with decryption properties; with
      // a key every file must be encrypted (nothing of ours is in clear).
      // One 4-byte read (the footer's tail is usually still cached).
      if (encryption != nullptr && TrailingMagic(*in) != "PARE") {
        return Internal("offline file " + path +
                        " was written without encryption but an encryption key is configured");
      }
      return reader;
    }
    st = reader.status();
  }
  // Say why, in words: Parquet's own messages for these cases are cryptic.
  std::string magic = TrailingMagic(*in);
  if (encryption == nullptr && magic == "PARE") {
    return Internal("offline file " + path +
                    " is encrypted and no encryption key is configured (set "
                    "FSTORE_ENCRYPTION_KEY or FSTORE_ENCRYPTION_KEY_FILE)");
  }
  if (encryption != nullptr && magic == "PAR1") {
    return Internal("offline file " + path +
                    " was written without encryption but an encryption key is configured");
  }
  std::string message = st.message();
  if (message.find("sealed with a different encryption key") != std::string::npos) {
    return Internal("offline file " + path +
                    " was sealed with a different encryption key than the one configured");
  }
  if (encryption != nullptr) {
    return Internal("offline file " + path + " cannot be decrypted: " + message);
  }
  // Stored data that does not read is the server's problem, not the
  // request's: Internal, naming the file.
  return Internal("offline file " + path + " is not readable Parquet: " + message);
}

}  // namespace fstore
