#include "fstore/service/online_serving.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include <arrow/api.h>
#include <arrow/util/thread_pool.h>

#include "fstore/compute/expression.h"
#include "fstore/compute/source_schema.h"
#include "fstore/materialize/python_step.h"
#include "fstore/core/duration.h"
#include "fstore/core/json_text.h"
#include "fstore/materialize/feature_pipeline.h"
#include "fstore/materialize/feature_validation.h"
#include "fstore/online/feature_value_json.h"
#include "fstore/online/online_store.h"
#include "fstore/online/shared_record.h"
#include "fstore/registry/definitions.h"
#include "fstore/registry/registry.h"

namespace fstore {
namespace json = boost::json;

// ------------------------------------------------------------------ snapshot

/// A feature that reads the clock, evaluated at read time with the clock set
/// to now, from the record's stored inputs (ARCHITECTURE.md "Time semantics").
struct ReadTimeFeature {
  CompiledExpression expression;
  /// The expression's input columns and what fills them from a record:
  /// the event time, a join key, a feature value or a stored "__src__" input.
  struct Input {
    enum class From { kEventTime, kKey, kValue } from;
    std::string name;        ///< the column, as the expression names it
    std::string value_name;  ///< kValue: the record's value name
    size_t key_index = 0;    ///< kKey
    std::shared_ptr<arrow::DataType> type;
  };
  std::vector<Input> inputs;
};

struct ServingSet {
  FeatureSet feature_set;
  /// Clock-reading features by name. A set whose source schema cannot be read
  /// serves their materialized values (computed at the run's end).
  std::map<std::string, ReadTimeFeature, std::less<>> read_time;
  /// Derived features with inputs in other feature sets (never materialized):
  /// evaluated at read time from those sets' records of the same entity.
  std::set<std::string> cross_set_derived;
  struct CrossSetFeature {
    std::optional<CompiledExpression> expression;
    struct Input {
      std::string set;      ///< the input's feature set
      std::string feature;  ///< its name there
      std::string column;   ///< as the expression names it (bare)
      std::shared_ptr<arrow::DataType> type;
    };
    std::vector<Input> inputs;
    std::string error;  ///< why it cannot be served (then no expression)
  };
  std::map<std::string, CrossSetFeature, std::less<>> cross_set;
  std::vector<std::string> entity_names;  ///< in key order
  std::vector<std::string> join_keys;     ///< in key order
  std::vector<std::string> key_types;     ///< per join key: "int" | "string"
  int64_t ttl_micros = 0;                 ///< 0: none
  std::map<std::string, Feature, std::less<>> features;
};

struct OnlineServing::Snapshot {
  Snapshot() = default;
  Snapshot(const Snapshot&) = delete;  // features_by_name points into sets
  Snapshot& operator=(const Snapshot&) = delete;

