#include "fstore/core/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <filesystem>
#include <limits>
#include <string_view>
#include <system_error>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "fstore/core/text.h"

extern char** environ;

namespace fstore {

namespace {

constexpr std::string_view kFstorePrefix = "FSTORE_";
/// A cap on thread counts: far above any real machine, far below what would
/// exhaust memory by mistake ("io_threads=100000").
constexpr int kMaxThreads = 1024;

/// Where a value came from, for messages: the variable ("FSTORE_PORT") or the
/// flag ("--port"). Errors always carry the variable name as their field.
struct Source {
  std::string_view env;
  std::string label;
};

std::string Quote(std::string_view text) {
  constexpr size_t kMax = 80;
  if (text.size() > kMax) return fmt::format("\"{}...\"", text.substr(0, kMax));
  return fmt::format("\"{}\"", text);
}

Status BadValue(const Source& source, std::string_view value, std::string_view expected) {
  return InvalidArgument(std::string(source.env),
                         fmt::format("{}: {} is not valid; expected {}", source.label,
                                     Quote(value), expected));
}

template <typename Int>
Status ParseInt(const Source& source, std::string_view value, Int min, Int max,
                std::string_view what, Int* out) {
  const std::string expected = fmt::format("{} ({}-{})", what, min, max);
  Int parsed = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), parsed);
  if (value.empty() || error == std::errc::invalid_argument || end != value.data() + value.size()) {
    return InvalidArgument(std::string(source.env),
                           fmt::format("{}: {} is not an integer; expected {}", source.label,
                                       Quote(value), expected));
  }
  if (error == std::errc::result_out_of_range || parsed < min || parsed > max) {
    return InvalidArgument(std::string(source.env),
                           fmt::format("{}: {} is out of range; expected {}", source.label,
                                       value, expected));
  }
  *out = parsed;
  return Status::OK();
}

Status ParseBool(const Source& source, std::string_view value, bool* out) {
  const std::string lower = AsciiLower(value);
  if (lower == "true" || lower == "1" || lower == "yes") {
    *out = true;
    return Status::OK();
  }
  if (lower == "false" || lower == "0" || lower == "no") {
    *out = false;
    return Status::OK();
  }
  return BadValue(source, value, "true or false (also 1/0, yes/no)");
}

/// One of `choices`, case-insensitive; stores the lower-case choice.
Status ParseChoice(const Source& source, std::string_view value,
                   std::initializer_list<std::string_view> choices, std::string* out) {
  const std::string lower = AsciiLower(value);
  for (std::string_view choice : choices) {
    if (lower == choice) {
      *out = lower;
      return Status::OK();
    }
  }
  std::string expected = "one of ";
  for (std::string_view choice : choices) {
    if (choice != *choices.begin()) expected += ", ";
    expected += choice;
  }
  return BadValue(source, value, expected);
}

bool HasScheme(std::string_view url, std::string_view scheme) {
  return url.size() >= scheme.size() && AsciiLower(url.substr(0, scheme.size())) == scheme;
}

/// Empty is allowed (the embedded default); otherwise one of `schemes`.
Status CheckUrl(const Source& source, std::string_view value,
                std::initializer_list<std::string_view> schemes, std::string_view purpose) {
  if (value.empty()) return Status::OK();
  for (std::string_view scheme : schemes) {
    if (HasScheme(value, scheme)) {
      if (value.size() == scheme.size() && scheme == "sqlite://") {
        return InvalidArgument(std::string(source.env),
                               fmt::format("{}: {} has no database path; expected e.g. "
                                           "sqlite:///var/lib/fstore/registry.db",
                                           source.label, Quote(value)));
      }
      return Status::OK();
    }
  }
  std::string expected;
  for (std::string_view scheme : schemes) {
    expected += expected.empty() ? "" : ", ";
    expected += scheme;
  }
  const size_t colon = value.find("://");
  const std::string what = colon == std::string_view::npos
                               ? "has no scheme"
                               : fmt::format("has the unsupported scheme {}",
                                             Quote(value.substr(0, colon + 3)));
  // The URL may carry a password: name the scheme, not the whole value.
  return InvalidArgument(std::string(source.env),
                         fmt::format("{}: the {} URL {}; expected a URL starting with {}",
                                     source.label, purpose, what, expected));
}

