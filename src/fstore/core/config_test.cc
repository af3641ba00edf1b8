#include "fstore/core/config.h"

#include <cstdlib>
#include <filesystem>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gmock/gmock.h>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

/// Every field, so that two configs can be compared in one EXPECT_EQ.
std::string Describe(const Config& c) {
  std::string out;
  const auto add = [&out](const char* name, const std::string& value) {
    out += std::string(name) + "=" + value + "\n";
  };
  add("host", c.host);
  add("port", std::to_string(c.port));
  add("data_dir", c.data_dir);
  add("log_level", c.log_level);
  add("io_threads", std::to_string(c.io_threads));
  add("max_body_bytes", std::to_string(c.max_body_bytes));
  add("header_timeout_seconds", std::to_string(c.header_timeout_seconds));
  add("read_timeout_seconds", std::to_string(c.read_timeout_seconds));
  add("idle_timeout_seconds", std::to_string(c.idle_timeout_seconds));
  add("database_url", c.database_url);
  add("redis_url", c.redis_url);
  add("storage_backend", c.storage_backend);
  add("storage_path", c.storage_path);
  add("s3_endpoint", c.s3_endpoint);
  add("s3_bucket", c.s3_bucket);
  add("s3_access_key", c.s3_access_key);
  add("s3_secret_key", c.s3_secret_key);
  add("s3_region", c.s3_region);
  add("compute_engine", c.compute_engine);
  add("max_compute_threads", std::to_string(c.max_compute_threads));
  add("spark_master", c.spark_master);
  add("serving_cache_enabled", c.serving_cache_enabled ? "true" : "false");
  add("serving_cache_ttl_seconds", std::to_string(c.serving_cache_ttl_seconds));
  add("online_record_cache_mb", std::to_string(c.online_record_cache_mb));
  add("auth", c.auth);
  add("encryption_key", c.encryption_key);
  add("encryption_key_file", c.encryption_key_file);
  return out;
}

/// The field and message of a failed status.
std::pair<std::string, std::string> FieldAndMessage(const Status& status) {
  const ErrorDetail* detail = ErrorOf(status);
  return {detail ? detail->field() : "<no detail>", status.message()};
}

TEST(AllSettingsTest, ListsEverySettingInHelpOrder) {
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"FSTORE_HOST", "host"},
      {"FSTORE_PORT", "port"},
      {"FSTORE_DATA_DIR", "data-dir"},
      {"FSTORE_LOG_LEVEL", "log-level"},
      {"FSTORE_IO_THREADS", "io-threads"},
      {"FSTORE_MAX_BODY_BYTES", "max-body-bytes"},
      {"FSTORE_HEADER_TIMEOUT", "header-timeout"},
      {"FSTORE_READ_TIMEOUT", "read-timeout"},
      {"FSTORE_IDLE_TIMEOUT", "idle-timeout"},
      {"DATABASE_URL", "database-url"},
      {"REDIS_URL", "redis-url"},
      {"STORAGE_BACKEND", "storage-backend"},
      {"STORAGE_PATH", "storage-path"},
      {"S3_ENDPOINT", "s3-endpoint"},
      {"S3_BUCKET", "s3-bucket"},
      {"S3_ACCESS_KEY", "s3-access-key"},
      {"S3_SECRET_KEY", "s3-secret-key"},
      {"S3_REGION", "s3-region"},
      {"COMPUTE_ENGINE", "compute-engine"},
      {"MAX_COMPUTE_THREADS", "max-compute-threads"},
      {"SPARK_MASTER", "spark-master"},
      {"SERVING_CACHE_ENABLED", "serving-cache-enabled"},
      {"SERVING_CACHE_TTL", "serving-cache-ttl"},
      {"FSTORE_SERVING_CACHE_ENTRIES", "serving-cache-entries"},
      {"FSTORE_SERVING_MAX_ENTITIES", "serving-max-entities"},
      {"FSTORE_ONLINE_RECORD_CACHE_MB", "online-record-cache-mb"},
      {"FSTORE_AUTH", "auth"},
      {"FSTORE_ENCRYPTION_KEY", "encryption-key"},
      {"FSTORE_ENCRYPTION_KEY_FILE", "encryption-key-file"},
  };
  const std::vector<SettingInfo>& settings = AllSettings();
  ASSERT_EQ(settings.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(settings[i].env, expected[i].first);
    EXPECT_EQ(settings[i].flag, expected[i].second);
    EXPECT_FALSE(settings[i].description.empty()) << settings[i].env;
    EXPECT_EQ(settings[i].secret,
              settings[i].env == "S3_SECRET_KEY" || settings[i].env == "FSTORE_ENCRYPTION_KEY") << settings[i].env;
  }
}

