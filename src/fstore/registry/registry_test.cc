// RegistryFromUri: which backend a URI picks, and how a sqlite URI becomes a path.

#include "fstore/registry/registry.h"

#include <filesystem>

#include "fstore/core/ids.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;

std::string FieldOf(const Status& status) {
  const ErrorDetail* detail = ErrorOf(status);
  return detail != nullptr ? detail->field() : "<no detail>";
}

class RegistryFromUriTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fstore-registry-uri-" + NewUuid());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

TEST_F(RegistryFromUriTest, AbsoluteSqlitePathCreatesMissingDirectories) {
  fs::path db = dir_ / "nested" / "deeper" / "registry.db";
  ASSERT_OK_AND_ASSIGN(auto registry, RegistryFromUri("sqlite://" + db.string()));
  ASSERT_OK(registry->Migrate());
  ASSERT_OK(registry->Ping());
  ASSERT_OK(registry->Close());
  EXPECT_TRUE(fs::exists(db));
}

TEST_F(RegistryFromUriTest, RelativeSqlitePathIsRelativeToTheWorkingDirectory) {
  fs::path previous = fs::current_path();
  fs::current_path(dir_);
  auto registry = RegistryFromUri("sqlite://data/registry.db");
  fs::current_path(previous);
  ASSERT_OK(registry.status());
  ASSERT_OK((*registry)->Migrate());
  ASSERT_OK((*registry)->Close());
  EXPECT_TRUE(fs::exists(dir_ / "data" / "registry.db"));
}

TEST_F(RegistryFromUriTest, InMemorySqlite) {
  for (const char* uri : {"sqlite::memory:", "sqlite://:memory:"}) {
    ASSERT_OK_AND_ASSIGN(auto registry, RegistryFromUri(uri));
    ASSERT_OK_AND_ASSIGN(int version, registry->Migrate());
    EXPECT_GE(version, 1);
  }
}

// Both schemes reach the PostgreSQL backend, which connects at once: nothing
// listens on port 1, so the answer is Unavailable (a real server's tests are
// in postgres/postgres_registry_test.cc). No message repeats the password.
TEST_F(RegistryFromUriTest, PostgresUrlsOpenThePostgresBackend) {
  for (const char* uri : {"postgresql://u:s3cret@127.0.0.1:1/db", "postgres://u:s3cret@127.0.0.1:1/db"}) {
    auto registry = RegistryFromUri(uri);
    ASSERT_FALSE(registry.ok()) << uri;
    EXPECT_EQ(ErrorCodeOf(registry.status()), ErrorCode::kUnavailable) << registry.status().ToString();
    std::string message = ErrorMessageOf(registry.status());
    EXPECT_NE(message.find("127.0.0.1"), std::string::npos) << message;
    EXPECT_EQ(message.find("s3cret"), std::string::npos) << "leaks the password: " << message;
  }
  auto malformed = RegistryFromUri("postgresql://u:s3cret@[::1/db");
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(ErrorCodeOf(malformed.status()), ErrorCode::kInvalidArgument);
  EXPECT_EQ(FieldOf(malformed.status()), "DATABASE_URL");
  EXPECT_EQ(ErrorMessageOf(malformed.status()).find("s3cret"), std::string::npos)
      << "leaks the password: " << ErrorMessageOf(malformed.status());
}

TEST_F(RegistryFromUriTest, OtherSchemesAreInvalidArgumentNamingTheScheme) {
  auto registry = RegistryFromUri("mysql://root:secret@localhost/db");
  ASSERT_FALSE(registry.ok());
  EXPECT_EQ(ErrorCodeOf(registry.status()), ErrorCode::kInvalidArgument);
  std::string message = ErrorMessageOf(registry.status());
  EXPECT_NE(message.find("'mysql'"), std::string::npos) << message;
  EXPECT_EQ(message.find("secret"), std::string::npos) << "leaks credentials: " << message;

  for (const char* uri : {"", "registry.db", "sqlite://", "sqlite:registry.db", "sqlite:///tmp/"}) {
    auto bad = RegistryFromUri(uri);
    ASSERT_FALSE(bad.ok()) << uri;
    EXPECT_EQ(ErrorCodeOf(bad.status()), ErrorCode::kInvalidArgument) << uri;
  }
}

}  // namespace
}  // namespace fstore