Status CheckDatabaseUrl(const Source& source, std::string_view value) {
  return CheckUrl(source, value, {"sqlite://", "postgresql://", "postgres://"}, "registry database");
}

Status CheckRedisUrl(const Source& source, std::string_view value) {
  return CheckUrl(source, value, {"redis://", "rediss://", "redis+cluster://"}, "online store");
}

/// An S3 endpoint: http:// or https:// and a host[:port], no path; a bare
/// host[:port] means https. Empty means AWS.
Status CheckS3Endpoint(const Source& source, std::string_view value) {
  if (value.empty()) return Status::OK();
  std::string_view host = value;
  const size_t sep = value.find("://");
  if (sep != std::string_view::npos) {
    ARROW_RETURN_NOT_OK(CheckUrl(source, value, {"http://", "https://"}, "S3 endpoint"));
    host = value.substr(sep + 3);
  }
  while (!host.empty() && host.back() == '/') host.remove_suffix(1);
  if (host.empty() || host.find('/') != std::string_view::npos) {
    return BadValue(source, value, "an http:// or https:// URL of the server without a path, "
                                   "e.g. http://127.0.0.1:9000");
  }
  return Status::OK();
}

/// A bucket, optionally with a key prefix: "bucket" or "bucket/prefix".
Status CheckS3Bucket(const Source& source, std::string_view value) {
  if (value.empty()) return Status::OK();
  if (value.find("://") != std::string_view::npos || value.front() == '/' ||
      value.find_first_of("?#") != std::string_view::npos) {
    return BadValue(source, value, "a bucket name, optionally with a key prefix (bucket/prefix)");
  }
  return Status::OK();
}

using ApplyFn = Status (*)(const Source&, const std::string&, Config*);

struct Setting {
  SettingInfo info;
  ApplyFn apply;
};

Status SetString(std::string* field, const std::string& value) {
  *field = value;
  return Status::OK();
}

Status NonEmpty(const Source& source, const std::string& value, std::string_view expected) {
  if (value.empty()) {
    return InvalidArgument(std::string(source.env),
                           fmt::format("{}: the value is empty; expected {}", source.label,
                                       expected));
  }
  return Status::OK();
}

