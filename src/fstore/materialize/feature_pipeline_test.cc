// Data-driven tests of the materialization pipeline: each file in
// testdata/*.json is a scenario -- a feature set, its features, source rows,
// a run's range -- and the offline and online rows it must produce (and, for
// validation policies, the quality report). Add a file to add a case.

#include "fstore/materialize/feature_pipeline.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gmock/gmock.h>

#include "fstore/core/time.h"
#include "fstore/registry/codec.h"
#include "fstore/testing/gtest_util.h"

#ifndef FSTORE_SOURCE_DIR
#error "FSTORE_SOURCE_DIR must be defined by the build"
#endif

namespace fstore {
namespace {

namespace json = boost::json;

const auto kTimestampUtc = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");

Result<std::shared_ptr<arrow::DataType>> TypeNamed(const std::string& name) {
  if (name == "int") return arrow::int64();
  if (name == "float") return arrow::float64();
  if (name == "string") return arrow::utf8();
  if (name == "bool") return arrow::boolean();
  if (name == "timestamp") return kTimestampUtc;
  if (name == "date") return arrow::date32();
  return arrow::Status::Invalid("unknown scenario type ", name);
}

// {"schema": {"col": "type", ...} (ordered), "columns": [...], "data": [[...]]}
Result<std::shared_ptr<arrow::Table>> TableFromJson(const json::object& spec) {
  const auto& schema_spec = spec.at("schema").as_object();
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::vector<std::unique_ptr<arrow::ArrayBuilder>> builders;
  for (const auto& [name, type_name] : schema_spec) {
    ARROW_ASSIGN_OR_RAISE(auto type, TypeNamed(std::string(type_name.as_string())));
    fields.push_back(arrow::field(std::string(name), type));
    std::unique_ptr<arrow::ArrayBuilder> b;
    ARROW_RETURN_NOT_OK(arrow::MakeBuilder(arrow::default_memory_pool(), type, &b));
    builders.push_back(std::move(b));
  }
  for (const auto& row : spec.at("data").as_array()) {
    const auto& values = row.as_array();
    for (size_t c = 0; c < fields.size(); ++c) {
      const json::value& v = values.at(c);
      auto& b = *builders[c];
      if (v.is_null()) {
        ARROW_RETURN_NOT_OK(b.AppendNull());
        continue;
      }
      switch (fields[c]->type()->id()) {
        case arrow::Type::INT64:
          ARROW_RETURN_NOT_OK(static_cast<arrow::Int64Builder&>(b).Append(v.to_number<int64_t>()));
          break;
        case arrow::Type::DOUBLE:
          ARROW_RETURN_NOT_OK(static_cast<arrow::DoubleBuilder&>(b).Append(v.to_number<double>()));
          break;
        case arrow::Type::STRING:
          ARROW_RETURN_NOT_OK(
              static_cast<arrow::StringBuilder&>(b).Append(std::string_view(v.as_string())));
          break;
        case arrow::Type::BOOL:
          ARROW_RETURN_NOT_OK(static_cast<arrow::BooleanBuilder&>(b).Append(v.as_bool()));
          break;
        case arrow::Type::TIMESTAMP: {
          ARROW_ASSIGN_OR_RAISE(auto t, ParseTimestamp(std::string_view(v.as_string())));
          ARROW_RETURN_NOT_OK(static_cast<arrow::TimestampBuilder&>(b).Append(t));
          break;
        }
        case arrow::Type::DATE32: {
          ARROW_ASSIGN_OR_RAISE(auto t, ParseTimestamp(std::string_view(v.as_string())));
          ARROW_RETURN_NOT_OK(static_cast<arrow::Date32Builder&>(b).Append(
              static_cast<int32_t>(t / kMicrosPerDay)));
          break;
        }
        default:
          return arrow::Status::Invalid("unsupported scenario type");
      }
    }
  }
  std::vector<std::shared_ptr<arrow::Array>> arrays;
  for (auto& b : builders) {
    ARROW_ASSIGN_OR_RAISE(auto a, b->Finish());
    arrays.push_back(a);
  }
  return arrow::Table::Make(arrow::schema(fields), arrays);
}

// A table's rows as JSON for comparison: timestamps as ISO text, floats
// rounded to 9 significant digits.
json::array RowsAsJson(const arrow::Table& table, const std::vector<std::string>& columns) {
  json::array rows;
  auto batch = table.CombineChunksToBatch().ValueOrDie();
  for (int64_t r = 0; r < batch->num_rows(); ++r) {
    json::array row;
    for (const auto& name : columns) {
      auto col = batch->GetColumnByName(name);
      if (!col) {
        row.emplace_back("<missing column " + name + ">");
        continue;
      }
      if (col->IsNull(r)) {
        row.emplace_back(nullptr);
        continue;
      }
      auto s = col->GetScalar(r).ValueOrDie();
      switch (s->type->id()) {
        case arrow::Type::INT64: row.emplace_back(static_cast<arrow::Int64Scalar&>(*s).value); break;
        case arrow::Type::DOUBLE: {
          double d = static_cast<arrow::DoubleScalar&>(*s).value;
          std::ostringstream os;
          os.precision(9);
          os << d;
          row.emplace_back(std::stod(os.str()));
          break;
        }
        case arrow::Type::STRING: row.emplace_back(s->ToString()); break;
        case arrow::Type::BOOL: row.emplace_back(static_cast<arrow::BooleanScalar&>(*s).value); break;
        case arrow::Type::TIMESTAMP:
          row.emplace_back(FormatTimestamp(static_cast<arrow::TimestampScalar&>(*s).value));
          break;
        default: row.emplace_back(s->ToString()); break;
      }
    }
    rows.emplace_back(std::move(row));
  }
  return rows;
}

json::array NormaliseExpected(const json::array& rows) {
  json::array out;
  for (const auto& row : rows) {
    json::array r;
    for (const auto& v : row.as_array()) {
      if (v.is_string()) {
        auto t = ParseTimestamp(std::string_view(v.as_string()));
        // Timestamps in expectations may be written in any ISO form.
        if (t.ok() && v.as_string().size() >= 10 && v.as_string()[4] == '-') {
          r.emplace_back(FormatTimestamp(*t));
          continue;
        }
      }
      if (v.is_double()) {
        std::ostringstream os;
        os.precision(9);
        os << v.as_double();
        r.emplace_back(std::stod(os.str()));
        continue;
      }
      r.push_back(v);
    }
    out.emplace_back(std::move(r));
  }
  return out;
}

std::vector<std::filesystem::path> ScenarioFiles() {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::filesystem::path(FSTORE_SOURCE_DIR) / "src/fstore/materialize/testdata")) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

class PipelineScenarioTest : public ::testing::TestWithParam<std::filesystem::path> {};

TEST_P(PipelineScenarioTest, ProducesTheExpectedRows) {
  std::ifstream in(GetParam());
  std::stringstream text;
  text << in.rdbuf();
  json::object scenario = json::parse(text.str()).as_object();
  SCOPED_TRACE(std::string(scenario["description"].as_string()));

  FeatureSet fs;
  ASSERT_OK(DecodeFeatureSet(scenario["feature_set"], DecodeMode::kCreate, &fs));
  fs.id = "fs";
  std::vector<Feature> features;
  for (const auto& f : scenario["features"].as_array()) {
    Feature feature;
    ASSERT_OK(DecodeFeature(f, DecodeMode::kCreate, &feature));
    feature.feature_set_id = fs.id;
    features.push_back(feature);
  }
  std::vector<Entity> entities;
  for (const auto& e : scenario["entities"].as_array()) {
    Entity entity;
    ASSERT_OK(DecodeEntity(e, DecodeMode::kCreate, &entity));
    entities.push_back(entity);
  }
  ASSERT_OK_AND_ASSIGN(auto source, TableFromJson(scenario["source"].as_object()));
  auto plan = PlanMaterialization(fs, features, entities, source->schema());
  if (scenario.contains("expected_plan_error")) {
    ASSERT_FALSE(plan.ok());
    EXPECT_THAT(plan.status().message(),
                ::testing::HasSubstr(std::string(scenario["expected_plan_error"].as_string())));
    return;
  }
  ASSERT_OK(plan.status());
  ASSERT_OK_AND_ASSIGN(auto start, ParseTimestamp(std::string_view(scenario["start"].as_string())));
  ASSERT_OK_AND_ASSIGN(auto end, ParseTimestamp(std::string_view(scenario["end"].as_string())));
  auto computed = ComputeFeatures(*plan, source, start, end, end, end);
  ASSERT_OK(computed.status());

  std::vector<std::string> columns;
  for (const auto& c : scenario["output_columns"].as_array()) columns.emplace_back(c.as_string());
  EXPECT_EQ(json::serialize(RowsAsJson(*computed->offline, columns)),
            json::serialize(NormaliseExpected(scenario["expected_offline"].as_array())))
      << "offline rows";
  if (scenario.contains("expected_online")) {
    EXPECT_EQ(json::serialize(RowsAsJson(*computed->online, columns)),
              json::serialize(NormaliseExpected(scenario["expected_online"].as_array())))
        << "online rows";
  }
  if (scenario.contains("expected_rejected")) {
    EXPECT_EQ(computed->rows_rejected, scenario["expected_rejected"].to_number<int64_t>());
  }
  if (scenario.contains("expected_failed")) {
    EXPECT_EQ(computed->failed_validation, scenario["expected_failed"].as_bool());
  }
  if (scenario.contains("expected_quality_counts")) {
    // {"feature": {"rule": count}}
    for (const auto& [feature, rules] : scenario["expected_quality_counts"].as_object()) {
      for (const auto& [rule, count] : rules.as_object()) {
        const json::value* got = computed->quality_report.if_contains(feature);
        ASSERT_NE(got, nullptr) << feature;
        const json::value* r = got->as_object().if_contains(rule);
        ASSERT_NE(r, nullptr) << feature << "." << rule;
        EXPECT_EQ(r->as_object().at("count").to_number<int64_t>(), count.to_number<int64_t>())
            << feature << "." << rule;
      }
    }
  }
}

// A run split into chunks that carry the windows' look-back (WindowCarry)
// writes exactly what one pass over the whole range writes: the offline rows
// (concatenated), and the online store's final state (each chunk's records
// applied in order, an older event time never replacing a newer one).
struct ChunkCase {
  std::string name;
  std::string key_type;  // "int" or "string"
  std::string on_invalid;
};

void PrintTo(const ChunkCase& c, std::ostream* os) { *os << c.name; }

class WindowCarryTest : public ::testing::TestWithParam<ChunkCase> {};

Result<std::shared_ptr<arrow::Table>> RandomSource(const std::string& key_type, int64_t day0,
                                                   uint32_t seed) {
  std::mt19937 rng(seed);
  arrow::Int64Builder int_keys;
  arrow::StringBuilder string_keys, category;
  arrow::TimestampBuilder ts(kTimestampUtc, arrow::default_memory_pool());
  arrow::DoubleBuilder amount;
  constexpr int64_t kHour = 3'600'000'000LL;
  for (int i = 0; i < 3000; ++i) {
    int64_t user = static_cast<int64_t>(rng() % 25);
    if (key_type == "int") {
      ARROW_RETURN_NOT_OK(int_keys.Append(user));
    } else {
      ARROW_RETURN_NOT_OK(string_keys.Append("u" + std::to_string(user)));
    }
    // Whole hours from 4 days before day0 to 7 days after: many peers, many
    // events exactly on chunk boundaries and on window edges. Users 20..24
    // only early on, so they leave every window before the end.
    int64_t hours = user >= 20 ? rng() % 72 : rng() % (11 * 24);
    ARROW_RETURN_NOT_OK(ts.Append(day0 - 4 * 24 * kHour + hours * kHour));
    if (rng() % 10 == 0) {
      ARROW_RETURN_NOT_OK(amount.AppendNull());
    } else {
      ARROW_RETURN_NOT_OK(amount.Append(static_cast<double>(rng() % 10000) / 100.0));
    }
    ARROW_RETURN_NOT_OK(category.Append(std::string(1, static_cast<char>('a' + rng() % 5))));
  }
  std::shared_ptr<arrow::Array> keys;
  if (key_type == "int") {
    ARROW_ASSIGN_OR_RAISE(keys, int_keys.Finish());
  } else {
    ARROW_ASSIGN_OR_RAISE(keys, string_keys.Finish());
  }
  ARROW_ASSIGN_OR_RAISE(auto ts_array, ts.Finish());
  ARROW_ASSIGN_OR_RAISE(auto amount_array, amount.Finish());
  ARROW_ASSIGN_OR_RAISE(auto category_array, category.Finish());
  auto schema = arrow::schema({arrow::field("user_id", keys->type()),
                               arrow::field("ts", kTimestampUtc),
                               arrow::field("amount", arrow::float64()),
                               arrow::field("category", arrow::utf8())});
  return arrow::Table::Make(schema, {keys, ts_array, amount_array, category_array});
}

Result<std::shared_ptr<arrow::Table>> RowsInRange(const std::shared_ptr<arrow::Table>& table,
                                                  int64_t from, int64_t to) {
  ARROW_ASSIGN_OR_RAISE(auto batch, table->CombineChunksToBatch());
  const auto& ts = static_cast<const arrow::TimestampArray&>(*batch->GetColumnByName("ts"));
  arrow::BooleanBuilder keep;
  for (int64_t i = 0; i < batch->num_rows(); ++i) {
    ARROW_RETURN_NOT_OK(keep.Append(ts.Value(i) >= from && ts.Value(i) < to));
  }
  ARROW_ASSIGN_OR_RAISE(auto mask, keep.Finish());
  ARROW_ASSIGN_OR_RAISE(auto filtered, arrow::compute::Filter(batch, mask));
  return arrow::Table::FromRecordBatches({filtered.record_batch()});
}

// Row counts, then the first differing row (the whole tables are too long
// for a readable failure).
void ExpectSameRows(const json::array& got, const json::array& want, const std::string& what) {
  EXPECT_EQ(got.size(), want.size()) << what << " row count";
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    if (got[i] != want[i]) {
      ADD_FAILURE() << what << " row " << i << ":\n  chunked:  " << json::serialize(got[i])
                    << "\n  one pass: " << json::serialize(want[i]);
      return;
    }
  }
}

