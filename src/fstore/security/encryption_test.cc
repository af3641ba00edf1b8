#include "fstore/security/encryption.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

constexpr std::string_view kKeyA = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
constexpr std::string_view kKeyB = "ffeeddccbbaa99887766554433221100FFEEDDCCBBAA99887766554433221100";

std::shared_ptr<const Cipher> MakeCipher(std::string_view hex) {
  auto cipher = Cipher::FromHex(hex);
  EXPECT_TRUE(cipher.ok()) << cipher.status().ToString();
  return *cipher;
}

TEST(CipherTest, RoundTripHidesPlaintext) {
  auto cipher = MakeCipher(kKeyA);
  std::string plaintext = "PLAINTEXT-MARKER-42 feature value";
  ASSERT_OK_AND_ASSIGN(auto sealed, cipher->Seal(plaintext, "fs/entity"));
  EXPECT_EQ(sealed.size(), plaintext.size() + Cipher::kOverhead);
  EXPECT_TRUE(Cipher::LooksSealed(sealed));
  EXPECT_EQ(sealed.find("PLAINTEXT"), std::string::npos);
  ASSERT_OK_AND_ASSIGN(auto opened, cipher->Open(sealed, "fs/entity"));
  EXPECT_EQ(opened, plaintext);
}

TEST(CipherTest, NoncesDifferBetweenSeals) {
  auto cipher = MakeCipher(kKeyA);
  ASSERT_OK_AND_ASSIGN(auto a, cipher->Seal("same"));
  ASSERT_OK_AND_ASSIGN(auto b, cipher->Seal("same"));
  EXPECT_NE(a, b);
}

TEST(CipherTest, EmptyPlaintext) {
  auto cipher = MakeCipher(kKeyA);
  ASSERT_OK_AND_ASSIGN(auto sealed, cipher->Seal(""));
  EXPECT_EQ(sealed.size(), Cipher::kOverhead);
  ASSERT_OK_AND_ASSIGN(auto opened, cipher->Open(sealed));
  EXPECT_EQ(opened, "");
}

TEST(CipherTest, BinaryPlaintext) {
  auto cipher = MakeCipher(kKeyA);
  std::string plaintext("a\0b\xff", 4);
  ASSERT_OK_AND_ASSIGN(auto sealed, cipher->Seal(plaintext));
  ASSERT_OK_AND_ASSIGN(auto opened, cipher->Open(sealed));
  EXPECT_EQ(opened, plaintext);
}

TEST(CipherTest, AssociatedDataMismatchFailsAuthentication) {
  auto cipher = MakeCipher(kKeyA);
  ASSERT_OK_AND_ASSIGN(auto sealed, cipher->Seal("value", "feature_set_a"));
  auto opened = cipher->Open(sealed, "feature_set_b");
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find("authentication failed"), std::string::npos)
      << opened.status().ToString();
  EXPECT_FALSE(cipher->Open(sealed).ok());
}

TEST(CipherTest, WrongKeySaysDifferentKey) {
  auto a = MakeCipher(kKeyA);
  auto b = MakeCipher(kKeyB);
  ASSERT_OK_AND_ASSIGN(auto sealed, a->Seal("value"));
  auto opened = b->Open(sealed);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(ErrorCodeOf(opened.status()), ErrorCode::kInternal);
  EXPECT_NE(opened.status().message().find("sealed with a different encryption key"), std::string::npos)
      << opened.status().ToString();
}

TEST(CipherTest, FlippedByteFailsAuthentication) {
  auto cipher = MakeCipher(kKeyA);
  ASSERT_OK_AND_ASSIGN(auto sealed, cipher->Seal("some feature value"));
  // Every byte after the key id: nonce, ciphertext and tag.
  for (size_t i = 12; i < sealed.size(); ++i) {
    std::string changed = sealed;
    changed[i] ^= 0x01;
    auto opened = cipher->Open(changed);
    ASSERT_FALSE(opened.ok()) << "byte " << i;
    EXPECT_NE(opened.status().message().find("authentication failed"), std::string::npos)
        << opened.status().ToString();
  }
}