TEST(AllSettingsTest, DefaultTextsShowTheDefaults) {
  std::map<std::string, std::string> defaults;
  for (const SettingInfo& s : AllSettings()) defaults[s.env] = s.default_text;
  EXPECT_EQ(defaults["FSTORE_HOST"], "0.0.0.0");
  EXPECT_EQ(defaults["FSTORE_PORT"], "8002");
  EXPECT_EQ(defaults["FSTORE_DATA_DIR"], "./data");
  EXPECT_EQ(defaults["FSTORE_LOG_LEVEL"], "info");
  EXPECT_EQ(defaults["FSTORE_IO_THREADS"], "0");
  EXPECT_EQ(defaults["FSTORE_MAX_BODY_BYTES"], "8388608");
  EXPECT_EQ(defaults["FSTORE_HEADER_TIMEOUT"], "10");
  EXPECT_EQ(defaults["FSTORE_READ_TIMEOUT"], "30");
  EXPECT_EQ(defaults["FSTORE_IDLE_TIMEOUT"], "60");
  EXPECT_EQ(defaults["DATABASE_URL"], "");
  EXPECT_EQ(defaults["STORAGE_BACKEND"], "local");
  EXPECT_EQ(defaults["COMPUTE_ENGINE"], "local");
  EXPECT_EQ(defaults["MAX_COMPUTE_THREADS"], "0");
  EXPECT_EQ(defaults["SERVING_CACHE_ENABLED"], "false");
  EXPECT_EQ(defaults["SERVING_CACHE_TTL"], "300");
}

TEST(AllSettingsTest, EachDefaultTextAppliesToTheDefault) {
  for (const SettingInfo& s : AllSettings()) {
    if (s.default_text.empty()) continue;
    Config config;
    ASSERT_OK(ApplySetting(s.flag, s.default_text, &config));
    EXPECT_EQ(Describe(config), Describe(Config{})) << s.flag;
  }
}

TEST(AllSettingsTest, FlagsAreTheEnvNamesInLowerCaseWithDashes) {
  std::set<std::string> envs, flags;
  for (const SettingInfo& s : AllSettings()) {
    EXPECT_TRUE(envs.insert(s.env).second) << "duplicate " << s.env;
    EXPECT_TRUE(flags.insert(s.flag).second) << "duplicate " << s.flag;
    for (char c : s.flag) {
      EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') << s.flag;
    }
  }
}

TEST(ApplyEnvironmentTest, DefaultsWithoutVariables) {
  Config config;
  ASSERT_OK(ApplyEnvironment({}, &config));
  EXPECT_EQ(Describe(config), Describe(Config{}));
  ASSERT_OK(ValidateConfig(config));
}