TEST_P(WindowCarryTest, ChunksWriteWhatOnePassWrites) {
  const ChunkCase& c = GetParam();
  const std::string key_type = c.key_type;
  Entity user;
  ASSERT_OK(DecodeEntity(json::parse(R"({"name": "user", "join_keys": ["user_id"], "value_type": ")" +
                                     key_type + R"("})"),
                         DecodeMode::kCreate, &user));
  FeatureSet fs;
  ASSERT_OK(DecodeFeatureSet(json::parse(R"({"name": "txn", "entities": ["user"],
      "timestamp_field": "ts", "on_invalid": ")" + c.on_invalid + R"("})"),
                             DecodeMode::kCreate, &fs));
  fs.id = "fs";
  const char* kOver = " OVER (PARTITION BY user_id ORDER BY ts RANGE BETWEEN INTERVAL '2 days' "
                      "PRECEDING AND CURRENT ROW)";
  json::array feature_specs = {
      {{"name", "amount"}, {"data_type", "float"},
       {"validation_rules", {{"max_value", 97}}}},
      {{"name", "amount_x2"}, {"data_type", "float"}, {"transformation", "amount * 2"}},
      {{"name", "n_2d"}, {"data_type", "int"}, {"window_size", "2d"}, {"transformation", "COUNT(*)"}},
      {{"name", "n_amount_2d"}, {"data_type", "int"}, {"window_size", "2d"},
       {"transformation", "COUNT(amount)"}},
      {{"name", "categories_2d"}, {"data_type", "int"}, {"window_size", "2d"},
       {"transformation", "COUNT(DISTINCT category)"}},
      {{"name", "spend_2d"}, {"data_type", "float"}, {"window_size", "2d"},
       {"transformation", "SUM(amount)"}},
      {{"name", "avg_36h"}, {"data_type", "float"}, {"window_size", "36h"},
       {"transformation", "AVG(amount)"}},
      {{"name", "min_2d"}, {"data_type", "float"}, {"window_size", "2d"},
       {"transformation", "MIN(amount)"}},
      {{"name", "max_5h"}, {"data_type", "float"}, {"window_size", "5h"},
       {"transformation", "MAX(amount)"}},
      {{"name", "sd_2d"}, {"data_type", "float"}, {"window_size", "2d"},
       {"transformation", "STDDEV_SAMP(amount)"}},
      {{"name", "first_2d"}, {"data_type", "float"},
       {"transformation", std::string("first_value(amount)") + kOver}},
      {{"name", "last_category_2d"}, {"data_type", "string"},
       {"transformation", std::string("last_value(category)") + kOver}},
      {{"name", "spend_per_event"}, {"data_type", "float"},
       {"source_features", {"spend_2d", "n_2d"}},
       {"transformation", "spend_2d / n_2d"}},
  };
  std::vector<Feature> features;
  for (const auto& spec : feature_specs) {
    Feature f;
    ASSERT_OK(DecodeFeature(spec, DecodeMode::kCreate, &f));
    f.feature_set_id = fs.id;
    features.push_back(f);
  }
  ASSERT_OK_AND_ASSIGN(const int64_t day0, ParseTimestamp("2024-03-01T00:00:00Z"));
  constexpr int64_t kDay = kMicrosPerDay;
  ASSERT_OK_AND_ASSIGN(auto source, RandomSource(key_type, day0, 7));
  ASSERT_OK_AND_ASSIGN(auto plan, PlanMaterialization(fs, features, {user}, source->schema()));
  ASSERT_EQ(plan.max_window_micros, 2 * kDay);
  const int64_t start = day0, end = day0 + 6 * kDay + kDay / 2;
  std::vector<std::string> columns{"user_id", "event_timestamp", "created_timestamp"};
  for (const auto& f : features) columns.push_back(f.name);

  ASSERT_OK_AND_ASSIGN(auto whole, RowsInRange(source, start - plan.max_window_micros, end));
  ASSERT_OK_AND_ASSIGN(auto one_pass, ComputeFeatures(plan, whole, start, end, end, end));
  ASSERT_GT(one_pass.offline->num_rows(), 1000);

  // Chunks of a day, of half a day, of several days: boundaries need not be
  // the windows' length.
  std::vector<int64_t> bounds{start, start + kDay, start + 2 * kDay, start + 2 * kDay + kDay / 2,
                              start + 5 * kDay, start + 5 * kDay + 3'600'000'000LL, end};
  WindowCarry carry;
  carry.run_end = end;
  json::array offline;
  std::map<std::string, std::pair<std::string, json::array>> online;  // key -> (time, row)
  int64_t rejected = 0;
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    const int64_t from = carry.until == bounds[i] ? bounds[i] : bounds[i] - plan.max_window_micros;
    ASSERT_EQ(from == bounds[i], i > 0);
    ASSERT_OK_AND_ASSIGN(auto rows, RowsInRange(source, from, bounds[i + 1]));
    ASSERT_OK_AND_ASSIGN(auto chunk,
                         ComputeFeatures(plan, rows, bounds[i], bounds[i + 1], end, end, &carry));
    EXPECT_EQ(carry.until, bounds[i + 1]);
    for (auto& row : RowsAsJson(*chunk.offline, columns)) offline.push_back(row);
    for (auto& row : RowsAsJson(*chunk.online, columns)) {
      std::string key = json::serialize(row.as_array()[0]);
      std::string time(row.as_array()[1].as_string());
      auto it = online.find(key);
      if (it == online.end() || it->second.first <= time) online[key] = {time, row.as_array()};
    }
    rejected += chunk.rows_rejected;
  }
  // Each chunk's rows are in entity order; the concatenation is not.
  auto by_text = [](const json::value& a, const json::value& b) {
    return json::serialize(a) < json::serialize(b);
  };
  json::array expected_offline = RowsAsJson(*one_pass.offline, columns);
  std::sort(offline.begin(), offline.end(), by_text);
  std::sort(expected_offline.begin(), expected_offline.end(), by_text);
  ExpectSameRows(offline, expected_offline, "offline");
  json::array online_rows;
  for (auto& [key, entry] : online) online_rows.push_back(entry.second);
  json::array expected_online = RowsAsJson(*one_pass.online, columns);
  std::sort(expected_online.begin(), expected_online.end(),
            [](const json::value& a, const json::value& b) {
              return json::serialize(a.as_array()[0]) < json::serialize(b.as_array()[0]);
            });
  ExpectSameRows(online_rows, expected_online, "online");
  EXPECT_EQ(rejected, one_pass.rows_rejected);
  if (c.on_invalid != "fail") {
    EXPECT_GT(rejected, 0);
  }
  // The carry holds the last 2 days' events only, not the source.
  EXPECT_GT(carry.num_rows(), 0);
  ASSERT_OK_AND_ASSIGN(auto last_two_days, RowsInRange(source, end - 2 * kDay, end));
  EXPECT_EQ(carry.num_rows(), last_two_days->num_rows());
}

INSTANTIATE_TEST_SUITE_P(
    Carry, WindowCarryTest,
    ::testing::Values(ChunkCase{"int_keys_drop", "int", "drop"},
                      ChunkCase{"string_keys_null", "string", "null"},
                      ChunkCase{"int_keys_null", "int", "null"}),
    [](const auto& info) { return info.param.name; });

INSTANTIATE_TEST_SUITE_P(Scenarios, PipelineScenarioTest, ::testing::ValuesIn(ScenarioFiles()),
                         [](const auto& info) {
                           std::string name = info.param.stem().string();
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace fstore
