#pragma once

// The JSON form of definitions: what the API returns and what the registry
// stores. Decoding is strict: unknown fields, wrong JSON types and read-only
// fields are errors naming the field (status.h InvalidArgument). Semantic checks
// (identifiers, cron, durations, types) are service/definition_validator.h's.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "fstore/core/status.h"
#include "fstore/registry/definitions.h"
#include "fstore/registry/materialization_job.h"

namespace fstore {

enum class DecodeMode {
  kCreate,  ///< a client's create request: server-assigned fields are refused
  kPatch,   ///< a client's partial update: only the given fields change
  kStored,  ///< the registry's own stored form: every field accepted
};

boost::json::object ToJson(const Entity& entity);
boost::json::object ToJson(const SourceDefinition& source);
boost::json::object ToJson(const PythonTransformationDefinition& python_transformation);
boost::json::object ToJson(const FeatureSet& feature_set);
boost::json::object ToJson(const ValidationRules& rules);
boost::json::object ToJson(const Feature& feature);

/// A job record as the API returns it and the registry stores it.
boost::json::object ToJson(const MaterializationJob& job);
Status DecodeJob(const boost::json::value& json, MaterializationJob* out);

/// Sets the fields present in `json` on `*out`. With kPatch, a JSON null resets
/// an optional field to its default.
Status DecodeEntity(const boost::json::value& json, DecodeMode mode, Entity* out);
Status DecodeFeatureSet(const boost::json::value& json, DecodeMode mode, FeatureSet* out);
Status DecodeFeature(const boost::json::value& json, DecodeMode mode, Feature* out);

/// Parses text as JSON; a syntax error is InvalidArgument with the offset.
/// `storage`: where the value's strings, arrays and objects are allocated
/// (a monotonic resource on the caller's stack for a request body).
Result<boost::json::value> ParseJson(std::string_view text, boost::json::storage_ptr storage = {});

}  // namespace fstore