TEST(ApplyEnvironmentTest, ReadsEverySetting) {
  const std::map<std::string, std::string> env = {
      {"FSTORE_HOST", "127.0.0.1"},
      {"FSTORE_PORT", "9000"},
      {"FSTORE_DATA_DIR", "/var/lib/fstore"},
      {"FSTORE_LOG_LEVEL", "DEBUG"},
      {"FSTORE_IO_THREADS", "4"},
      {"FSTORE_MAX_BODY_BYTES", "1048576"},
      {"FSTORE_HEADER_TIMEOUT", "5"},
      {"FSTORE_READ_TIMEOUT", "20"},
      {"FSTORE_IDLE_TIMEOUT", "90"},
      {"DATABASE_URL", "postgresql://user:pw@db:5432/fstore"},
      {"REDIS_URL", "redis://cache:6379/0"},
      {"STORAGE_BACKEND", "S3"},
      {"STORAGE_PATH", "/unused"},
      {"S3_ENDPOINT", "http://minio:9000"},
      {"S3_BUCKET", "features"},
      {"S3_ACCESS_KEY", "AKIA"},
      {"S3_SECRET_KEY", "s3cr3t"},
      {"S3_REGION", "eu-west-1"},
      {"COMPUTE_ENGINE", "spark"},
      {"MAX_COMPUTE_THREADS", "8"},
      {"SPARK_MASTER", "spark://spark:7077"},
      {"SERVING_CACHE_ENABLED", "Yes"},
      {"SERVING_CACHE_TTL", "60"},
      // Not ours: ignored.
      {"PATH", "/usr/bin"},
      {"HOME", "/root"},
      {"AWS_REGION", "us-east-1"},
  };
  Config config;
  ASSERT_OK(ApplyEnvironment(env, &config));
  EXPECT_EQ(config.host, "127.0.0.1");
  EXPECT_EQ(config.port, 9000);
  EXPECT_EQ(config.data_dir, "/var/lib/fstore");
  EXPECT_EQ(config.log_level, "debug");
  EXPECT_EQ(config.io_threads, 4);
  EXPECT_EQ(config.max_body_bytes, 1048576);
  EXPECT_EQ(config.header_timeout_seconds, 5);
  EXPECT_EQ(config.read_timeout_seconds, 20);
  EXPECT_EQ(config.idle_timeout_seconds, 90);
  EXPECT_EQ(config.database_url, "postgresql://user:pw@db:5432/fstore");
  EXPECT_EQ(config.redis_url, "redis://cache:6379/0");
  EXPECT_EQ(config.storage_backend, "s3");
  EXPECT_EQ(config.storage_path, "/unused");
  EXPECT_EQ(config.s3_endpoint, "http://minio:9000");
  EXPECT_EQ(config.s3_bucket, "features");
  EXPECT_EQ(config.s3_access_key, "AKIA");
  EXPECT_EQ(config.s3_secret_key, "s3cr3t");
  EXPECT_EQ(config.s3_region, "eu-west-1");
  EXPECT_EQ(config.compute_engine, "spark");
  EXPECT_EQ(config.max_compute_threads, 8);
  EXPECT_EQ(config.spark_master, "spark://spark:7077");
  EXPECT_TRUE(config.serving_cache_enabled);
  EXPECT_EQ(config.serving_cache_ttl_seconds, 60);
  ASSERT_OK(ValidateConfig(config));
  EXPECT_EQ(config.RegistryUri(), "postgresql://user:pw@db:5432/fstore");
  EXPECT_EQ(config.OnlineStoreUri(), "redis://cache:6379/0");
  EXPECT_EQ(config.OfflineStoreUri(), "s3://features");
}

TEST(ApplyEnvironmentTest, EmptyVariablesKeepTheDefaults) {
  std::map<std::string, std::string> env;
  for (const SettingInfo& s : AllSettings()) env[s.env] = "";
  Config config;
  ASSERT_OK(ApplyEnvironment(env, &config));
  EXPECT_EQ(Describe(config), Describe(Config{}));
}

TEST(ApplyEnvironmentTest, UnknownFstoreVariableIsAnError) {
  Config config;
  Status status = ApplyEnvironment({{"FSTORE_X", "1"}}, &config);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(ErrorCodeOf(status), ErrorCode::kInvalidArgument);
  const auto [field, message] = FieldAndMessage(status);
  EXPECT_EQ(field, "FSTORE_X");
  EXPECT_THAT(message, HasSubstr("unknown setting FSTORE_X"));
  EXPECT_THAT(message, HasSubstr("FSTORE_PORT"));  // lists what is known
}

TEST(ApplyEnvironmentTest, UnknownFstoreVariableSuggestsANearMiss) {
  Config config;
  Status status = ApplyEnvironment({{"FSTORE_PROT", "80"}}, &config);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("unknown setting FSTORE_PROT (did you mean FSTORE_PORT?)"));
}

TEST(ApplyEnvironmentTest, OnlyTheFstorePrefixIsChecked) {
  Config config;
  ASSERT_OK(ApplyEnvironment({{"FSTOREX", "1"}, {"MY_FSTORE_THING", "1"}, {"fstore_port", "1"}},
                             &config));
  EXPECT_EQ(Describe(config), Describe(Config{}));
}

