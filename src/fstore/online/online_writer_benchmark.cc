// Materialization into the embedded online store (ARCHITECTURE.md budget: at
// least 1 million rows/s), the reads serving does, and the making of the
// records a store hands out.
//
//   cmake -B build-rel -DCMAKE_BUILD_TYPE=Release -DFSTORE_BUILD_BENCHMARKS=ON
//   ninja -C build-rel online_writer_benchmark && build-rel/src/fstore/online/online_writer_benchmark

#include <benchmark/benchmark.h>

#include <filesystem>

#include <arrow/api.h>

#include "fstore/core/ids.h"
#include "fstore/online/online_record_codec.h"
#include "fstore/online/online_writer.h"
#include "fstore/online/rocksdb/rocksdb_online_store.h"
#include "fstore/online/shared_record.h"
#include "fstore/security/encryption.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;

constexpr TimestampMicros kT0 = 1'700'000'000'000'000;

/// `rows` rows: an int64 key (or "user_<n>" strings), event time, 5 int64 and 5 float64 features.
std::shared_ptr<arrow::Table> MakeRows(int64_t rows, bool string_keys, std::vector<std::string>* features) {
  arrow::Int64Builder int_ids, times, ints[5];
  arrow::StringBuilder string_ids;
  arrow::DoubleBuilder floats[5];
  for (int64_t i = 0; i < rows; ++i) {
    if (string_keys) {
      (void)string_ids.Append("user_" + std::to_string(i));
    } else {
      (void)int_ids.Append(i);
    }
    (void)times.Append(kT0 + i);
    for (int f = 0; f < 5; ++f) {
      (void)ints[f].Append(i * f);
      (void)floats[f].Append(static_cast<double>(i) * 0.5 + f);
    }
  }
  arrow::FieldVector fields;
  arrow::ArrayVector arrays;
  auto add = [&](const std::string& name, arrow::ArrayBuilder& builder) {
    std::shared_ptr<arrow::Array> array;
    (void)builder.Finish(&array);
    fields.push_back(arrow::field(name, array->type()));
    arrays.push_back(array);
  };
  add("id", string_keys ? static_cast<arrow::ArrayBuilder&>(string_ids) : int_ids);
  add("event_timestamp", times);
  features->clear();
  for (int f = 0; f < 5; ++f) {
    add("int_" + std::to_string(f), ints[f]);
    add("float_" + std::to_string(f), floats[f]);
    features->push_back("int_" + std::to_string(f));
    features->push_back("float_" + std::to_string(f));
  }
  return arrow::Table::Make(arrow::schema(fields), arrays);
}

