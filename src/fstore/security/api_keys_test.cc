#include "fstore/security/api_keys.h"

#include <sqlite3.h>

#include <barrier>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "fstore/core/ids.h"
#include "fstore/security/audit_log.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

TEST(MakeApiKey, SecretCarriesTheIdAndIsStoredOnlyAsASaltedHash) {
  ASSERT_OK_AND_ASSIGN(NewApiKey key, MakeApiKey(Role::kWriter, {"a", "b"}, "ci"));
  // fsk_<16 hex>_<43 base64url>
  ASSERT_EQ(key.secret.size(), 4u + 16 + 1 + 43);
  EXPECT_TRUE(key.secret.starts_with("fsk_"));
  EXPECT_EQ(key.record.id, "key_" + key.secret.substr(4, 16));
  EXPECT_EQ(ApiKeyIdOf(key.secret), key.record.id);
  EXPECT_EQ(key.record.role, "writer");
  EXPECT_EQ(key.record.feature_sets, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(key.record.name, "ci");
  EXPECT_EQ(key.record.salt.size(), 32u);  // 16 bytes, hex
  EXPECT_EQ(key.record.hash.size(), 64u);  // SHA-256, hex
  EXPECT_EQ(key.record.hash, HashApiKeySecret(key.record.salt, key.secret));
  // Nothing stored holds the secret or its random part.
  const std::string random_part = key.secret.substr(21);
  for (const std::string* field : {&key.record.id, &key.record.salt, &key.record.hash}) {
    EXPECT_EQ(field->find(random_part), std::string::npos);
  }
}

TEST(MakeApiKey, TwoKeysDifferInIdSecretAndSalt) {
  ASSERT_OK_AND_ASSIGN(NewApiKey a, MakeApiKey(Role::kReader, {}, ""));
  ASSERT_OK_AND_ASSIGN(NewApiKey b, MakeApiKey(Role::kReader, {}, ""));
  EXPECT_NE(a.record.id, b.record.id);
  EXPECT_NE(a.secret, b.secret);
  EXPECT_NE(a.record.salt, b.record.salt);
}

TEST(MakeApiKey, RefusesEmptyAndRepeatedFeatureSets) {
  auto empty = MakeApiKey(Role::kReader, {"a", ""}, "");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(ErrorOf(empty.status())->field(), "feature_sets[1]");
  auto twice = MakeApiKey(Role::kReader, {"a", "a"}, "");
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(ErrorOf(twice.status())->field(), "feature_sets[1]");
}

TEST(HashApiKeySecret, IsSha256OfSaltBytesThenSecret) {
  // SHA-256("abc"): salt "" and secret "abc".
  EXPECT_EQ(HashApiKeySecret("", "abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // The salt is decoded from hex: 616263 is "abc".
  EXPECT_EQ(HashApiKeySecret("616263", ""), HashApiKeySecret("", "abc"));
  EXPECT_NE(HashApiKeySecret("00", "abc"), HashApiKeySecret("01", "abc"));
}

TEST(VerifyApiKeySecret, AcceptsOnlyTheExactSecret) {
  ASSERT_OK_AND_ASSIGN(NewApiKey key, MakeApiKey(Role::kAdmin, {}, ""));
  EXPECT_TRUE(VerifyApiKeySecret(key.record, key.secret));
  std::string changed = key.secret;
  changed.back() = changed.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(VerifyApiKeySecret(key.record, changed));
  EXPECT_FALSE(VerifyApiKeySecret(key.record, key.secret + "x"));
  EXPECT_FALSE(VerifyApiKeySecret(key.record, ""));
  ApiKeyRecord damaged = key.record;
  damaged.hash.resize(10);
  EXPECT_FALSE(VerifyApiKeySecret(damaged, key.secret));
}

TEST(ApiKeyIdOf, RefusesTextNotShapedLikeASecret) {
  const std::string good = "fsk_0123456789abcdef_" + std::string(43, 'A');
  EXPECT_EQ(ApiKeyIdOf(good), "key_0123456789abcdef");
  EXPECT_EQ(ApiKeyIdOf(""), std::nullopt);
  EXPECT_EQ(ApiKeyIdOf("fsk_0123456789ABCDEF_" + std::string(43, 'A')), std::nullopt);
  EXPECT_EQ(ApiKeyIdOf("fsk_0123456789abcdef-" + std::string(43, 'A')), std::nullopt);
  EXPECT_EQ(ApiKeyIdOf("fsk_0123456789abcdef_" + std::string(42, 'A') + "="), std::nullopt);
  EXPECT_EQ(ApiKeyIdOf("xyz_0123456789abcdef_" + std::string(43, 'A')), std::nullopt);
  EXPECT_EQ(ApiKeyIdOf(good + "A"), std::nullopt);
}

class ApiKeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFromUri("sqlite::memory:"));
    ASSERT_OK(registry_->Migrate().status());
  }
  std::unique_ptr<Registry> registry_;
};

