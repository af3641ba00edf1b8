#include "fstore/materialize/python_step.h"

#include <arrow/api.h>

#include "fstore/core/duration.h"
#include "fstore/materialize/feature_validation.h"

namespace fstore {

Result<PythonFunctionSpec> PythonSpecOf(const FeatureSet& fs) {
  if (!fs.python_transformation) {
    return Internal("feature set '" + fs.name + "' has no python_transformation");
  }
  const PythonTransformationDefinition& def = *fs.python_transformation;
  PythonFunctionSpec spec;
  spec.code = def.code;
  spec.function = def.function;
  spec.input = def.input == "pandas" ? PythonInput::kPandas : PythonInput::kPyArrow;
  auto micros = ParseDuration(def.timeout);
  if (!micros.ok()) return InvalidArgument("python_transformation.timeout", micros.status().message());
  spec.timeout = std::chrono::milliseconds(std::max<int64_t>(1, *micros / 1000));
  for (const auto& [name, data_type] : def.output_columns) {
    auto type = ArrowTypeOf(data_type);
    if (!type.ok()) {
      return InvalidArgument("python_transformation.output_columns." + name,
                             type.status().message());
    }
    spec.output_columns.push_back({name, *type});
  }
  spec.name = fs.name;
  return spec;
}

Result<std::shared_ptr<arrow::Schema>> SchemaAfterPython(
    const FeatureSet& fs, const std::shared_ptr<arrow::Schema>& source_schema) {
  if (!fs.python_transformation || source_schema == nullptr) return source_schema;
  ARROW_ASSIGN_OR_RAISE(PythonFunctionSpec spec, PythonSpecOf(fs));
  return TransformedSchema(source_schema, spec.output_columns);
}

Result<std::shared_ptr<arrow::Table>> ApplyPythonStep(const PythonTransformation& transformation,
                                                      const std::shared_ptr<arrow::Table>& source,
                                                      const std::vector<std::string>& columns) {
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::vector<std::shared_ptr<arrow::RecordBatch>> out;
  arrow::TableBatchReader reader(*source);
  std::shared_ptr<arrow::RecordBatch> batch;
  while (true) {
    ARROW_RETURN_NOT_OK(reader.ReadNext(&batch));
    if (batch == nullptr) break;
    ARROW_ASSIGN_OR_RAISE(auto transformed, transformation.Apply(batch));
    std::vector<std::shared_ptr<arrow::Array>> arrays;
    std::vector<std::shared_ptr<arrow::Field>> batch_fields;
    for (const auto& c : columns) {
      auto values = transformed->GetColumnByName(c);
      if (values == nullptr) {
        return Unprocessable("python_transformation",
                             "python_transformation: the function '" +
                                 transformation.spec().function + "' returned " +
                                 std::to_string(transformed->num_rows()) + " rows for " +
                                 std::to_string(batch->num_rows()) + " and no column '" + c +
                                 "': a function that drops rows must return the join key, "
                                 "timestamp and other columns the features read");
      }
      batch_fields.push_back(arrow::field(c, values->type()));
      arrays.push_back(std::move(values));
    }
    out.push_back(arrow::RecordBatch::Make(arrow::schema(batch_fields), transformed->num_rows(),
                                           std::move(arrays)));
    if (fields.empty()) fields = batch_fields;
  }
  if (out.empty()) {
    // No rows: an empty table of the columns with the types a run expects.
    ARROW_ASSIGN_OR_RAISE(auto empty, arrow::RecordBatch::MakeEmpty(source->schema()));
    ARROW_ASSIGN_OR_RAISE(auto transformed, transformation.Apply(empty));
    std::vector<std::shared_ptr<arrow::Field>> empty_fields;
    for (const auto& c : columns) {
      auto field = transformed->schema()->GetFieldByName(c);
      if (field == nullptr) {
        return Unprocessable("python_transformation",
                             "python_transformation: the function's result has no column '" + c +
                                 "', which the features read");
      }
      empty_fields.push_back(field);
    }
    return arrow::Table::MakeEmpty(arrow::schema(empty_fields));
  }
  return arrow::Table::FromRecordBatches(arrow::schema(fields), out);
}

}  // namespace fstore
