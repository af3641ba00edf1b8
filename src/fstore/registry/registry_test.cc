// RegistryFromUri: which backend a URI picks, and how a sqlite URI becomes a path.

#include "fstore/registry/registry.h"

#include <filesystem>

#include "fstore/core/ids.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;

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

TEST_F(RegistryFromUriTest, PostgresIsNotImplementedYet) {
  for (const char* uri : {"postgresql://u:p@localhost:5432/db", "postgres://localhost/db"}) {
    auto registry = RegistryFromUri(uri);
    ASSERT_FALSE(registry.ok());
    EXPECT_EQ(ErrorCodeOf(registry.status()), ErrorCode::kNotImplemented);
    EXPECT_EQ(ErrorMessageOf(registry.status()),
              "the PostgreSQL registry backend is not built yet");
  }
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
