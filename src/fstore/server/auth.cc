#include "fstore/server/auth.h"

#include <algorithm>
#include <cctype>

#include <boost/json/parse.hpp>
#include <spdlog/spdlog.h>

#include "fstore/core/json_text.h"
#include "fstore/core/text.h"
#include "fstore/server/http_error.h"
#include "fstore/service/batch_serving.h"

namespace fstore {
namespace json = boost::json;

namespace {

using enum AccessTarget;
constexpr ListFilter kFeatureSets = ListFilter::kFeatureSets;
constexpr ListFilter kFeatures = ListFilter::kFeatures;
constexpr ListFilter kSearch = ListFilter::kSearch;
constexpr ListFilter kStatistics = ListFilter::kStatistics;
constexpr ListFilter kFreshness = ListFilter::kFreshness;
constexpr ListFilter kLineage = ListFilter::kLineage;

constexpr Role kReader = Role::kReader;
constexpr Role kWriter = Role::kWriter;
constexpr Role kAdmin = Role::kAdmin;

AccessRule Open(std::string_view method, std::string_view route) {
  return {.method = method, .route = route, .open = true};
}
AccessRule Rule(std::string_view method, std::string_view route, Role role,
                std::string_view action = {}, AccessTarget target = kNone,
                ListFilter filter = ListFilter::kNone) {
  return {.method = method, .route = route, .role = role, .action = action,
          .target = target, .filter = filter};
}

std::optional<json::value> ParseQuietly(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return std::nullopt;
  return v;
}

/// A string member of a JSON object body, or "".
std::string BodyString(const HttpRequest& request, std::string_view key) {
  auto body = ParseQuietly(request.body);
  if (!body || !body->is_object()) return {};
  const json::value* v = body->as_object().if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

/// The error object of an error response: {"code", "message", "field"?}.
const json::object* ErrorObjectOf(const json::value& body) {
  if (!body.is_object()) return nullptr;
  const json::value* e = body.as_object().if_contains("error");
  return e && e->is_object() ? &e->as_object() : nullptr;
}

std::string StringMember(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

}  // namespace

const std::vector<AccessRule>& AccessRules() {
  static const std::vector<AccessRule> rules = {
      Open("GET", "/"),
      Open("GET", "/health"),
      Open("GET", "/ready"),
      Open("GET", "/openapi.json"),
      Open("GET", "/docs"),
      Rule("POST", "/api/v1/entities", kWriter, "entity.create", kEntityBody),
      Rule("GET", "/api/v1/entities", kReader),
      Rule("GET", "/api/v1/entities/{id}", kReader),
      Rule("POST", "/api/v1/feature-sets", kWriter, "feature_set.create", kFeatureSetBody),
      Rule("GET", "/api/v1/feature-sets", kReader, {}, kNone, kFeatureSets),
      Rule("GET", "/api/v1/feature-sets/{id}", kReader, {}, kFeatureSetPath),
      Rule("PATCH", "/api/v1/feature-sets/{id}", kWriter, "feature_set.update", kFeatureSetPath),
      Rule("DELETE", "/api/v1/feature-sets/{id}", kWriter, "feature_set.delete", kFeatureSetPath),
      Rule("GET", "/api/v1/feature-sets/{id}/versions", kReader, {}, kFeatureSetPath),
      Rule("POST", "/api/v1/feature-sets/{id}/materialize", kWriter, "materialize",
           kFeatureSetPath),
      Rule("GET", "/api/v1/feature-sets/{id}/materialization-jobs", kReader, {},
           kFeatureSetPath),
      Rule("GET", "/api/v1/materialization-jobs/{id}", kReader, {}, kJobPath),
      Rule("POST", "/api/v1/materialization-jobs/{id}/retry", kWriter,
           "materialization_job.retry", kJobPath),
      Rule("POST", "/api/v1/features", kWriter, "feature.create", kFeatureBody),
      Rule("GET", "/api/v1/features", kReader, {}, kNone, kFeatures),
      Rule("GET", "/api/v1/features/{id}", kReader, {}, kFeaturePath),
      Rule("PATCH", "/api/v1/features/{id}", kWriter, "feature.update", kFeaturePath),
      Rule("DELETE", "/api/v1/features/{id}", kWriter, "feature.delete", kFeaturePath),
      Rule("GET", "/api/v1/features/{id}/versions", kReader, {}, kFeaturePath),
      Rule("GET", "/api/v1/features/{id}/lineage", kReader, {}, kFeaturePath, kLineage),
      Rule("GET", "/api/v1/search", kReader, {}, kNone, kSearch),
      // Serving checks every feature set it reads (derived inputs included).
      Rule("POST", "/api/v1/serving/online", kReader),
      Rule("POST", "/api/v1/serving/historical", kReader),
      Rule("POST", "/api/v1/serving/batch", kReader),
      Rule("GET", "/api/v1/serving/batch/{id}", kReader, {}, kBatchJobPath),
      // BatchServing::ListJobs leaves out jobs the principal may not see.
      Rule("GET", "/api/v1/serving/batch", kReader),
      Rule("POST", "/api/v1/serving/batch/{id}/cancel", kReader, "batch_serving.cancel",
           kBatchJobPath),
      // Process-wide counters, no feature values.
      Rule("GET", "/monitoring/metrics", kReader),
      // Statistics are aggregates of feature values: a limited key sees its
      // own sets' only.
      Rule("GET", "/monitoring/statistics", kReader, {}, kFeatureSetQuery, kStatistics),
      Rule("GET", "/monitoring/data-freshness", kReader, {}, kFeatureSetQuery, kFreshness),
      // Usage rows count several sets at once: a limited key must ask for one.
      {.method = "GET", .route = "/monitoring/usage", .role = kReader,
       .target = kFeatureSetQuery, .limited_needs_target = true},
      Rule("POST", "/api/v1/keys", kAdmin, "key.create"),
      Rule("GET", "/api/v1/keys", kAdmin),
      Rule("DELETE", "/api/v1/keys/{id}", kAdmin, "key.revoke", kKeyPath),
      Rule("GET", "/api/v1/audit", kAdmin),
  };
  return rules;
}

const AccessRule* FindAccessRule(std::string_view method, std::string_view route) {
  for (const AccessRule& rule : AccessRules()) {
    if (rule.method == method && rule.route == route) return &rule;
  }
  return nullptr;
}

Result<std::optional<std::string>> CredentialOf(const HttpRequest& request) {
  if (auto authorization = request.Header("authorization")) {
    const std::string_view value = Trim(*authorization);
    const size_t space = value.find(' ');
    if (space == std::string_view::npos || !EqualsIgnoreAsciiCase(value.substr(0, space), "Bearer")) {
      return MakeError(ErrorCode::kUnauthenticated,
                       "the Authorization header must be 'Bearer <key>'", "Authorization");
    }
    const std::string_view token = Trim(value.substr(space + 1));
    if (token.empty()) {
      return MakeError(ErrorCode::kUnauthenticated,
                       "the Authorization header has no key after 'Bearer'", "Authorization");
    }
    return std::optional<std::string>(std::string(token));
  }
  if (auto api_key = request.Header("x-api-key")) {
    const std::string_view token = Trim(*api_key);
    if (token.empty()) {
      return MakeError(ErrorCode::kUnauthenticated, "the X-API-Key header is empty",
                       "X-API-Key");
    }
    return std::optional<std::string>(std::string(token));
  }
  return std::optional<std::string>();
}

/// What Before learned, for After.
struct ServerAuth::RequestState {
  const AccessRule* rule = nullptr;
  Authentication authentication;  ///< keeps the principal alive
  std::string key_id;
  std::string audit_target;
  bool limited = false;  ///< the key is limited to some feature sets
};

ServerAuth::ServerAuth(FeatureStore* store, ServerAuthOptions options)
    : store_(store),
      keys_(store->registry(), options.required, options.key_refresh),
      audit_(store->registry()) {}

std::optional<std::string> ServerAuth::ResolveFeatureSet(const AccessRule& rule,
                                                         const HttpRequest& request,
                                                         std::string* audit_target) const {
  const std::string id(request.PathParam("id"));
  switch (rule.target) {
    case kNone:
      return std::nullopt;
    case kBatchJobPath:
    case kKeyPath:
      *audit_target = id;
      return std::nullopt;
    case kEntityBody:
      *audit_target = BodyString(request, "name");
      return std::nullopt;
    case kFeatureSetPath: {
      *audit_target = id;
      auto fs = store_->GetFeatureSet(id);
      if (!fs.ok()) return std::nullopt;
      *audit_target = fs->name;
      return fs->name;
    }
    case kFeaturePath: {
      *audit_target = id;
      auto feature = store_->GetFeature(id);
      if (!feature.ok()) return std::nullopt;
      auto fs = store_->GetFeatureSet(feature->feature_set_id);
      if (!fs.ok()) return std::nullopt;
      *audit_target = fs->name + ":" + feature->name;
      return fs->name;
    }
    case kJobPath: {
      *audit_target = id;
      auto job = store_->GetJob(id);
      if (!job.ok()) return std::nullopt;
      return job->feature_set_name;
    }
    case kFeatureSetBody: {
      std::string name = BodyString(request, "name");
      *audit_target = name;
      if (name.empty()) return std::nullopt;
      return name;
    }
    case kFeatureSetQuery: {
      auto name = request.Query("feature_set");
      if (!name || name->empty()) return std::nullopt;
      *audit_target = std::string(*name);
      auto fs = store_->GetFeatureSet(*name);
      return fs.ok() ? fs->name : std::string(*name);
    }
    case kFeatureBody: {
      std::string set = BodyString(request, "feature_set");
      if (set.empty()) set = BodyString(request, "feature_set_id");
      if (set.empty()) return std::nullopt;
      // Named by id or name; an unknown one is checked as given (the
      // handler then answers that it does not exist).
      auto fs = store_->GetFeatureSet(set);
      if (fs.ok()) set = fs->name;
      *audit_target = set + ":" + BodyString(request, "name");
      return set;
    }
  }
  return std::nullopt;
}

Status ServerAuth::CheckBatchJob(const Principal& principal, std::string_view job_id) const {
  auto job = store_->batch_serving()->GetJob(job_id);
  if (!job.ok()) return Status::OK();  // the handler answers 404
  for (const std::string& requested : job->feature_sets) {
    // As requested: an id or a name.
    auto fs = store_->GetFeatureSet(requested);
    ARROW_RETURN_NOT_OK(principal.CheckFeatureSet(fs.ok() ? fs->name : requested));
  }
  for (const std::string& feature : job->features) {
    const size_t colon = feature.find(':');
    if (colon != std::string::npos) {
      ARROW_RETURN_NOT_OK(principal.CheckFeatureSet(feature.substr(0, colon)));
    }
  }
  return Status::OK();
}

std::optional<HttpResponse> ServerAuth::Before(HttpRequest& request,
                                               std::shared_ptr<const void>* state_out) const {
  const AccessRule* rule = FindAccessRule(request.method, request.route);
  if (rule != nullptr && rule->open) return std::nullopt;
  if (rule == nullptr) {
    spdlog::warn("no access rule for {} {}: admins only", request.method, request.route);
  }
  auto state = std::make_shared<RequestState>();
  state->rule = rule;
  *state_out = state;

  auto deny = [&](const Status& status) {
    HttpResponse response = ErrorResponse(status);
    if (response.status == 401) response.headers.emplace_back("WWW-Authenticate", "Bearer");
    return response;
  };
  auto credential = CredentialOf(request);
  if (!credential.ok()) return deny(credential.status());
  auto authentication = keys_.Authenticate(*credential);
  if (!authentication.ok()) {
    if (rule != nullptr && !rule->action.empty()) {
      // A 401 names no one: the path's id is the target (nothing looked up
      // for an unauthenticated caller).
      state->audit_target = std::string(request.PathParam("id"));
    }
    return deny(authentication.status());
  }
  state->authentication = std::move(*authentication);
  const Principal& principal = state->authentication.principal != nullptr
                                   ? *state->authentication.principal
                                   : Principal::Anonymous();
  request.principal = &principal;
  state->key_id = principal.key_id;
  state->limited = !principal.feature_sets.empty();

  const Role needed = rule != nullptr ? rule->role : Role::kAdmin;
  if (!principal.HasRole(needed)) {
    const Status st = principal.CheckRole(needed, request.method + " " + request.route);
    if (rule != nullptr && !rule->action.empty()) {
      // Named as the request names it; nothing is looked up for a caller
      // who may not act.
      state->audit_target = rule->target == kEntityBody || rule->target == kFeatureSetBody
                                ? BodyString(request, "name")
                                : std::string(request.PathParam("id"));
    }
    return deny(st);
  }
  if (rule == nullptr) return std::nullopt;
  if (rule->target == kBatchJobPath && state->limited) {
    if (Status st = CheckBatchJob(principal, request.PathParam("id")); !st.ok()) {
      state->audit_target = std::string(request.PathParam("id"));
      return deny(st);
    }
  }
  // Look the target up only when someone needs it: a limited key, or the
  // audit log.
  if (!state->limited && rule->action.empty()) return std::nullopt;
  const std::optional<std::string> feature_set =
      ResolveFeatureSet(*rule, request, &state->audit_target);
  if (feature_set && state->limited) {
    if (Status st = principal.CheckFeatureSet(*feature_set); !st.ok()) return deny(st);
  }
  if (!feature_set && state->limited && rule->limited_needs_target) {
    return deny(MakeError(ErrorCode::kPermissionDenied,
                          "API key " + principal.key_id +
                              " is limited to some feature sets: name one of them in "
                              "feature_set",
                          "feature_set"));
  }
  return std::nullopt;
}

void ServerAuth::FilterList(const AccessRule& rule, const Principal& principal,
                            HttpResponse* response) const {
  auto body = ParseQuietly(response->body);
  if (!body || !body->is_object()) return;
  json::object& o = body->as_object();
  if (rule.filter == kLineage) {
    // Features of other sets leave the graph (the feature itself is allowed:
    // Before checked it).
    auto prune = [&](json::value* list) {
      if (list == nullptr || !list->is_array()) return;
      json::array kept;
      for (const json::value& item : list->as_array()) {
        if (item.is_object() && principal.Allows(StringMember(item.as_object(), "feature_set"))) {
          kept.push_back(item);
        }
      }
      *list = std::move(kept);
    };
    json::object out = o;
    if (json::value* upstream = out.if_contains("upstream"); upstream && upstream->is_object()) {
      prune(upstream->as_object().if_contains("source_features"));
    }
    prune(out.if_contains("downstream"));
    response->body = SerializeJson(out);
    return;
  }
  const char* member = rule.filter == kFeatureSets || rule.filter == kFreshness ? "feature_sets"
                       : rule.filter == kFeatures || rule.filter == kStatistics ? "features"
                                                                                : "results";
  json::value* list = o.if_contains(member);
  if (list == nullptr || !list->is_array()) return;
  std::vector<std::string> allowed_ids;
  if (rule.filter == kFeatures) {
    for (const std::string& name : principal.feature_sets) {
      auto fs = store_->GetFeatureSet(name);
      if (fs.ok()) allowed_ids.push_back(fs->id);
    }
  }
  json::array kept;
  for (const json::value& item : list->as_array()) {
    if (!item.is_object()) continue;
    const json::object& entry = item.as_object();
    bool keep = false;
    switch (rule.filter) {
      case ListFilter::kFeatureSets:
        keep = principal.Allows(StringMember(entry, "name"));
        break;
      case ListFilter::kFeatures: {
        const std::string id = StringMember(entry, "feature_set_id");
        keep = std::find(allowed_ids.begin(), allowed_ids.end(), id) != allowed_ids.end();
        break;
      }
      case ListFilter::kSearch: {
        const std::string kind = StringMember(entry, "kind");
        keep = kind == "feature_set"  ? principal.Allows(StringMember(entry, "name"))
               : kind == "feature"    ? principal.Allows(StringMember(entry, "feature_set"))
                                      : true;  // entities are shared
        break;
      }
      case ListFilter::kStatistics:
      case ListFilter::kFreshness:
        keep = principal.Allows(StringMember(entry, "feature_set"));
        break;
      case ListFilter::kLineage:
      case ListFilter::kNone:
        keep = true;
        break;
    }
    if (keep) kept.push_back(item);
  }
  const size_t count = kept.size();
  json::object out = o;
  // The summary counts follow the entries kept.
  if (rule.filter == kStatistics || rule.filter == kFreshness) {
    int64_t flagged = 0;
    for (const json::value& item : kept) {
      const json::object& entry = item.as_object();
      if (rule.filter == kFreshness) {
        const json::value* stale = entry.if_contains("stale");
        flagged += stale && stale->is_bool() && stale->as_bool();
      } else {
        const json::value* drift = entry.if_contains("drift");
        const json::value* drifted =
            drift && drift->is_object() ? drift->as_object().if_contains("drifted") : nullptr;
        flagged += drifted && drifted->is_bool() && drifted->as_bool();
      }
    }
    out[rule.filter == kFreshness ? "stale" : "drifted"] = flagged;
  }
  out[member] = std::move(kept);
  out["count"] = count;
  response->body = SerializeJson(out);
}

void ServerAuth::After(const HttpRequest& request, const std::shared_ptr<const void>& state_in,
                       HttpResponse* response) const {
  if (!state_in) return;  // an open route
  const auto& state = *static_cast<const RequestState*>(state_in.get());
  const AccessRule* rule = state.rule;
  if (rule != nullptr && rule->filter != ListFilter::kNone && state.limited &&
      response->status == 200 && request.principal != nullptr) {
    FilterList(*rule, *request.principal, response);
  }

  const bool audited_action = rule != nullptr && !rule->action.empty();
  const bool denied = response->status == 401 || response->status == 403;
  if (!audited_action && !denied) return;

  AuditEvent event;
  event.key_id = state.key_id;
  event.status = response->status;
  event.outcome = std::string(AuditOutcomeOf(response->status));
  if (audited_action) {
    event.action = std::string(rule->action);
    event.target = state.audit_target;
  } else {
    event.action = "auth.denied";
    event.target = request.method + " " + request.route;
  }
  // The detail is built from ids, statuses and the error's code and field;
  // the message only for refusals (ours, naming a role or feature set), never
  // a request body or anything a handler may have echoed from data.
  std::optional<json::value> body;
  if (response->content_type == "application/json") body = ParseQuietly(response->body);
  if (response->status >= 400) {
    const json::object* error = body ? ErrorObjectOf(*body) : nullptr;
    if (error != nullptr) {
      event.detail = StringMember(*error, "code");
      const std::string field = StringMember(*error, "field");
      if (!field.empty()) event.detail += " (" + field + ")";
      if (denied) event.detail += ": " + StringMember(*error, "message");
    }
  } else if (body && body->is_object()) {
    const json::object& o = body->as_object();
    if (rule->action == "key.create") {
      event.target = StringMember(o, "id");
    } else if (rule->action == "materialize" || rule->action == "materialization_job.retry") {
      const std::string job_status = StringMember(o, "status");
      event.detail = "job " + StringMember(o, "id") + " " + job_status;
      if (job_status == "failed") event.outcome = std::string(kAuditFailure);
    }
  }
  (void)audit_.Record(std::move(event));
}

}  // namespace fstore