  int64_t sequence = -1;
  std::map<std::string, ServingSet, std::less<>> sets;  ///< by name
  std::map<std::string, std::string, std::less<>> set_name_of_id;
  std::map<std::string, Entity> entities;           ///< by name
  /// Every feature name, with the sets that have a feature of that name: a
  /// bare name in a request is resolved with one lookup, not one per
  /// requested set (250 names x 25 sets were most of a request's planning).
  std::map<std::string, std::vector<std::pair<const ServingSet*, const Feature*>>, std::less<>>
      features_by_name;
};

namespace {

// Compiles the set's clock-reading features for read time. Needs the
// source's schema (its column types); without it they are served as
// materialized, with a warning.
void PlanReadTime(const OnlineServing::Snapshot& snapshot, ServingSet* s) {
  const FeatureSet& fs = s->feature_set;
  std::vector<Feature> features;
  bool any = false;
  for (const auto& [name, f] : s->features) {
    features.push_back(f);
    auto parsed = ParseTransformation(f.transformation);
    if (!f.transformation.empty() && parsed.ok() && parsed->reads_clock) any = true;
    for (const auto& input : f.source_features) {
      size_t colon = input.find(':');
      if (colon != std::string::npos && input.substr(0, colon) != fs.name) {
        s->cross_set_derived.insert(name);
      }
    }
  }
  if (!any || !fs.source || (fs.source->type != "file" && fs.source->type != "postgres")) return;
  auto schema = RequireSourceSchema(*fs.source);
  if (!schema.ok()) {
    spdlog::warn("online serving: the source schema of '{}' cannot be read; its clock-reading "
                 "features are served as materialized", fs.name);
    return;
  }
  std::vector<Entity> entities;
  for (const auto& [n, e] : snapshot.entities) entities.push_back(e);
  auto plan = PlanMaterialization(fs, features, entities, *schema);
  if (!plan.ok()) {
    spdlog::warn("online serving: planning '{}' failed: {}", fs.name, plan.status().ToString());
    return;
  }
  // A clock-reading feature may read output columns of the set's Python
  // step: they are stored like source columns ("__src__<column>").
  auto visible = SchemaAfterPython(fs, *schema);
  if (visible.ok()) schema = *visible;
  for (const PlannedFeature& p : plan->features) {
    if (!p.reads_clock || !p.expression) continue;
    if (p.kind != PlannedFeature::Kind::kScalar && p.kind != PlannedFeature::Kind::kDerived) {
      continue;
    }
    ReadTimeFeature rt{*p.expression, {}};
    bool ok = true;
    for (const auto& column : p.expression->input_columns()) {
      ReadTimeFeature::Input in;
      in.name = column;
      auto key = std::find(plan->key_columns.begin(), plan->key_columns.end(), column);
      if (column == fs.timestamp_field) {
        in.from = ReadTimeFeature::Input::From::kEventTime;
        in.type = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
      } else if (key != plan->key_columns.end()) {
        in.from = ReadTimeFeature::Input::From::kKey;
        in.key_index = static_cast<size_t>(key - plan->key_columns.begin());
        in.type = s->key_types[in.key_index] == "int" ? arrow::int64() : arrow::utf8();
      } else if (s->features.count(column) && p.kind == PlannedFeature::Kind::kDerived) {
        in.from = ReadTimeFeature::Input::From::kValue;
        in.value_name = column;
        auto type = ArrowTypeOf(s->features.at(column).data_type);
        if (!type.ok()) ok = false; else in.type = *type;
      } else if (auto field = (*schema)->GetFieldByName(column)) {
        in.from = ReadTimeFeature::Input::From::kValue;
        in.value_name = "__src__" + column;
        in.type = field->type();
        if (column == fs.created_timestamp_field) {
          in.type = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
        }
      } else {
        ok = false;
      }
      rt.inputs.push_back(std::move(in));
    }
    if (ok) s->read_time.emplace(p.feature.name, std::move(rt));
  }
}

// Compiles the set's derived features whose inputs live in other feature
// sets (keyed by the same join keys) against their inputs' types.
void PlanCrossSet(const OnlineServing::Snapshot& snapshot, ServingSet* s) {
  for (const auto& name : s->cross_set_derived) {
    const Feature& f = s->features.at(name);
    ServingSet::CrossSetFeature cs;
    std::vector<std::shared_ptr<arrow::Field>> fields;
    for (const auto& ref : f.source_features) {
      size_t colon = ref.find(':');
      std::string set_name = colon == std::string::npos ? s->feature_set.name : ref.substr(0, colon);
      std::string feature(FeatureNameOf(ref));
      auto set = snapshot.sets.find(set_name);
      if (set == snapshot.sets.end() || !set->second.features.count(feature)) {
        cs.error = "its input '" + ref + "' is not a live feature";
        break;
      }
      if (set->second.join_keys != s->join_keys) {
        cs.error = "its input set '" + set_name + "' is keyed differently";
        break;
      }
      auto type = ArrowTypeOf(set->second.features.at(feature).data_type);
      if (!type.ok()) {
        cs.error = type.status().message();
        break;
      }
      cs.inputs.push_back({set_name, feature, feature, *type});
      fields.push_back(arrow::field(feature, *type));
    }
    if (cs.error.empty()) {
      auto parsed = ParseTransformation(f.transformation);
      auto compiled = parsed.ok() ? CompiledExpression::Compile(*parsed, arrow::schema(fields))
                                  : Result<CompiledExpression>(parsed.status());
      if (compiled.ok()) {
        cs.expression = std::move(*compiled);
      } else {
        cs.error = compiled.status().message();
      }
    }
    s->cross_set.emplace(name, std::move(cs));
  }
}

Result<std::shared_ptr<const OnlineServing::Snapshot>> LoadSnapshot(Registry* registry) {
  auto snapshot = std::make_shared<OnlineServing::Snapshot>();
  ARROW_ASSIGN_OR_RAISE(snapshot->sequence, registry->ChangeSequence());
  ARROW_ASSIGN_OR_RAISE(auto entities, registry->ListEntities());
  for (auto& e : entities) snapshot->entities[e.name] = std::move(e);
  ARROW_ASSIGN_OR_RAISE(auto sets, registry->ListFeatureSets(false));
  for (auto& fs : sets) {
    ServingSet s;
    for (const auto& name : fs.entities) {
      auto it = snapshot->entities.find(name);
      if (it == snapshot->entities.end()) continue;  // validated at definition time
      s.entity_names.push_back(name);
      for (const auto& key : it->second.join_keys) {
        if (std::find(s.join_keys.begin(), s.join_keys.end(), key) != s.join_keys.end()) continue;
        s.join_keys.push_back(key);
        s.key_types.push_back(it->second.value_type);
      }
    }
    if (!fs.ttl.empty()) {
      auto ttl = ParseDuration(fs.ttl);
      if (ttl.ok()) s.ttl_micros = *ttl;
    }
    snapshot->set_name_of_id[fs.id] = fs.name;
    s.feature_set = std::move(fs);
    snapshot->sets[s.feature_set.name] = std::move(s);
  }
  ARROW_ASSIGN_OR_RAISE(auto features, registry->ListFeatures(false));
  for (auto& f : features) {
    auto id = snapshot->set_name_of_id.find(f.feature_set_id);
    if (id == snapshot->set_name_of_id.end()) continue;
    snapshot->sets[id->second].features[f.name] = std::move(f);
  }
  for (auto& [name, s] : snapshot->sets) PlanReadTime(*snapshot, &s);
  for (auto& [name, s] : snapshot->sets) PlanCrossSet(*snapshot, &s);
  for (const auto& [set_name, s] : snapshot->sets) {
    for (const auto& [name, f] : s.features) snapshot->features_by_name[name].emplace_back(&s, &f);
  }
  return std::shared_ptr<const OnlineServing::Snapshot>(std::move(snapshot));
}


// One join key's value from JSON, of the entity's type. `field()` names it
// (made only for an error).
template <typename FieldFn>
Result<EntityKeyPart> KeyPart(const json::value& v, const std::string& type, FieldFn field,
                              std::string* label) {
  if (type == "int") {
    if (v.is_int64()) {
      *label = std::to_string(v.as_int64());
      return EntityKeyPart(v.as_int64());
    }
    if (v.is_uint64() && v.as_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
      *label = std::to_string(v.as_uint64());
      return EntityKeyPart(static_cast<int64_t>(v.as_uint64()));
    }
    if (v.is_string()) {
      std::string_view s = v.as_string();
      int64_t x = 0;
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
      if (ec == std::errc() && ptr == s.data() + s.size() && !s.empty()) {
        *label = std::string(s);
        return EntityKeyPart(x);
      }
    }
    return InvalidArgument(field(), "expected an integer key (the entity's value_type is int), got " +
                                      SerializeJson(v));
  }
  if (v.is_string()) {
    *label = std::string(v.as_string());
    return EntityKeyPart(*label);
  }
  if (v.is_int64() || v.is_uint64()) {
    // A number for a string key: its decimal text.
    *label = v.is_int64() ? std::to_string(v.as_int64()) : std::to_string(v.as_uint64());
    return EntityKeyPart(*label);
  }
  return InvalidArgument(field(), "expected a string key, got " + SerializeJson(v));
}

std::shared_ptr<arrow::DataType> CanonicalType(const std::shared_ptr<arrow::DataType>& type) {
  if (arrow::is_integer(type->id())) return arrow::int64();
  if (arrow::is_floating(type->id())) return arrow::float64();
  switch (type->id()) {
    case arrow::Type::STRING:
    case arrow::Type::LARGE_STRING: return arrow::utf8();
    case arrow::Type::BOOL: return arrow::boolean();
    case arrow::Type::TIMESTAMP: return arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
    default: return type;
  }
}

Status AppendValue(arrow::ArrayBuilder* builder, const FeatureValue& v) {
  switch (builder->type()->id()) {
    case arrow::Type::INT64: {
      auto* b = static_cast<arrow::Int64Builder*>(builder);
      if (auto* x = std::get_if<int64_t>(&v)) return b->Append(*x);
      break;
    }
    case arrow::Type::DOUBLE: {
      auto* b = static_cast<arrow::DoubleBuilder*>(builder);
      if (auto* x = std::get_if<double>(&v)) return b->Append(*x);
      if (auto* x = std::get_if<int64_t>(&v)) return b->Append(static_cast<double>(*x));
      break;
    }
    case arrow::Type::STRING: {
      auto* b = static_cast<arrow::StringBuilder*>(builder);
      if (auto* x = std::get_if<std::string>(&v)) return b->Append(*x);
      break;
    }
    case arrow::Type::BOOL: {
      auto* b = static_cast<arrow::BooleanBuilder*>(builder);
      if (auto* x = std::get_if<bool>(&v)) return b->Append(*x);
      break;
    }
    case arrow::Type::TIMESTAMP: {
      auto* b = static_cast<arrow::TimestampBuilder*>(builder);
      if (auto* x = std::get_if<TimestampValue>(&v)) return b->Append(x->micros);
      break;
    }
    default: break;
  }
  return builder->AppendNull();
}

json::value ArrowValueToJson(const arrow::Array& array, int64_t i) {
  if (array.IsNull(i)) return nullptr;
  switch (array.type_id()) {
    case arrow::Type::INT64: return static_cast<const arrow::Int64Array&>(array).Value(i);
    case arrow::Type::DOUBLE: {
      double d = static_cast<const arrow::DoubleArray&>(array).Value(i);
      return std::isfinite(d) ? json::value(d) : json::value(nullptr);
    }
    case arrow::Type::STRING:
      return json::value(static_cast<const arrow::StringArray&>(array).GetString(i));
    case arrow::Type::BOOL: return static_cast<const arrow::BooleanArray&>(array).Value(i);
    case arrow::Type::TIMESTAMP:
      return json::value(FormatTimestamp(static_cast<const arrow::TimestampArray&>(array).Value(i)));
    default: {
      auto scalar = array.GetScalar(i);
      return scalar.ok() ? json::value((*scalar)->ToString()) : json::value(nullptr);
    }
  }
}

// A clock-reading feature's values now, for each lookup that has a record.
Result<std::vector<json::value>> EvaluateAtReadTime(
    const ReadTimeFeature& rt, const Feature& feature, const std::vector<EntityKey>& keys,
    const std::vector<std::shared_ptr<const SharedRecord>>& records, TimestampMicros now) {
  const int64_t n = static_cast<int64_t>(keys.size());
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::vector<std::shared_ptr<arrow::Array>> arrays;
  for (const auto& in : rt.inputs) {
    auto type = CanonicalType(in.type);
    std::unique_ptr<arrow::ArrayBuilder> builder;
    ARROW_RETURN_NOT_OK(arrow::MakeBuilder(arrow::default_memory_pool(), type, &builder));
    for (int64_t i = 0; i < n; ++i) {
      FeatureValue v;
      if (records[i]) {
        switch (in.from) {
          case ReadTimeFeature::Input::From::kEventTime:
            v = TimestampValue{records[i]->event_time()};
            break;
          case ReadTimeFeature::Input::From::kKey:
            std::visit([&](const auto& part) { v = part; }, keys[i][in.key_index]);
            break;
          case ReadTimeFeature::Input::From::kValue: {
            size_t cursor = 0;
            if (auto found = records[i]->Find(in.value_name, &cursor)) v = found->Decode();
            break;
          }
        }
      }
      ARROW_RETURN_NOT_OK(AppendValue(builder.get(), v));
    }
    ARROW_ASSIGN_OR_RAISE(auto array, builder->Finish());
    fields.push_back(arrow::field(in.name, type));
    arrays.push_back(std::move(array));
  }
  auto batch = arrow::RecordBatch::Make(arrow::schema(fields), n, arrays);
  EvalContext ctx;
  ctx.clock = now;
  ARROW_ASSIGN_OR_RAISE(auto result, rt.expression.Evaluate(*batch, ctx));
  ARROW_ASSIGN_OR_RAISE(CheckedColumn checked, CheckFeatureColumn(feature, result));
  std::vector<json::value> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[i] = ArrowValueToJson(*checked.values, i);
  return out;
}

}  // namespace

// --------------------------------------------------------------------- cache

/// A bounded LRU of (feature set, entity key) -> record (or its absence),
/// each entry valid for the cache ttl and only while its feature set's
/// generation is unchanged (a materialization write bumps it).
class OnlineServing::Cache {
 public:
  Cache(size_t capacity, int64_t ttl_micros) : capacity_(capacity), ttl_micros_(ttl_micros) {}