TEST_F(ApiKeyStoreTest, OffWithoutKeysInAutoModeOnWhenRequired) {
  ApiKeyStore auto_mode(registry_.get(), /*required=*/false);
  ASSERT_OK_AND_ASSIGN(bool on, auto_mode.Enabled());
  EXPECT_FALSE(on);
  ASSERT_OK_AND_ASSIGN(Authentication anonymous, auto_mode.Authenticate(std::nullopt));
  EXPECT_EQ(anonymous.principal, nullptr);

  ApiKeyStore required(registry_.get(), /*required=*/true);
  ASSERT_OK_AND_ASSIGN(on, required.Enabled());
  EXPECT_TRUE(on);
  auto refused = required.Authenticate(std::nullopt);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorCodeOf(refused.status()), ErrorCode::kUnauthenticated);
}

TEST_F(ApiKeyStoreTest, AuthenticatesAKeyAsItsPrincipal) {
  ApiKeyStore keys(registry_.get(), false);
  ASSERT_OK_AND_ASSIGN(NewApiKey key, keys.Create(Role::kReader, {"payments"}, "model"));
  ASSERT_OK_AND_ASSIGN(bool on, keys.Enabled());
  EXPECT_TRUE(on);
  ASSERT_OK_AND_ASSIGN(Authentication auth, keys.Authenticate(key.secret));
  ASSERT_NE(auth.principal, nullptr);
  EXPECT_EQ(auth.principal->key_id, key.record.id);
  EXPECT_EQ(auth.principal->role, Role::kReader);
  EXPECT_EQ(auth.principal->feature_sets, std::vector<std::string>{"payments"});
  EXPECT_TRUE(auth.principal->Allows("payments"));
  EXPECT_FALSE(auth.principal->Allows("users"));

  for (const std::string& bad :
       {std::string(), std::string("nonsense"), key.secret + "x",
        // A well-formed secret of an id that does not exist.
        "fsk_0000000000000000_" + key.secret.substr(21)}) {
    auto refused = keys.Authenticate(bad);
    ASSERT_FALSE(refused.ok()) << bad;
    EXPECT_EQ(ErrorCodeOf(refused.status()), ErrorCode::kUnauthenticated);
    EXPECT_EQ(refused.status().message(), "invalid API key");
  }
  auto missing = keys.Authenticate(std::nullopt);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(ErrorCodeOf(missing.status()), ErrorCode::kUnauthenticated);
}

TEST_F(ApiKeyStoreTest, RevokedKeyIsRefusedAndAuthenticationStaysOn) {
  ApiKeyStore keys(registry_.get(), false);
  ASSERT_OK_AND_ASSIGN(NewApiKey key, keys.Create(Role::kAdmin, {}, ""));
  ASSERT_OK_AND_ASSIGN(ApiKeyRecord revoked, keys.Revoke(key.record.id));
  EXPECT_TRUE(revoked.revoked_at.has_value());
  auto refused = keys.Authenticate(key.secret);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorCodeOf(refused.status()), ErrorCode::kUnauthenticated);
  EXPECT_NE(refused.status().message().find("revoked"), std::string::npos);
  // Revoking the last key does not open the server.
  ASSERT_OK_AND_ASSIGN(bool on, keys.Enabled());
  EXPECT_TRUE(on);
  EXPECT_FALSE(keys.Authenticate(std::nullopt).ok());

  auto again = keys.Revoke(key.record.id);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(ErrorCodeOf(again.status()), ErrorCode::kConflict);
  auto unknown = keys.Revoke("key_ffffffffffffffff");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(ErrorCodeOf(unknown.status()), ErrorCode::kNotFound);
}