const std::vector<Setting>& SettingTable() {
  static const std::vector<Setting> table = [] {
    const Config defaults;
    const auto text = [](auto value) { return fmt::format("{}", value); };
    std::vector<Setting> t;
    // Server
    t.push_back({{"FSTORE_HOST", "host", defaults.host, "Address the HTTP server listens on."},
                 [](const Source& s, const std::string& v, Config* c) {
                   ARROW_RETURN_NOT_OK(NonEmpty(s, v, "a host name or IP address"));
                   return SetString(&c->host, v);
                 }});
    t.push_back({{"FSTORE_PORT", "port", text(defaults.port),
                  "TCP port of the HTTP server; 0 picks any free port."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt(s, v, 0, 65535, "a port number", &c->port);
                 }});
    t.push_back({{"FSTORE_DATA_DIR", "data-dir", defaults.data_dir,
                  "Directory of the embedded registry, online and offline stores."},
                 [](const Source& s, const std::string& v, Config* c) {
                   ARROW_RETURN_NOT_OK(NonEmpty(s, v, "a directory path"));
                   return SetString(&c->data_dir, v);
                 }});
    t.push_back({{"FSTORE_LOG_LEVEL", "log-level", defaults.log_level,
                  "Log level: trace, debug, info, warn, error or off."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseChoice(s, v, {"trace", "debug", "info", "warn", "error", "off"},
                                      &c->log_level);
                 }});
    t.push_back({{"FSTORE_IO_THREADS", "io-threads", text(defaults.io_threads),
                  "Threads serving HTTP connections; 0 means one per core."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt(s, v, 0, kMaxThreads, "a thread count, 0 for one per core",
                                   &c->io_threads);
                 }});
    t.push_back({{"FSTORE_MAX_BODY_BYTES", "max-body-bytes", text(defaults.max_body_bytes),
                  "Largest request body in bytes; larger requests get 413."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt<int64_t>(s, v, 1, std::numeric_limits<int64_t>::max(),
                                            "a positive number of bytes", &c->max_body_bytes);
                 }});
    t.push_back({{"FSTORE_HEADER_TIMEOUT", "header-timeout", text(defaults.header_timeout_seconds),
                  "Seconds allowed to receive a request's head."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt(s, v, 1, std::numeric_limits<int>::max(),
                                   "a positive number of seconds", &c->header_timeout_seconds);
                 }});
    t.push_back({{"FSTORE_READ_TIMEOUT", "read-timeout", text(defaults.read_timeout_seconds),
                  "Seconds allowed to receive a whole request."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt(s, v, 1, std::numeric_limits<int>::max(),
                                   "a positive number of seconds", &c->read_timeout_seconds);
                 }});
    t.push_back({{"FSTORE_IDLE_TIMEOUT", "idle-timeout", text(defaults.idle_timeout_seconds),
                  "Seconds a keep-alive connection may stay idle."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt(s, v, 1, std::numeric_limits<int>::max(),
                                   "a positive number of seconds", &c->idle_timeout_seconds);
                 }});
    // Backends
    t.push_back({{"DATABASE_URL", "database-url", defaults.database_url,
                  "Registry database: sqlite://PATH or postgresql://...; empty means "
                  "sqlite://<data-dir>/registry.db."},
                 [](const Source& s, const std::string& v, Config* c) {
                   ARROW_RETURN_NOT_OK(CheckDatabaseUrl(s, v));
                   return SetString(&c->database_url, v);
                 }});
    t.push_back({{"REDIS_URL", "redis-url", defaults.redis_url,
                  "Online store: redis://, rediss:// or redis+cluster://...; empty means "
                  "embedded RocksDB under <data-dir>/online."},
                 [](const Source& s, const std::string& v, Config* c) {
                   ARROW_RETURN_NOT_OK(CheckRedisUrl(s, v));
                   return SetString(&c->redis_url, v);
                 }});
    t.push_back({{"STORAGE_BACKEND", "storage-backend", defaults.storage_backend,
                  "Offline store backend: local or s3."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseChoice(s, v, {"local", "s3"}, &c->storage_backend);
                 }});
    t.push_back({{"STORAGE_PATH", "storage-path", defaults.storage_path,
                  "Root of the local offline store; empty means <data-dir>/offline (not used "
                  "with STORAGE_BACKEND=s3: put a prefix in S3_BUCKET)."},
                 [](const Source&, const std::string& v, Config* c) {
                   return SetString(&c->storage_path, v);
                 }});
    t.push_back({{"S3_ENDPOINT", "s3-endpoint", defaults.s3_endpoint,
                  "S3 endpoint override (MinIO, ...), e.g. http://127.0.0.1:9000; empty means "
                  "AWS."},
                 [](const Source& s, const std::string& v, Config* c) {
                   ARROW_RETURN_NOT_OK(CheckS3Endpoint(s, v));
                   return SetString(&c->s3_endpoint, v);
                 }});
    t.push_back({{"S3_BUCKET", "s3-bucket", defaults.s3_bucket,
                  "S3 bucket of the offline store, optionally with a key prefix "
                  "(bucket/prefix); created when missing; required when STORAGE_BACKEND=s3."},
                 [](const Source& s, const std::string& v, Config* c) {
                   ARROW_RETURN_NOT_OK(CheckS3Bucket(s, v));
                   return SetString(&c->s3_bucket, v);
                 }});
    t.push_back({{"S3_ACCESS_KEY", "s3-access-key", defaults.s3_access_key,
                  "S3 access key id; empty means the default credential chain."},
                 [](const Source&, const std::string& v, Config* c) {
                   return SetString(&c->s3_access_key, v);
                 }});
    t.push_back({{"S3_SECRET_KEY", "s3-secret-key", defaults.s3_secret_key,
                  "S3 secret access key (never printed).", /*secret=*/true},
                 [](const Source&, const std::string& v, Config* c) {
                   return SetString(&c->s3_secret_key, v);
                 }});
    t.push_back({{"S3_REGION", "s3-region", defaults.s3_region, "S3 region, e.g. us-east-1."},
                 [](const Source&, const std::string& v, Config* c) {
                   return SetString(&c->s3_region, v);
                 }});
    t.push_back({{"COMPUTE_ENGINE", "compute-engine", defaults.compute_engine,
                  "Compute engine: local (embedded; duckdb is an alias) or spark."},
                 [](const Source& s, const std::string& v, Config* c) {
                   ARROW_RETURN_NOT_OK(
                       ParseChoice(s, v, {"local", "duckdb", "spark"}, &c->compute_engine));
                   // The embedded engine is the one the product calls "duckdb".
                   if (c->compute_engine == "duckdb") c->compute_engine = "local";
                   return Status::OK();
                 }});
    t.push_back({{"MAX_COMPUTE_THREADS", "max-compute-threads", text(defaults.max_compute_threads),
                  "Threads of the local compute engine; 0 means one per core."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt(s, v, 0, kMaxThreads, "a thread count, 0 for one per core",
                                   &c->max_compute_threads);
                 }});
    t.push_back({{"SPARK_MASTER", "spark-master", defaults.spark_master,
                  "Spark master URL; required when COMPUTE_ENGINE=spark."},
                 [](const Source&, const std::string& v, Config* c) {
                   return SetString(&c->spark_master, v);
                 }});
    t.push_back({{"SERVING_CACHE_ENABLED", "serving-cache-enabled",
                  defaults.serving_cache_enabled ? "true" : "false",
                  "Cache online feature lookups in memory."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseBool(s, v, &c->serving_cache_enabled);
                 }});
    t.push_back({{"SERVING_CACHE_TTL", "serving-cache-ttl", text(defaults.serving_cache_ttl_seconds),
                  "Seconds a cached online lookup stays valid."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt(s, v, 1, std::numeric_limits<int>::max(),
                                   "a positive number of seconds", &c->serving_cache_ttl_seconds);
                 }});
    t.push_back({{"FSTORE_SERVING_CACHE_ENTRIES", "serving-cache-entries",
                  text(defaults.serving_cache_entries),
                  "Entity records the online serving cache holds (least recently used out)."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt(s, v, 1, std::numeric_limits<int>::max(),
                                   "a positive number of records", &c->serving_cache_entries);
                 }});
    t.push_back({{"FSTORE_SERVING_MAX_ENTITIES", "serving-max-entities",
                  text(defaults.serving_max_entities),
                  "Most entities one online serving request may ask for (more: 413)."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt(s, v, 1, 1000000, "a number of entities from 1 to 1000000",
                                   &c->serving_max_entities);
                 }});
    t.push_back({{"FSTORE_ONLINE_RECORD_CACHE_MB", "online-record-cache-mb",
                  text(defaults.online_record_cache_mb),
                  "MiB of recently read records the embedded (RocksDB) online store keeps in "
                  "memory in front of its block cache; 0 turns it off."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseInt(s, v, 0, 1 << 20, "a number of MiB from 0 to 1048576",
                                   &c->online_record_cache_mb);
                 }});
    t.push_back({{"FSTORE_AUTH", "auth", defaults.auth,
                  "API key authentication: auto (on once a key exists) or required."},
                 [](const Source& s, const std::string& v, Config* c) {
                   return ParseChoice(s, v, {"auto", "required"}, &c->auth);
                 }});
    t.push_back({{"FSTORE_ENCRYPTION_KEY", "encryption-key", "",
                  "Encryption at rest: 64 hex characters (AES-256) for offline Parquet and "
                  "online values.", /*secret=*/true},
                 [](const Source& s, const std::string& v, Config* c) {
                   if (!v.empty()) {
                     bool hex = v.size() == 64 &&
                                std::all_of(v.begin(), v.end(), [](unsigned char ch) {
                                  return std::isxdigit(ch) != 0;
                                });
                     if (!hex) {
                       // Never echo the value: it is a secret.
                       return InvalidArgument(std::string(s.env),
                                              s.label + " must be 64 hex characters (a 256-bit "
                                              "key); got " + std::to_string(v.size()) +
                                              " characters");
                     }
                   }
                   return SetString(&c->encryption_key, v);
                 }});
    t.push_back({{"FSTORE_ENCRYPTION_KEY_FILE", "encryption-key-file", "",
                  "A file holding the encryption key (64 hex characters), instead of "
                  "FSTORE_ENCRYPTION_KEY."},
                 [](const Source&, const std::string& v, Config* c) {
                   return SetString(&c->encryption_key_file, v);
                 }});
    return t;
  }();
  return table;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

/// " (did you mean FSTORE_PORT?)" for a near miss among `names`, else "".
std::string Suggestion(std::string_view name, const std::vector<std::string_view>& names) {
  std::string_view best;
  size_t best_distance = 3;  // only close misspellings
  for (std::string_view candidate : names) {
    const size_t distance = EditDistance(name, candidate);
    if (distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best.empty() ? "" : fmt::format(" (did you mean {}?)", best);
}

std::string JoinPath(const std::string& dir, std::string_view name) {
  if (!dir.empty() && dir.back() == '/') return dir + std::string(name);
  return dir + "/" + std::string(name);
}

}  // namespace

std::string Config::RegistryUri() const {
  if (!database_url.empty()) return database_url;
  return "sqlite://" + JoinPath(data_dir, "registry.db");
}

std::string Config::OnlineStoreUri() const {
  if (!redis_url.empty()) return redis_url;
  std::string uri = "rocksdb://" + JoinPath(data_dir, "online");
  if (online_record_cache_mb != Config().online_record_cache_mb) {
    uri += "?record_cache_mb=" + std::to_string(online_record_cache_mb);
  }
  return uri;
}

std::string Config::OfflineStoreUri() const {
  if (AsciiLower(storage_backend) == "s3") {
    std::string bucket = s3_bucket;
    while (!bucket.empty() && bucket.back() == '/') bucket.pop_back();
    return "s3://" + bucket;
  }
  const std::filesystem::path root(storage_path.empty() ? JoinPath(data_dir, "offline")
                                                        : storage_path);
  std::error_code error;
  std::filesystem::path absolute = std::filesystem::absolute(root, error);
  if (error) absolute = root;  // no current directory: keep the path as given
  std::string text = absolute.lexically_normal().string();
  // "/a/b/" -> "/a/b", but "/" stays.
  while (text.size() > 1 && text.back() == '/') text.pop_back();
  return "file://" + text;
}

const std::vector<SettingInfo>& AllSettings() {
  static const std::vector<SettingInfo> infos = [] {
    std::vector<SettingInfo> out;
    for (const Setting& setting : SettingTable()) out.push_back(setting.info);
    return out;
  }();
  return infos;
}

Status ApplyEnvironment(const std::map<std::string, std::string>& env, Config* config) {
  for (const Setting& setting : SettingTable()) {
    const auto it = env.find(setting.info.env);
    if (it == env.end()) continue;
    // Compose files pass "VAR=" for variables they leave unset, so an empty
    // variable keeps the default (for the optional URLs and paths the default
    // is empty anyway) instead of failing.
    if (it->second.empty()) continue;
    ARROW_RETURN_NOT_OK(setting.apply(Source{setting.info.env, setting.info.env}, it->second,
                                      config));
  }
  std::vector<std::string_view> prefixed;
  for (const Setting& setting : SettingTable()) {
    if (setting.info.env.starts_with(kFstorePrefix)) prefixed.push_back(setting.info.env);
  }
  for (const auto& [name, value] : env) {
    if (!name.starts_with(kFstorePrefix)) continue;
    if (std::find(prefixed.begin(), prefixed.end(), name) != prefixed.end()) continue;
    return InvalidArgument(name, fmt::format("unknown setting {}{}; fstore reads {}", name,
                                             Suggestion(name, prefixed),
                                             fmt::join(prefixed, ", ")));
  }
  return Status::OK();
}

Status ApplySetting(const std::string& flag, const std::string& value, Config* config) {
  std::string_view name = flag;
  while (name.starts_with('-')) name.remove_prefix(1);
  for (const Setting& setting : SettingTable()) {
    if (setting.info.flag == name) {
      return setting.apply(Source{setting.info.env, "--" + setting.info.flag}, value, config);
    }
  }
  std::vector<std::string> flags;
  for (const Setting& setting : SettingTable()) flags.push_back("--" + setting.info.flag);
  const std::string dashed = "--" + std::string(name);
  return InvalidArgument(dashed, fmt::format("unknown setting {}{}", dashed,
                                             Suggestion(dashed, {flags.begin(), flags.end()})));
}

Status ValidateConfig(const Config& config) {
  // Values set in code skip ApplySetting's checks: run them again here, on
  // the canonical text of every setting that has one.
  const auto check = [&](std::string_view env, const std::string& value) -> Status {
    for (const Setting& setting : SettingTable()) {
      if (setting.info.env == env) {
        Config scratch = config;
        return setting.apply(Source{setting.info.env, setting.info.env}, value, &scratch);
      }
    }
    return Internal(fmt::format("no setting {}", env));
  };
  ARROW_RETURN_NOT_OK(check("FSTORE_HOST", config.host));
  ARROW_RETURN_NOT_OK(check("FSTORE_PORT", std::to_string(config.port)));
  ARROW_RETURN_NOT_OK(check("FSTORE_DATA_DIR", config.data_dir));
  ARROW_RETURN_NOT_OK(check("FSTORE_LOG_LEVEL", config.log_level));
  ARROW_RETURN_NOT_OK(check("FSTORE_IO_THREADS", std::to_string(config.io_threads)));
  ARROW_RETURN_NOT_OK(check("FSTORE_MAX_BODY_BYTES", std::to_string(config.max_body_bytes)));
  ARROW_RETURN_NOT_OK(check("FSTORE_HEADER_TIMEOUT", std::to_string(config.header_timeout_seconds)));
  ARROW_RETURN_NOT_OK(check("FSTORE_READ_TIMEOUT", std::to_string(config.read_timeout_seconds)));
  ARROW_RETURN_NOT_OK(check("FSTORE_IDLE_TIMEOUT", std::to_string(config.idle_timeout_seconds)));
  ARROW_RETURN_NOT_OK(check("DATABASE_URL", config.database_url));
  ARROW_RETURN_NOT_OK(check("REDIS_URL", config.redis_url));
  ARROW_RETURN_NOT_OK(check("STORAGE_BACKEND", config.storage_backend));
  ARROW_RETURN_NOT_OK(check("S3_ENDPOINT", config.s3_endpoint));
  ARROW_RETURN_NOT_OK(check("S3_BUCKET", config.s3_bucket));
  ARROW_RETURN_NOT_OK(check("COMPUTE_ENGINE", config.compute_engine));
  ARROW_RETURN_NOT_OK(check("MAX_COMPUTE_THREADS", std::to_string(config.max_compute_threads)));
  ARROW_RETURN_NOT_OK(
      check("SERVING_CACHE_TTL", std::to_string(config.serving_cache_ttl_seconds)));
  ARROW_RETURN_NOT_OK(
      check("FSTORE_ONLINE_RECORD_CACHE_MB", std::to_string(config.online_record_cache_mb)));

  const std::string storage_backend = AsciiLower(config.storage_backend);
  if (storage_backend == "s3") {
    if (config.s3_bucket.empty()) {
      return InvalidArgument("S3_BUCKET",
                             "S3_BUCKET is empty, but STORAGE_BACKEND=s3 needs a bucket; set "
                             "S3_BUCKET or use STORAGE_BACKEND=local");
    }
    if (config.s3_access_key.empty() != config.s3_secret_key.empty()) {
      const char* missing = config.s3_access_key.empty() ? "S3_ACCESS_KEY" : "S3_SECRET_KEY";
      return InvalidArgument(missing,
                             fmt::format("{} is empty, but the other S3 key is set; set both "
                                         "S3_ACCESS_KEY and S3_SECRET_KEY, or neither to use the "
                                         "default credential chain",
                                         missing));
    }
  } else if (!config.storage_path.empty() && config.storage_path.find("://") != std::string::npos) {
    return InvalidArgument("STORAGE_PATH",
                           fmt::format("STORAGE_PATH: {} looks like a URL; expected a local "
                                       "directory (for S3 set STORAGE_BACKEND=s3 and S3_BUCKET)",
                                       Quote(config.storage_path)));
  }
  if (!config.encryption_key.empty() && !config.encryption_key_file.empty()) {
    return InvalidArgument("FSTORE_ENCRYPTION_KEY_FILE",
                           "set FSTORE_ENCRYPTION_KEY or FSTORE_ENCRYPTION_KEY_FILE, not both");
  }
  if (AsciiLower(config.compute_engine) == "spark" && config.spark_master.empty()) {
    return InvalidArgument("SPARK_MASTER",
                           "SPARK_MASTER is empty, but COMPUTE_ENGINE=spark needs a master URL "
                           "(e.g. spark://host:7077); set SPARK_MASTER or use "
                           "COMPUTE_ENGINE=local");
  }
  return Status::OK();
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const size_t equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    env.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return env;
}

}  // namespace fstore
