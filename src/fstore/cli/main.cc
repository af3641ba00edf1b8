// fstore: the feature store's one binary.
//   fstore serve [--port 8002] [--data-dir ./data] [every setting as a flag]
//   fstore migrate   apply the registry's schema migrations and exit
//   fstore keys create --role R [--feature-sets a,b] [--name N] | list | revoke ID
//   fstore version
// Settings come from defaults, then environment variables, then flags
// (core/config.h). A bad setting stops start-up with a message naming it; a
// backend that is not built yet says so and exits 2.

#include <malloc.h>
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>


#include "fstore/core/config.h"
#include "fstore/core/json_text.h"
#include "fstore/core/text.h"
#include "fstore/core/time.h"
#include "fstore/offline/s3_filesystem.h"
#include "fstore/registry/codec.h"
#include "fstore/security/api_keys.h"
#include "fstore/security/audit_log.h"
#include "fstore/security/encryption.h"
#include "fstore/server/api_routes.h"
#include "fstore/server/http_server.h"
#include "fstore/service/feature_store.h"

namespace fstore {
namespace {

constexpr int kExitBadConfig = 2;
constexpr int kExitFailure = 1;

struct SettingFlags {
  std::map<std::string, std::string> values;
  std::map<std::string, CLI::Option*> options;
};

void AddSettingFlags(CLI::App* cmd, SettingFlags* flags) {
  for (const SettingInfo& s : AllSettings()) {
    std::string desc = s.description + "  [env " + s.env + ", default: " +
                       (s.default_text.empty() ? "none" : s.default_text) + "]";
    flags->options[s.flag] = cmd->add_option("--" + s.flag, flags->values[s.flag], desc);
  }
}

Result<Config> LoadConfig(const SettingFlags& flags) {
  Config config;
  ARROW_RETURN_NOT_OK(ApplyEnvironment(ProcessEnvironment(), &config));
  for (const auto& [flag, option] : flags.options) {
    if (option->count() > 0) {
      ARROW_RETURN_NOT_OK(ApplySetting(flag, flags.values.at(flag), &config));
    }
  }
  ARROW_RETURN_NOT_OK(ValidateConfig(config));
  return config;
}

int Fail(const Status& status) {
  const ErrorDetail* e = ErrorOf(status);
  std::string where = e && !e->field().empty() ? e->field() + ": " : "";
  std::cerr << "fstore: " << where << status.message() << std::endl;
  return ErrorCodeOf(status) == ErrorCode::kInvalidArgument ||
                 ErrorCodeOf(status) == ErrorCode::kNotImplemented
             ? kExitBadConfig
             : kExitFailure;
}

/// Backends the configuration selects that are not built yet: refused by name
/// rather than silently replaced by the embedded default.
/// "a,b,,c" -> {"a", "b", "", "c"}: the parts as given (empty ones too).
std::vector<std::string> SplitOnCommas(const std::string& text) {
  std::vector<std::string> parts;
  size_t begin = 0;
  while (true) {
    const size_t comma = text.find(',', begin);
    parts.push_back(text.substr(begin, comma - begin));
    if (comma == std::string::npos) return parts;
    begin = comma + 1;
  }
}

Status CheckBackendsBuilt(const Config& config) {
  if (config.compute_engine == "spark") {
    return MakeError(ErrorCode::kNotImplemented,
                     "the Spark compute engine is not built yet; use COMPUTE_ENGINE=local",
                     "COMPUTE_ENGINE");
  }
  return Status::OK();
}

/// The store's options from the settings. A key file that cannot be read or
/// holds no key stops the start (the error names the variable, never the key).
Result<FeatureStoreOptions> StoreOptions(const Config& config) {
  FeatureStoreOptions options;
  options.registry_uri = config.RegistryUri();
  options.offline_store_uri = config.OfflineStoreUri();
  options.online_store_uri = config.OnlineStoreUri();
  // Also used for s3:// paths in batch serving when the offline store is local.
  options.s3.endpoint = config.s3_endpoint;
  options.s3.region = config.s3_region;
  options.s3.access_key = config.s3_access_key;
  options.s3.secret_key = config.s3_secret_key;
  options.compute_threads = config.max_compute_threads;
  options.serving.cache_enabled = config.serving_cache_enabled;
  options.serving.cache_ttl_seconds = config.serving_cache_ttl_seconds;
  options.serving.cache_entries = config.serving_cache_entries;
  options.serving.max_entities = config.serving_max_entities;
  ARROW_ASSIGN_OR_RAISE(options.cipher,
                        Cipher::FromConfig(config.encryption_key, config.encryption_key_file));
  return options;
}

void SetLogLevel(const std::string& level) {
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ %v", spdlog::pattern_time_type::utc);
}

int Serve(const Config& config) {
  SetLogLevel(config.log_level);
  // SIGINT/SIGTERM are blocked in every thread (threads inherit the mask of
  // the one that starts them) and taken synchronously below with sigwait(), so
  // a signal arriving at any moment -- even before the server is listening --
  // means a graceful shutdown, never the default "terminate".
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  if (Status st = CheckBackendsBuilt(config); !st.ok()) return Fail(st);
  auto options_or = StoreOptions(config);
  if (!options_or.ok()) return Fail(options_or.status());
  FeatureStoreOptions store_options = std::move(*options_or);
  store_options.run_scheduler = true;
  store_options.recover_jobs = true;
  auto store = FeatureStore::Open(store_options);
  if (!store.ok()) return Fail(store.status());

  Router router;
  auto auth = std::make_shared<ServerAuth>(
      store->get(), ServerAuthOptions{.required = config.auth == "required"});
  AddApiRoutes(store->get(), &router, auth);
  HttpServerOptions options;
  options.host = config.host;
  options.port = config.port;
  options.threads = config.io_threads;
  options.max_body_bytes = config.max_body_bytes;
  options.header_timeout_seconds = config.header_timeout_seconds;
  options.read_timeout_seconds = config.read_timeout_seconds;
  options.idle_timeout_seconds = config.idle_timeout_seconds;
  auto server = HttpServer::Start(options, &router);
  if (!server.ok()) return Fail(server.status());

  spdlog::info("fstore serving on http://{}:{} (registry {}, offline {}, online {})", config.host,
               (*server)->port(), config.RegistryUri(), config.OfflineStoreUri(),
               config.OnlineStoreUri());
  // Tests and scripts read the bound port (useful with --port 0) from stdout.
  std::cout << "fstore listening on port " << (*server)->port() << std::endl;

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  spdlog::info("received {}: stopping", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->Shutdown();
  spdlog::info("shutting down: requests finished, closing stores");
  if (Status st = (*store)->Close(); !st.ok()) {
    spdlog::error("closing the stores failed: {}", st.ToString());
    return kExitFailure;
  }
  spdlog::info("stopped");
  return 0;
}

int Migrate(const Config& config) {
  SetLogLevel(config.log_level);
  auto registry = RegistryFromUri(config.RegistryUri());
  if (!registry.ok()) return Fail(registry.status());
  auto version = (*registry)->Migrate();
  if (!version.ok()) return Fail(version.status());
  std::cout << "registry " << config.RegistryUri() << " is at schema version " << *version
            << std::endl;
  return (*registry)->Close().ok() ? 0 : kExitFailure;
}

/// `fstore materialize <feature-set> [--start ..] [--end ..]`: one run on this
/// thread, without a server. Exit 0 when the job succeeded, 1 when it failed.
int Materialize(const Config& config, const std::string& feature_set, const std::string& start,
                const std::string& end) {
  SetLogLevel(config.log_level);
  if (Status st = CheckBackendsBuilt(config); !st.ok()) return Fail(st);
  MaterializeOptions options;
  options.trigger = "cli";
  for (const auto& [text, slot, name] :
       {std::tuple{&start, &options.start, "--start"}, std::tuple{&end, &options.end, "--end"}}) {
    if (text->empty()) continue;
    auto t = ParseTimestamp(*text);
    if (!t.ok()) return Fail(InvalidArgument(name, t.status().message()));
    *slot = *t;
  }
  if (options.start && options.end && *options.end <= *options.start) {
    return Fail(InvalidArgument("--end", "must be after --start"));
  }
  auto store_options = StoreOptions(config);
  if (!store_options.ok()) return Fail(store_options.status());
  auto store = FeatureStore::Open(*store_options);
  if (!store.ok()) return Fail(store.status());
  auto job = (*store)->MaterializeNow(feature_set, options);
  if (!job.ok()) return Fail(job.status());
  std::cout << SerializeJson(ToJson(*job)) << std::endl;
  if (Status st = (*store)->Close(); !st.ok()) return Fail(st);
  return job->status == JobStatus::kSucceeded ? 0 : kExitFailure;
}

/// `fstore get-online <feature-set> --key K [--key K2]`: the online store's
/// records for those entities (a composite key as comma-separated values).
int GetOnline(const Config& config, const std::string& feature_set,
              const std::vector<std::string>& keys) {
  SetLogLevel(config.log_level);
  if (Status st = CheckBackendsBuilt(config); !st.ok()) return Fail(st);
  std::vector<std::vector<std::string>> parts;
  for (const auto& k : keys) parts.push_back(SplitOnCommas(k));
  auto store_options = StoreOptions(config);
  if (!store_options.ok()) return Fail(store_options.status());
  auto store = FeatureStore::Open(*store_options);
  if (!store.ok()) return Fail(store.status());
  auto records = (*store)->DumpOnlineRecords(feature_set, parts);
  if (!records.ok()) return Fail(records.status());
  std::cout << SerializeJson(*records) << std::endl;
  return (*store)->Close().ok() ? 0 : kExitFailure;
}

/// `fstore keys create|list|revoke`: API keys, straight in the registry (a
/// running server sees the change within a second). Each change is audited
/// (key id "", status 0: the CLI). Exit 2 for a bad role or an unknown id.
int Keys(const Config& config, const std::string& op, const std::string& role_text,
         bool feature_sets_given, const std::string& feature_sets_text, const std::string& name,
         const std::string& id) {
  SetLogLevel(config.log_level);
  auto registry = RegistryFromUri(config.RegistryUri());
  if (!registry.ok()) return Fail(registry.status());
  if (auto migrated = (*registry)->Migrate(); !migrated.ok()) return Fail(migrated.status());
  ApiKeyStore keys((*registry).get(), /*required=*/false);
  AuditLog audit((*registry).get());
  if (op == "create") {
    auto role = ParseRole(role_text);
    if (!role.ok()) return Fail(InvalidArgument("--role", role.status().message()));
    std::vector<std::string> sets;
    if (feature_sets_given && feature_sets_text.find_first_not_of(" \t,") == std::string::npos) {
      // Not "every feature set": a limit that came out empty is a mistake.
      return Fail(InvalidArgument("--feature-sets",
                                  "names no feature set; leave the flag out for all"));
    }
    if (!feature_sets_text.empty()) {
      for (const std::string& part : SplitOnCommas(feature_sets_text)) {
        sets.emplace_back(Trim(part));
      }
    }
    auto key = keys.Create(*role, sets, name);
    if (!key.ok()) {
      Status st = key.status();
      if (ErrorCodeOf(st) == ErrorCode::kInvalidArgument) {
        st = InvalidArgument("--feature-sets", st.message());
      }
      return Fail(st);
    }
    (void)audit.Record({.key_id = "", .action = "key.create", .target = key->record.id,
                        .outcome = "success", .status = 0, .detail = "cli"});
    std::cout << "created API key " << key->record.id << " (role " << key->record.role
              << (sets.empty() ? std::string(", every feature set")
                               : ", feature sets " + feature_sets_text)
              << "); it is shown only once:" << std::endl;
    std::cout << key->secret << std::endl;
  } else if (op == "list") {
    auto list = keys.List();
    if (!list.ok()) return Fail(list.status());
    std::printf("%-20s  %-16s  %-6s  %-24s  %-27s  %s\n", "ID", "NAME", "ROLE", "FEATURE_SETS",
                "CREATED", "REVOKED");
    for (const ApiKeyRecord& k : *list) {
      std::string sets;
      for (const std::string& fs : k.feature_sets) sets += (sets.empty() ? "" : ",") + fs;
      std::printf("%-20s  %-16s  %-6s  %-24s  %-27s  %s\n", k.id.c_str(),
                  k.name.empty() ? "-" : k.name.c_str(), k.role.c_str(),
                  sets.empty() ? "*" : sets.c_str(), FormatTimestamp(k.created_at).c_str(),
                  k.revoked_at ? FormatTimestamp(*k.revoked_at).c_str() : "-");
    }
    std::fflush(stdout);
  } else {
    auto revoked = keys.Revoke(id);
    if (!revoked.ok()) {
      std::cerr << "fstore: " << revoked.status().message() << std::endl;
      (void)(*registry)->Close();
      return kExitBadConfig;
    }
    (void)audit.Record({.key_id = "", .action = "key.revoke", .target = revoked->id,
                        .outcome = "success", .status = 0, .detail = "cli"});
    std::cout << "revoked API key " << revoked->id << std::endl;
  }
  return (*registry)->Close().ok() ? 0 : kExitFailure;
}

int Main(int argc, char** argv) {
  CLI::App app{"fstore: a feature store for machine learning"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "fstore 0.1.0");

  SettingFlags serve_flags;
  CLI::App* serve = app.add_subcommand("serve", "Serve the REST API (port 8002 by default)");
  AddSettingFlags(serve, &serve_flags);

  SettingFlags migrate_flags;
  CLI::App* migrate = app.add_subcommand("migrate", "Apply the registry's schema migrations");
  AddSettingFlags(migrate, &migrate_flags);

  SettingFlags materialize_flags;
  CLI::App* materialize =
      app.add_subcommand("materialize", "Materialize a feature set once, without a server");
  std::string mat_feature_set, mat_start, mat_end;
  materialize->add_option("feature_set", mat_feature_set, "Feature set id or name")->required();
  materialize->add_option("--start", mat_start,
                          "Start of the event-time range (ISO 8601, UTC); default: the watermark");
  materialize->add_option("--end", mat_end, "End of the range, exclusive; default: now");
  AddSettingFlags(materialize, &materialize_flags);

  SettingFlags get_online_flags;
  CLI::App* get_online = app.add_subcommand(
      "get-online", "Print a feature set's online records for entity keys, without a server");
  std::string go_feature_set;
  std::vector<std::string> go_keys;
  get_online->add_option("feature_set", go_feature_set, "Feature set id or name")->required();
  get_online->add_option("--key", go_keys, "An entity key (composite: comma-separated)")
      ->required();
  AddSettingFlags(get_online, &get_online_flags);

  CLI::App* keys = app.add_subcommand("keys", "Manage API keys, straight in the registry");
  keys->require_subcommand(1);
  std::string key_role, key_feature_sets, key_name, key_id;
  SettingFlags keys_create_flags, keys_list_flags, keys_revoke_flags;
  CLI::App* keys_create =
      keys->add_subcommand("create", "Create a key; prints it as the last line, once");
  keys_create->add_option("--role", key_role, "admin, writer or reader")->required();
  CLI::Option* key_feature_sets_option = keys_create->add_option(
      "--feature-sets", key_feature_sets, "Comma-separated feature set names the key is limited to");
  keys_create->add_option("--name", key_name, "A label shown in lists");
  AddSettingFlags(keys_create, &keys_create_flags);
  CLI::App* keys_list = keys->add_subcommand("list", "List keys (never their secrets)");
  AddSettingFlags(keys_list, &keys_list_flags);
  CLI::App* keys_revoke = keys->add_subcommand("revoke", "Revoke a key by id");
  keys_revoke->add_option("id", key_id, "The key's id (key_...)")->required();
  AddSettingFlags(keys_revoke, &keys_revoke_flags);

  CLI::App* version = app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitBadConfig;
  }
  if (version->parsed()) {
    std::cout << "fstore 0.1.0" << std::endl;
    return 0;
  }
  const SettingFlags& flags = serve->parsed()         ? serve_flags
                             : materialize->parsed() ? materialize_flags
                             : get_online->parsed()  ? get_online_flags
                             : keys_create->parsed() ? keys_create_flags
                             : keys_list->parsed()   ? keys_list_flags
                             : keys_revoke->parsed() ? keys_revoke_flags
                                                     : migrate_flags;
  auto config = LoadConfig(flags);
  if (!config.ok()) return Fail(config.status());
  if (materialize->parsed()) return Materialize(*config, mat_feature_set, mat_start, mat_end);
  if (get_online->parsed()) return GetOnline(*config, go_feature_set, go_keys);
  if (keys->parsed()) {
    const std::string op = keys_create->parsed() ? "create" : keys_list->parsed() ? "list" : "revoke";
    return Keys(*config, op, key_role, key_feature_sets_option->count() > 0, key_feature_sets,
                key_name, key_id);
  }
  return serve->parsed() ? Serve(*config) : Migrate(*config);
}

}  // namespace
}  // namespace fstore

int main(int argc, char** argv) {
  // For builds without jemalloc (sanitizers; FSTORE_JEMALLOC=OFF), where
  // glibc's malloc serves: materialization allocates and frees buffers of
  // tens of MB per chunk, which glibc would map and unmap each time (every
  // page faulted in afresh: a third of a run's CPU time went to the kernel
  // zeroing pages). Keep them in the heap; the engine hands free memory back
  // after each job (malloc_trim). Both are no-ops under jemalloc.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  int code = fstore::Main(argc, argv);
  // Every store is closed and destroyed by now: stop the AWS SDK if an S3
  // offline store (or an s3:// batch path) started it.
  fstore::FinalizeS3();
  return code;
}