struct BadValue {
  std::string env;
  std::string value;
  std::string message;
  friend std::ostream& operator<<(std::ostream& os, const BadValue& c) {
    return os << c.env << "=" << c.value;
  }
};

class ApplyEnvironmentRefusesTest : public ::testing::TestWithParam<BadValue> {};

TEST_P(ApplyEnvironmentRefusesTest, NamingVariableValueAndExpectation) {
  const BadValue& c = GetParam();
  Config config;
  Status status = ApplyEnvironment({{c.env, c.value}}, &config);
  ASSERT_FALSE(status.ok()) << c.env << "=" << c.value;
  EXPECT_EQ(ErrorCodeOf(status), ErrorCode::kInvalidArgument);
  const auto [field, message] = FieldAndMessage(status);
  EXPECT_EQ(field, c.env);
  EXPECT_THAT(message, HasSubstr(c.env + ": "));
  EXPECT_THAT(message, HasSubstr(c.message)) << c.env << "=" << c.value;
}

INSTANTIATE_TEST_SUITE_P(
    Types, ApplyEnvironmentRefusesTest,
    ::testing::Values(
        BadValue{"FSTORE_PORT", "http", "\"http\" is not an integer; expected a port number (0-65535)"},
        BadValue{"FSTORE_PORT", "65536", "65536 is out of range; expected a port number (0-65535)"},
        BadValue{"FSTORE_PORT", "-1", "-1 is out of range"},
        BadValue{"FSTORE_PORT", "80 ", "\"80 \" is not an integer"},
        BadValue{"FSTORE_PORT", "8.5", "\"8.5\" is not an integer"},
        BadValue{"FSTORE_PORT", "99999999999999999999", "is out of range"},
        BadValue{"FSTORE_IO_THREADS", "-2", "-2 is out of range; expected a thread count"},
        BadValue{"FSTORE_IO_THREADS", "100000", "100000 is out of range"},
        BadValue{"FSTORE_MAX_BODY_BYTES", "0", "0 is out of range; expected a positive number of bytes"},
        BadValue{"FSTORE_MAX_BODY_BYTES", "8MB", "\"8MB\" is not an integer"},
        BadValue{"FSTORE_HEADER_TIMEOUT", "0", "expected a positive number of seconds"},
        BadValue{"FSTORE_READ_TIMEOUT", "-30", "expected a positive number of seconds"},
        BadValue{"FSTORE_IDLE_TIMEOUT", "1m", "\"1m\" is not an integer"},
        BadValue{"MAX_COMPUTE_THREADS", "many", "\"many\" is not an integer"},
        BadValue{"SERVING_CACHE_TTL", "0", "0 is out of range; expected a positive number of seconds"},
        BadValue{"SERVING_CACHE_TTL", "5m", "\"5m\" is not an integer"},
        BadValue{"SERVING_CACHE_ENABLED", "maybe",
                 "\"maybe\" is not valid; expected true or false (also 1/0, yes/no)"},
        BadValue{"SERVING_CACHE_ENABLED", "on", "\"on\" is not valid"},
        BadValue{"FSTORE_SERVING_CACHE_ENTRIES", "0", "expected a positive number of records"},
        BadValue{"FSTORE_SERVING_MAX_ENTITIES", "0", "expected a number of entities from 1"},
        BadValue{"FSTORE_SERVING_MAX_ENTITIES", "2000000", "2000000 is out of range"},
        BadValue{"FSTORE_ONLINE_RECORD_CACHE_MB", "-1", "expected a number of MiB from 0"},
        BadValue{"FSTORE_ONLINE_RECORD_CACHE_MB", "1GB", "\"1GB\" is not an integer"}));

INSTANTIATE_TEST_SUITE_P(
    Choices, ApplyEnvironmentRefusesTest,
    ::testing::Values(
        BadValue{"FSTORE_LOG_LEVEL", "verbose",
                 "\"verbose\" is not valid; expected one of trace, debug, info, warn, error, off"},
        BadValue{"FSTORE_LOG_LEVEL", "warning", "\"warning\" is not valid"},
        BadValue{"STORAGE_BACKEND", "gcs", "\"gcs\" is not valid; expected one of local, s3"},
        BadValue{"COMPUTE_ENGINE", "flink",
                 "\"flink\" is not valid; expected one of local, duckdb, spark"}));

