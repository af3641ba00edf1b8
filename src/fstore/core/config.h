#pragma once

// Server configuration: defaults, then the seed's environment variables, then
// command-line flags (cli/). Each setting has one name, one default and one
// description, listed by AllSettings() so that `fstore serve --help` and the
// README show the same table.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fstore/core/status.h"

namespace fstore {

struct Config {
  // Server
  std::string host = "0.0.0.0";
  int port = 8002;
  std::string data_dir = "./data";
  std::string log_level = "info";      ///< trace, debug, info, warn, error, off
  int io_threads = 0;                  ///< 0: one per core
  int64_t max_body_bytes = 8 << 20;    ///< requests over this get 413
  int header_timeout_seconds = 10;     ///< time to receive the request head
  int read_timeout_seconds = 30;       ///< time to receive the whole request
  int idle_timeout_seconds = 60;       ///< keep-alive connection idle limit

  // Backends; empty means the embedded default under data_dir.
  std::string database_url;            ///< DATABASE_URL: sqlite://... | postgresql://...
  std::string redis_url;               ///< REDIS_URL: redis://... | redis+cluster://...
  std::string storage_backend = "local";  ///< STORAGE_BACKEND: local | s3
  std::string storage_path;            ///< STORAGE_PATH (local offline store root; not for s3)
  /// S3_ENDPOINT (http(s)://host:port; empty: AWS), S3_BUCKET ("bucket" or
  /// "bucket/prefix"), S3_ACCESS_KEY / S3_SECRET_KEY (both empty: the AWS
  /// default chain), S3_REGION.
  std::string s3_endpoint, s3_bucket, s3_access_key, s3_secret_key, s3_region;
  std::string compute_engine = "local";   ///< COMPUTE_ENGINE: local | duckdb (alias) | spark
  int max_compute_threads = 0;         ///< MAX_COMPUTE_THREADS; 0: one per core
  std::string spark_master;            ///< SPARK_MASTER
  bool serving_cache_enabled = false;  ///< SERVING_CACHE_ENABLED
  int serving_cache_ttl_seconds = 300; ///< SERVING_CACHE_TTL
  int serving_cache_entries = 100000;  ///< FSTORE_SERVING_CACHE_ENTRIES
  int serving_max_entities = 1000;     ///< FSTORE_SERVING_MAX_ENTITIES
  /// FSTORE_ONLINE_RECORD_CACHE_MB: the embedded online store's record
  /// cache (MiB; 0: none). Not used with REDIS_URL.
  int online_record_cache_mb = 1024;
  // Security (issue #7)
  /// FSTORE_AUTH: "auto" (on as soon as one API key exists), "required" (on
  /// even before: nothing but /health and /ready answers without a key).
  std::string auth = "auto";
  /// FSTORE_ENCRYPTION_KEY: 64 hex characters (AES-256); empty: no
  /// encryption at rest unless a key file is given.
  std::string encryption_key;
  /// FSTORE_ENCRYPTION_KEY_FILE: a file holding the 64 hex characters.
  std::string encryption_key_file;

  /// The registry URI after defaults: DATABASE_URL or sqlite://<data_dir>/registry.db.
  std::string RegistryUri() const;
  /// The online store URI: REDIS_URL or rocksdb://<data_dir>/online.
  std::string OnlineStoreUri() const;
  /// The offline store URI: file://<storage_path or data_dir/offline>, or
  /// s3://<S3_BUCKET> (s3://bucket or s3://bucket/prefix) with STORAGE_BACKEND=s3.
  std::string OfflineStoreUri() const;
};

/// One configuration setting, for help and documentation.
struct SettingInfo {
  std::string env;          ///< environment variable, e.g. "SERVING_CACHE_TTL"
  std::string flag;         ///< long flag without dashes, e.g. "serving-cache-ttl"
  std::string default_text; ///< the default as shown to users
  std::string description;
  bool secret = false;      ///< never printed (S3_SECRET_KEY)
};

/// Every setting, in help order.
const std::vector<SettingInfo>& AllSettings();

/// Applies environment variables to `config`. Only the settings' own variables
/// are read; any other variable starting with "FSTORE_" is an unknown setting
/// and an error naming it. A malformed value is an error naming the variable,
/// the value and what was expected.
Status ApplyEnvironment(const std::map<std::string, std::string>& env, Config* config);

/// Applies one setting by its flag name (as CLI11 hands them over); same checks.
Status ApplySetting(const std::string& flag, const std::string& value, Config* config);

/// Cross-field checks after everything is applied: value ranges, S3 settings
/// present when STORAGE_BACKEND=s3, SPARK_MASTER when COMPUTE_ENGINE=spark.
Status ValidateConfig(const Config& config);

/// The environment of this process as a map.
std::map<std::string, std::string> ProcessEnvironment();

}  // namespace fstore