  bool Get(const std::string& key, const std::string& feature_set, TimestampMicros now,
           std::shared_ptr<const SharedRecord>* out) {
    std::lock_guard lock(mutex_);
    auto it = map_.find(key);
    if (it == map_.end()) return false;
    Entry& e = *it->second;
    if (e.expires <= now || e.generation != Generation(feature_set)) {
      lru_.erase(it->second);
      map_.erase(it);
      return false;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    *out = e.record;
    return true;
  }

  void Put(const std::string& key, const std::string& feature_set, TimestampMicros now,
           const std::shared_ptr<const SharedRecord>& record, uint64_t generation) {
    std::lock_guard lock(mutex_);
    if (generation != Generation(feature_set)) return;  // written meanwhile
    auto it = map_.find(key);
    if (it != map_.end()) {
      lru_.erase(it->second);
      map_.erase(it);
    }
    lru_.push_front(Entry{key, record, now + ttl_micros_, generation});
    map_[key] = lru_.begin();
    while (map_.size() > capacity_) {
      map_.erase(lru_.back().key);
      lru_.pop_back();
    }
  }

  uint64_t CurrentGeneration(const std::string& feature_set) {
    std::lock_guard lock(mutex_);
    return Generation(feature_set);
  }

  void Invalidate(const std::string& feature_set) {
    std::lock_guard lock(mutex_);
    ++generations_[feature_set];
  }

 private:
  struct Entry {
    std::string key;
    std::shared_ptr<const SharedRecord> record;
    TimestampMicros expires;
    uint64_t generation;
  };
  uint64_t Generation(const std::string& feature_set) {
    auto it = generations_.find(feature_set);
    return it == generations_.end() ? 0 : it->second;
  }

  std::mutex mutex_;
  size_t capacity_;
  int64_t ttl_micros_;
  std::list<Entry> lru_;
  std::unordered_map<std::string, std::list<Entry>::iterator> map_;
  std::unordered_map<std::string, uint64_t> generations_;
};

json::value FeatureValueToJson(const FeatureValue& v) {
  struct Visitor {
    json::value operator()(std::monostate) const { return nullptr; }
    json::value operator()(int64_t x) const { return x; }
    json::value operator()(double x) const {
      // JSON has no NaN or infinities.
      if (!std::isfinite(x)) return nullptr;
      return x;
    }
    json::value operator()(const std::string& x) const { return json::value(x); }
    json::value operator()(bool x) const { return x; }
    json::value operator()(const TimestampValue& x) const {
      return json::value(FormatTimestamp(x.micros));
    }
    json::value operator()(const ListValue& x) const {
      json::array a;
      for (const auto& item : x.items) a.push_back(FeatureValueToJson(item));
      return a;
    }
  };
  return std::visit(Visitor{}, v);
}

// ------------------------------------------------------------------- service

OnlineServing::OnlineServing(Registry* registry, OnlineStore* online, OnlineServingOptions options)
    : registry_(registry), online_(online), options_(options) {
  if (std::thread::hardware_concurrency() > 1) {
    auto pool = arrow::internal::ThreadPool::Make(1);
    if (pool.ok()) helpers_ = std::move(pool).ValueUnsafe();
  }
  if (options_.cache_enabled) {
    cache_ = std::make_unique<Cache>(static_cast<size_t>(std::max(1, options_.cache_entries)),
                                     int64_t{options_.cache_ttl_seconds} * 1'000'000);
  }
}

OnlineServing::~OnlineServing() { Stop(); }

Status OnlineServing::Start() {
  ARROW_RETURN_NOT_OK(Refresh());
  CheckWriteVersions();  // the versions before any record is cached
  if (options_.poll_interval.count() > 0) {
    poll_thread_.Start(options_.poll_interval, [this] { Poll(); });
  }
  return Status::OK();
}

void OnlineServing::Stop() { poll_thread_.Stop(); }

void OnlineServing::Poll() {
  auto sequence = registry_->ChangeSequence();
  auto current = snapshot_.load();
  if (sequence.ok() && (!current || *sequence != current->sequence)) {
    Status st = Refresh();
    if (!st.ok()) spdlog::warn("online serving: refreshing definitions failed: {}", st.ToString());
  }
  CheckWriteVersions();
}

void OnlineServing::CheckWriteVersions() {
  if (!cache_) return;
  auto snapshot = snapshot_.load();
  if (!snapshot) return;
  std::vector<std::string> names;
  names.reserve(snapshot->sets.size());
  for (const auto& [name, set] : snapshot->sets) names.push_back(name);
  auto got = online_->WriteVersions(names);
  if (!got.ok()) {
    // The store is down: serving fails too; the next poll compares again
    // (the versions only grow, so no write is missed).
    spdlog::debug("online serving: reading write versions failed: {}", got.status().ToString());
    return;
  }
  if (!got->has_value()) return;  // a store only this process writes
  const std::vector<int64_t>& versions = **got;
  std::lock_guard lock(versions_mutex_);
  for (size_t i = 0; i < names.size(); ++i) {
    auto [it, first] = write_versions_.try_emplace(names[i], versions[i]);
    // A set seen for the first time after the start may have cached records
    // from before its version was known: drop them too.
    if ((first && write_versions_seen_) || (!first && it->second != versions[i])) {
      cache_->Invalidate(names[i]);
    }
    it->second = versions[i];
  }
  write_versions_seen_ = true;
}

Status OnlineServing::Refresh() {
  std::lock_guard lock(refresh_mutex_);
  ARROW_ASSIGN_OR_RAISE(auto snapshot, LoadSnapshot(registry_));
  snapshot_.store(std::move(snapshot));
  return Status::OK();
}

void OnlineServing::InvalidateFeatureSet(const std::string& feature_set) {
  if (cache_) cache_->Invalidate(feature_set);
}

namespace {

/// Appends JSON text (core/json_text.h), the punctuation by the caller.
class JsonWriter {
 public:
  std::string& text() { return text_; }
  void String(std::string_view s) { AppendJsonString(s, &text_); }
  void Value(const json::value& v) { AppendJson(v, &text_); }

