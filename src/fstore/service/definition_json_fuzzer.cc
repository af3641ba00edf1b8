// libFuzzer target for request JSON decoding: any bytes sent as a definition
// body are parsed, decoded in every mode and validated without crashing, and a
// definition that decodes and validates round-trips through its stored form.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <boost/json/serialize.hpp>

#include "fstore/registry/codec.h"
#include "fstore/service/definition_validator.h"

namespace {

template <typename T, typename Decode>
void RoundTrip(const T& value, Decode decode) {
  T back;
  fstore::Status st = decode(fstore::ToJson(value), fstore::DecodeMode::kStored, &back);
  if (!st.ok()) __builtin_trap();  // our own output must decode
  if (boost::json::serialize(fstore::ToJson(back)) != boost::json::serialize(fstore::ToJson(value))) {
    __builtin_trap();  // and decode to the same definition
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto json = fstore::ParseJson(text);
  if (!json.ok()) return 0;
  for (auto mode : {fstore::DecodeMode::kCreate, fstore::DecodeMode::kPatch,
                    fstore::DecodeMode::kStored}) {
    fstore::Entity entity;
    if (fstore::DecodeEntity(*json, mode, &entity).ok() && fstore::ValidateEntity(&entity).ok()) {
      RoundTrip(entity, fstore::DecodeEntity);
    }
    fstore::FeatureSet fs;
    bool decoded = fstore::DecodeFeatureSet(*json, mode, &fs).ok();
    // Validating a Python transformation runs its code in the embedded
    // interpreter: generated programs are not run here (the decoder still
    // sees every python_transformation input; python_test covers the checks).
    if (decoded) fs.python_transformation.reset();
    if (decoded && fstore::ValidateFeatureSet(&fs, nullptr).ok()) {
      RoundTrip(fs, fstore::DecodeFeatureSet);
    }
    fstore::Feature feature;
    if (fstore::DecodeFeature(*json, mode, &feature).ok() &&
        fstore::ValidateFeature(&feature, nullptr).ok()) {
      RoundTrip(feature, fstore::DecodeFeature);
    }
  }
  return 0;
}
