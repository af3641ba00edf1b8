#include "fstore/core/text.h"
#include "fstore/service/feature_store.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <deque>
#include <filesystem>
#include <map>
#include <set>

#include <arrow/type.h>
#include <spdlog/spdlog.h>

#include "fstore/core/compute_init.h"
#include "fstore/compute/source_schema.h"
#include "fstore/core/ids.h"
#include "fstore/core/time.h"
#include "fstore/materialize/feature_pipeline.h"
#include "fstore/registry/codec.h"
#include "fstore/service/definition_validator.h"
#include "fstore/materialize/python_step.h"

namespace fstore {
namespace json = boost::json;

namespace {

// Optimistic-concurrency retries before giving up with the Conflict.
constexpr int kMaxWriteAttempts = 50;

bool Contains(const std::vector<std::string>& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

bool IsConflict(const Status& st) {
  return !st.ok() && ErrorCodeOf(st) == ErrorCode::kConflict;
}

Status RequireObject(const json::value& body) {
  if (!body.is_object()) {
    return InvalidArgument("", "the request body must be a JSON object");
  }
  return Status::OK();
}

// The directory of a file:// URI; empty for any other scheme.
std::string DirFromFileUri(const std::string& uri) {
  constexpr std::string_view kFile = "file://";
  if (uri.rfind(kFile, 0) == 0) return uri.substr(kFile.size());
  return {};
}

// The live definitions needed to resolve feature references.
struct Catalog {
  std::vector<FeatureSet> feature_sets;
  std::vector<Feature> features;

  const FeatureSet* SetById(std::string_view id) const {
    for (const auto& fs : feature_sets) {
      if (fs.id == id) return &fs;
    }
    return nullptr;
  }
  const FeatureSet* SetByName(std::string_view name) const {
    for (const auto& fs : feature_sets) {
      if (fs.name == name) return &fs;
    }
    return nullptr;
  }
  std::string QualifiedName(const Feature& f) const {
    const FeatureSet* fs = SetById(f.feature_set_id);
    return (fs ? fs->name : f.feature_set_id) + ":" + f.name;
  }

  /// Resolves a feature reference: an id, "feature_set:feature", or a bare
  /// name (preferring `context_set_id`, else unique among live features).
  /// `field` names the request field in errors; `missing` is the error code
  /// for an unknown name (not_found for a path, unprocessable for a body).
  Result<const Feature*> Resolve(std::string_view ref, std::string_view context_set_id,
                                 const std::string& field, ErrorCode missing) const {
    if (LooksLikeUuid(ref)) {
      for (const auto& f : features) {
        if (f.id == ref) return &f;
      }
    }
    size_t colon = ref.find(':');
    if (colon != std::string_view::npos) {
      std::string_view set_name = ref.substr(0, colon);
      std::string_view feature_name = ref.substr(colon + 1);
      const FeatureSet* fs = SetByName(set_name);
      if (fs == nullptr) {
        return MakeError(missing, "feature set '" + std::string(set_name) + "' not found", field);
      }
      for (const auto& f : features) {
        if (f.feature_set_id == fs->id && f.name == feature_name) return &f;
      }
      return MakeError(missing, "feature '" + std::string(ref) + "' not found", field);
    }
    std::vector<const Feature*> matches;
    for (const auto& f : features) {
      if (f.name != ref) continue;
      if (!context_set_id.empty() && f.feature_set_id == context_set_id) return &f;
      matches.push_back(&f);
    }
    if (matches.size() == 1) return matches[0];
    if (matches.empty()) {
      return MakeError(missing, "feature '" + std::string(ref) + "' not found", field);
    }
    std::vector<std::string> qualified;
    for (const Feature* f : matches) qualified.push_back(QualifiedName(*f));
    std::sort(qualified.begin(), qualified.end());
    std::string names;
    for (const auto& q : qualified) names += (names.empty() ? "" : ", ") + q;
    return InvalidArgument(field, "feature name '" + std::string(ref) +
                                      "' is ambiguous; use feature_set:feature (" + names + ")");
  }

  /// Ids of the features `f` reads, resolved leniently (unresolvable ones are
  /// skipped: they were checked when `f` was written).
  std::vector<std::string> InputsOf(const Feature& f) const {
    std::vector<std::string> ids;
    for (const auto& ref : f.source_features) {
      auto r = Resolve(ref, f.feature_set_id, "", ErrorCode::kNotFound);
      if (r.ok()) ids.push_back((*r)->id);
    }
    return ids;
  }

  /// Live features reading `feature_id` directly.
  std::vector<const Feature*> DirectDependants(const std::string& feature_id) const {
    std::vector<const Feature*> out;
    for (const auto& f : features) {
      if (f.id != feature_id && Contains(InputsOf(f), feature_id)) out.push_back(&f);
    }
    return out;
  }
};

}  // namespace

FeatureStore::FeatureStore(std::unique_ptr<Registry> registry,
                           std::unique_ptr<OfflineStore> offline,
                           std::unique_ptr<OnlineStore> online, FeatureStoreOptions options)
    : registry_(std::move(registry)),
      offline_(std::move(offline)),
      online_(std::move(online)),
      options_(std::move(options)) {
  serving_ = std::make_unique<OnlineServing>(registry_.get(), online_.get(), options_.serving);
  engine_ = std::make_unique<MaterializationEngine>(registry_.get(), offline_.get(),
                                                    online_.get(), options_.compute_threads);
  engine_->SetCipher(options_.cipher);
  engine_->SetOnlineWriteListener(
      [serving = serving_.get()](const std::string& fs) { serving->InvalidateFeatureSet(fs); });
  if (options_.run_scheduler) {
    scheduler_ = std::make_unique<MaterializationScheduler>(registry_.get(), engine_.get());
  }
  batch_ = std::make_unique<BatchServing>(this);
}

FeatureStore::~FeatureStore() { (void)Close(); }

Result<std::unique_ptr<FeatureStore>> FeatureStore::Open(const FeatureStoreOptions& options) {
  ARROW_RETURN_NOT_OK(InitializeCompute());
  // S3 needs no directory (and OfflineStore::Open checks the bucket); a local
  // root is created here so that CheckReady finds it writable from the start.
  if (!IsS3Uri(options.offline_store_uri)) {
    std::string dir = DirFromFileUri(options.offline_store_uri);
    if (dir.empty()) {
      return NotImplemented("the offline store backend of '" + options.offline_store_uri +
                            "' is not built (use file:// or s3://)");
    }
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return Unavailable("cannot create the offline store directory " + dir + ": " +
                         ec.message());
    }
  }
  // Encryption at rest: with a cipher both stores seal what they write.
  ARROW_ASSIGN_OR_RAISE(auto offline,
                        OfflineStore::Open(options.offline_store_uri, options.s3, options.cipher));
  // Before anything is written: a start without the store's key, or with
  // another, stops here with a clear message.
  ARROW_RETURN_NOT_OK(offline->CheckEncryptionKey());
  ARROW_ASSIGN_OR_RAISE(auto online, OnlineStoreFromUri(options.online_store_uri, options.cipher));
  ARROW_ASSIGN_OR_RAISE(auto registry, RegistryFromUri(options.registry_uri));
  ARROW_RETURN_NOT_OK(registry->Migrate().status());
  auto store = std::unique_ptr<FeatureStore>(
      new FeatureStore(std::move(registry), std::move(offline), std::move(online), options));
  ARROW_RETURN_NOT_OK(store->serving_->Start());
  if (options.recover_jobs) ARROW_RETURN_NOT_OK(store->engine_->RecoverInterruptedJobs());
  return store;
}

Status FeatureStore::Close() {
  if (scheduler_) scheduler_->Stop();
  if (engine_) engine_->Shutdown();
  if (batch_) batch_->Shutdown();
  if (serving_) serving_->Stop();
  Status online = online_ ? online_->Close() : Status::OK();
  Status registry = registry_ ? registry_->Close() : Status::OK();
  return online.ok() ? registry : online;
}

Status FeatureStore::CheckReady() {
  ARROW_RETURN_NOT_OK(registry_->Ping());
  ARROW_RETURN_NOT_OK(online_->CheckHealth());
  return offline_->CheckHealth();
}

Status FeatureStore::CommitDefinitions(const RegistryWrite& write) {
  ARROW_RETURN_NOT_OK(registry_->Commit(write));
  // Served definitions follow at once in this process (the poll thread
  // catches changes made by others).
  Status st = serving_->Refresh();
  if (!st.ok()) spdlog::warn("refreshing the serving snapshot failed: {}", st.ToString());
  return Status::OK();
}

Result<std::string> FeatureStore::ServeOnline(const json::value& body,
                                               const RequestContext& context) {
  return serving_->Serve(body, NowMicros(), context);
}

// ---------------------------------------------------------- materialization

Result<MaterializeOptions> FeatureStore::ParseMaterializeRequest(const json::value& body) {
  MaterializeOptions options;
  if (body.is_null()) return options;
  if (!body.is_object()) return InvalidArgument("", "the request body must be a JSON object");
  for (const auto& [key, value] : body.as_object()) {
    if (key == "start_date" || key == "end_date") {
      if (value.is_null()) continue;
      if (!value.is_string()) {
        return InvalidArgument(std::string(key), "must be an ISO 8601 date or timestamp string");
      }
      auto t = ParseTimestamp(std::string_view(value.as_string()));
      if (!t.ok()) return InvalidArgument(std::string(key), t.status().message());
      (key == "start_date" ? options.start : options.end) = *t;
    } else if (key == "wait") {
      if (!value.is_bool()) return InvalidArgument("wait", "must be true or false");
      options.wait = value.as_bool();
    } else {
      return InvalidArgument(std::string(key), "unknown field");
    }
  }
  if (options.start && options.end && *options.end <= *options.start) {
    return InvalidArgument("end_date", "must be after start_date");
  }
  return options;
}

Result<MaterializationJob> FeatureStore::Materialize(std::string_view feature_set,
                                                     const MaterializeOptions& options) {
  MaterializationRequest request{std::string(feature_set), options.start, options.end,
                                 options.trigger};
  ARROW_ASSIGN_OR_RAISE(auto job, engine_->Submit(request));
  if (!options.wait) return job;
  // A client that asked to wait gets the result; a run longer than this is
  // still running when the answer comes (its status says so).
  return engine_->Wait(job.id, std::chrono::hours(1));
}

Result<MaterializationJob> FeatureStore::MaterializeNow(std::string_view feature_set,
                                                        const MaterializeOptions& options) {
  MaterializationRequest request{std::string(feature_set), options.start, options.end,
                                 options.trigger};
  return engine_->RunNow(request);
}

Result<MaterializationJob> FeatureStore::GetJob(std::string_view job_id) {
  return engine_->GetJob(std::string(job_id));
}

Result<std::vector<MaterializationJob>> FeatureStore::ListJobs(std::string_view feature_set,
                                                               size_t limit) {
  return engine_->ListJobs(std::string(feature_set), limit);
}

Result<MaterializationJob> FeatureStore::RetryJob(std::string_view job_id) {
  return engine_->Retry(std::string(job_id));
}

// ---------------------------------------------------------------- entities

Result<Entity> FeatureStore::CreateEntity(const json::value& body) {
  ARROW_RETURN_NOT_OK(RequireObject(body));
  Entity entity;
  ARROW_RETURN_NOT_OK(DecodeEntity(body, DecodeMode::kCreate, &entity));
  ARROW_RETURN_NOT_OK(ValidateEntity(&entity));
  entity.id = NewUuid();
  entity.version = 1;
  entity.created_at = entity.updated_at = NowMicros();
  RegistryWrite write;
  write.new_entities.push_back(entity);
  ARROW_RETURN_NOT_OK(CommitDefinitions(write));
  return entity;
}

Result<std::vector<Entity>> FeatureStore::ListEntities() { return registry_->ListEntities(); }

Result<Entity> FeatureStore::GetEntity(std::string_view id_or_name) {
  ARROW_ASSIGN_OR_RAISE(auto entity, registry_->FindEntity(id_or_name));
  if (!entity) return NotFound("entity '" + std::string(id_or_name) + "' not found");
  return *entity;
}

// ------------------------------------------------------------ feature sets

namespace {

// Entities a feature set names that do not exist yet get one with join key
// <name>_id, type string (ARCHITECTURE.md). Join keys must be source columns
// when the source's schema is known.
Result<std::vector<Entity>> PlanEntities(Registry* registry, const FeatureSet& fs,
                                         const std::shared_ptr<arrow::Schema>& schema) {
  std::vector<Entity> created;
  for (size_t i = 0; i < fs.entities.size(); ++i) {
    ARROW_ASSIGN_OR_RAISE(auto existing, registry->FindEntity(fs.entities[i]));
    Entity entity;
    if (existing) {
      entity = *existing;
    } else {
      entity.id = NewUuid();
      entity.name = fs.entities[i];
      entity.join_keys = {entity.name + "_id"};
      entity.value_type = "string";
      entity.description = "created with feature set " + fs.name;
      entity.created_at = entity.updated_at = NowMicros();
      created.push_back(entity);
    }
    if (schema) {
      for (const auto& key : entity.join_keys) {
        if (schema->GetFieldIndex(key) < 0) {
          return Unprocessable("entities[" + std::to_string(i) + "]",
                               "join key '" + key + "' of entity '" + entity.name +
                                   "' is not a column of the source");
        }
      }
    }
  }
  return created;
}

// The columns the features of `fs` may read: its source's and the output
// columns of its Python transformation (materialize/python_step.h).
Result<std::shared_ptr<arrow::Schema>> SchemaOf(const FeatureSet& fs) {
  if (!fs.source) return std::shared_ptr<arrow::Schema>();
  ARROW_ASSIGN_OR_RAISE(auto schema, ReadSourceSchema(*fs.source));
  return SchemaAfterPython(fs, schema);
}

// Validates a feature set's own fields (which canonicalises its source, e.g.
// the format from the file extension), then reads the source's schema and
// checks the columns the feature set names against it.
Result<std::shared_ptr<arrow::Schema>> ValidatedSchemaOf(FeatureSet* fs) {
  ARROW_RETURN_NOT_OK(ValidateFeatureSet(fs, nullptr));
  // The source's own schema: a Python transformation is checked against it.
  std::shared_ptr<arrow::Schema> schema;
  if (fs->source) {
    ARROW_ASSIGN_OR_RAISE(schema, ReadSourceSchema(*fs->source));
  }
  if (schema) ARROW_RETURN_NOT_OK(ValidateFeatureSet(fs, schema));
  return schema;
}

}  // namespace

Result<FeatureSet> FeatureStore::CreateFeatureSet(const json::value& body) {
  ARROW_RETURN_NOT_OK(RequireObject(body));
  FeatureSet fs;
  ARROW_RETURN_NOT_OK(DecodeFeatureSet(body, DecodeMode::kCreate, &fs));
  ARROW_ASSIGN_OR_RAISE(auto schema, ValidatedSchemaOf(&fs));
  fs.id = NewUuid();
  fs.version = 1;
  fs.created_at = fs.updated_at = NowMicros();
  for (int attempt = 0;; ++attempt) {
    ARROW_ASSIGN_OR_RAISE(auto new_entities, PlanEntities(registry_.get(), fs, schema));
    RegistryWrite write;
    write.new_entities = new_entities;
    write.feature_sets.push_back({fs, 0});
    Status st = CommitDefinitions(write);
    if (st.ok()) return fs;
    // Another request may have created one of our new entities meanwhile.
    bool entity_raced = false;
    for (const auto& e : new_entities) {
      ARROW_ASSIGN_OR_RAISE(auto now, registry_->FindEntity(e.name));
      entity_raced |= now.has_value();
    }
    if (!entity_raced || attempt >= kMaxWriteAttempts) return st;
  }
}

Result<std::vector<FeatureSet>> FeatureStore::ListFeatureSets(const FeatureSetFilter& filter) {
  ARROW_ASSIGN_OR_RAISE(auto all, registry_->ListFeatureSets(filter.include_deleted));
  std::string q = AsciiLower(filter.q);
  std::vector<FeatureSet> out;
  for (auto& fs : all) {
    if (!filter.owner.empty() && fs.owner != filter.owner) continue;
    if (!filter.entity.empty() && !Contains(fs.entities, filter.entity)) continue;
    if (!filter.tag.empty() && !Contains(fs.tags, filter.tag)) continue;
    if (!q.empty() && AsciiLower(fs.name).find(q) == std::string::npos &&
        AsciiLower(fs.description).find(q) == std::string::npos) {
      continue;
    }
    out.push_back(std::move(fs));
  }
  return out;
}

Result<FeatureSet> FeatureStore::GetFeatureSet(std::string_view id_or_name,
                                               std::optional<int64_t> version) {
  ARROW_ASSIGN_OR_RAISE(auto fs, registry_->FindFeatureSet(id_or_name, version.has_value()));
  if (!fs) return NotFound("feature set '" + std::string(id_or_name) + "' not found");
  if (!version) return *fs;
  ARROW_ASSIGN_OR_RAISE(auto history, registry_->FeatureSetHistory(fs->id));
  for (auto& v : history) {
    if (v.version == *version) return v;
  }
  return NotFound("feature set '" + std::string(id_or_name) + "' has no version " +
                  std::to_string(*version) + " (latest is " + std::to_string(fs->version) + ")");
}

Result<std::vector<Feature>> FeatureStore::FeaturesOf(const FeatureSet& fs) {
  ARROW_ASSIGN_OR_RAISE(auto all, registry_->ListFeatures(false));
  std::vector<Feature> out;
  for (auto& f : all) {
    if (f.feature_set_id == fs.id) out.push_back(std::move(f));
  }
  std::sort(out.begin(), out.end(),
            [](const Feature& a, const Feature& b) { return a.name < b.name; });
  return out;
}

Result<FeatureSet> FeatureStore::UpdateFeatureSet(std::string_view id_or_name,
                                                  const json::value& patch) {
  ARROW_RETURN_NOT_OK(RequireObject(patch));
  for (int attempt = 0;; ++attempt) {
    ARROW_ASSIGN_OR_RAISE(FeatureSet current, GetFeatureSet(id_or_name));
    FeatureSet next = current;
    ARROW_RETURN_NOT_OK(DecodeFeatureSet(patch, DecodeMode::kPatch, &next));
    if (next.name != current.name) {
      return InvalidArgument("name", "cannot be changed (features and training sets refer to "
                                     "it): create a new feature set instead");
    }
    ARROW_ASSIGN_OR_RAISE(auto schema, ValidatedSchemaOf(&next));
    ARROW_ASSIGN_OR_RAISE(auto new_entities, PlanEntities(registry_.get(), next, schema));
    next.version = current.version + 1;
    next.updated_at = NowMicros();
    RegistryWrite write;
    write.new_entities = std::move(new_entities);
    write.feature_sets.push_back({next, current.version});
    Status st = CommitDefinitions(write);
    if (st.ok()) return next;
    bool retry = IsConflict(st) || ErrorCodeOf(st) == ErrorCode::kAlreadyExists;
    if (!retry || attempt >= kMaxWriteAttempts) return st;
  }
}

Result<FeatureSet> FeatureStore::DeleteFeatureSet(std::string_view id_or_name) {
  for (int attempt = 0;; ++attempt) {
    ARROW_ASSIGN_OR_RAISE(int64_t seq, registry_->ChangeSequence());
    ARROW_ASSIGN_OR_RAISE(FeatureSet current, GetFeatureSet(id_or_name));
    Catalog catalog;
    ARROW_ASSIGN_OR_RAISE(catalog.feature_sets, registry_->ListFeatureSets(false));
    ARROW_ASSIGN_OR_RAISE(catalog.features, registry_->ListFeatures(false));
    std::vector<std::string> dependants;
    for (const auto& f : catalog.features) {
      if (f.feature_set_id != current.id) continue;
      for (const Feature* d : catalog.DirectDependants(f.id)) {
        if (d->feature_set_id != current.id) {
          dependants.push_back(catalog.QualifiedName(*d) + " (uses " + f.name + ")");
        }
      }
    }
    if (!dependants.empty()) {
      std::string list;
      for (const auto& d : dependants) list += (list.empty() ? "" : ", ") + d;
      return Conflict("feature set '" + current.name +
                      "' cannot be deleted: features of other feature sets depend on it: " + list);
    }
    TimestampMicros now = NowMicros();
    RegistryWrite write;
    write.expected_change_sequence = seq;  // no dependant may appear meanwhile
    FeatureSet deleted = current;
    deleted.version = current.version + 1;
    deleted.updated_at = now;
    deleted.deleted_at = now;
    write.feature_sets.push_back({deleted, current.version});
    for (const auto& f : catalog.features) {
      if (f.feature_set_id != current.id) continue;
      Feature fd = f;
      fd.version = f.version + 1;
      fd.updated_at = now;
      fd.deleted_at = now;
      write.features.push_back({fd, f.version});
    }
    Status st = CommitDefinitions(write);
    if (st.ok()) return deleted;
    if (!IsConflict(st) || attempt >= kMaxWriteAttempts) return st;
  }
}

Result<std::vector<FeatureSet>> FeatureStore::FeatureSetVersions(std::string_view id_or_name) {
  ARROW_ASSIGN_OR_RAISE(auto fs, registry_->FindFeatureSet(id_or_name, true));
  if (!fs) return NotFound("feature set '" + std::string(id_or_name) + "' not found");
  return registry_->FeatureSetHistory(fs->id);
}

// ----------------------------------------------------------------- features

namespace {

// Compiles the feature set's features with `f` (new or changed) against the
// source schema, as a materialization would: type errors, unknown columns,
// windows that do not fit the feature set are refused at definition time.
Status CheckMaterializable(Registry* registry, const FeatureSet& fs, const Feature& f,
                           const std::shared_ptr<arrow::Schema>& schema) {
  if (!schema) return Status::OK();
  ARROW_ASSIGN_OR_RAISE(auto all, registry->ListFeatures(false));
  std::vector<Feature> features;
  for (auto& x : all) {
    if (x.feature_set_id == fs.id && x.id != f.id) features.push_back(std::move(x));
  }
  features.push_back(f);
  ARROW_ASSIGN_OR_RAISE(auto entities, registry->ListEntities());
  return PlanMaterialization(fs, features, entities, schema).status();
}

// Checks what a feature refers to: its inputs exist (not itself), and no cycle
// runs through it. `catalog` holds the live features, with `f` not yet in it
// or in its previous version.
Status CheckFeatureReferences(const Feature& f, Catalog* catalog) {
  for (size_t i = 0; i < f.source_features.size(); ++i) {
    std::string field = "source_features[" + std::to_string(i) + "]";
    ARROW_ASSIGN_OR_RAISE(const Feature* input,
                          catalog->Resolve(f.source_features[i], f.feature_set_id, field,
                                           ErrorCode::kUnprocessable));
    if (input->id == f.id || (input->feature_set_id == f.feature_set_id && input->name == f.name)) {
      return Unprocessable(field, "a feature cannot be its own source feature");
    }
  }
  // Cycle check on the graph with `f` in its new form.
  auto it = std::find_if(catalog->features.begin(), catalog->features.end(),
                         [&](const Feature& x) { return x.id == f.id; });
  if (it != catalog->features.end()) {
    *it = f;
  } else {
    catalog->features.push_back(f);
  }
  std::map<std::string, std::string> parent;  // visited feature id -> reached from
  std::deque<std::string> queue;
  for (const auto& input : catalog->InputsOf(f)) {
    parent.emplace(input, f.id);
    queue.push_back(input);
  }
  while (!queue.empty()) {
    std::string id = queue.front();
    queue.pop_front();
    if (id == f.id) {
      // Walk back the path for the message: f -> ... -> f.
      std::vector<std::string> path;
      std::string cur = parent[f.id];
      path.push_back(f.name);
      while (cur != f.id) {
        for (const auto& x : catalog->features) {
          if (x.id == cur) path.push_back(catalog->QualifiedName(x));
        }
        cur = parent[cur];
      }
      path.push_back(f.name);
      std::string text;
      for (auto p = path.rbegin(); p != path.rend(); ++p) text += (text.empty() ? "" : " -> ") + *p;
      return Unprocessable("source_features", "would create a cycle: " + text);
    }
    for (const auto& x : catalog->features) {
      if (x.id != id) continue;
      for (const auto& next : catalog->InputsOf(x)) {
        if (parent.emplace(next, id).second) queue.push_back(next);
      }
    }
  }
  return Status::OK();
}

}  // namespace

Result<Feature> FeatureStore::CreateFeature(const json::value& body) {
  ARROW_RETURN_NOT_OK(RequireObject(body));
  Feature f;
  ARROW_RETURN_NOT_OK(DecodeFeature(body, DecodeMode::kCreate, &f));
  if (f.feature_set_id.empty()) {
    return InvalidArgument("feature_set_id", "is required: the id or name of the feature set");
  }
  ARROW_ASSIGN_OR_RAISE(auto fs, registry_->FindFeatureSet(f.feature_set_id, false));
  if (!fs) {
    return Unprocessable("feature_set_id", "feature set '" + f.feature_set_id + "' not found");
  }
  f.feature_set_id = fs->id;
  ARROW_ASSIGN_OR_RAISE(auto schema, SchemaOf(*fs));
  ARROW_RETURN_NOT_OK(ValidateFeature(&f, schema).status());
  ARROW_RETURN_NOT_OK(CheckMaterializable(registry_.get(), *fs, f, schema));
  f.id = NewUuid();
  f.version = 1;
  f.created_at = f.updated_at = NowMicros();
  for (int attempt = 0;; ++attempt) {
    ARROW_ASSIGN_OR_RAISE(int64_t seq, registry_->ChangeSequence());
    Catalog catalog;
    ARROW_ASSIGN_OR_RAISE(catalog.feature_sets, registry_->ListFeatureSets(false));
    ARROW_ASSIGN_OR_RAISE(catalog.features, registry_->ListFeatures(false));
    if (!catalog.SetById(f.feature_set_id)) {
      return Unprocessable("feature_set_id", "the feature set was deleted meanwhile");
    }
    ARROW_RETURN_NOT_OK(CheckFeatureReferences(f, &catalog));
    RegistryWrite write;
    write.features.push_back({f, 0});
    // The references were checked against this state of the registry: a
    // concurrent delete of an input (or of the feature set) must not slip in.
    write.expected_change_sequence = seq;
    Status st = CommitDefinitions(write);
    if (st.ok()) return f;
    if (!IsConflict(st) || attempt >= kMaxWriteAttempts) return st;
  }
}

Result<std::vector<Feature>> FeatureStore::ListFeatures(const FeatureFilter& filter) {
  std::string set_id;
  if (!filter.feature_set.empty()) {
    ARROW_ASSIGN_OR_RAISE(auto fs, registry_->FindFeatureSet(filter.feature_set, true));
    if (!fs) return NotFound("feature set '" + filter.feature_set + "' not found");
    set_id = fs->id;
  }
  std::string data_type;
  if (!filter.data_type.empty()) {
    ARROW_ASSIGN_OR_RAISE(data_type, CanonicalDataType("data_type", filter.data_type));
  }
  ARROW_ASSIGN_OR_RAISE(auto all, registry_->ListFeatures(filter.include_deleted));
  std::string q = AsciiLower(filter.q);
  std::vector<Feature> out;
  for (auto& f : all) {
    if (!set_id.empty() && f.feature_set_id != set_id) continue;
    if (!data_type.empty() && f.data_type != data_type) continue;
    if (!filter.tag.empty() && !Contains(f.tags, filter.tag)) continue;
    if (!q.empty() && AsciiLower(f.name).find(q) == std::string::npos &&
        AsciiLower(f.description).find(q) == std::string::npos) {
      continue;
    }
    out.push_back(std::move(f));
  }
  return out;
}

Result<Feature> FeatureStore::GetFeature(std::string_view ref, std::optional<int64_t> version) {
  const Feature* found = nullptr;
  Catalog catalog;
  std::optional<Feature> by_id;
  if (LooksLikeUuid(ref)) {
    ARROW_ASSIGN_OR_RAISE(by_id, registry_->FindFeature(ref, version.has_value()));
  }
  if (by_id) {
    found = &*by_id;
  } else {
    ARROW_ASSIGN_OR_RAISE(catalog.feature_sets, registry_->ListFeatureSets(false));
    ARROW_ASSIGN_OR_RAISE(catalog.features, registry_->ListFeatures(false));
    ARROW_ASSIGN_OR_RAISE(found, catalog.Resolve(ref, "", "id", ErrorCode::kNotFound));
  }
  if (!version) return *found;
  ARROW_ASSIGN_OR_RAISE(auto history, registry_->FeatureHistory(found->id));
  for (auto& v : history) {
    if (v.version == *version) return v;
  }
  return NotFound("feature '" + std::string(ref) + "' has no version " + std::to_string(*version) +
                  " (latest is " + std::to_string(found->version) + ")");
}

Result<Feature> FeatureStore::UpdateFeature(std::string_view ref, const json::value& patch) {
  ARROW_RETURN_NOT_OK(RequireObject(patch));
  for (int attempt = 0;; ++attempt) {
    ARROW_ASSIGN_OR_RAISE(Feature current, GetFeature(ref));
    Feature next = current;
    ARROW_RETURN_NOT_OK(DecodeFeature(patch, DecodeMode::kPatch, &next));
    if (next.name != current.name) {
      return InvalidArgument("name", "cannot be changed (other features and models refer to it): "
                                     "create a new feature instead");
    }
    if (next.feature_set_id != current.feature_set_id) {
      return InvalidArgument("feature_set_id", "cannot be changed: create the feature in the "
                                               "other feature set instead");
    }
    ARROW_ASSIGN_OR_RAISE(auto fs, registry_->FindFeatureSet(current.feature_set_id, false));
    if (!fs) return NotFound("the feature set of feature '" + std::string(ref) + "' was deleted");
    ARROW_ASSIGN_OR_RAISE(auto schema, SchemaOf(*fs));
    ARROW_RETURN_NOT_OK(ValidateFeature(&next, schema).status());
    ARROW_RETURN_NOT_OK(CheckMaterializable(registry_.get(), *fs, next, schema));
    ARROW_ASSIGN_OR_RAISE(int64_t seq, registry_->ChangeSequence());
    Catalog catalog;
    ARROW_ASSIGN_OR_RAISE(catalog.feature_sets, registry_->ListFeatureSets(false));
    ARROW_ASSIGN_OR_RAISE(catalog.features, registry_->ListFeatures(false));
    ARROW_RETURN_NOT_OK(CheckFeatureReferences(next, &catalog));
    next.version = current.version + 1;
    next.updated_at = NowMicros();
    RegistryWrite write;
    write.features.push_back({next, current.version});
    if (!next.source_features.empty()) write.expected_change_sequence = seq;
    Status st = CommitDefinitions(write);
    if (st.ok()) return next;
    if (!IsConflict(st) || attempt >= kMaxWriteAttempts) return st;
  }
}

Result<Feature> FeatureStore::DeleteFeature(std::string_view ref) {
  for (int attempt = 0;; ++attempt) {
    ARROW_ASSIGN_OR_RAISE(int64_t seq, registry_->ChangeSequence());
    ARROW_ASSIGN_OR_RAISE(Feature current, GetFeature(ref));
    Catalog catalog;
    ARROW_ASSIGN_OR_RAISE(catalog.feature_sets, registry_->ListFeatureSets(false));
    ARROW_ASSIGN_OR_RAISE(catalog.features, registry_->ListFeatures(false));
    auto dependants = catalog.DirectDependants(current.id);
    if (!dependants.empty()) {
      std::string list;
      for (const Feature* d : dependants) list += (list.empty() ? "" : ", ") + catalog.QualifiedName(*d);
      return Conflict("feature '" + catalog.QualifiedName(current) +
                      "' cannot be deleted: other features depend on it: " + list);
    }
    Feature deleted = current;
    deleted.version = current.version + 1;
    deleted.updated_at = deleted.deleted_at.emplace(NowMicros());
    RegistryWrite write;
    write.features.push_back({deleted, current.version});
    write.expected_change_sequence = seq;  // no dependant may appear meanwhile
    Status st = CommitDefinitions(write);
    if (st.ok()) return deleted;
    if (!IsConflict(st) || attempt >= kMaxWriteAttempts) return st;
  }
}

Result<std::vector<Feature>> FeatureStore::FeatureVersions(std::string_view ref) {
  std::optional<Feature> by_id;
  if (LooksLikeUuid(ref)) {
    ARROW_ASSIGN_OR_RAISE(by_id, registry_->FindFeature(ref, true));
  }
  std::string id;
  if (by_id) {
    id = by_id->id;
  } else {
    ARROW_ASSIGN_OR_RAISE(auto f, GetFeature(ref));
    id = f.id;
  }
  return registry_->FeatureHistory(id);
}

Result<json::object> FeatureStore::FeatureLineage(std::string_view ref) {
  ARROW_ASSIGN_OR_RAISE(Feature feature, GetFeature(ref));
  Catalog catalog;
  ARROW_ASSIGN_OR_RAISE(catalog.feature_sets, registry_->ListFeatureSets(false));
  ARROW_ASSIGN_OR_RAISE(catalog.features, registry_->ListFeatures(false));
  const FeatureSet* fs = catalog.SetById(feature.feature_set_id);

  auto summary = [&](const Feature& f) {
    json::object o;
    o["id"] = f.id;
    o["name"] = f.name;
    const FeatureSet* s = catalog.SetById(f.feature_set_id);
    o["feature_set"] = s ? s->name : "";
    o["data_type"] = f.data_type;
    return o;
  };

  json::object upstream;
  if (fs) {
    json::object set;
    set["id"] = fs->id;
    set["name"] = fs->name;
    set["version"] = fs->version;
    json::array entities;
    for (const auto& e : fs->entities) entities.emplace_back(e);
    set["entities"] = std::move(entities);
    upstream["feature_set"] = std::move(set);
    upstream["source"] = fs->source ? json::value(ToJson(*fs->source)) : json::value(nullptr);
  }
  // Source columns the feature reads: its transformation's column references
  // other than its input features, or its own name without a transformation.
  json::array columns;
  if (feature.transformation.empty()) {
    columns.emplace_back(feature.name);
  } else {
    auto parsed = ParseTransformation(feature.transformation);
    if (parsed.ok()) {
      for (const auto& c : parsed->column_refs) {
        if (!IsSourceFeatureName(feature, c)) columns.emplace_back(c);
      }
    }
  }
  upstream["columns"] = std::move(columns);
  json::array inputs;
  for (const auto& id : catalog.InputsOf(feature)) {
    for (const auto& f : catalog.features) {
      if (f.id == id) inputs.emplace_back(summary(f));
    }
  }
  upstream["source_features"] = std::move(inputs);

  // Everything built on the feature, breadth first, with the path's depth.
  json::array downstream;
  std::set<std::string> seen{feature.id};
  std::deque<std::pair<std::string, int>> queue{{feature.id, 0}};
  while (!queue.empty()) {
    auto [id, depth] = queue.front();
    queue.pop_front();
    for (const Feature* d : catalog.DirectDependants(id)) {
      if (!seen.insert(d->id).second) continue;
      json::object o = summary(*d);
      o["depth"] = depth + 1;
      for (const auto& f : catalog.features) {
        if (f.id == id) o["via"] = f.name;
      }
      downstream.emplace_back(std::move(o));
      queue.emplace_back(d->id, depth + 1);
    }
  }

  json::object out;
  out["feature"] = summary(feature);
  out["upstream"] = std::move(upstream);
  out["downstream"] = std::move(downstream);
  return out;
}


Result<json::object> FeatureStore::DumpOnlineRecords(
    std::string_view feature_set, const std::vector<std::vector<std::string>>& keys) {
  ARROW_ASSIGN_OR_RAISE(FeatureSet fs, GetFeatureSet(feature_set));
  std::vector<std::string> value_types;
  for (const auto& name : fs.entities) {
    ARROW_ASSIGN_OR_RAISE(Entity e, GetEntity(name));
    for (size_t i = 0; i < e.join_keys.size(); ++i) value_types.push_back(e.value_type);
  }
  std::vector<EntityKey> entity_keys;
  std::vector<std::string> labels;
  for (const auto& parts : keys) {
    if (parts.size() != value_types.size()) {
      return InvalidArgument("key", "feature set '" + fs.name + "' is keyed by " +
                                        std::to_string(value_types.size()) + " value(s)");
    }
    EntityKey key;
    std::string label;
    for (size_t i = 0; i < parts.size(); ++i) {
      if (value_types[i] == "int") {
        int64_t v = 0;
        auto [ptr, ec] = std::from_chars(parts[i].data(), parts[i].data() + parts[i].size(), v);
        if (ec != std::errc() || ptr != parts[i].data() + parts[i].size()) {
          return InvalidArgument("key", "'" + parts[i] + "' is not an integer key");
        }
        key.emplace_back(v);
      } else {
        key.emplace_back(parts[i]);
      }
      label += (i ? "," : "") + parts[i];
    }
    entity_keys.push_back(std::move(key));
    labels.push_back(std::move(label));
  }
  ARROW_ASSIGN_OR_RAISE(auto records, online_->Read(fs.name, entity_keys, 0, NowMicros()));
  json::object out;
  for (size_t i = 0; i < records.size(); ++i) {
    if (!records[i]) {
      out[labels[i]] = nullptr;
      continue;
    }
    json::object values;
    for (const auto& [name, value] : records[i]->values) values[name] = FeatureValueToJson(value);
    out[labels[i]] = json::object{{"event_timestamp", FormatTimestamp(records[i]->event_time)},
                                  {"created_timestamp", FormatTimestamp(records[i]->created_time)},
                                  {"values", std::move(values)}};
  }
  return out;
}

// ------------------------------------------------------------------- search

namespace {

// Scores one object for the query tokens; every token must match a field.
// Weights: name exact 10, name prefix 6, name substring 4, tag exact 3, tag
// substring 2, owner 2, description 1.
bool ScoreHit(const std::vector<std::string>& tokens, const std::string& name,
              const std::string& description, const std::vector<std::string>& tags,
              const std::string& owner, SearchHit* hit) {
  std::string lname = AsciiLower(name), ldesc = AsciiLower(description), lowner = AsciiLower(owner);
  std::set<std::string> matched;
  double total = 0;
  for (const auto& t : tokens) {
    double best = 0;
    auto consider = [&](double score, const char* field) {
      if (score > 0) matched.insert(field);
      best = std::max(best, score);
    };
    if (lname == t) consider(10, "name");
    else if (lname.rfind(t, 0) == 0) consider(6, "name");
    else if (lname.find(t) != std::string::npos) consider(4, "name");
    for (const auto& tag : tags) {
      std::string ltag = AsciiLower(tag);
      if (ltag == t) consider(3, "tags");
      else if (ltag.find(t) != std::string::npos) consider(2, "tags");
    }
    if (!lowner.empty() && lowner.find(t) != std::string::npos) consider(2, "owner");
    if (ldesc.find(t) != std::string::npos) consider(1, "description");
    if (best == 0) return false;
    total += best;
  }
  hit->score = total;
  hit->matched.assign(matched.begin(), matched.end());
  return true;
}

}  // namespace

Result<std::vector<SearchHit>> FeatureStore::Search(std::string_view q, size_t limit) {
  std::vector<std::string> tokens;
  std::string current;
  for (char c : AsciiLower(q)) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!current.empty()) tokens.push_back(std::move(current));
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) tokens.push_back(std::move(current));
  if (tokens.empty()) return InvalidArgument("q", "is required: the words to search for");

  ARROW_ASSIGN_OR_RAISE(auto entities, registry_->ListEntities());
  ARROW_ASSIGN_OR_RAISE(auto sets, registry_->ListFeatureSets(false));
  ARROW_ASSIGN_OR_RAISE(auto features, registry_->ListFeatures(false));
  std::map<std::string, std::string> set_names;
  for (const auto& fs : sets) set_names[fs.id] = fs.name;

  std::vector<SearchHit> hits;
  for (const auto& fs : sets) {
    SearchHit h{"feature_set", fs.id, fs.name, fs.description, "", 0, {}};
    if (ScoreHit(tokens, fs.name, fs.description, fs.tags, fs.owner, &h)) hits.push_back(h);
  }
  for (const auto& f : features) {
    SearchHit h{"feature", f.id, f.name, f.description, set_names[f.feature_set_id], 0, {}};
    if (ScoreHit(tokens, f.name, f.description, f.tags, f.owner, &h)) hits.push_back(h);
  }
  for (const auto& e : entities) {
    SearchHit h{"entity", e.id, e.name, e.description, "", 0, {}};
    if (ScoreHit(tokens, e.name, e.description, {}, "", &h)) hits.push_back(h);
  }
  auto kind_rank = [](const std::string& k) {
    return k == "feature_set" ? 0 : k == "feature" ? 1 : 2;
  };
  std::stable_sort(hits.begin(), hits.end(), [&](const SearchHit& a, const SearchHit& b) {
    if (a.score != b.score) return a.score > b.score;
    if (kind_rank(a.kind) != kind_rank(b.kind)) return kind_rank(a.kind) < kind_rank(b.kind);
    return a.name < b.name;
  });
  if (hits.size() > limit) hits.resize(limit);
  return hits;
}

}  // namespace fstore