 private:
  std::string text_;
};

struct RequestedFeature {
  const ServingSet* set;
  const Feature* feature;
  std::string output_name;  ///< as requested
};

// One entity to look up in one feature set.
struct Lookup {
  EntityKey key;
  std::string label;
};

// A cross-set derived feature for each lookup of `own`: from the records of
// its input sets for the same key; nullopt where no input has a record.
Result<std::vector<std::optional<json::value>>> EvaluateCrossSet(
    const OnlineServing::Snapshot& snapshot, const ServingSet::CrossSetFeature& cs,
    const Feature& feature, const std::map<const ServingSet*, std::vector<Lookup>>& lookups,
    const std::map<const ServingSet*, std::vector<std::shared_ptr<const SharedRecord>>>& records,
    const ServingSet* own, TimestampMicros now) {
  const auto& own_lookups = lookups.at(own);
  const int64_t n = static_cast<int64_t>(own_lookups.size());
  std::vector<bool> any(static_cast<size_t>(n), false);
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::vector<std::shared_ptr<arrow::Array>> arrays;
  for (const auto& in : cs.inputs) {
    const ServingSet* set = &snapshot.sets.at(in.set);
    const auto& set_lookups = lookups.at(set);
    const auto& set_records = records.at(set);
    std::unordered_map<std::string, size_t> index_of;
    for (size_t i = 0; i < set_lookups.size(); ++i) {
      index_of.emplace(EncodeEntityKey(set_lookups[i].key), i);
    }
    auto type = CanonicalType(in.type);
    std::unique_ptr<arrow::ArrayBuilder> builder;
    ARROW_RETURN_NOT_OK(arrow::MakeBuilder(arrow::default_memory_pool(), type, &builder));
    for (int64_t i = 0; i < n; ++i) {
      FeatureValue v;
      auto it = index_of.find(EncodeEntityKey(own_lookups[i].key));
      if (it != index_of.end() && set_records[it->second]) {
        any[i] = true;
        size_t cursor = 0;
        if (auto found = set_records[it->second]->Find(in.feature, &cursor)) v = found->Decode();
      }
      ARROW_RETURN_NOT_OK(AppendValue(builder.get(), v));
    }
    ARROW_ASSIGN_OR_RAISE(auto array, builder->Finish());
    fields.push_back(arrow::field(in.column, type));
    arrays.push_back(std::move(array));
  }
  auto batch = arrow::RecordBatch::Make(arrow::schema(fields), n, arrays);
  EvalContext ctx;
  ctx.clock = now;
  ARROW_ASSIGN_OR_RAISE(auto result, cs.expression->Evaluate(*batch, ctx));
  ARROW_ASSIGN_OR_RAISE(CheckedColumn checked, CheckFeatureColumn(feature, result));
  std::vector<std::optional<json::value>> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (any[i]) out[i] = ArrowValueToJson(*checked.values, i);
  }
  return out;
}

}  // namespace

void OnlineServing::RunShared(const std::function<void()>& work, bool share) {
  if (helpers_ && share) {
    auto helped = helpers_->Submit(work);
    work();  // (all of it, if the pool is shut down)
    if (helped.ok()) helped->Wait();
  } else {
    work();
  }
}

Result<std::string> OnlineServing::Serve(const json::value& body, TimestampMicros now,
                                          const RequestContext& context) {
  const auto started = std::chrono::steady_clock::now();
  std::shared_ptr<const Snapshot> snapshot = snapshot_.load();
  if (!snapshot) return Unavailable("online serving is starting: no definitions loaded yet");
  if (!body.is_object()) return InvalidArgument("", "the request body must be a JSON object");
  const json::object& request = body.as_object();
  for (const auto& [name, value] : request) {
    if (name != "feature_sets" && name != "features" && name != "entities" &&
        name != "entity_rows") {
      return InvalidArgument(std::string(name),
                             "unknown field '" + std::string(name) +
                                 "' (expected feature_sets, features, and entities or entity_rows)");
    }
  }

  // Feature sets: given, or those of qualified feature names.
  std::vector<const ServingSet*> sets;
  // Field names of list elements ("features[3]") are made only for errors.
  auto element = [](std::string_view list, size_t i) {
    return std::string(list) + "[" + std::to_string(i) + "]";
  };
  auto add_set = [&](std::string_view ref, std::string_view list,
                     size_t i) -> Result<const ServingSet*> {
    auto it = snapshot->sets.find(ref);
    if (it == snapshot->sets.end()) {
      auto by_id = snapshot->set_name_of_id.find(ref);
      if (by_id != snapshot->set_name_of_id.end()) it = snapshot->sets.find(by_id->second);
    }
    if (it == snapshot->sets.end()) {
      // An unknown set in a feature's name is an unknown name (400); one
      // listed in feature_sets is a resource not found (404).
      if (list == "features") {
        return InvalidArgument(element(list, i),
                               "unknown feature: feature set '" + std::string(ref) + "' not found");
      }
      return MakeError(ErrorCode::kNotFound, "feature set '" + std::string(ref) + "' not found",
                       element(list, i));
    }
    if (!it->second.feature_set.online_enabled) {
      return Unprocessable(element(list, i), "feature set '" + it->second.feature_set.name +
                                      "' has online_enabled false: it is not served online");
    }
    ARROW_RETURN_NOT_OK(context.principal->CheckFeatureSet(it->second.feature_set.name));
    if (std::find(sets.begin(), sets.end(), &it->second) == sets.end()) sets.push_back(&it->second);
    return &it->second;
  };
  const json::value* sets_value = request.if_contains("feature_sets");
  if (sets_value) {
    if (!sets_value->is_array()) {
      return InvalidArgument("feature_sets", "must be an array of feature set names");
    }
    for (size_t i = 0; i < sets_value->as_array().size(); ++i) {
      const auto& v = sets_value->as_array()[i];
      if (!v.is_string()) {
        return InvalidArgument(element("feature_sets", i), "must be a feature set name (a string)");
      }
      ARROW_RETURN_NOT_OK(add_set(v.as_string(), "feature_sets", i).status());
    }
  }

  // Features: bare when unambiguous among the sets, or "set:feature".
  std::vector<RequestedFeature> requested;
  const json::value* features_value = request.if_contains("features");
  if (features_value) {
    if (!features_value->is_array()) {
      return InvalidArgument("features", "must be an array of feature names");
    }
    for (size_t i = 0; i < features_value->as_array().size(); ++i) {
      const auto& v = features_value->as_array()[i];
      if (!v.is_string() || v.as_string().empty()) {
        return InvalidArgument(element("features", i),
                               "must be a feature name (a non-empty string)");
      }
      const std::string_view ref = v.as_string();
      size_t colon = ref.rfind(':');
      if (colon != std::string_view::npos) {
        const std::string_view set_name = ref.substr(0, colon);
        const std::string_view name = ref.substr(colon + 1);
        ARROW_ASSIGN_OR_RAISE(const ServingSet* owner, add_set(set_name, "features", i));
        const ServingSet& s = *owner;
        auto f = s.features.find(name);
        if (f == s.features.end()) {
          return InvalidArgument(element("features", i),
                                 "feature '" + std::string(name) + "' is not in feature set '" +
                                     s.feature_set.name + "'");
        }
        requested.push_back({&s, &f->second, std::string(ref)});
        continue;
      }
      // The requested sets that have it, in the order of `sets`.
      const ServingSet* owner = nullptr;
      const Feature* feature = nullptr;
      size_t owner_at = sets.size();
      const ServingSet* second = nullptr;
      size_t second_at = sets.size();
      auto named = snapshot->features_by_name.find(ref);
      if (named != snapshot->features_by_name.end()) {
        for (const auto& [s, f] : named->second) {
          const size_t at = std::find(sets.begin(), sets.end(), s) - sets.begin();
          if (at == sets.size()) continue;  // not requested
          if (at < owner_at) {
            second = owner;
            second_at = owner_at;
            owner = s;
            owner_at = at;
            feature = f;
          } else if (at < second_at) {
            second = s;
            second_at = at;
          }
        }
      }
      if (second) {
        return InvalidArgument(element("features", i),
                               "feature '" + std::string(ref) + "' is ambiguous: it is in '" +
                                   owner->feature_set.name + "' and '" + second->feature_set.name +
                                   "'; write 'feature_set:" + std::string(ref) + "'");
      }
      if (!owner) {
        return InvalidArgument(element("features", i),
                               "feature '" + std::string(ref) +
                                   "' is not in the requested feature sets" +
                                          (sets.empty() ? " (none given: name them in "
                                                          "feature_sets or write 'set:feature')"
                                                        : ""));
      }
      requested.push_back({owner, feature, std::string(ref)});
    }
  } else {
    // No list: every feature of the given sets.
    for (const ServingSet* s : sets) {
      for (const auto& [name, f] : s->features) requested.push_back({s, &f, name});
    }
  }
  if (sets.empty()) return InvalidArgument("feature_sets", "name at least one feature set");
  if (requested.empty()) return InvalidArgument("features", "no features to serve");
  {
    std::vector<std::string_view> names;
    names.reserve(requested.size());
    for (const auto& r : requested) names.push_back(r.output_name);
    std::sort(names.begin(), names.end());
    auto twice = std::adjacent_find(names.begin(), names.end());
    if (twice != names.end()) {
      return InvalidArgument("features", "feature '" + std::string(*twice) + "' is asked twice");
    }
  }
  for (const auto& r : requested) {
    auto cs = r.set->cross_set.find(r.feature->name);
    if (cs != r.set->cross_set.end() && !cs->second.expression) {
      return Unprocessable("features", "feature '" + r.output_name +
                                           "' is derived from other feature sets but cannot be "
                                           "evaluated: " + cs->second.error);
    }
  }
  // Only the sets features are served from are read.
  std::vector<const ServingSet*> used;
  for (const auto& r : requested) {
    if (std::find(used.begin(), used.end(), r.set) == used.end()) used.push_back(r.set);
  }

  const json::value* entities_value = request.if_contains("entities");
  const json::value* rows_value = request.if_contains("entity_rows");
  if ((entities_value != nullptr) == (rows_value != nullptr)) {
    return InvalidArgument("entities", "give either entities ({\"entity\": [keys]}) or "
                                       "entity_rows ([{join_key: value}]), not both or neither");
  }

  // Per used set: its lookups; per output entity: which lookup of each set.
  std::map<const ServingSet*, std::vector<Lookup>> lookups;
  std::vector<std::string> labels;  // seed form: output labels, in order
  // Per output (seed form: label; row form: row) and used set, in one flat
  // array: which lookup of that set; kNone where the output is keyed by
  // another entity.
  constexpr size_t kNone = static_cast<size_t>(-1);
  const size_t n_used = used.size();
  auto used_index = [&](const ServingSet* s) {
    return static_cast<size_t>(std::find(used.begin(), used.end(), s) - used.begin());
  };
  std::vector<size_t> lookup_of_output;
  json::array row_keys;  // row form: each row's join keys, echoed
  if (entities_value) {
    if (!entities_value->is_object() || entities_value->as_object().empty()) {
      return InvalidArgument("entities", "must be an object of entity name -> array of keys");
    }
    const auto& given = entities_value->as_object();
    // Each used set must be keyed by exactly one entity, given here (by its
    // name or its join key's name).
    std::map<const ServingSet*, std::string> name_for_set;
    for (const ServingSet* s : used) {
      if (s->entity_names.size() != 1 || s->join_keys.size() != 1) {
        return InvalidArgument("entities", "feature set '" + s->feature_set.name +
                                               "' is keyed by several join keys: use entity_rows");
      }
      if (given.contains(s->entity_names[0])) {
        name_for_set[s] = s->entity_names[0];
      } else if (given.contains(s->join_keys[0])) {
        name_for_set[s] = s->join_keys[0];
      } else {
        return InvalidArgument("entities", "feature set '" + s->feature_set.name +
                                               "' is keyed by entity '" + s->entity_names[0] +
                                               "': give its keys under \"" + s->entity_names[0] +
                                               "\"");
      }
    }
    size_t total = 0;
    for (const auto& [name, keys] : given) {
      const std::string_view given_name = name;  // (clang 14 cannot capture a binding)
      auto field = [&] { return "entities." + std::string(given_name); };
      bool used_name = std::any_of(name_for_set.begin(), name_for_set.end(),
                                   [&](const auto& p) { return p.second == given_name; });
      if (!used_name) {
        return InvalidArgument(field(), "no requested feature is keyed by '" +
                                            std::string(name) + "'");
      }
      if (!keys.is_array() || keys.as_array().empty()) {
        return InvalidArgument(field(), "must be a non-empty array of keys");
      }
      total += keys.as_array().size();
    }
    if (total > static_cast<size_t>(options_.max_entities)) {
      return MakeError(ErrorCode::kPayloadTooLarge,
                       "the request asks for " + std::to_string(total) +
                           " entities; the limit is " + std::to_string(options_.max_entities) +
                           " per request (FSTORE_SERVING_MAX_ENTITIES)",
                       "entities");
    }
    const bool qualified = given.size() > 1;
    std::map<std::string, size_t> output_of_label;
    for (const auto& [name, keys] : given) {
      const auto& array = keys.as_array();
      const std::string_view entity_name = name;  // (clang 14 cannot capture a binding)
      // The sets keyed by this entity, with their places in `used` and
      // their lookup lists (found once, not per key).
      struct Keyed {
        const ServingSet* set;
        size_t used;
        std::vector<Lookup>* lookups;
      };
      std::vector<Keyed> keyed;
      for (const auto& [s, set_name] : name_for_set) {
        if (set_name == name) keyed.push_back({s, used_index(s), &lookups[s]});
      }
      for (size_t i = 0; i < array.size(); ++i) {
        auto field = [&] { return element("entities." + std::string(entity_name), i); };
        // A key is parsed once per key type its sets have (one, usually).
        const std::string* parsed_as = nullptr;
        EntityKeyPart part;
        std::string label;
        size_t output = 0;
        for (const Keyed& k : keyed) {
          if (parsed_as == nullptr || *parsed_as != k.set->key_types[0]) {
            std::string key_label;
            ARROW_ASSIGN_OR_RAISE(part, KeyPart(array[i], k.set->key_types[0], field, &key_label));
            label = qualified ? std::string(name) + ":" + key_label : std::move(key_label);
            auto [it, fresh] = output_of_label.emplace(label, labels.size());
            if (fresh) {
              labels.push_back(label);
              lookup_of_output.resize(lookup_of_output.size() + n_used, kNone);
            }
            output = it->second;
            parsed_as = &k.set->key_types[0];
          }
          size_t& slot = lookup_of_output[output * n_used + k.used];
          if (slot == kNone) {
            slot = k.lookups->size();
            k.lookups->push_back({EntityKey{part}, label});
          }
        }
      }
    }
  } else {
    if (!rows_value->is_array() || rows_value->as_array().empty()) {
      return InvalidArgument("entity_rows", "must be a non-empty array of objects");
    }
    const auto& rows = rows_value->as_array();
    if (rows.size() > static_cast<size_t>(options_.max_entities)) {
      return MakeError(ErrorCode::kPayloadTooLarge,
                       "the request asks for " + std::to_string(rows.size()) +
                           " entity rows; the limit is " + std::to_string(options_.max_entities) +
                           " per request (FSTORE_SERVING_MAX_ENTITIES)",
                       "entity_rows");
    }
    lookup_of_output.assign(rows.size() * n_used, kNone);
    for (size_t r = 0; r < rows.size(); ++r) {
      auto row_field = [&] { return element("entity_rows", r); };
      if (!rows[r].is_object()) return InvalidArgument(row_field(), "must be an object");
      const auto& row = rows[r].as_object();
      for (const auto& [k, v] : row) {
        const std::string_view column = k;  // (clang 14 cannot capture a binding)
        bool known = std::any_of(used.begin(), used.end(), [&](const ServingSet* s) {
          return std::find(s->join_keys.begin(), s->join_keys.end(), column) !=
                 s->join_keys.end();
        });
        if (!known) {
          return InvalidArgument(row_field() + "." + std::string(k),
                                 "'" + std::string(k) +
                                     "' is not a join key of the requested feature sets");
        }
      }
      row_keys.push_back(row);
      for (const ServingSet* s : used) {
        EntityKey key;
        std::string label;
        for (size_t k = 0; k < s->join_keys.size(); ++k) {
          const json::value* v = row.if_contains(s->join_keys[k]);
          auto field = [&] { return row_field() + "." + s->join_keys[k]; };
          if (!v) {
            return InvalidArgument(field(), "missing: feature set '" + s->feature_set.name +
                                                "' is keyed by " + s->join_keys[k]);
          }
          std::string part_label;
          ARROW_ASSIGN_OR_RAISE(EntityKeyPart part, KeyPart(*v, s->key_types[k], field,
                                                            &part_label));
          key.push_back(std::move(part));
          label += (k ? "," : "") + part_label;
        }
        lookup_of_output[r * n_used + used_index(s)] = lookups[s].size();
        lookups[s].push_back({std::move(key), std::move(label)});
      }
    }
  }

  // Inputs of cross-set derived features: their sets' records of the same
  // entities (read too when not requested; not reported as missing).
  std::set<const ServingSet*> auxiliary;
  for (const auto& r : requested) {
    auto cs = r.set->cross_set.find(r.feature->name);
    if (cs == r.set->cross_set.end()) continue;
    for (const auto& in : cs->second.inputs) {
      const ServingSet* a = &snapshot->sets.at(in.set);
      ARROW_RETURN_NOT_OK(context.principal->CheckFeatureSet(a->feature_set.name));
      if (lookups.count(a)) continue;
      lookups[a] = lookups[r.set];
      auxiliary.insert(a);
    }
  }

  // One multi-get per feature set (of the keys the cache does not have).
  struct SetRead {
    const ServingSet* set;
    std::vector<size_t> misses;  ///< indexes into the set's lookups
    std::vector<std::string> cache_keys;
    uint64_t generation = 0;
    std::vector<EntityKey> keys;
    Status status;
    std::vector<std::shared_ptr<const SharedRecord>> got;
    double seconds = 0;
  };
  std::map<const ServingSet*, std::vector<std::shared_ptr<const SharedRecord>>> records;
  std::vector<SetRead> set_reads;
  size_t reads = 0, hits = 0, missed = 0;
  for (const auto& [s, list] : lookups) {
    const std::string& name = s->feature_set.name;
    auto& out = records[s];
    out.resize(list.size());
    SetRead read;
    read.set = s;
    read.generation = cache_ ? cache_->CurrentGeneration(name) : 0;
    for (size_t i = 0; i < list.size(); ++i) {
      ++reads;
      if (cache_) {
        std::string cache_key = name;
        cache_key.push_back('\0');
        cache_key += EncodeEntityKey(list[i].key);
        std::shared_ptr<const SharedRecord> cached;
        if (cache_->Get(cache_key, name, now, &cached)) {
          ++hits;
          // The cache holds records regardless of the ttl: expire here.
          if (cached && s->ttl_micros > 0 && cached->event_time() < now - s->ttl_micros) {
            cached.reset();
          }
          out[i] = std::move(cached);
          continue;
        }
        read.cache_keys.push_back(std::move(cache_key));
      }
      read.misses.push_back(i);
    }
    if (read.misses.empty()) continue;
    read.keys.reserve(read.misses.size());
    for (size_t i : read.misses) read.keys.push_back(list[i].key);
    missed += read.misses.size();
    set_reads.push_back(std::move(read));
  }
  // The cache stores records unexpired; the ttl applies when served.
  // Each reader takes the next set nobody has taken.
  std::atomic<size_t> next_read{0};
  auto run_reads = [&] {
    for (size_t k; (k = next_read.fetch_add(1, std::memory_order_relaxed)) < set_reads.size();) {
      SetRead& read = set_reads[k];
      const auto read_started = std::chrono::steady_clock::now();
      auto got = online_->ReadShared(read.set->feature_set.name, read.keys,
                                     cache_ ? 0 : read.set->ttl_micros, now);
      if (got.ok()) {
        read.got = std::move(got).ValueUnsafe();
      } else {
        read.status = got.status();
      }
      read.seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - read_started).count();
    }
  };
  // A batch over several sets reads them on two threads, whole sets each
  // (still one multi-get per set), each thread taking the next set when it
  // is done with one: the same work, done sooner when the other core is
  // free.
  RunShared(run_reads, set_reads.size() > 1 && missed >= kParallelReadKeys);
  for (SetRead& read : set_reads) {
    const ServingSet* s = read.set;
    ARROW_RETURN_NOT_OK(read.status);
    if (context.usage) context.usage->online_store_seconds += read.seconds;
    auto& got = read.got;
    auto& out = records[s];
    for (size_t j = 0; j < read.misses.size(); ++j) {
      if (cache_) cache_->Put(read.cache_keys[j], s->feature_set.name, now, got[j], read.generation);
      if (got[j] && s->ttl_micros > 0 && got[j]->event_time() < now - s->ttl_micros) got[j].reset();
      out[read.misses[j]] = std::move(got[j]);
    }
  }

