#pragma once

// Who is asking, once the server has authenticated a request: the key's id,
// its role and the feature sets it is limited to (issue #7, "Roles").
//   reader  serves features (online, historical, batch) and reads definitions
//   writer  also defines (creates, patches, deletes) and materializes
//   admin   also manages keys and reads the audit log
// A key limited to feature sets reaches nothing else: serving, definitions
// and materialization of any other feature set answer 403 naming it.

#include <string>
#include <string_view>
#include <vector>

#include "fstore/core/status.h"

namespace fstore {

enum class Role { kReader = 0, kWriter = 1, kAdmin = 2 };

/// "reader", "writer", "admin".
std::string_view RoleName(Role role);
/// The role a RoleName names; InvalidArgument (field "role") otherwise.
Result<Role> ParseRole(std::string_view name);

struct Principal {
  std::string key_id;  ///< "" when authentication is off
  Role role = Role::kAdmin;
  /// Feature set names the key is limited to; empty: every feature set.
  std::vector<std::string> feature_sets;

  /// Anyone, when authentication is off (an admin without limits).
  static const Principal& Anonymous();

  bool Allows(std::string_view feature_set_name) const;
  /// Whether the role is `needed` or above.
  bool HasRole(Role needed) const { return static_cast<int>(role) >= static_cast<int>(needed); }
  /// OK, or PermissionDenied (field "feature_sets") naming the feature set.
  Status CheckFeatureSet(std::string_view feature_set_name) const;
  /// OK when the role is `needed` or above, else PermissionDenied naming
  /// `action` and the role it needs.
  Status CheckRole(Role needed, std::string_view action) const;
};

}  // namespace fstore