INSTANTIATE_TEST_SUITE_P(
    Urls, ApplyEnvironmentRefusesTest,
    ::testing::Values(
        BadValue{"DATABASE_URL", "mysql://db/fstore",
                 "the registry database URL has the unsupported scheme \"mysql://\"; expected a "
                 "URL starting with sqlite://, postgresql://, postgres://"},
        BadValue{"DATABASE_URL", "/var/lib/fstore/registry.db",
                 "the registry database URL has no scheme"},
        BadValue{"DATABASE_URL", "sqlite://", "has no database path"},
        BadValue{"REDIS_URL", "memcached://cache:11211",
                 "the online store URL has the unsupported scheme \"memcached://\"; expected a URL "
                 "starting with redis://, rediss://, redis+cluster://"},
        BadValue{"REDIS_URL", "cache:6379", "the online store URL has no scheme"}));

TEST(ApplyEnvironmentTest, UrlErrorsDoNotEchoPasswords) {
  Config config;
  Status status = ApplyEnvironment({{"DATABASE_URL", "mysql://user:hunter2@db/x"}}, &config);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), Not(HasSubstr("hunter2")));
}

TEST(ApplyEnvironmentTest, AcceptedUrlSchemes) {
  for (const char* url : {"sqlite:///var/lib/fstore/registry.db", "sqlite://./registry.db",
                          "postgresql://localhost/fstore", "postgres://u:p@h:5432/d",
                          "PostgreSQL://localhost/fstore"}) {
    Config config;
    ASSERT_OK(ApplyEnvironment({{"DATABASE_URL", url}}, &config));
    EXPECT_EQ(config.database_url, url);
    EXPECT_EQ(config.RegistryUri(), url);
  }
  for (const char* url : {"redis://localhost:6379", "rediss://secure:6380/1",
                          "redis+cluster://a:7000,b:7001"}) {
    Config config;
    ASSERT_OK(ApplyEnvironment({{"REDIS_URL", url}}, &config));
    EXPECT_EQ(config.redis_url, url);
    EXPECT_EQ(config.OnlineStoreUri(), url);
  }
}

TEST(ApplyEnvironmentTest, Booleans) {
  for (const auto& [text, expected] : std::vector<std::pair<std::string, bool>>{
           {"true", true}, {"TRUE", true}, {"True", true}, {"1", true}, {"yes", true},
           {"YES", true}, {"false", false}, {"False", false}, {"0", false}, {"no", false},
           {"No", false}}) {
    Config config;
    config.serving_cache_enabled = !expected;
    ASSERT_OK(ApplyEnvironment({{"SERVING_CACHE_ENABLED", text}}, &config));
    EXPECT_EQ(config.serving_cache_enabled, expected) << text;
  }
}

TEST(ApplyEnvironmentTest, PortZeroMeansAnyFreePort) {
  Config config;
  ASSERT_OK(ApplyEnvironment({{"FSTORE_PORT", "0"}}, &config));
  EXPECT_EQ(config.port, 0);
  ASSERT_OK(ApplyEnvironment({{"FSTORE_PORT", "65535"}}, &config));
  EXPECT_EQ(config.port, 65535);
  ASSERT_OK(ValidateConfig(config));
}

TEST(ApplyEnvironmentTest, DuckdbIsTheLocalEngine) {
  Config config;
  ASSERT_OK(ApplyEnvironment({{"COMPUTE_ENGINE", "duckdb"}}, &config));
  EXPECT_EQ(config.compute_engine, "local");
  ASSERT_OK(ApplyEnvironment({{"COMPUTE_ENGINE", "DuckDB"}}, &config));
  EXPECT_EQ(config.compute_engine, "local");
  ASSERT_OK(ApplyEnvironment({{"COMPUTE_ENGINE", "LOCAL"}}, &config));
  EXPECT_EQ(config.compute_engine, "local");
}

TEST(ApplyEnvironmentTest, EveryLogLevel) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
    Config config;
    ASSERT_OK(ApplyEnvironment({{"FSTORE_LOG_LEVEL", level}}, &config));
    EXPECT_EQ(config.log_level, level);
  }
}

