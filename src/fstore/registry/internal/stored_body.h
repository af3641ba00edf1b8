#pragma once

// How the registry backends store a definition or job: the codec's JSON
// (registry/codec.h) as text in a `body` column, decoded in kStored mode.
// Shared by sqlite/ and postgres/, which differ only in their SQL.

#include <string>
#include <string_view>

#include <boost/json/serialize.hpp>

#include "fstore/core/status.h"
#include "fstore/registry/codec.h"

namespace fstore::registry_internal {

inline std::string Body(const auto& definition) {
  return boost::json::serialize(ToJson(definition));
}

inline Status DecodeStored(const boost::json::value& json, Entity* out) {
  return DecodeEntity(json, DecodeMode::kStored, out);
}
inline Status DecodeStored(const boost::json::value& json, FeatureSet* out) {
  return DecodeFeatureSet(json, DecodeMode::kStored, out);
}
inline Status DecodeStored(const boost::json::value& json, Feature* out) {
  return DecodeFeature(json, DecodeMode::kStored, out);
}
inline Status DecodeStored(const boost::json::value& json, MaterializationJob* out) {
  return DecodeJob(json, out);
}

/// A stored body decoded; a body that does not decode is Internal (the
/// database holds something this version did not write).
template <typename T>
Result<T> DecodeBody(const std::string& body, std::string_view kind) {
  T out;
  auto json = ParseJson(body);
  Status status = json.ok() ? DecodeStored(*json, &out) : json.status();
  if (!status.ok()) {
    return Internal("registry database: a stored " + std::string(kind) +
                    " cannot be read: " + ErrorMessageOf(status));
  }
  return out;
}

}  // namespace fstore::registry_internal
