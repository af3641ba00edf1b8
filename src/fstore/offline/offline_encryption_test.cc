// Encryption at rest in the offline store: Parquet modular encryption of
// every data file, clear errors for missing, wrong or unexpected keys, and
// the start-up key check.

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <arrow/api.h>
#include <arrow/filesystem/api.h>
#include <gtest/gtest.h>

#include "fstore/offline/offline_store.h"
#include "fstore/offline/parquet_encryption.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;

const std::string kMarker = "PLAINTEXT-MARKER-OFFLINE-7f3a";
constexpr double kNumber = 1234.5678125;

std::shared_ptr<const Cipher> TestCipher(char digit = '7') {
  return *Cipher::FromHex(std::string(64, digit));
}

std::shared_ptr<arrow::DataType> Ts() { return arrow::timestamp(arrow::TimeUnit::MICRO, "UTC"); }

TimestampMicros Jan1() { return *ParseTimestamp("2024-01-01"); }

// user_id, event_timestamp, created_timestamp, secret (utf8), amount (double).
std::shared_ptr<arrow::Table> Rows() {
  arrow::Int64Builder keys;
  arrow::TimestampBuilder events(Ts(), arrow::default_memory_pool());
  arrow::TimestampBuilder created(Ts(), arrow::default_memory_pool());
  arrow::StringBuilder secret;
  arrow::DoubleBuilder amount;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(keys.Append(i).ok());
    EXPECT_TRUE(events.Append(Jan1() + i).ok());
    EXPECT_TRUE(created.Append(Jan1()).ok());
    EXPECT_TRUE(secret.Append(kMarker + "-" + std::to_string(i)).ok());
    EXPECT_TRUE(amount.Append(kNumber + i).ok());
  }
  auto schema = arrow::schema({arrow::field("user_id", arrow::int64()),
                               arrow::field("event_timestamp", Ts()),
                               arrow::field("created_timestamp", Ts()),
                               arrow::field("secret", arrow::utf8()),
                               arrow::field("amount", arrow::float64())});
  return arrow::Table::Make(schema, {keys.Finish().ValueOrDie(), events.Finish().ValueOrDie(),
                                     created.Finish().ValueOrDie(), secret.Finish().ValueOrDie(),
                                     amount.Finish().ValueOrDie()});
}

class OfflineEncryptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    dir_ = fs::temp_directory_path() /
           ("fstore_offline_enc_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<OfflineStore> Store(std::shared_ptr<const Cipher> cipher) {
    return OfflineStore::Make(std::make_shared<arrow::fs::LocalFileSystem>(), dir_.string(),
                              std::move(cipher))
        .ValueOrDie();
  }

  Status Write(OfflineStore& store) {
    return store.ReplaceRange("fs", 1, {"user_id"}, Jan1(), Jan1() + kMicrosPerDay, Rows(), "job1")
        .status();
  }

  std::string AllBytes() const {
    std::string all;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    return all;
  }

  std::vector<fs::path> ParquetFiles() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_)) {
      if (e.path().extension() == ".parquet") out.push_back(e.path());
    }
    return out;
  }

  fs::path dir_;
};

std::string LittleEndian(double d) {
  std::string bytes(sizeof d, '\0');
  std::memcpy(bytes.data(), &d, sizeof d);
  return bytes;
}

TEST_F(OfflineEncryptionTest, RoundTripLeavesNoPlaintextOnDisk) {
  auto store = Store(TestCipher());
  ASSERT_OK(Write(*store));
  // Rewriting the day reads the old generation back (decrypts) and merges.
  ASSERT_OK(Write(*store));
  ASSERT_OK_AND_ASSIGN(auto table, store->Read("fs", 1, Jan1(), Jan1() + kMicrosPerDay));
  ASSERT_EQ(table->num_rows(), 3);
  EXPECT_EQ(table->GetColumnByName("secret")->GetScalar(1).ValueOrDie()->ToString(), kMarker + "-1");
  EXPECT_EQ(table->GetColumnByName("amount")->GetScalar(2).ValueOrDie()->ToString(),
            arrow::DoubleScalar(kNumber + 2).ToString());
  ASSERT_OK_AND_ASSIGN(auto scan, store->Scan("fs", 1, Jan1(), Jan1() + kMicrosPerDay, {"secret"}));
  ASSERT_OK_AND_ASSIGN(auto scanned, scan->ToTable());
  EXPECT_EQ(scanned->num_rows(), 3);

  auto files = ParquetFiles();
  ASSERT_EQ(files.size(), 1u);
  std::string bytes = AllBytes();
  EXPECT_EQ(bytes.find("PLAINTEXT-MARKER"), std::string::npos);
  EXPECT_EQ(bytes.find(LittleEndian(kNumber)), std::string::npos);
  // An encrypted footer: the file ends with "PARE", not "PAR1".
  std::ifstream in(files[0], std::ios::binary);
  std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(file.substr(file.size() - 4), "PARE");
}