TEST(CipherTest, TruncatedFails) {
  auto cipher = MakeCipher(kKeyA);
  ASSERT_OK_AND_ASSIGN(auto sealed, cipher->Seal("some feature value"));
  auto shorter = cipher->Open(std::string_view(sealed).substr(0, Cipher::kOverhead - 1));
  ASSERT_FALSE(shorter.ok());
  EXPECT_NE(shorter.status().message().find("truncated"), std::string::npos);
  auto cut_tag = cipher->Open(std::string_view(sealed).substr(0, sealed.size() - 1));
  ASSERT_FALSE(cut_tag.ok());
  EXPECT_NE(cut_tag.status().message().find("authentication failed"), std::string::npos);
}

TEST(CipherTest, NotSealed) {
  auto cipher = MakeCipher(kKeyA);
  EXPECT_FALSE(Cipher::LooksSealed("plain value"));
  auto opened = cipher->Open("plain value");
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find("not an encrypted value"), std::string::npos);
}

TEST(CipherTest, KeyIdIsStableAndDistinct) {
  auto a1 = MakeCipher(kKeyA);
  auto a2 = MakeCipher(kKeyA);
  auto b = MakeCipher(kKeyB);
  EXPECT_EQ(a1->KeyId().size(), 16u);
  EXPECT_EQ(a1->KeyId(), a2->KeyId());
  EXPECT_NE(a1->KeyId(), b->KeyId());
  EXPECT_EQ(a1->KeyId().find("0001020304"), std::string::npos);
}

TEST(CipherTest, BadHexNamesFieldWithoutEchoingKey) {
  std::string almost(kKeyA);
  almost[10] = 'z';
  auto bad = Cipher::FromHex(almost);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(ErrorCodeOf(bad.status()), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ErrorOf(bad.status())->field(), "FSTORE_ENCRYPTION_KEY");
  EXPECT_EQ(bad.status().message().find(almost), std::string::npos);
  EXPECT_EQ(bad.status().message().find("0001020304"), std::string::npos);

  auto short_key = Cipher::FromHex(kKeyA.substr(0, 62));
  ASSERT_FALSE(short_key.ok());
  EXPECT_NE(short_key.status().message().find("64 hexadecimal characters"), std::string::npos);
}

TEST(CipherTest, FromConfig) {
  ASSERT_OK_AND_ASSIGN(auto none, Cipher::FromConfig("", ""));
  EXPECT_EQ(none, nullptr);

  ASSERT_OK_AND_ASSIGN(auto from_hex, Cipher::FromConfig(std::string(kKeyA), ""));
  ASSERT_NE(from_hex, nullptr);
  EXPECT_EQ(from_hex->KeyId(), MakeCipher(kKeyA)->KeyId());

  auto dir = std::filesystem::temp_directory_path() / ("fstore_key_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "key").string();
  {
    std::ofstream out(path);
    out << "  " << kKeyA << "  \nsecond line ignored\n";
  }
  ASSERT_OK_AND_ASSIGN(auto from_file, Cipher::FromConfig("", path));
  ASSERT_NE(from_file, nullptr);
  EXPECT_EQ(from_file->KeyId(), from_hex->KeyId());

  {
    std::ofstream out(path);
    out << "not a key\n";
  }
  auto bad_file = Cipher::FromConfig("", path);
  ASSERT_FALSE(bad_file.ok());
  EXPECT_EQ(ErrorOf(bad_file.status())->field(), "FSTORE_ENCRYPTION_KEY_FILE");
  EXPECT_EQ(bad_file.status().message().find("not a key"), std::string::npos);

  auto missing = Cipher::FromConfig("", (dir / "absent").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(ErrorOf(missing.status())->field(), "FSTORE_ENCRYPTION_KEY_FILE");
  EXPECT_NE(missing.status().message().find("cannot read"), std::string::npos);

  auto both = Cipher::FromConfig(std::string(kKeyA), path);
  EXPECT_FALSE(both.ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fstore
