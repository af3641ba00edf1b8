#pragma once

// The server's access control (issue #7): authenticates each request's API
// key (security/api_keys.h), checks its role and feature sets against one
// policy table, filters lists down to the feature sets a limited key may see,
// and writes the audit log (security/audit_log.h).
//
// Credentials: "Authorization: Bearer <key>" or "X-API-Key: <key>". A
// missing, unknown, malformed or revoked key answers 401 with
// "WWW-Authenticate: Bearer"; a role too low or a feature set outside the
// key's list answers 403 naming what is missing. /, /health, /ready,
// /openapi.json and /docs are always open.
//
// Serving routes (online, historical, batch) check feature sets themselves,
// inputs of derived features included (service/request_context.h): the
// interceptor only sets request.principal for them. For a limited key, lists
// (feature sets, features, search, monitoring statistics and freshness) and
// lineage graphs leave other feature sets out.
//
// Audit: every route with an action in the table is recorded after its
// handler, whatever the outcome; any other 401/403 as "auth.denied". A
// failure to write the audit log is logged and the response still goes out.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fstore/security/api_keys.h"
#include "fstore/security/audit_log.h"
#include "fstore/security/principal.h"
#include "fstore/server/router.h"
#include "fstore/service/feature_store.h"

namespace fstore {

/// How a route names the feature set it acts on (for limited keys and the
/// audit log's target).
enum class AccessTarget {
  kNone,
  kFeatureSetPath,    ///< path {id}: a feature set id or name
  kFeaturePath,       ///< path {id}: a feature id or "set:feature"; its feature set
  kJobPath,           ///< path {id}: a materialization job; its feature set
  kBatchJobPath,      ///< path {id}: a batch serving job; the feature sets it reads
  kFeatureSetBody,    ///< body "name": the feature set being created
  kFeatureBody,       ///< body "feature_set": the feature's feature set (id or name)
  kEntityBody,        ///< body "name": an entity (not a feature set; audit target only)
  kKeyPath,           ///< path {id}: an API key id (audit target only)
  kFeatureSetQuery,   ///< query "feature_set" (id or name), when given
};

/// How a list response is cut down for a limited key.
enum class ListFilter {
  kNone,
  kFeatureSets,  ///< {"feature_sets": [...], "count"}: by "name"
  kFeatures,     ///< {"features": [...], "count"}: by "feature_set_id"
  kSearch,       ///< {"results": [...], "count"}: feature sets and features by set
  kStatistics,   ///< /monitoring/statistics {"features": [...], "count", "drifted"}: by "feature_set"
  kFreshness,    ///< /monitoring/data-freshness {"feature_sets": [...], "count", "stale"}: by "feature_set"
  kLineage,      ///< lineage: upstream.source_features and downstream, by "feature_set"
};

/// One row of the policy table.
struct AccessRule {
  std::string_view method;
  std::string_view route;  ///< the router's pattern
  bool open = false;       ///< no key needed, even with authentication on
  Role role = Role::kReader;
  /// The audit action ("feature_set.update"); empty: not audited (reads).
  std::string_view action = {};
  AccessTarget target = AccessTarget::kNone;
  ListFilter filter = ListFilter::kNone;
  /// A key limited to feature sets must name one (kFeatureSetQuery): for
  /// answers that cannot be cut down per feature set.
  bool limited_needs_target = false;
};

/// The whole policy, one row per route.
const std::vector<AccessRule>& AccessRules();
/// The rule for a route, or null (such a route needs an admin: fail closed).
const AccessRule* FindAccessRule(std::string_view method, std::string_view route);

/// The credential a request carries: the Bearer token or X-API-Key value;
/// nullopt when neither header is sent; Unauthenticated (field
/// "Authorization") for an Authorization header that is not "Bearer <key>".
Result<std::optional<std::string>> CredentialOf(const HttpRequest& request);

struct ServerAuthOptions {
  /// FSTORE_AUTH=required: a key is needed even before one exists.
  bool required = false;
  /// How stale the key cache may get (keys created or revoked elsewhere).
  std::chrono::milliseconds key_refresh = std::chrono::milliseconds(250);
};

/// The interceptor the API's router runs (api_routes.cc installs it). Also
/// owns the key store and audit log the /api/v1/keys and /api/v1/audit
/// routes use. `store` must outlive it.
class ServerAuth : public RouteInterceptor {
 public:
  ServerAuth(FeatureStore* store, ServerAuthOptions options);

  ApiKeyStore* keys() { return &keys_; }
  AuditLog* audit() { return &audit_; }

  std::optional<HttpResponse> Before(HttpRequest& request,
                                     std::shared_ptr<const void>* state) const override;
  void After(const HttpRequest& request, const std::shared_ptr<const void>& state,
             HttpResponse* response) const override;

 private:
  struct RequestState;
  /// The feature set name a rule's target resolves to; nullopt when the
  /// request names none, or the object does not exist (the handler answers).
  std::optional<std::string> ResolveFeatureSet(const AccessRule& rule,
                                               const HttpRequest& request,
                                               std::string* audit_target) const;
  Status CheckBatchJob(const Principal& principal, std::string_view job_id) const;
  void FilterList(const AccessRule& rule, const Principal& principal,
                  HttpResponse* response) const;

  FeatureStore* store_;
  mutable ApiKeyStore keys_;
  mutable AuditLog audit_;
};

}  // namespace fstore