TEST_F(OfflineEncryptionTest, WithoutEncryptionTheMarkersAreFound) {
  auto store = Store(nullptr);
  ASSERT_OK(Write(*store));
  std::string bytes = AllBytes();
  EXPECT_NE(bytes.find("PLAINTEXT-MARKER"), std::string::npos);
  EXPECT_NE(bytes.find(LittleEndian(kNumber)), std::string::npos);
}

TEST_F(OfflineEncryptionTest, MissingWrongOrUnexpectedKeyFailsClearly) {
  ASSERT_OK(Write(*Store(TestCipher())));
  auto end = Jan1() + kMicrosPerDay;

  auto without = Store(nullptr)->Read("fs", 1, Jan1(), end);
  ASSERT_FALSE(without.ok());
  EXPECT_NE(without.status().message().find("is encrypted and no encryption key is configured"),
            std::string::npos)
      << without.status().ToString();

  auto wrong = Store(TestCipher('8'))->Read("fs", 1, Jan1(), end);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("sealed with a different encryption key"), std::string::npos)
      << wrong.status().ToString();

  // A rewrite of part of the day with the wrong key reads the rest of the
  // day first: it fails, and the data is not replaced.
  auto rewrite = Store(TestCipher('8'))
                     ->ReplaceRange("fs", 1, {"user_id"}, Jan1(), Jan1() + 1, Rows()->Slice(0, 1), "job2")
                     .status();
  ASSERT_FALSE(rewrite.ok());
  EXPECT_NE(rewrite.message().find("different encryption key"), std::string::npos) << rewrite.ToString();

  fs::remove_all(dir_);
  fs::create_directories(dir_);
  ASSERT_OK(Write(*Store(nullptr)));
  auto unexpected = Store(TestCipher())->Read("fs", 1, Jan1(), end);
  ASSERT_FALSE(unexpected.ok());
  EXPECT_NE(unexpected.status().message().find("written without encryption"), std::string::npos)
      << unexpected.status().ToString();
}

TEST_F(OfflineEncryptionTest, KeyCheckFileStopsAStartWithoutOrWithAnotherKey) {
  ASSERT_OK(Store(nullptr)->CheckEncryptionKey());  // nothing to check, nothing written
  EXPECT_FALSE(fs::exists(dir_ / "_encryption_key_check"));
  ASSERT_OK(Store(TestCipher())->CheckEncryptionKey());  // first start with a key: written
  ASSERT_TRUE(fs::exists(dir_ / "_encryption_key_check"));
  ASSERT_OK(Store(TestCipher())->CheckEncryptionKey());  // the same key: OK

  Status without = Store(nullptr)->CheckEncryptionKey();
  ASSERT_FALSE(without.ok());
  EXPECT_EQ(ErrorCodeOf(without), ErrorCode::kInvalidArgument);
  EXPECT_NE(without.message().find("no encryption key is configured"), std::string::npos)
      << without.ToString();

  Status wrong = Store(TestCipher('8'))->CheckEncryptionKey();
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.message().find("is not the key this store was encrypted with"), std::string::npos)
      << wrong.ToString();
  EXPECT_NE(wrong.message().find("sealed with a different encryption key"), std::string::npos);
}

TEST_F(OfflineEncryptionTest, KeyOnAStoreWithClearDataIsRefused) {
  ASSERT_OK(Write(*Store(nullptr)));
  Status refused = Store(TestCipher())->CheckEncryptionKey();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorCodeOf(refused), ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("already holds data written without encryption"),
            std::string::npos)
      << refused.ToString();
  EXPECT_FALSE(fs::exists(dir_ / "_encryption_key_check"));
  ASSERT_OK(Store(nullptr)->CheckEncryptionKey());  // still fine without a key
}

}  // namespace
}  // namespace fstore
