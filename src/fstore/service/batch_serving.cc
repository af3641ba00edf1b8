#include "fstore/service/batch_serving.h"

#include <algorithm>
#include <charconv>
#include <set>

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <arrow/dataset/api.h>
#include <arrow/filesystem/api.h>
#include <parquet/arrow/writer.h>
#include <parquet/properties.h>

#include "fstore/compute/source_schema.h"
#include "fstore/core/columns.h"
#include "fstore/core/ids.h"
#include "fstore/materialize/source_reader.h"
#include "fstore/offline/parquet_encryption.h"
#include "fstore/offline/s3_filesystem.h"
#include "fstore/service/feature_store.h"
#include "fstore/service/historical_serving.h"

namespace fstore {
namespace json = boost::json;
namespace cp = arrow::compute;

// A checked request: what a worker needs to run the job.
struct BatchServing::Plan {
  FeatureSelection selection;
  std::shared_ptr<arrow::dataset::Dataset> entities;
  std::string time_column;
  std::shared_ptr<arrow::fs::FileSystem> output_fs;
  std::string output_path;  // in output_fs
  std::string temp_path;    // in output_fs, same directory
  bool overwrite = false;
  int64_t batch_rows = BatchServing::kDefaultBatchRows;
};

namespace {

bool Ended(JobStatus s) { return s == JobStatus::kSucceeded || s == JobStatus::kFailed; }

json::value OptionalTime(const std::optional<TimestampMicros>& t) {
  return t ? json::value(FormatTimestamp(*t)) : json::value(nullptr);
}

Result<const json::object*> ObjectField(const json::object& body, const char* field) {
  const json::value* v = body.if_contains(field);
  if (!v) return InvalidArgument(field, "is required");
  if (!v->is_object()) return InvalidArgument(field, "must be an object with a \"path\"");
  return &v->as_object();
}

// `object[key]` as a non-empty string; `field` names it in errors.
Result<std::string> StringField(const json::object& object, const char* key,
                                const std::string& field) {
  const json::value* v = object.if_contains(key);
  if (!v) return InvalidArgument(field, "is required");
  if (!v->is_string() || v->as_string().empty()) {
    return InvalidArgument(field, "must be a non-empty string");
  }
  return std::string(v->as_string());
}

Status CheckKnownFields(const json::object& object, const std::set<std::string>& known,
                        const std::string& prefix) {
  for (const auto& [key, value] : object) {
    if (!known.count(std::string(key))) {
      return InvalidArgument(prefix + std::string(key), "unknown field");
    }
  }
  return Status::OK();
}

Status CheckParquetFormat(const json::object& object, const std::string& field) {
  const json::value* v = object.if_contains("format");
  if (!v || v->is_null()) return Status::OK();
  if (!v->is_string() || v->as_string() != "parquet") {
    return InvalidArgument(field, "must be \"parquet\" (the only format batch serving reads "
                                  "and writes)");
  }
  return Status::OK();
}

Result<bool> BoolField(const json::object& body, const char* field) {
  const json::value* v = body.if_contains(field);
  if (!v || v->is_null()) return false;
  if (!v->is_bool()) return InvalidArgument(field, "must be true or false");
  return v->as_bool();
}

bool IsAbsoluteOrUri(const std::string& path) {
  return (!path.empty() && path[0] == '/') || path.find("://") != std::string::npos;
}

std::string ColumnNames(const arrow::Schema& schema) {
  std::string out;
  for (const auto& f : schema.fields()) out += (out.empty() ? "" : ", ") + f->name();
  return out;
}

std::string ParentOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return "";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string BaseNameOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

// An entity source on S3: one Parquet object, or every object under a prefix
// (names starting with '.' or '_' skipped, as for a local directory), in name
// order; null when nothing matches. Reached with the store's S3 settings.
Result<std::shared_ptr<arrow::dataset::Dataset>> OpenS3EntitySource(
    const std::string& uri, const S3ConnectionOptions& s3) {
  const char* field = "entity_source.path";
  ARROW_ASSIGN_OR_RAISE(std::string path, S3PathFromUri(uri, field));
  ARROW_ASSIGN_OR_RAISE(auto fs, MakeS3FileSystem(s3));
  if (path.find_first_of("*?[") != std::string::npos) {
    return InvalidArgument(field, "'" + uri +
                                      "': globs are not supported on s3://; name an object or "
                                      "a prefix (a \"directory\")");
  }
  auto info = fs->GetFileInfo(path);
  if (!info.ok()) {
    return Unavailable("entity_source.path: cannot read '" + uri + "' from S3: " +
                       info.status().message());
  }
  std::vector<std::string> files;
  if (info->IsFile()) {
    files.push_back(path);
  } else if (info->IsDirectory()) {
    arrow::fs::FileSelector selector;
    selector.base_dir = path;
    selector.recursive = true;
    auto infos = fs->GetFileInfo(selector);
    if (!infos.ok()) {
      return Unavailable("entity_source.path: cannot list '" + uri + "' on S3: " +
                         infos.status().message());
    }
    for (const auto& entry : *infos) {
      if (!entry.IsFile()) continue;
      std::string name = entry.base_name();
      if (name.empty() || name[0] == '.' || name[0] == '_') continue;
      files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
  }
  if (files.empty()) return nullptr;
  auto factory = arrow::dataset::FileSystemDatasetFactory::Make(
      fs, files, std::make_shared<arrow::dataset::ParquetFileFormat>(),
      arrow::dataset::FileSystemFactoryOptions{});
  std::shared_ptr<arrow::dataset::Dataset> dataset;
  if (factory.ok()) {
    arrow::dataset::FinishOptions finish;
    finish.inspect_options.fragments = 1;
    auto finished = (*factory)->Finish(finish);
    if (finished.ok()) return *finished;
    factory = finished.status();
  }
  return Unprocessable(field, "cannot read '" + uri + "' as parquet: " +
                                  factory.status().message());
}

}  // namespace

json::object ToJson(const BatchServingJob& job) {
  json::object o;
  o["id"] = job.id;
  o["status"] = JobStatusName(job.status);
  json::array sets, features;
  for (const auto& s : job.feature_sets) sets.emplace_back(s);
  for (const auto& f : job.features) features.emplace_back(f);
  o["feature_sets"] = std::move(sets);
  o["features"] = std::move(features);
  o["entity_source"] = job.entity_source;
  o["output"] = job.output;
  o["as_of"] = OptionalTime(job.as_of);
  o["batch_rows"] = job.batch_rows;
  o["rows_read"] = job.rows_read;
  o["rows_written"] = job.rows_written;
  o["batches"] = job.batches;
  o["error"] = job.error ? json::value(*job.error) : json::value(nullptr);
  o["cancelled"] = job.cancelled;
  o["created_at"] = FormatTimestamp(job.created_at);
  o["started_at"] = OptionalTime(job.started_at);
  o["finished_at"] = OptionalTime(job.finished_at);
  o["duration_seconds"] = job.duration_seconds;
  return o;
}

BatchServing::BatchServing(FeatureStore* store, int workers)
    : store_(store), workers_wanted_(std::max(1, workers)) {}

BatchServing::~BatchServing() { Shutdown(); }

Result<std::shared_ptr<BatchServing::Plan>> BatchServing::PlanJob(const json::object& body,
                                                                  BatchServingJob* job,
                                                                  const RequestContext& context) {
  std::set<std::string> known{"entity_source", "output", "overwrite", "batch_rows", "wait"};
  known.insert(std::begin(kFeatureSelectionFields), std::end(kFeatureSelectionFields));
  ARROW_RETURN_NOT_OK(CheckKnownFields(body, known, ""));
  auto plan = std::make_shared<Plan>();
  ARROW_ASSIGN_OR_RAISE(plan->selection, ResolveFeatureSelection(store_, body, context));
  ARROW_ASSIGN_OR_RAISE(plan->overwrite, BoolField(body, "overwrite"));
  if (const json::value* v = body.if_contains("batch_rows"); v && !v->is_null()) {
    constexpr int64_t kMax = 100'000'000;
    if (!v->is_int64() || v->as_int64() < 1 || v->as_int64() > kMax) {
      return InvalidArgument("batch_rows", "must be an integer from 1 to " + std::to_string(kMax));
    }
    plan->batch_rows = v->as_int64();
  }

  // The entity source: its files and schema.
  ARROW_ASSIGN_OR_RAISE(const json::object* source, ObjectField(body, "entity_source"));
  ARROW_RETURN_NOT_OK(CheckKnownFields(*source, {"path", "format"}, "entity_source."));
  ARROW_RETURN_NOT_OK(CheckParquetFormat(*source, "entity_source.format"));
  ARROW_ASSIGN_OR_RAISE(std::string source_path,
                        StringField(*source, "path", "entity_source.path"));
  Result<std::shared_ptr<arrow::dataset::Dataset>> dataset;
  if (IsS3Uri(source_path)) {
    dataset = OpenS3EntitySource(source_path, store_->options().s3);
    if (!dataset.ok()) return dataset.status();
  } else {
    std::string local_path = source_path;
    if (local_path.rfind("file://", 0) == 0) local_path = local_path.substr(7);
    if (local_path.empty() || local_path[0] != '/') {
      return InvalidArgument("entity_source.path",
                             "'" + source_path +
                                 "' must be an absolute path (or a file:// or s3:// URI) of a "
                                 "Parquet file, directory or glob");
    }
    SourceDefinition definition;
    definition.type = "file";
    definition.path = local_path;
    definition.format = "parquet";
    dataset = OpenSourceDataset(definition);
  }
  if (!dataset.ok()) {
    return MakeError(ErrorCodeOf(dataset.status()), ErrorMessageOf(dataset.status()),
                     "entity_source.path");
  }
  if (!*dataset) {
    return InvalidArgument("entity_source.path", "no Parquet file matches '" + source_path + "'");
  }
  plan->entities = *dataset;
  const arrow::Schema& schema = *plan->entities->schema();
  for (const char* name : {kEventTimestampColumn, "timestamp"}) {
    if (schema.GetFieldIndex(name) >= 0) {
      plan->time_column = name;
      break;
    }
  }
  if (plan->time_column.empty()) {
    return InvalidArgument("entity_source.path",
                           "the entity source '" + source_path +
                               "' has no 'event_timestamp' column (or 'timestamp') with each "
                               "row's time; its columns are: " + ColumnNames(schema));
  }
  if (!IsEntityTimeType(*schema.GetFieldByName(plan->time_column)->type())) {
    return InvalidArgument("entity_source.path",
                           "the time column '" + plan->time_column + "' of '" + source_path +
                               "' has type " +
                               schema.GetFieldByName(plan->time_column)->type()->ToString() +
                               ": expected a timestamp, a date or ISO 8601 strings");
  }
  for (const auto& key : plan->selection.JoinKeys()) {
    auto field = schema.GetFieldByName(key.column);
    if (!field) {
      return InvalidArgument("entity_source.path",
                             "the entity source '" + source_path + "' has no join key column '" +
                                 key.column + "' of feature set '" + key.feature_set +
                                 "'; its columns are: " + ColumnNames(schema));
    }
    if (!IsEntityKeyType(*field->type())) {
      return InvalidArgument("entity_source.path",
                             "the join key column '" + key.column + "' of '" + source_path +
                                 "' has type " + field->type()->ToString() +
                                 ": expected integers or strings");
    }
  }
  for (size_t i = 0; i < plan->selection.feature_refs.size(); ++i) {
    if (schema.GetFieldIndex(plan->selection.feature_refs[i]) >= 0) {
      return InvalidArgument("features[" + std::to_string(i) + "]",
                             "'" + plan->selection.feature_refs[i] +
                                 "' is also a column of the entity source; output columns "
                                 "must be unique");
    }
  }

  // The output: a file, or "<job id>.parquet" in a directory.
  ARROW_ASSIGN_OR_RAISE(const json::object* output, ObjectField(body, "output"));
  ARROW_RETURN_NOT_OK(CheckKnownFields(*output, {"path", "format"}, "output."));
  ARROW_RETURN_NOT_OK(CheckParquetFormat(*output, "output.format"));
  ARROW_ASSIGN_OR_RAISE(std::string output_uri, StringField(*output, "path", "output.path"));
  if (!IsAbsoluteOrUri(output_uri)) {
    return InvalidArgument("output.path", "'" + output_uri + "' must be an absolute path or a URI");
  }
  std::string path;
  auto fs = FileSystemFromUriOrPath(output_uri, store_->options().s3, &path);
  if (!fs.ok()) {
    return InvalidArgument("output.path", "'" + output_uri + "' cannot be written: " +
                                              fs.status().message());
  }
  plan->output_fs = *fs;
  // On S3 a directory is a key prefix: nothing to create, and a missing
  // bucket is the user's to create.
  const bool object_store = plan->output_fs->type_name() == "s3";
  auto stat = [&](const std::string& p) -> Result<arrow::fs::FileInfo> {
    auto info = plan->output_fs->GetFileInfo(p);
    if (!info.ok() && object_store) {
      return Unavailable("output.path: cannot reach S3 for '" + output_uri +
                         "': " + info.status().message());
    }
    return info;
  };
  ARROW_ASSIGN_OR_RAISE(auto info, stat(path));
  bool is_dir = output_uri.back() == '/' || info.IsDirectory();
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  std::string dir;
  if (is_dir) {
    dir = path;
    plan->output_path = JoinPath(dir, job->id + ".parquet");
    ARROW_ASSIGN_OR_RAISE(info, stat(plan->output_path));
  } else {
    dir = ParentOf(path);
    plan->output_path = path;
  }
  if (info.IsFile() && !plan->overwrite) {
    return MakeError(ErrorCode::kConflict,
                     "the output '" + output_uri +
                         "' exists; pass \"overwrite\": true to replace it",
                     "output.path");
  }
  if (info.IsDirectory()) {
    return MakeError(ErrorCode::kConflict,
                     "the output '" + plan->output_path + "' is a directory", "output.path");
  }
  plan->temp_path = JoinPath(dir, "." + BaseNameOf(plan->output_path) + "." + job->id + ".tmp");
  if (object_store) {
    if (plan->output_path.find('/') == std::string::npos) {
      return InvalidArgument("output.path",
                             "'" + output_uri +
                                 "' names a bucket, not an object; add a key "
                                 "(s3://bucket/out.parquet or s3://bucket/dir/)");
    }
    std::string bucket = plan->output_path.substr(0, plan->output_path.find('/'));
    ARROW_ASSIGN_OR_RAISE(auto bucket_info, stat(bucket));
    if (bucket_info.type() != arrow::fs::FileType::Directory) {
      return InvalidArgument("output.path", "the bucket '" + bucket + "' of '" + output_uri +
                                                "' does not exist");
    }
  } else if (!dir.empty()) {
    // Created last, so that a refused request leaves nothing behind.
    ARROW_ASSIGN_OR_RAISE(auto dir_info, plan->output_fs->GetFileInfo(dir));
    if (dir_info.type() == arrow::fs::FileType::File) {
      return InvalidArgument("output.path", "'" + dir + "' is a file, not a directory");
    }
    if (dir_info.type() == arrow::fs::FileType::NotFound) {
      Status made = plan->output_fs->CreateDir(dir, /*recursive=*/true);
      if (!made.ok()) {
        return InvalidArgument("output.path",
                               "its directory '" + dir + "' cannot be created: " + made.message());
      }
    }
  }

  job->feature_sets.clear();
  for (const auto& s : body.at("feature_sets").as_array()) {
    job->feature_sets.emplace_back(s.as_string());
  }
  job->features = plan->selection.feature_refs;
  job->entity_source = source_path;
  job->output = output_uri.find("://") == std::string::npos ? plan->output_path
                : is_dir ? JoinPath(output_uri, job->id + ".parquet")
                         : output_uri;
  job->as_of = plan->selection.as_of;
  job->batch_rows = plan->batch_rows;
  return plan;
}

Result<BatchServingJob> BatchServing::Submit(const json::value& body_value,
                                             const RequestContext& context) {
  if (!body_value.is_object()) return InvalidArgument("", "the request body must be a JSON object");
  const json::object& body = body_value.as_object();
  BatchServingJob job;
  job.id = NewUuid();
  job.created_at = NowMicros();
  ARROW_ASSIGN_OR_RAISE(bool wait, BoolField(body, "wait"));
  ARROW_ASSIGN_OR_RAISE(auto plan, PlanJob(body, &job, context));
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return Unavailable("the server is shutting down");
    auto busy = active_outputs_.find(plan->output_path);
    if (busy != active_outputs_.end()) {
      return MakeError(ErrorCode::kConflict,
                       "batch serving job " + busy->second + " is writing '" + job.output +
                           "' already",
                       "output.path");
    }
    active_outputs_.emplace(plan->output_path, job.id);
    jobs_.emplace(job.id, job);
    order_.push_back(job.id);
    queue_.emplace_back(job.id, plan);
    Forget();
    while (static_cast<int>(workers_.size()) < workers_wanted_) {
      workers_.emplace_back([this] { WorkerLoop(); });
    }
  }
  work_ready_.notify_one();
  if (wait) return Wait(job.id, std::chrono::hours(24));
  return GetJob(job.id);
}

Result<BatchServingJob> BatchServing::GetJob(std::string_view id) {
  std::lock_guard lock(mutex_);
  auto it = jobs_.find(std::string(id));
  if (it == jobs_.end()) return NotFound("batch serving job '" + std::string(id) + "' not found");
  BatchServingJob job = it->second;
  if (job.status == JobStatus::kRunning && job.started_at) {
    job.duration_seconds = static_cast<double>(NowMicros() - *job.started_at) / 1e6;
  }
  return job;
}

Result<BatchServingJob> BatchServing::Wait(std::string_view id, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  {
    std::unique_lock lock(mutex_);
    job_ended_.wait_until(lock, deadline, [&] {
      auto it = jobs_.find(std::string(id));
      return it == jobs_.end() || Ended(it->second.status);
    });
  }
  return GetJob(id);
}

std::vector<BatchServingJob> BatchServing::ListJobs(std::optional<JobStatus> status,
                                                    size_t limit, const Principal& principal) {
  std::lock_guard lock(mutex_);
  std::vector<BatchServingJob> out;
  for (auto it = order_.rbegin(); it != order_.rend() && out.size() < limit; ++it) {
    auto job = jobs_.find(*it);
    if (job == jobs_.end() || (status && job->second.status != *status)) continue;
    const auto& sets = job->second.feature_sets;
    if (!std::all_of(sets.begin(), sets.end(),
                     [&](const std::string& s) { return principal.Allows(s); })) {
      continue;
    }
    out.push_back(job->second);
  }
  return out;
}

Result<BatchServingJob> BatchServing::Cancel(std::string_view id) {
  std::lock_guard lock(mutex_);
  auto it = jobs_.find(std::string(id));
  if (it == jobs_.end()) return NotFound("batch serving job '" + std::string(id) + "' not found");
  BatchServingJob& job = it->second;
  if (Ended(job.status)) {
    return Conflict("batch serving job " + job.id + " has already ended (" +
                    std::string(JobStatusName(job.status)) + "): nothing to cancel");
  }
  auto queued = std::find_if(queue_.begin(), queue_.end(),
                             [&](const auto& entry) { return entry.first == job.id; });
  if (queued != queue_.end()) {
    active_outputs_.erase(queued->second->output_path);
    queue_.erase(queued);
    job.status = JobStatus::kFailed;
    job.error = "cancelled before it started";
    job.cancelled = true;
    job.finished_at = NowMicros();
    job_ended_.notify_all();
  } else {
    cancelling_.insert(job.id);  // Run() stops before its next batch
  }
  return job;
}

void BatchServing::Shutdown() {
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [id, plan] : queue_) {
      auto& job = jobs_.at(id);
      job.status = JobStatus::kFailed;
      job.error = "the server shut down before the job started";
      job.finished_at = NowMicros();
      active_outputs_.erase(plan->output_path);
    }
    queue_.clear();
    workers.swap(workers_);
  }
  work_ready_.notify_all();
  job_ended_.notify_all();
  for (auto& t : workers) t.join();
}