TEST(ApplySettingTest, ByFlagNameWithOrWithoutDashes) {
  Config config;
  ASSERT_OK(ApplySetting("port", "9001", &config));
  EXPECT_EQ(config.port, 9001);
  ASSERT_OK(ApplySetting("--port", "9002", &config));
  EXPECT_EQ(config.port, 9002);
  ASSERT_OK(ApplySetting("serving-cache-ttl", "15", &config));
  EXPECT_EQ(config.serving_cache_ttl_seconds, 15);
  ASSERT_OK(ApplySetting("data-dir", "/tmp/fstore", &config));
  EXPECT_EQ(config.data_dir, "/tmp/fstore");
  ASSERT_OK(ApplySetting("s3-secret-key", "shh", &config));
  EXPECT_EQ(config.s3_secret_key, "shh");
  ASSERT_OK(ApplySetting("compute-engine", "duckdb", &config));
  EXPECT_EQ(config.compute_engine, "local");
}

TEST(ApplySettingTest, ErrorsCarryTheEnvNameAsFieldAndTheFlagInTheMessage) {
  Config config;
  Status status = ApplySetting("serving-cache-ttl", "soon", &config);
  ASSERT_FALSE(status.ok());
  const auto [field, message] = FieldAndMessage(status);
  EXPECT_EQ(field, "SERVING_CACHE_TTL");
  EXPECT_THAT(message, HasSubstr("--serving-cache-ttl: \"soon\" is not an integer; expected a "
                                 "positive number of seconds"));
  EXPECT_EQ(config.serving_cache_ttl_seconds, 300);  // unchanged
}

TEST(ApplySettingTest, EmptyValuesOfTypedFlagsAreErrors) {
  Config config;
  EXPECT_FALSE(ApplySetting("port", "", &config).ok());
  EXPECT_FALSE(ApplySetting("serving-cache-enabled", "", &config).ok());
  EXPECT_FALSE(ApplySetting("log-level", "", &config).ok());
  Status host = ApplySetting("host", "", &config);
  ASSERT_FALSE(host.ok());
  EXPECT_THAT(host.message(), HasSubstr("--host: the value is empty"));
  // Optional strings may be cleared.
  config.database_url = "sqlite:///x.db";
  ASSERT_OK(ApplySetting("database-url", "", &config));
  EXPECT_EQ(config.database_url, "");
}

TEST(ApplySettingTest, UnknownFlag) {
  Config config;
  Status status = ApplySetting("prot", "80", &config);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(ErrorCodeOf(status), ErrorCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("unknown setting --prot (did you mean --port?)"));
  EXPECT_FALSE(ApplySetting("FSTORE_PORT", "80", &config).ok());  // env names are not flags
}

TEST(ValidateConfigTest, DefaultsAreValid) { ASSERT_OK(ValidateConfig(Config{})); }

TEST(ValidateConfigTest, S3NeedsABucket) {
  Config config;
  config.storage_backend = "s3";
  Status status = ValidateConfig(config);
  ASSERT_FALSE(status.ok());
  const auto [field, message] = FieldAndMessage(status);
  EXPECT_EQ(field, "S3_BUCKET");
  EXPECT_THAT(message, HasSubstr("STORAGE_BACKEND=s3 needs a bucket"));
  config.s3_bucket = "features";
  ASSERT_OK(ValidateConfig(config));
}

TEST(ValidateConfigTest, S3KeysComeInPairsAndTheSecretIsNeverPrinted) {
  Config config;
  config.storage_backend = "s3";
  config.s3_bucket = "features";
  config.s3_secret_key = "very-secret-value";
  Status status = ValidateConfig(config);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(FieldAndMessage(status).first, "S3_ACCESS_KEY");
  EXPECT_THAT(status.ToString(), Not(HasSubstr("very-secret-value")));
  config.s3_access_key = "AKIA";
  ASSERT_OK(ValidateConfig(config));
  config.s3_secret_key.clear();
  EXPECT_EQ(FieldAndMessage(ValidateConfig(config)).first, "S3_SECRET_KEY");
}