  // Clock-reading features: evaluated now, from the records' stored inputs;
  // cross-set derived features: from their input sets' records.
  std::map<std::pair<const ServingSet*, std::string>, std::vector<std::optional<json::value>>>
      read_time;
  for (const auto& r : requested) {
    auto rt = r.set->read_time.find(r.feature->name);
    if (rt != r.set->read_time.end()) {
      std::vector<EntityKey> keys;
      for (const auto& l : lookups[r.set]) keys.push_back(l.key);
      ARROW_ASSIGN_OR_RAISE(auto values,
                            EvaluateAtReadTime(rt->second, *r.feature, keys, records[r.set], now));
      auto& slot = read_time[std::make_pair(r.set, r.feature->name)];
      for (size_t i = 0; i < values.size(); ++i) {
        slot.push_back(records[r.set][i] ? std::optional<json::value>(values[i]) : std::nullopt);
      }
      continue;
    }
    auto cs = r.set->cross_set.find(r.feature->name);
    if (cs == r.set->cross_set.end()) continue;
    ARROW_ASSIGN_OR_RAISE(auto values, EvaluateCrossSet(*snapshot, cs->second, *r.feature,
                                                        lookups, records, r.set, now));
    read_time[std::make_pair(r.set, r.feature->name)] = std::move(values);
  }

