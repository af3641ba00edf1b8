#pragma once

// The registry's data model (the seed's, made complete; ARCHITECTURE.md "Data
// model"): entities, feature sets and features. Every change to a feature set
// or feature makes a new immutable version; `version` counts from 1. Times are
// UTC microseconds (core/time.h). Values a client chose freely (default_value,
// allowed_values) are kept as JSON and checked against data_type on write.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include "fstore/core/time.h"

namespace fstore {

/// What a feature set's rows are keyed by: `user` with join key `user_id`.
struct Entity {
  std::string id;                      ///< UUID, assigned on creation
  std::string name;
  std::vector<std::string> join_keys;  ///< at least one
  std::string value_type = "string";   ///< type of the join keys: string | int
  std::string description;
  int64_t version = 1;
  TimestampMicros created_at = 0;
  TimestampMicros updated_at = 0;
};

/// Where a feature set's raw rows come from.
struct SourceDefinition {
  std::string type;        ///< "file" | "postgres" | "push"
  std::string path;        ///< file: a file, a directory or a glob
  std::string format;      ///< file: "parquet" | "csv"
  std::string query;       ///< postgres: one SELECT statement (or table)
  std::string table;       ///< postgres: a [schema.]table name (or query)
  std::string connection;  ///< postgres: a postgresql:// URL, required
  /// postgres: compute plain row transformations in PostgreSQL's SELECT
  /// (materialize/postgres_source.h); same values, less data moved.
  bool pushdown = false;
};

/// A feature set's Python step (issue #6): the source text of a function over
/// record batches of source rows, run by materialization in the embedded
/// interpreter (python/python_transformation.h) before the SQL
/// transformations. Features of the set read its output columns as they read
/// source columns.
struct PythonTransformationDefinition {
  std::string code;                   ///< module source defining `function`
  std::string function = "transform";
  std::string input = "pyarrow";      ///< pyarrow (a RecordBatch) | pandas (a DataFrame)
  std::string timeout = "60s";        ///< duration text: bounds each call
  /// The columns the function returns besides the key and timestamp columns,
  /// in declared order: name -> data type (canonical after validation).
  std::vector<std::pair<std::string, std::string>> output_columns;
};

struct FeatureSet {
  std::string id;  ///< UUID, assigned on creation
  std::string name;
  std::string description;
  std::string owner;
  std::vector<std::string> tags;
  std::vector<std::string> entities;  ///< entity names, in key order
  std::string source_type = "batch";  ///< the seed's field: batch | stream
  std::optional<SourceDefinition> source;
  std::string timestamp_field = "event_timestamp";
  std::string created_timestamp_field;  ///< empty: none
  std::string ttl;                      ///< duration text ("30d"); empty: no ttl
  bool offline_enabled = true;
  bool online_enabled = true;
  std::string materialization_schedule;  ///< cron; empty: not scheduled
  std::string on_invalid = "fail";       ///< fail | drop | null
  std::optional<PythonTransformationDefinition> python_transformation;  ///< none: no Python step

  int64_t version = 1;
  TimestampMicros created_at = 0;
  TimestampMicros updated_at = 0;       ///< when this version was made
  std::optional<TimestampMicros> deleted_at;  ///< set: soft-deleted
};

struct ValidationRules {
  std::optional<double> min_value;
  std::optional<double> max_value;
  std::optional<boost::json::array> allowed_values;
  std::optional<bool> not_null;
  std::optional<std::string> regex;
  std::optional<int64_t> max_length;

  bool empty() const {
    return !min_value && !max_value && !allowed_values && !not_null && !regex && !max_length;
  }
};

struct Feature {
  std::string id;  ///< UUID, assigned on creation
  std::string name;
  std::string feature_set_id;
  std::string description;
  std::string data_type;       ///< canonical: int float string bool timestamp list<T>
  std::string transformation;  ///< PostgreSQL expression; empty: the source column `name`
  std::string window_size;     ///< duration text; empty: not windowed
  std::vector<std::string> source_features;  ///< derived feature inputs, as given
  ValidationRules validation_rules;
  std::optional<boost::json::value> default_value;
  std::optional<boost::json::array> allowed_values;
  std::vector<std::string> tags;
  std::string owner;

  int64_t version = 1;
  TimestampMicros created_at = 0;
  TimestampMicros updated_at = 0;
  std::optional<TimestampMicros> deleted_at;
};

/// The feature name in a reference: "feature_set:feature" -> "feature";
/// a bare "feature" is itself.
inline std::string_view FeatureNameOf(std::string_view ref) {
  size_t colon = ref.rfind(':');
  return colon == std::string_view::npos ? ref : ref.substr(colon + 1);
}

/// Whether `column`, as written in a derived feature's SQL, names one of its
/// source_features (inputs are named bare in the expression: "fs:x" is x).
inline bool IsSourceFeatureName(const Feature& feature, std::string_view column) {
  for (const auto& ref : feature.source_features) {
    if (FeatureNameOf(ref) == column) return true;
  }
  return false;
}

}  // namespace fstore