/// WriteLatestRows of a table of range(0) rows into a fresh RocksDB store.
void BM_WriteLatestRows(benchmark::State& state) {
  const int64_t rows = state.range(0);
  std::vector<std::string> features;
  auto table = MakeRows(rows, state.range(1) != 0, &features);
  for (auto _ : state) {
    state.PauseTiming();
    auto dir = fs::temp_directory_path() / ("fstore-online-bench-" + NewUuid());
    auto store = RocksDbOnlineStore::Open(dir.string()).ValueOrDie();
    state.ResumeTiming();
    auto result = WriteLatestRows(store.get(), "fs", {"id"}, features, *table);
    if (!result.ok()) state.SkipWithError(result.status().ToString().c_str());
    state.PauseTiming();
    (void)store->Close();
    store.reset();
    fs::remove_all(dir);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK(BM_WriteLatestRows)
    ->ArgNames({"rows", "string_keys"})
    ->Args({1'000'000, 0})
    ->Args({1'000'000, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// A store that takes every record and keeps nothing: the conversion's own cost.
class DiscardingStore : public OnlineStore {
 public:
  Status CheckHealth() override { return Status::OK(); }
  Status Close() override { return Status::OK(); }
  using OnlineStore::Write;
  Result<WriteResult> Write(const std::string&,
                            const std::vector<std::pair<EntityKey, OnlineRecord>>& records,
                            const OnlineWriteOptions&) override {
    return WriteResult{static_cast<int64_t>(records.size()), 0};
  }
  Result<std::vector<std::optional<OnlineRecord>>> Read(const std::string&, const std::vector<EntityKey>& keys,
                                                        int64_t, TimestampMicros) override {
    return std::vector<std::optional<OnlineRecord>>(keys.size());
  }
  Status DeleteFeatureSet(const std::string&) override { return Status::OK(); }
  Status Sync() override { return Status::OK(); }
};

void BM_WriteLatestRowsConversionOnly(benchmark::State& state) {
  const int64_t rows = state.range(0);
  std::vector<std::string> features;
  auto table = MakeRows(rows, state.range(1) != 0, &features);
  DiscardingStore store;
  for (auto _ : state) {
    auto result = WriteLatestRows(&store, "fs", {"id"}, features, *table);
    if (!result.ok()) state.SkipWithError(result.status().ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * rows);
}
BENCHMARK(BM_WriteLatestRowsConversionOnly)
    ->ArgNames({"rows", "string_keys"})
    ->Args({1'000'000, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

/// The same rows again into a store that holds them: every row is compared and ignored.
void BM_WriteLatestRowsRerun(benchmark::State& state) {
  const int64_t rows = state.range(0);
  std::vector<std::string> features;
  auto table = MakeRows(rows, false, &features);
  auto dir = fs::temp_directory_path() / ("fstore-online-bench-" + NewUuid());
  auto store = RocksDbOnlineStore::Open(dir.string()).ValueOrDie();
  (void)WriteLatestRows(store.get(), "fs", {"id"}, features, *table);
  for (auto _ : state) {
    auto result = WriteLatestRows(store.get(), "fs", {"id"}, features, *table);
    if (!result.ok()) state.SkipWithError(result.status().ToString().c_str());
  }
  state.SetItemsProcessed(state.iterations() * rows);
  (void)store->Close();
  fs::remove_all(dir);
}
BENCHMARK(BM_WriteLatestRowsRerun)->ArgNames({"rows"})->Arg(1'000'000)->Unit(benchmark::kMillisecond)->UseRealTime();

/// A store in a fresh temp dir for the whole run, kept across iterations
/// and benchmark arguments; closed and removed when the process exits (a
/// function-local static's destructor).
class RunStore {
 public:
  RunStore()
      : dir_(fs::temp_directory_path() / ("fstore-online-bench-" + NewUuid())),
        store_(RocksDbOnlineStore::Open(dir_.string()).ValueOrDie()) {}
  ~RunStore() {
    (void)store_->Close();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  RocksDbOnlineStore* get() const { return store_.get(); }

 private:
  fs::path dir_;
  std::unique_ptr<RocksDbOnlineStore> store_;
};

/// Read of range(0) random entities of 10 features from 1M stored ones.
void BM_Read(benchmark::State& state) {
  constexpr int64_t kStored = 1'000'000;
  static RocksDbOnlineStore* const store = [] {
    static RunStore run;
    std::vector<std::string> features;
    auto table = MakeRows(kStored, false, &features);
    (void)WriteLatestRows(run.get(), "fs", {"id"}, features, *table);
    return run.get();
  }();
  std::vector<EntityKey> keys(state.range(0));
  uint64_t x = 88172645463325252ull;
  for (auto _ : state) {
    for (auto& key : keys) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      key = {static_cast<int64_t>(x % kStored)};
    }
    auto read = store->Read("fs", keys, 0, kT0);
    benchmark::DoNotOptimize(read);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Read)->ArgNames({"keys"})->Arg(1)->Arg(100)->Unit(benchmark::kMicrosecond);

/// The online benchmark's store (bench/online): 25 feature sets x 100k
/// string-keyed entities of 10 features, each set written and synced in turn
/// (as materializations leave it). One iteration reads range(0) random
/// entities from each of range(1) sets: a serving request's store reads.
void BM_ReadFromManySets(benchmark::State& state) {
  constexpr int64_t kEntities = 100'000;
  constexpr int kSets = 25;
  static RocksDbOnlineStore* const store = [] {
    static RunStore run;
    std::vector<std::string> features;
    auto table = MakeRows(kEntities, true, &features);
    for (int s = 0; s < kSets; ++s) {
      (void)WriteLatestRows(run.get(), "fs_" + std::to_string(s), {"id"}, features, *table);
      (void)run.get()->Sync();
    }
    return run.get();
  }();
  const int64_t sets = state.range(1);
  std::vector<EntityKey> keys(state.range(0));
  uint64_t x = 88172645463325252ull;
  auto next = [&] { return x ^= x << 13, x ^= x >> 7, x ^= x << 17; };
  // Warm: every record read once, as a server under steady load has them.
  if (state.thread_index() == 0) {
    std::vector<EntityKey> all(kEntities);
    for (int64_t i = 0; i < kEntities; ++i) all[i] = {"user_" + std::to_string(i)};
    for (int s = 0; s < kSets; ++s) (void)store->Read("fs_" + std::to_string(s), all, 0, kT0);
  }
  for (auto _ : state) {
    for (auto& key : keys) key = {"user_" + std::to_string(next() % kEntities)};
    for (int64_t s = 0; s < sets; ++s) {
      auto read = store->Read("fs_" + std::to_string(next() % kSets), keys, 0, kT0);
      benchmark::DoNotOptimize(read);
    }
  }
  state.SetItemsProcessed(state.iterations() * state.range(0) * sets);
}
BENCHMARK(BM_ReadFromManySets)->ArgNames({"keys", "sets"})->Args({1, 1})->Args({100, 5})->Unit(benchmark::kMicrosecond);

/// A stored record (the bench's 5 int and 5 float features) made the
/// SharedRecord a store hands out, as the stores do for every record they
/// read from RocksDB or Redis: straight:1 decodes the bytes straight into it
/// (SharedRecord::Decode), straight:0 decodes an OnlineRecord first and
/// builds from that (how they did before). sealed:1 with encryption at rest.
void BM_SharedRecordFromStoredBytes(benchmark::State& state) {
  const bool straight = state.range(0) != 0;
  std::shared_ptr<const Cipher> cipher;
  if (state.range(1) != 0) cipher = *Cipher::FromHex(std::string(64, 'a'));
  std::vector<std::string> stored(1024);
  for (size_t i = 0; i < stored.size(); ++i) {
    OnlineRecord record;
    record.event_time = kT0 + static_cast<int64_t>(i);
    record.created_time = kT0 + static_cast<int64_t>(i);
    for (int f = 0; f < 5; ++f) {
      record.values.emplace_back("int_" + std::to_string(f), static_cast<int64_t>(i * 7919 * f));
      record.values.emplace_back("float_" + std::to_string(f), static_cast<double>(i) * 0.37 + f);
    }
    (void)AppendOnlineRecord(record, cipher.get(), "fs", &stored[i]);
  }
  size_t i = 0;
  for (auto _ : state) {
    const std::string& bytes = stored[i++ % stored.size()];
    std::shared_ptr<const SharedRecord> shared;
    if (straight) {
      shared = *SharedRecord::Decode(bytes, cipher.get(), "fs");
    } else {
      shared = std::make_shared<const SharedRecord>(*DecodeOnlineRecord(bytes, cipher.get(), "fs"));
    }
    benchmark::DoNotOptimize(shared);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SharedRecordFromStoredBytes)
    ->ArgNames({"straight", "sealed"})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Unit(benchmark::kNanosecond);

}  // namespace
}  // namespace fstore
