// Data-driven tests of the materialization pipeline: each file in
// testdata/*.json is a scenario -- a feature set, its features, source rows,
// a run's range -- and the offline and online rows it must produce (and, for
// validation policies, the quality report). Add a file to add a case.

#include "fstore/materialize/feature_pipeline.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <arrow/api.h>
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