TEST_F(ApiKeyStoreTest, SeesKeysWrittenElsewhereAfterTheRefreshInterval) {
  // `server` is the server's cache; `cli` another writer (fstore keys).
  ApiKeyStore server(registry_.get(), false, std::chrono::milliseconds(50));
  ApiKeyStore cli(registry_.get(), false);
  ASSERT_OK_AND_ASSIGN(bool on, server.Enabled());
  EXPECT_FALSE(on);
  ASSERT_OK_AND_ASSIGN(NewApiKey key, cli.Create(Role::kReader, {}, ""));
  // Polled rather than slept-and-asserted: the contract is "within the
  // interval", and the test must not depend on timing.
  auto authenticated = [&] { return server.Authenticate(key.secret).ok(); };
  for (int i = 0; i < 200 && !authenticated(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(authenticated());
  ASSERT_OK(cli.Revoke(key.record.id).status());
  for (int i = 0; i < 200 && authenticated(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(authenticated());
}

TEST_F(ApiKeyStoreTest, AuthenticationOnDoesNotMeanEveryKeyIsLoaded) {
  // What a refresh landing between two `fstore keys create` calls leaves: the
  // first key turns authentication on (anonymous requests get 401) while a
  // key created a moment later is unknown to the server ("invalid API key")
  // until the next refresh. Whoever creates keys elsewhere must wait for
  // those keys, not for authentication to be on (test_security.py `world`).
  ApiKeyStore server(registry_.get(), false, std::chrono::milliseconds(0));  // no timer
  ApiKeyStore cli(registry_.get(), false);
  ASSERT_OK_AND_ASSIGN(bool on, server.Enabled());
  EXPECT_FALSE(on);
  ASSERT_OK_AND_ASSIGN(NewApiKey admin, cli.Create(Role::kAdmin, {}, "ops"));
  ASSERT_OK(server.Reload());  // a refresher tick
  ASSERT_OK_AND_ASSIGN(NewApiKey reader, cli.Create(Role::kReader, {}, ""));
  ASSERT_OK_AND_ASSIGN(on, server.Enabled());
  EXPECT_TRUE(on);
  EXPECT_TRUE(server.Authenticate(admin.secret).ok());
  auto refused = server.Authenticate(reader.secret);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().message(), "invalid API key");
  ASSERT_OK(server.Reload());  // the next tick
  EXPECT_TRUE(server.Authenticate(reader.secret).ok());
}

TEST_F(ApiKeyStoreTest, StoredRecordsHoldNoSecret) {
  ApiKeyStore keys(registry_.get(), false);
  ASSERT_OK_AND_ASSIGN(NewApiKey key, keys.Create(Role::kWriter, {}, "x"));
  ASSERT_OK_AND_ASSIGN(auto list, keys.List());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].id, key.record.id);
  EXPECT_EQ(list[0].hash, key.record.hash);
  EXPECT_EQ(list[0].salt, key.record.salt);
  for (const std::string& field : {list[0].id, list[0].name, list[0].role, list[0].salt,
                                   list[0].hash}) {
    EXPECT_EQ(field.find(key.secret.substr(21)), std::string::npos);
  }
}

/// ApiKeyStores on a registry file that each store (the server, the CLI)
/// opens a connection of its own to, as separate processes do; and the file
/// itself, to damage a stored row.
class ApiKeyStoreFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("fstore-api-keys-" + NewUuid());
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "registry.db").string();
    ASSERT_OK_AND_ASSIGN(registry_, Open());
    ASSERT_OK(registry_->Migrate().status());
  }
  void TearDown() override {
    registry_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Result<std::unique_ptr<Registry>> Open() { return RegistryFromUri("sqlite://" + path_); }

  /// Cuts the stored feature sets of key `id` short: no longer a JSON array.
  void DamageKey(const std::string& id) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    const std::string sql = "UPDATE api_keys SET feature_sets = '[\"payments\"' WHERE id = '" +
                            id + "'";
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
  }

  std::filesystem::path dir_;
  std::string path_;
  std::unique_ptr<Registry> registry_;
};