TEST(ValidateConfigTest, SparkNeedsAMaster) {
  Config config;
  config.compute_engine = "spark";
  Status status = ValidateConfig(config);
  ASSERT_FALSE(status.ok());
  const auto [field, message] = FieldAndMessage(status);
  EXPECT_EQ(field, "SPARK_MASTER");
  EXPECT_THAT(message, HasSubstr("COMPUTE_ENGINE=spark needs a master URL"));
  config.spark_master = "local[*]";
  ASSERT_OK(ValidateConfig(config));
}

TEST(ValidateConfigTest, ChecksValuesSetInCode) {
  const auto field_of = [](Config config) { return FieldAndMessage(ValidateConfig(config)).first; };
  Config c;
  c.port = 70000;
  EXPECT_EQ(field_of(c), "FSTORE_PORT");
  c = Config{};
  c.port = -1;
  EXPECT_EQ(field_of(c), "FSTORE_PORT");
  c = Config{};
  c.log_level = "loud";
  EXPECT_EQ(field_of(c), "FSTORE_LOG_LEVEL");
  c = Config{};
  c.max_body_bytes = 0;
  EXPECT_EQ(field_of(c), "FSTORE_MAX_BODY_BYTES");
  c = Config{};
  c.read_timeout_seconds = 0;
  EXPECT_EQ(field_of(c), "FSTORE_READ_TIMEOUT");
  c = Config{};
  c.serving_cache_ttl_seconds = -5;
  EXPECT_EQ(field_of(c), "SERVING_CACHE_TTL");
  c = Config{};
  c.storage_backend = "hdfs";
  EXPECT_EQ(field_of(c), "STORAGE_BACKEND");
  c = Config{};
  c.compute_engine = "flink";
  EXPECT_EQ(field_of(c), "COMPUTE_ENGINE");
  c = Config{};
  c.database_url = "mysql://x";
  EXPECT_EQ(field_of(c), "DATABASE_URL");
  c = Config{};
  c.redis_url = "http://x";
  EXPECT_EQ(field_of(c), "REDIS_URL");
  c = Config{};
  c.host = "";
  EXPECT_EQ(field_of(c), "FSTORE_HOST");
  c = Config{};
  c.data_dir = "";
  EXPECT_EQ(field_of(c), "FSTORE_DATA_DIR");
  c = Config{};
  c.storage_path = "s3://bucket/path";
  EXPECT_EQ(field_of(c), "STORAGE_PATH");
}

TEST(ConfigUriTest, EmbeddedDefaultsUnderDataDir) {
  Config config;
  EXPECT_EQ(config.RegistryUri(), "sqlite://./data/registry.db");
  EXPECT_EQ(config.OnlineStoreUri(), "rocksdb://./data/online");
  config.data_dir = "/var/lib/fstore";
  EXPECT_EQ(config.RegistryUri(), "sqlite:///var/lib/fstore/registry.db");
  EXPECT_EQ(config.OnlineStoreUri(), "rocksdb:///var/lib/fstore/online");
  EXPECT_EQ(config.OfflineStoreUri(), "file:///var/lib/fstore/offline");
  // A record cache size other than the default goes into the URI.
  config.online_record_cache_mb = 0;
  EXPECT_EQ(config.OnlineStoreUri(), "rocksdb:///var/lib/fstore/online?record_cache_mb=0");
  config.online_record_cache_mb = 2048;
  EXPECT_EQ(config.OnlineStoreUri(), "rocksdb:///var/lib/fstore/online?record_cache_mb=2048");
  config.online_record_cache_mb = Config().online_record_cache_mb;
  config.data_dir = "/var/lib/fstore/";
  EXPECT_EQ(config.RegistryUri(), "sqlite:///var/lib/fstore/registry.db");
  EXPECT_EQ(config.OfflineStoreUri(), "file:///var/lib/fstore/offline");
}

TEST(ConfigUriTest, OfflineStoreIsAnAbsoluteFileUri) {
  const std::string cwd = std::filesystem::current_path().string();
  Config config;
  EXPECT_EQ(config.OfflineStoreUri(), "file://" + cwd + "/data/offline");
  config.storage_path = "/mnt/offline/";
  EXPECT_EQ(config.OfflineStoreUri(), "file:///mnt/offline");
  config.storage_path = "warehouse";
  EXPECT_EQ(config.OfflineStoreUri(), "file://" + cwd + "/warehouse");
  config.storage_path = "/";
  EXPECT_EQ(config.OfflineStoreUri(), "file:///");
}

