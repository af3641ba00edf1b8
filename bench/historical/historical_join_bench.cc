// The in-process point-in-time join (RetrievePointInTime) on an entity
// Parquet file against a materialized feature set, timed without HTTP and
// JSON: what POST /api/v1/serving/historical spends in the join itself.
//
//   historical_join_bench --data-dir DIR --feature-set NAME --features a,b,c
//       --entities entities.parquet [--output out.parquet] [--repeat 1]
//
// The entity file holds the join key columns and `event_timestamp`
// (timestamp[us, UTC]). Prints one JSON line per repetition:
// {"rows": N, "read_seconds": .., "join_seconds": .., "join_cpu_seconds": ..}
// (join_cpu_seconds: the process's user + system CPU time during the join).
// With --output the last repetition's result (entity columns + features) is
// written as Parquet.

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <arrow/api.h>
#include <arrow/io/file.h>
#include <parquet/arrow/reader.h>
#include <parquet/arrow/writer.h>

#include "fstore/compute/source_schema.h"
#include "fstore/materialize/feature_pipeline.h"
#include "fstore/retrieval/point_in_time_join.h"
#include "fstore/service/feature_store.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// User + system CPU time of the process so far.
double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

arrow::Status Run(int argc, char** argv) {
  std::string data_dir, set_name, features, entities, output;
  int repeat = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--data-dir") data_dir = value;
    else if (flag == "--feature-set") set_name = value;
    else if (flag == "--features") features = value;
    else if (flag == "--entities") entities = value;
    else if (flag == "--output") output = value;
    else if (flag == "--repeat") repeat = std::stoi(value);
    else return arrow::Status::Invalid("unknown flag ", flag);
  }
  if (data_dir.empty() || set_name.empty() || features.empty() || entities.empty()) {
    return arrow::Status::Invalid("--data-dir, --feature-set, --features, --entities are required");
  }
  fstore::FeatureStoreOptions options;
  options.registry_uri = "sqlite://" + data_dir + "/registry.db";
  options.offline_store_uri = "file://" + data_dir + "/offline";
  options.online_store_uri = "rocksdb://" + data_dir + "/online";
  ARROW_ASSIGN_OR_RAISE(auto store, fstore::FeatureStore::Open(options));
  ARROW_ASSIGN_OR_RAISE(auto fs, store->registry()->FindFeatureSet(set_name, false));
  if (!fs) return arrow::Status::Invalid("no feature set ", set_name);
  ARROW_ASSIGN_OR_RAISE(auto set_features, store->FeaturesOf(*fs));
  ARROW_ASSIGN_OR_RAISE(auto schema, fstore::ReadSourceSchema(*fs->source));
  ARROW_ASSIGN_OR_RAISE(auto all_entities, store->registry()->ListEntities());
  ARROW_ASSIGN_OR_RAISE(auto plan,
                        fstore::PlanMaterialization(*fs, set_features, all_entities, schema));

  std::shared_ptr<arrow::RecordBatch> result;
  for (int rep = 0; rep < repeat; ++rep) {
    auto t0 = Clock::now();
    ARROW_ASSIGN_OR_RAISE(auto file, arrow::io::ReadableFile::Open(entities));
    ARROW_ASSIGN_OR_RAISE(auto reader,
                          parquet::arrow::OpenFile(file, arrow::default_memory_pool()));
    ARROW_ASSIGN_OR_RAISE(auto table, reader->ReadTable());
    ARROW_ASSIGN_OR_RAISE(auto batch, table->CombineChunksToBatch());
    auto ts = batch->GetColumnByName("event_timestamp");
    if (!ts) return arrow::Status::Invalid("the entity file lacks event_timestamp");
    auto data = ts->data()->Copy();
    data->type = arrow::int64();
    auto times = std::static_pointer_cast<arrow::Int64Array>(arrow::MakeArray(data));
    const double read_seconds = Seconds(t0);

    fstore::PointInTimeQuery q;
    q.plan = &plan;
    q.features = Split(features);
    q.entity_keys = batch;
    q.times = times;
    const double cpu0 = CpuSeconds();
    auto t1 = Clock::now();
    ARROW_ASSIGN_OR_RAISE(auto values, fstore::RetrievePointInTime(store->offline_store(), q));
    const double join_seconds = Seconds(t1);
    const double join_cpu_seconds = CpuSeconds() - cpu0;
    std::printf(
        "{\"rows\": %lld, \"read_seconds\": %.4f, \"join_seconds\": %.4f, "
        "\"join_cpu_seconds\": %.4f}\n",
        static_cast<long long>(batch->num_rows()), read_seconds, join_seconds, join_cpu_seconds);
    std::fflush(stdout);
    auto fields = batch->schema()->fields();
    auto arrays = batch->columns();
    for (size_t i = 0; i < values.size(); ++i) {
      fields.push_back(arrow::field(q.features[i], values[i]->type()));
      arrays.push_back(values[i]);
    }
    result = arrow::RecordBatch::Make(arrow::schema(fields), batch->num_rows(), arrays);
  }
  if (!output.empty() && result) {
    ARROW_ASSIGN_OR_RAISE(auto table, arrow::Table::FromRecordBatches({result}));
    ARROW_ASSIGN_OR_RAISE(auto sink, arrow::io::FileOutputStream::Open(output));
    ARROW_RETURN_NOT_OK(parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), sink,
                                                   1 << 20));
    ARROW_RETURN_NOT_OK(sink->Close());
  }
  return arrow::Status::OK();
}

}  // namespace

int main(int argc, char** argv) {
  arrow::Status st = Run(argc, argv);
  if (!st.ok()) {
    std::cerr << "historical_join_bench: " << st.ToString() << "\n";
    return 1;
  }
  return 0;
}