/// Collects what spdlog's default logger writes while it lives.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  /// How many of the lines written mention `text`.
  size_t LinesWith(std::string_view text) {
    spdlog::default_logger()->flush();
    std::istringstream lines(out_.str());
    size_t n = 0;
    for (std::string line; std::getline(lines, line);) n += line.find(text) != std::string::npos;
    return n;
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(ApiKeyStoreFileTest, ConcurrentRevocationsOfOneKeyHaveOneWinner) {
  // The API and the CLI (or two servers) revoking the same keys at once.
  constexpr int kRevokers = 4;
  constexpr int kKeys = 30;
  ApiKeyStore creator(registry_.get(), false, std::chrono::milliseconds(0));
  std::vector<std::string> ids;
  for (int k = 0; k < kKeys; ++k) {
    ASSERT_OK_AND_ASSIGN(NewApiKey key, creator.Create(Role::kReader, {}, ""));
    ids.push_back(key.record.id);
  }
  std::vector<std::unique_ptr<Registry>> connections(kRevokers);
  std::vector<std::unique_ptr<ApiKeyStore>> revokers(kRevokers);
  for (int t = 0; t < kRevokers; ++t) {
    ASSERT_OK_AND_ASSIGN(connections[t], Open());
    revokers[t] = std::make_unique<ApiKeyStore>(connections[t].get(), false,
                                                std::chrono::milliseconds(0));
  }
  // results[k][t]: revoker t's call for key k. Each key's calls start together.
  std::vector<std::vector<Result<ApiKeyRecord>>> results(
      kKeys, std::vector<Result<ApiKeyRecord>>(kRevokers, Internal("not called")));
  std::barrier start(kRevokers);
  std::vector<std::thread> threads;
  for (int t = 0; t < kRevokers; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kKeys; ++k) {
        start.arrive_and_wait();
        results[k][t] = revokers[t]->Revoke(ids[k]);
      }
    });
  }
  for (auto& thread : threads) thread.join();

  ASSERT_OK_AND_ASSIGN(auto stored, creator.List());
  ASSERT_EQ(stored.size(), static_cast<size_t>(kKeys));
  for (int k = 0; k < kKeys; ++k) {
    int winners = 0;
    for (const auto& result : results[k]) {
      if (result.ok()) {
        ++winners;
        // What the winner reports is what is stored: no later call overwrote it.
        for (const ApiKeyRecord& record : stored) {
          if (record.id == ids[k]) {
            EXPECT_EQ(record.revoked_at, result->revoked_at) << ids[k];
          }
        }
      } else {
        EXPECT_EQ(ErrorCodeOf(result.status()), ErrorCode::kConflict) << result.status();
        EXPECT_EQ(result.status().message(), "API key " + ids[k] + " is already revoked");
      }
    }
    EXPECT_EQ(winners, 1) << ids[k];
  }
}