void BatchServing::Forget() {
  size_t excess = jobs_.size() > kMaxJobsKept ? jobs_.size() - kMaxJobsKept : 0;
  for (auto it = order_.begin(); excess > 0 && it != order_.end();) {
    auto job = jobs_.find(*it);
    if (job != jobs_.end() && Ended(job->second.status)) {
      jobs_.erase(job);
      it = order_.erase(it);
      --excess;
    } else {
      ++it;
    }
  }
}

void BatchServing::WorkerLoop() {
  while (true) {
    std::string id;
    std::shared_ptr<Plan> plan;
    {
      std::unique_lock lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      std::tie(id, plan) = std::move(queue_.front());
      queue_.pop_front();
      auto& job = jobs_.at(id);
      job.status = JobStatus::kRunning;
      job.started_at = NowMicros();
    }
    Execute(id, plan);
  }
}

void BatchServing::Execute(const std::string& id, const std::shared_ptr<Plan>& plan) {
  Status st = Run(id, *plan);
  if (!st.ok()) (void)plan->output_fs->DeleteFile(plan->temp_path);
  {
    std::lock_guard lock(mutex_);
    auto& job = jobs_.at(id);
    job.status = st.ok() ? JobStatus::kSucceeded : JobStatus::kFailed;
    if (!st.ok()) job.error = ErrorMessageOf(st);
    job.cancelled = !st.ok() && cancelling_.count(id) > 0;
    cancelling_.erase(id);
    job.finished_at = NowMicros();
    job.duration_seconds = static_cast<double>(*job.finished_at - *job.started_at) / 1e6;
    active_outputs_.erase(plan->output_path);
  }
  job_ended_.notify_all();
}

