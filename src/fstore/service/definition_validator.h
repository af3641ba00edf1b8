#pragma once

// Semantic checks of definitions, run when one is created or changed: each
// failure names the field (status.h). Shape and JSON types are codec.h's job;
// references between definitions (source_features, cycles, dependants) are
// resolved by FeatureStore, which knows the registry.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <arrow/type_fwd.h>
#include <boost/json/value.hpp>

#include "fstore/compute/transformation.h"
#include "fstore/core/status.h"
#include "fstore/registry/definitions.h"

namespace fstore {

/// Names of entities, feature sets, features and columns: a letter or '_',
/// then letters, digits or '_', at most 63 characters (PostgreSQL's limit).
Status ValidateIdentifier(std::string_view field, std::string_view name);

/// The canonical data type for a name or alias: int (int64, integer, long),
/// float (float64, double), string (str, text), bool (boolean), timestamp
/// (datetime), and list<T> of those.
Result<std::string> CanonicalDataType(std::string_view field, std::string_view type);

/// Does a JSON value hold a value of the (canonical) data type?
bool JsonMatchesType(const boost::json::value& value, std::string_view data_type);

/// Checks an entity; fills defaults (join key <name>_id, value_type string).
Status ValidateEntity(Entity* entity);

/// Checks a feature set's own fields; canonicalises source.format.
/// `source_schema`, when the source could be read, is checked for the
/// timestamp fields. A python_transformation is checked by running its code in
/// the embedded interpreter (python/python_transformation.h): it compiles
/// (InvalidArgument on python_transformation.code with the line), runs as a
/// module and defines the function (python_transformation.function); with
/// `source_schema`, the function run on an empty batch of it returns the
/// declared output columns with compatible types
/// (python_transformation.output_columns). Its output_columns' types are
/// canonicalised.
Status ValidateFeatureSet(FeatureSet* feature_set,
                          const std::shared_ptr<arrow::Schema>& source_schema);

/// Checks a feature's own fields against its feature set: name, data type
/// (canonicalised), transformation (parsed; returned for the caller's
/// reference checks), window size, validation rules, default and allowed
/// values. Column references against `source_schema` (when known) exclude the
/// names in `input_feature_names` (a derived feature's inputs).
Result<std::optional<ParsedTransformation>> ValidateFeature(
    Feature* feature, const std::shared_ptr<arrow::Schema>& source_schema);

}  // namespace fstore