  // Assemble. Per requested feature, once: its set's records and its values
  // evaluated at read time if any.
  struct Source {
    const std::vector<std::shared_ptr<const SharedRecord>>* records;
    const std::vector<std::optional<json::value>>* evaluated;
    size_t used;  ///< its set's index in `used`
  };
  std::vector<Source> sources;
  sources.reserve(requested.size());
  for (const auto& r : requested) {
    auto rt = read_time.find({r.set, r.feature->name});
    sources.push_back(
        {&records[r.set], rt == read_time.end() ? nullptr : &rt->second, used_index(r.set)});
  }
  // A stored value is copied as the JSON text its record holds. `cursor` is
  // where the previous feature of the run was found in the same record:
  // features requested in the record's order are each found at once.
  auto write_value = [&](JsonWriter& w, size_t f, size_t index, size_t* cursor) {
    const RequestedFeature& r = requested[f];
    const Source& source = sources[f];
    if (source.evaluated) {
      if ((*source.evaluated)[index]) return w.Value(*(*source.evaluated)[index]);
    } else if (const SharedRecord* record = (*source.records)[index].get()) {
      if (auto value = record->Find(r.feature->name, cursor)) {
        w.text().append(value->json);
        return;
      }
    }
    if (r.feature->default_value) return w.Value(*r.feature->default_value);
    w.text() += "null";
  };
  // Each feature's key, "name":, as JSON text once, not once per entity.
  std::vector<std::string> feature_keys;
  feature_keys.reserve(requested.size());
  for (const auto& r : requested) {
    JsonWriter key;
    key.String(r.output_name);
    key.text() += ':';
    feature_keys.push_back(std::move(key.text()));
  }
  const size_t outputs = entities_value ? labels.size() : row_keys.size();
  // The features in runs of consecutive requested features of one set (one
  // run per set when the request lists them set by set). Each run is
  // rendered apart, as one fragment per output ("a":1,"b":2, or empty when
  // the output's entity does not key the set), then each output's
  // fragments are joined. Rendering is most of a big response's time
  // (number formatting), and done run by run it reads one set's records
  // at a time; a big response's runs are rendered on two threads.
  struct Run {
    size_t used;  ///< the set's index in `used`
    size_t begin, end;  ///< its features: requested[begin, end)
    std::string text;  ///< the fragments, one after the other
    std::vector<size_t> ends;  ///< where each output's fragment ends in text
  };
  std::vector<Run> runs;
  for (size_t f = 0; f < requested.size(); ++f) {
    if (runs.empty() || runs.back().used != sources[f].used) {
      runs.push_back(Run{sources[f].used, f, f + 1, {}, {}});
    } else {
      runs.back().end = f + 1;
    }
  }
  std::atomic<size_t> next_run{0};
  auto render_runs = [&] {
    for (size_t k; (k = next_run.fetch_add(1, std::memory_order_relaxed)) < runs.size();) {
      Run& run = runs[k];
      JsonWriter w;
      std::string& t = w.text();
      t.reserve(outputs * (run.end - run.begin) * 24);
      run.ends.reserve(outputs);
      // The records of the outputs a few ahead, prefetched: the object
      // eight ahead, the buffer (read through the object) four ahead, so
      // that their cache misses overlap the rendering of this one.
      const auto& set_records = *sources[run.begin].records;
      auto record_of = [&](size_t o) -> const SharedRecord* {
        const size_t lookup = lookup_of_output[o * n_used + run.used];
        return lookup == kNone ? nullptr : set_records[lookup].get();
      };
      for (size_t o = 0; o < outputs; ++o) {
        if (o + 8 < outputs) {
          if (const SharedRecord* r = record_of(o + 8)) __builtin_prefetch(r);
        }
        if (o + 4 < outputs) {
          if (const SharedRecord* r = record_of(o + 4)) r->Prefetch();
        }
        const size_t lookup = lookup_of_output[o * n_used + run.used];
        if (lookup != kNone) {  // (else keyed by another entity: empty)
          size_t cursor = 0;
          for (size_t f = run.begin; f < run.end; ++f) {
            if (f != run.begin) t += ',';
            t += feature_keys[f];
            write_value(w, f, lookup, &cursor);
          }
        }
        run.ends.push_back(t.size());
      }
      run.text = std::move(t);
    }
  };
  RunShared(render_runs, runs.size() > 1 && outputs * requested.size() >= kParallelJsonValues);
  // The response is written as JSON text directly: building it as a
  // json::object and serializing that was a tenth of a small request's CPU.
  JsonWriter out;
  std::string& text = out.text();
  size_t rendered = 0;
  for (const Run& run : runs) rendered += run.text.size() + run.ends.size();
  text.reserve(256 + rendered + outputs * 32);
  text += entities_value ? "{\"features\":{" : "{\"rows\":[";
  for (size_t o = 0; o < outputs; ++o) {
    if (o) text += ',';
    bool first = true;
    if (entities_value) {
      out.String(labels[o]);
      text += ":{";
    } else {
      text += '{';
      // The row's join keys as given, then its features (a feature named
      // like a join key takes its place).
      for (const json::key_value_pair& column : row_keys[o].as_object()) {
        const std::string_view key = column.key();
        const bool replaced = std::any_of(requested.begin(), requested.end(),
                                          [&](const auto& r) { return r.output_name == key; });
        if (replaced) continue;
        if (!first) text += ',';
        first = false;
        out.String(key);
        text += ':';
        out.Value(column.value());
      }
    }
    for (const Run& run : runs) {
      const size_t begin = o ? run.ends[o - 1] : 0;
      if (run.ends[o] == begin) continue;
      if (!first) text += ',';
      first = false;
      text.append(run.text, begin, run.ends[o] - begin);
    }
    text += '}';
  }
  text += entities_value ? '}' : ']';