Status BatchServing::Run(const std::string& id, const Plan& plan) {
  ARROW_ASSIGN_OR_RAISE(auto builder, plan.entities->NewScan());
  ARROW_RETURN_NOT_OK(builder->BatchSize(plan.batch_rows));
  // Keep one batch in flight, not Arrow's default of 16 (memory is a batch).
  ARROW_RETURN_NOT_OK(builder->BatchReadahead(1));
  ARROW_RETURN_NOT_OK(builder->FragmentReadahead(1));
  ARROW_ASSIGN_OR_RAISE(auto scanner, builder->Finish());
  // Batches come in the source's order (files by name, rows in file order).
  ARROW_ASSIGN_OR_RAISE(auto reader, scanner->ToRecordBatchReader());

  ARROW_ASSIGN_OR_RAISE(auto sink, plan.output_fs->OpenOutputStream(plan.temp_path));
  parquet::WriterProperties::Builder property_builder;
  property_builder.compression(parquet::Compression::SNAPPY)->max_row_group_length(plan.batch_rows);
  // Encryption at rest covers what the store writes, outputs included: the
  // same Parquet modular encryption as the offline store (read them with
  // the key, e.g. python/src/fstore/encryption.py).
  if (const auto& cipher = store_->options().cipher) {
    ARROW_ASSIGN_OR_RAISE(auto encryption, ParquetEncryption(cipher).FileEncryption());
    property_builder.encryption(std::move(encryption));
  }
  auto properties = property_builder.build();
  auto arrow_properties = parquet::ArrowWriterProperties::Builder().store_schema()->build();
  std::unique_ptr<parquet::arrow::FileWriter> writer;
  int64_t rows = 0;
  auto write = [&](const arrow::RecordBatch& entities) -> Status {
    ARROW_ASSIGN_OR_RAISE(auto joined, JoinEntityBatch(store_, plan.selection, plan.time_column,
                                                 entities, rows,
                                                 EntityRowsOrigin{"entity_source.path",
                                                                  "entity_source"}));
    if (!writer) {
      ARROW_ASSIGN_OR_RAISE(writer, parquet::arrow::FileWriter::Open(
                                        *joined->schema(), arrow::default_memory_pool(), sink,
                                        properties, arrow_properties));
    }
    ARROW_RETURN_NOT_OK(writer->WriteRecordBatch(*joined));
    rows += joined->num_rows();
    std::lock_guard lock(mutex_);
    auto& job = jobs_.at(id);
    job.rows_read = rows;
    job.rows_written = rows;
    job.batches += 1;
    return Status::OK();
  };
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return Unavailable("the server shut down while the job ran");
      if (cancelling_.count(id)) {
        return MakeError(ErrorCode::kConflict,
                         "cancelled after " + std::to_string(rows) + " entity rows");
      }
    }
    std::shared_ptr<arrow::RecordBatch> batch;
    ARROW_RETURN_NOT_OK(reader->ReadNext(&batch));
    if (!batch) break;
    if (batch->num_rows() == 0) continue;
    ARROW_RETURN_NOT_OK(write(*batch));
  }
  if (!writer) {
    // No rows: the file still has the output's columns.
    ARROW_ASSIGN_OR_RAISE(auto empty, arrow::RecordBatch::MakeEmpty(plan.entities->schema()));
    ARROW_RETURN_NOT_OK(write(*empty));
  }
  ARROW_RETURN_NOT_OK(writer->Close());
  ARROW_RETURN_NOT_OK(sink->Close());
  if (!plan.overwrite) {
    ARROW_ASSIGN_OR_RAISE(auto info, plan.output_fs->GetFileInfo(plan.output_path));
    if (info.type() != arrow::fs::FileType::NotFound) {
      return MakeError(ErrorCode::kConflict,
                       "the output '" + plan.output_path +
                           "' appeared while the job ran; it was left as it is",
                       "output.path");
    }
  }
  return plan.output_fs->Move(plan.temp_path, plan.output_path);
}

}  // namespace fstore