TEST_F(ApiKeyStoreFileTest, ADamagedKeyRowIsSkippedAndTheOtherKeysStillLoad) {
  ApiKeyStore cli(registry_.get(), false);
  ASSERT_OK_AND_ASSIGN(NewApiKey good, cli.Create(Role::kReader, {}, "dashboards"));
  ASSERT_OK_AND_ASSIGN(NewApiKey damaged, cli.Create(Role::kAdmin, {"payments"}, "ops"));
  // A server that read the keys before the row was damaged.
  ApiKeyStore running(registry_.get(), false, std::chrono::milliseconds(0));
  ASSERT_TRUE(running.Authenticate(damaged.secret).ok());
  DamageKey(damaged.record.id);
  ASSERT_FALSE(::testing::Test::HasFailure());

  // A server starting now loads the other key (before, every authenticated
  // request was answered 503); the damaged one authenticates nothing.
  ApiKeyStore starting(registry_.get(), false, std::chrono::milliseconds(0));
  {
    CapturedLog log;
    ASSERT_OK_AND_ASSIGN(bool on, starting.Enabled());
    EXPECT_TRUE(on);
    ASSERT_OK(starting.Reload());
    ASSERT_OK(starting.Reload());
    // Logged, naming the key, by the reload that found it, not by every one.
    EXPECT_EQ(log.LinesWith(damaged.record.id), 1u);
  }
  ASSERT_OK_AND_ASSIGN(Authentication auth, starting.Authenticate(good.secret));
  ASSERT_NE(auth.principal, nullptr);
  EXPECT_EQ(auth.principal->key_id, good.record.id);
  auto refused = starting.Authenticate(damaged.secret);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorCodeOf(refused.status()), ErrorCode::kUnauthenticated);
  EXPECT_EQ(refused.status().message(), "invalid API key");

  // The running server's next reload drops the damaged key too, and later
  // revocations still take effect (before, it kept its old keys for good).
  ASSERT_OK(running.Reload());
  EXPECT_FALSE(running.Authenticate(damaged.secret).ok());
  ASSERT_OK(cli.Revoke(good.record.id).status());
  ASSERT_OK(running.Reload());
  EXPECT_FALSE(running.Authenticate(good.secret).ok());

  // Listing, and revoking the damaged key, say which key cannot be read.
  auto list = cli.List();
  ASSERT_FALSE(list.ok());
  EXPECT_EQ(ErrorCodeOf(list.status()), ErrorCode::kInternal);
  EXPECT_NE(list.status().message().find(damaged.record.id), std::string::npos) << list.status();
  auto revoke = cli.Revoke(damaged.record.id);
  ASSERT_FALSE(revoke.ok());
  EXPECT_NE(revoke.status().message().find(damaged.record.id), std::string::npos)
      << revoke.status();
}

TEST_F(ApiKeyStoreFileTest, ADamagedOnlyKeyKeepsAuthenticationOn) {
  ApiKeyStore cli(registry_.get(), false);
  ASSERT_OK_AND_ASSIGN(NewApiKey key, cli.Create(Role::kAdmin, {}, ""));
  DamageKey(key.record.id);
  ASSERT_FALSE(::testing::Test::HasFailure());
  // Skipping the row must not open the server to anonymous requests.
  ApiKeyStore server(registry_.get(), /*required=*/false, std::chrono::milliseconds(0));
  ASSERT_OK_AND_ASSIGN(bool on, server.Enabled());
  EXPECT_TRUE(on);
  auto anonymous = server.Authenticate(std::nullopt);
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(ErrorCodeOf(anonymous.status()), ErrorCode::kUnauthenticated);
  auto refused = server.Authenticate(key.secret);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorCodeOf(refused.status()), ErrorCode::kUnauthenticated);
}

TEST(AuditOutcomeOf, MapsStatuses) {
  EXPECT_EQ(AuditOutcomeOf(200), "success");
  EXPECT_EQ(AuditOutcomeOf(202), "success");
  EXPECT_EQ(AuditOutcomeOf(401), "denied");
  EXPECT_EQ(AuditOutcomeOf(403), "denied");
  EXPECT_EQ(AuditOutcomeOf(400), "failure");
  EXPECT_EQ(AuditOutcomeOf(500), "failure");
}

TEST_F(ApiKeyStoreTest, AuditLogAppendsAndStampsTime) {
  AuditLog audit(registry_.get());
  ASSERT_OK(audit.Record({.key_id = "key_1", .action = "feature_set.create", .target = "users",
                          .outcome = "success", .status = 201}));
  AuditFilter filter;
  ASSERT_OK_AND_ASSIGN(auto events, registry_->ListAudit(filter));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].action, "feature_set.create");
  EXPECT_EQ(events[0].target, "users");
  EXPECT_EQ(events[0].key_id, "key_1");
  EXPECT_EQ(events[0].status, 201);
  EXPECT_GT(events[0].time, 0);
}

}  // namespace
}  // namespace fstore