TEST(ConfigUriTest, OfflineStoreOnS3) {
  Config config;
  config.storage_backend = "s3";
  config.s3_bucket = "features";
  config.storage_path = "/ignored";
  EXPECT_EQ(config.OfflineStoreUri(), "s3://features");
  // A key prefix inside the bucket goes with the bucket.
  config.s3_bucket = "features/team-a/";
  EXPECT_EQ(config.OfflineStoreUri(), "s3://features/team-a");
}

TEST(ValidateConfigTest, S3EndpointIsAServerAddressAndTheBucketAName) {
  Config config;
  config.storage_backend = "s3";
  config.s3_bucket = "features/prefix";
  for (const char* ok : {"", "http://127.0.0.1:9000", "https://minio.example:9000/",
                         "minio:9000", "HTTP://minio"}) {
    config.s3_endpoint = ok;
    EXPECT_TRUE(ValidateConfig(config).ok()) << ok;
  }
  for (const char* bad : {"ftp://minio:9000", "http://minio:9000/path", "http://"}) {
    config.s3_endpoint = bad;
    Status status = ValidateConfig(config);
    EXPECT_EQ(FieldAndMessage(status).first, "S3_ENDPOINT") << bad << ": " << status.ToString();
  }
  config.s3_endpoint.clear();
  for (const char* bad : {"s3://features", "/features", "features?x=1"}) {
    config.s3_bucket = bad;
    EXPECT_EQ(FieldAndMessage(ValidateConfig(config)).first, "S3_BUCKET") << bad;
  }
  Config from_env;
  EXPECT_EQ(ErrorCodeOf(ApplyEnvironment({{"S3_ENDPOINT", "minio:9000/x"}}, &from_env)),
            ErrorCode::kInvalidArgument);
}

TEST(ProcessEnvironmentTest, ReadsThisProcessEnvironment) {
  ASSERT_EQ(setenv("FSTORE_CONFIG_TEST_VARIABLE", "a=b=c", 1), 0);
  const auto env = ProcessEnvironment();
  ASSERT_EQ(unsetenv("FSTORE_CONFIG_TEST_VARIABLE"), 0);
  const auto it = env.find("FSTORE_CONFIG_TEST_VARIABLE");
  ASSERT_NE(it, env.end());
  EXPECT_EQ(it->second, "a=b=c");  // split at the first '='
  EXPECT_EQ(ProcessEnvironment().count("FSTORE_CONFIG_TEST_VARIABLE"), 0u);
}

TEST(ConfigTest, EncryptionKeyMustBe64HexCharactersAndIsNeverEchoed) {
  Config config;
  Status st = ApplyEnvironment({{"FSTORE_ENCRYPTION_KEY", "not-a-key-secretvalue"}}, &config);
  ASSERT_FALSE(st.ok());
  ASSERT_NE(ErrorOf(st), nullptr);
  EXPECT_EQ(ErrorOf(st)->field(), "FSTORE_ENCRYPTION_KEY");
  EXPECT_EQ(st.message().find("secretvalue"), std::string::npos) << st.ToString();
  const std::string key(64, 'a');
  ASSERT_TRUE(ApplyEnvironment({{"FSTORE_ENCRYPTION_KEY", key}}, &config).ok());
  EXPECT_EQ(config.encryption_key, key);
  config.encryption_key_file = "/tmp/key";
  EXPECT_FALSE(ValidateConfig(config).ok());
}

TEST(ConfigTest, AuthIsAutoOrRequired) {
  Config config;
  EXPECT_EQ(config.auth, "auto");
  ASSERT_TRUE(ApplyEnvironment({{"FSTORE_AUTH", "required"}}, &config).ok());
  EXPECT_EQ(config.auth, "required");
  EXPECT_FALSE(ApplyEnvironment({{"FSTORE_AUTH", "off"}}, &config).ok());
}

}  // namespace
}  // namespace fstore