  // Per read set: the entities it did not have; usage.
  text += ",\"metadata\":{\"latency_ms\":";
  const size_t latency_at = text.size();  // written last, when the latency is known
  text += ",\"cache_hit\":";
  text += cache_ != nullptr && reads > 0 && hits == reads ? "true" : "false";
  text += ",\"missing_entities\":{";
  bool first_missing = true;
  for (const auto& [s, list] : lookups) {
    const auto& got = records[s];
    int64_t missing = 0;
    const bool reported = !auxiliary.count(s);
    for (size_t i = 0; i < list.size(); ++i) {
      if (got[i]) continue;
      if (reported) {
        if (missing == 0) {
          if (!first_missing) text += ',';
          first_missing = false;
          out.String(s->feature_set.name);
          text += ":[";
        } else {
          text += ',';
        }
        out.String(list[i].label);
      }
      ++missing;
    }
    if (reported && missing > 0) text += ']';
    if (context.usage && reported) {
      ServingUsage::Set used;
      used.feature_set = s->feature_set.name;
      for (const auto& r : requested) {
        if (r.set == s) used.features.push_back(r.feature->name);
      }
      used.entities = static_cast<int64_t>(list.size());
      used.entities_found = used.entities - missing;
      context.usage->sets.push_back(std::move(used));
    }
  }
  text += "}}}";
  if (context.usage) {
    context.usage->cache_hits += static_cast<int64_t>(hits);
    context.usage->cache_misses += cache_ ? static_cast<int64_t>(reads - hits) : 0;
  }
  const double latency_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  JsonWriter latency;
  latency.Value(json::value(std::round(latency_ms * 1000.0) / 1000.0));
  text.insert(latency_at, latency.text());
  if (helpers_ && reads >= kParallelReadKeys) {
    // The request's lookups (thousands of allocations) and its references
    // to records (the last one frees a record the cache dropped meanwhile)
    // are let go by the helper thread, not before the response goes out
    // (~0.3 ms of a 100 x 250 request when records were decoded copies).
    auto freed = helpers_->Submit(
        [doomed = std::make_shared<std::pair<decltype(records), decltype(lookups)>>(
             std::move(records), std::move(lookups))]() mutable { doomed.reset(); });
    (void)freed;
  }
  return std::move(text);
}

}  // namespace fstore
