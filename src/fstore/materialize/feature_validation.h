#pragma once

// Checks computed feature values against their definition: the declared
// data_type (the value must convert to it), and validation_rules (min_value,
// max_value, allowed_values, not_null, regex, max_length) plus the feature's
// allowed_values. Nothing invalid is kept silently: the materializer applies
// the feature set's on_invalid policy to what this finds.

#include <memory>
#include <string>
#include <vector>

#include <arrow/type_fwd.h>

#include "fstore/core/status.h"
#include "fstore/registry/definitions.h"

namespace fstore {

/// The Arrow type a data_type is stored as: int -> int64, float -> float64,
/// string -> utf8, bool -> boolean, timestamp -> timestamp[us, UTC],
/// list<T> -> list<T's type>.
Result<std::shared_ptr<arrow::DataType>> ArrowTypeOf(const std::string& data_type);

/// One rule's failures on a column.
struct RuleViolations {
  std::string rule;                  ///< "data_type", "min_value", "not_null", ...
  std::vector<int64_t> rows;         ///< row indices, ascending
};

struct CheckedColumn {
  /// The values converted to the declared type; a value that could not be
  /// converted is null here (and listed under "data_type").
  std::shared_ptr<arrow::Array> values;
  std::vector<RuleViolations> violations;  ///< only rules with failures
};

/// Converts `computed` to the feature's declared type (PostgreSQL's
/// assignment casts: float -> int rounds half away from zero; out of range is
/// a violation) and checks every rule on every value.
Result<CheckedColumn> CheckFeatureColumn(const Feature& feature,
                                         const std::shared_ptr<arrow::Array>& computed);

}  // namespace fstore
