// libFuzzer target for serving requests: any bytes sent to
// POST /api/v1/serving/online or /serving/historical are parsed and answered
// (a result or an error status) without crashing, against a store with a
// few definitions and records: string- and int-keyed sets, a set keyed by
// two entities, defaults, a ttl, a clock-reading feature and a derived
// feature over another set.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string_view>

#include <boost/json/parse.hpp>

#include "fstore/registry/codec.h"
#include "fstore/service/feature_store.h"
#include "fstore/service/historical_serving.h"

namespace {

void Must(const fstore::Status& st) {
  if (!st.ok()) __builtin_trap();
}

fstore::FeatureStore* Store() {
  static std::unique_ptr<fstore::FeatureStore> store = [] {
    static const std::filesystem::path dir =
        std::filesystem::temp_directory_path() /
        ("fstore_serving_fuzzer_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    // Removed when the fuzzer ends normally (at exit).
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    });
    fstore::FeatureStoreOptions options;
    options.registry_uri = "sqlite://" + (dir / "registry.db").string();
    options.offline_store_uri = "file://" + (dir / "offline").string();
    options.online_store_uri = "rocksdb://" + (dir / "online").string();
    options.serving.cache_enabled = true;
    options.serving.max_entities = 64;
    options.serving.poll_interval = std::chrono::milliseconds(0);
    auto opened = fstore::FeatureStore::Open(options);
    if (!opened.ok()) __builtin_trap();
    auto s = std::move(*opened);
    auto json = [](std::string_view text) { return boost::json::parse(text); };
    Must(s->CreateEntity(json(R"({"name": "user", "join_keys": ["user_id"]})")).status());
    Must(s->CreateEntity(json(R"({"name": "shop", "join_keys": ["shop_id"], "value_type": "int"})"))
             .status());
    Must(s->CreateFeatureSet(json(R"({"name": "profile", "entities": ["user"], "ttl": "30d"})"))
             .status());
    Must(s->CreateFeatureSet(json(R"({"name": "visits", "entities": ["user", "shop"]})")).status());
    Must(s->CreateFeatureSet(json(R"({"name": "shops", "entities": ["shop"]})")).status());
    Must(s->CreateFeature(json(R"({"name": "age", "feature_set_id": "profile",
                                   "data_type": "int", "default_value": 0})")).status());
    Must(s->CreateFeature(json(R"({"name": "score", "feature_set_id": "profile",
                                   "data_type": "float"})")).status());
    Must(s->CreateFeature(json(R"({"name": "n", "feature_set_id": "visits",
                                   "data_type": "int"})")).status());
    Must(s->CreateFeature(json(R"({"name": "rating", "feature_set_id": "shops",
                                   "data_type": "float", "default_value": 2.5})")).status());
    Must(s->CreateFeature(json(R"({"name": "age2", "feature_set_id": "visits",
                                   "data_type": "int", "source_features": ["profile:age"],
                                   "transformation": "age * 2"})")).status());
    // Records to find.
    using fstore::EntityKey;
    using fstore::OnlineRecord;
    OnlineRecord r;
    r.event_time = fstore::NowMicros();
    r.values = {{"age", int64_t{30}}, {"score", 0.5}};
    Must(s->online_store()->Write("profile", {{EntityKey{std::string("u1")}, r}}).status());
    r.values = {{"n", int64_t{3}}};
    Must(s->online_store()->Write("visits", {{EntityKey{std::string("u1"), int64_t{7}}, r}})
             .status());
    return s;
  }();
  return store.get();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fstore::FeatureStore* store = Store();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto body = fstore::ParseJson(text);
  if (!body.ok()) return 0;
  (void)store->ServeOnline(*body);
  auto table = fstore::ServeHistorical(store, *body);
  if (table.ok()) {
    (void)fstore::HistoricalTableToJson(**table);
    (void)fstore::HistoricalTableToArrowStream(**table);
  }
  return 0;
}
