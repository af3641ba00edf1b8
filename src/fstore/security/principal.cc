#include "fstore/security/principal.h"

#include <algorithm>

namespace fstore {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kReader: return "reader";
    case Role::kWriter: return "writer";
    case Role::kAdmin: return "admin";
  }
  return "reader";
}

Result<Role> ParseRole(std::string_view name) {
  if (name == "reader") return Role::kReader;
  if (name == "writer") return Role::kWriter;
  if (name == "admin") return Role::kAdmin;
  return InvalidArgument("role", "'" + std::string(name) +
                                     "' is not a role: use admin, writer or reader");
}

const Principal& Principal::Anonymous() {
  static const Principal anonymous;
  return anonymous;
}

bool Principal::Allows(std::string_view feature_set_name) const {
  return feature_sets.empty() ||
         std::find(feature_sets.begin(), feature_sets.end(), feature_set_name) !=
             feature_sets.end();
}

Status Principal::CheckFeatureSet(std::string_view feature_set_name) const {
  if (Allows(feature_set_name)) return Status::OK();
  return MakeError(ErrorCode::kPermissionDenied,
                   "API key " + key_id + " may not use feature set '" +
                       std::string(feature_set_name) + "'",
                   "feature_sets");
}

Status Principal::CheckRole(Role needed, std::string_view action) const {
  if (HasRole(needed)) return Status::OK();
  return MakeError(ErrorCode::kPermissionDenied,
                   std::string(action) + " needs the " + std::string(RoleName(needed)) +
                       " role; API key " + key_id + " is a " + std::string(RoleName(role)));
}

}  // namespace fstore
