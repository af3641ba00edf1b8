#include "fstore/server/api_routes.h"

#include <charconv>
#include <string>

#include <arrow/record_batch.h>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/serialize.hpp>

#include "fstore/core/time.h"
#include "fstore/registry/codec.h"
#include "fstore/server/http_error.h"
#include "fstore/server/internal/query_params.h"
#include "fstore/server/monitoring_routes.h"
#include "fstore/service/batch_serving.h"
#include "fstore/service/historical_serving.h"

namespace fstore::server_resources {
extern const std::string_view kOpenApiJson;
extern const std::string_view kDocsHtml;
}  // namespace fstore::server_resources

namespace fstore {
namespace json = boost::json;

using server_internal::CheckQueryParams;
using server_internal::PositiveIntParam;

namespace {

Result<json::value> BodyJson(const HttpRequest& request, json::storage_ptr storage = {}) {
  if (request.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    return InvalidArgument("", "a JSON request body is required");
  }
  return ParseJson(request.body, std::move(storage));
}

Result<std::optional<int64_t>> VersionParam(const HttpRequest& request) {
  if (!request.Query("version")) return std::optional<int64_t>();
  ARROW_ASSIGN_OR_RAISE(int64_t v, PositiveIntParam(request, "version", 1, INT64_MAX));
  return std::optional<int64_t>(v);
}

Result<bool> BoolParam(const HttpRequest& request, const std::string& name) {
  auto text = request.Query(name);
  if (!text || *text == "false" || *text == "0") return false;
  if (*text == "true" || *text == "1" || text->empty()) return true;
  return InvalidArgument(name, "'" + std::string(*text) + "' must be true or false");
}

template <typename T>
json::array ToJsonArray(const std::vector<T>& items) {
  json::array out;
  out.reserve(items.size());
  for (const auto& item : items) out.emplace_back(ToJson(item));
  return out;
}

json::object FeatureSetWithFeatures(FeatureStore* store, const FeatureSet& fs) {
  json::object o = ToJson(fs);
  auto features = store->FeaturesOf(fs);
  o["features"] = features.ok() ? ToJsonArray(*features) : json::array();
  return o;
}

struct ApiKeyRequest {
  Role role = Role::kReader;
  std::vector<std::string> feature_sets;
  std::string name;
};

/// {"role", "feature_sets"?, "name"?}. The feature sets are names; they need
/// not exist yet (a key may be made before the definitions it is meant for).
Result<ApiKeyRequest> ParseApiKeyRequest(const json::value& body) {
  if (!body.is_object()) return InvalidArgument("", "the body must be a JSON object");
  ApiKeyRequest out;
  bool has_role = false;
  for (const auto& [key, value] : body.as_object()) {
    if (key == "role") {
      if (!value.is_string()) return InvalidArgument("role", "must be a string");
      ARROW_ASSIGN_OR_RAISE(out.role, ParseRole(std::string_view(value.as_string())));
      has_role = true;
    } else if (key == "feature_sets") {
      if (value.is_null()) continue;
      if (!value.is_array()) {
        return InvalidArgument("feature_sets", "must be a list of feature set names");
      }
      // An empty list would mean "every feature set": refused, so that a
      // limit computed to nothing never becomes no limit.
      if (value.as_array().empty()) {
        return InvalidArgument("feature_sets",
                               "must name at least one feature set; leave it out for all");
      }
      for (size_t i = 0; i < value.as_array().size(); ++i) {
        const json::value& name = value.as_array()[i];
        if (!name.is_string() || name.as_string().empty()) {
          return InvalidArgument("feature_sets[" + std::to_string(i) + "]",
                                 "must be a feature set name (a non-empty string)");
        }
        out.feature_sets.emplace_back(name.as_string());
      }
    } else if (key == "name") {
      if (!value.is_string()) return InvalidArgument("name", "must be a string");
      out.name = std::string(value.as_string());
    } else {
      return InvalidArgument(std::string(key),
                             "unknown field; a key has role, feature_sets and name");
    }
  }
  if (!has_role) return InvalidArgument("role", "is required: admin, writer or reader");
  return out;
}

/// A key as shown: never its salt or hash (nor the secret, which only the
/// creation answer carries).
json::object ApiKeyJson(const ApiKeyRecord& key) {
  json::array sets;
  for (const std::string& fs : key.feature_sets) sets.emplace_back(fs);
  json::object o{{"id", key.id},
                 {"name", key.name},
                 {"role", key.role},
                 {"feature_sets", std::move(sets)},
                 {"created_at", FormatTimestamp(key.created_at)}};
  o["revoked_at"] = key.revoked_at ? json::value(FormatTimestamp(*key.revoked_at)) : nullptr;
  return o;
}

json::object AuditEventJson(const AuditEvent& e) {
  return json::object{{"seq", e.seq},         {"time", FormatTimestamp(e.time)},
                      {"key_id", e.key_id},   {"action", e.action},
                      {"target", e.target},   {"outcome", e.outcome},
                      {"status", e.status},   {"detail", e.detail}};
}

Result<AuditFilter> ParseAuditFilter(const HttpRequest& req) {
  ARROW_RETURN_NOT_OK(CheckQueryParams(
      req, {"since", "until", "key_id", "action", "target", "outcome", "limit"}));
  AuditFilter filter;
  for (const auto& [name, slot] : {std::pair{"since", &filter.since},
                                   std::pair{"until", &filter.until}}) {
    if (auto text = req.Query(name)) {
      auto t = ParseTimestamp(*text);
      if (!t.ok()) return InvalidArgument(name, t.status().message());
      *slot = *t;
    }
  }
  filter.key_id = req.Query("key_id").value_or("");
  filter.action = req.Query("action").value_or("");
  filter.target = req.Query("target").value_or("");
  filter.outcome = req.Query("outcome").value_or("");
  if (!filter.outcome.empty() && filter.outcome != "success" && filter.outcome != "denied" &&
      filter.outcome != "failure") {
    return InvalidArgument("outcome", "'" + filter.outcome +
                                          "' is not an outcome: use success, denied or failure");
  }
  ARROW_ASSIGN_OR_RAISE(int64_t limit, PositiveIntParam(req, "limit", 100, 1000));
  filter.limit = static_cast<size_t>(limit);
  return filter;
}

}  // namespace

void AddApiRoutes(FeatureStore* store, Router* router, std::shared_ptr<ServerAuth> auth) {
  const RouteOptions json_body{.json_body = true};
  if (!auth) auth = std::make_shared<ServerAuth>(store, ServerAuthOptions{});
  router->SetInterceptor(auth);

  // ------------------------------------------------------------ operations
  router->Add("GET", "/", [](HttpRequest&) {
    json::object o{{"name", "fstore"}, {"docs", "/docs"}, {"openapi", "/openapi.json"}};
    return JsonResponse(200, o);
  });
  router->Add("GET", "/health", [](HttpRequest&) {
    return JsonResponse(200, json::object{{"status", "ok"}});
  });
  router->Add("GET", "/ready", [store](HttpRequest&) {
    Status st = store->CheckReady();
    if (!st.ok()) {
      return ErrorResponse(Unavailable("not ready: " + st.message()));
    }
    return JsonResponse(200, json::object{{"status", "ready"}});
  });
  router->Add("GET", "/openapi.json", [](HttpRequest&) {
    HttpResponse r;
    r.body = std::string(server_resources::kOpenApiJson);
    return r;
  });
  router->Add("GET", "/docs", [](HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body = std::string(server_resources::kDocsHtml);
    return r;
  });

  // -------------------------------------------------------------- entities
  router->Add("POST", "/api/v1/entities", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req));
    FSTORE_ASSIGN_OR_RESPOND(Entity e, store->CreateEntity(body));
    return JsonResponse(201, ToJson(e));
  }, json_body);
  router->Add("GET", "/api/v1/entities", [store](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {}); !st.ok()) return ErrorResponse(st);
    FSTORE_ASSIGN_OR_RESPOND(auto list, store->ListEntities());
    return JsonResponse(200, json::object{{"entities", ToJsonArray(list)},
                                          {"count", list.size()}});
  });
  router->Add("GET", "/api/v1/entities/{id}", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(Entity e, store->GetEntity(req.PathParam("id")));
    return JsonResponse(200, ToJson(e));
  });

  // ---------------------------------------------------------- feature sets
  router->Add("POST", "/api/v1/feature-sets", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req));
    FSTORE_ASSIGN_OR_RESPOND(FeatureSet fs, store->CreateFeatureSet(body));
    return JsonResponse(201, FeatureSetWithFeatures(store, fs));
  }, json_body);
  router->Add("GET", "/api/v1/feature-sets", [store](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {"owner", "entity", "tag", "q", "include_deleted"});
        !st.ok()) {
      return ErrorResponse(st);
    }
    FeatureSetFilter filter;
    filter.owner = req.Query("owner").value_or("");
    filter.entity = req.Query("entity").value_or("");
    filter.tag = req.Query("tag").value_or("");
    filter.q = req.Query("q").value_or("");
    FSTORE_ASSIGN_OR_RESPOND(filter.include_deleted, BoolParam(req, "include_deleted"));
    FSTORE_ASSIGN_OR_RESPOND(auto list, store->ListFeatureSets(filter));
    return JsonResponse(200, json::object{{"feature_sets", ToJsonArray(list)},
                                          {"count", list.size()}});
  });
  router->Add("GET", "/api/v1/feature-sets/{id}", [store](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {"version"}); !st.ok()) return ErrorResponse(st);
    FSTORE_ASSIGN_OR_RESPOND(auto version, VersionParam(req));
    FSTORE_ASSIGN_OR_RESPOND(FeatureSet fs, store->GetFeatureSet(req.PathParam("id"), version));
    return JsonResponse(200, FeatureSetWithFeatures(store, fs));
  });
  router->Add("PATCH", "/api/v1/feature-sets/{id}", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req));
    FSTORE_ASSIGN_OR_RESPOND(FeatureSet fs, store->UpdateFeatureSet(req.PathParam("id"), body));
    return JsonResponse(200, FeatureSetWithFeatures(store, fs));
  }, json_body);
  router->Add("DELETE", "/api/v1/feature-sets/{id}", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(FeatureSet fs, store->DeleteFeatureSet(req.PathParam("id")));
    return JsonResponse(200, ToJson(fs));
  });
  router->Add("GET", "/api/v1/feature-sets/{id}/versions", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(auto versions, store->FeatureSetVersions(req.PathParam("id")));
    return JsonResponse(200, json::object{{"versions", ToJsonArray(versions)},
                                          {"count", versions.size()}});
  });
  router->Add("POST", "/api/v1/feature-sets/{id}/materialize", [store](HttpRequest& req) {
    json::value body;
    if (req.body.find_first_not_of(" \t\r\n") != std::string::npos) {
      FSTORE_ASSIGN_OR_RESPOND(body, ParseJson(req.body));
    }
    FSTORE_ASSIGN_OR_RESPOND(auto options, FeatureStore::ParseMaterializeRequest(body));
    FSTORE_ASSIGN_OR_RESPOND(auto job, store->Materialize(req.PathParam("id"), options));
    // 202 while the job is queued or running; 200 with the outcome after a wait.
    bool finished = job.status == JobStatus::kSucceeded || job.status == JobStatus::kFailed;
    return JsonResponse(finished ? 200 : 202, ToJson(job));
  }, json_body);
  router->Add("GET", "/api/v1/feature-sets/{id}/materialization-jobs", [store](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {"limit"}); !st.ok()) return ErrorResponse(st);
    FSTORE_ASSIGN_OR_RESPOND(int64_t limit, PositiveIntParam(req, "limit", 50, 1000));
    FSTORE_ASSIGN_OR_RESPOND(auto jobs, store->ListJobs(req.PathParam("id"), limit));
    return JsonResponse(200, json::object{{"jobs", ToJsonArray(jobs)}, {"count", jobs.size()}});
  });
  router->Add("GET", "/api/v1/materialization-jobs/{id}", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(auto job, store->GetJob(req.PathParam("id")));
    return JsonResponse(200, ToJson(job));
  });
  router->Add("POST", "/api/v1/materialization-jobs/{id}/retry", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(auto job, store->RetryJob(req.PathParam("id")));
    return JsonResponse(202, ToJson(job));
  }, json_body);

  // -------------------------------------------------------------- features
  router->Add("POST", "/api/v1/features", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req));
    FSTORE_ASSIGN_OR_RESPOND(Feature f, store->CreateFeature(body));
    return JsonResponse(201, ToJson(f));
  }, json_body);
  router->Add("GET", "/api/v1/features", [store](HttpRequest& req) {
    if (Status st = CheckQueryParams(
            req, {"feature_set", "feature_set_id", "data_type", "tag", "q", "include_deleted"});
        !st.ok()) {
      return ErrorResponse(st);
    }
    FeatureFilter filter;
    filter.feature_set = std::string(
        req.Query("feature_set").value_or(req.Query("feature_set_id").value_or("")));
    filter.data_type = req.Query("data_type").value_or("");
    filter.tag = req.Query("tag").value_or("");
    filter.q = req.Query("q").value_or("");
    FSTORE_ASSIGN_OR_RESPOND(filter.include_deleted, BoolParam(req, "include_deleted"));
    FSTORE_ASSIGN_OR_RESPOND(auto list, store->ListFeatures(filter));
    return JsonResponse(200, json::object{{"features", ToJsonArray(list)},
                                          {"count", list.size()}});
  });
  router->Add("GET", "/api/v1/features/{id}", [store](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {"version"}); !st.ok()) return ErrorResponse(st);
    FSTORE_ASSIGN_OR_RESPOND(auto version, VersionParam(req));
    FSTORE_ASSIGN_OR_RESPOND(Feature f, store->GetFeature(req.PathParam("id"), version));
    return JsonResponse(200, ToJson(f));
  });
  router->Add("PATCH", "/api/v1/features/{id}", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req));
    FSTORE_ASSIGN_OR_RESPOND(Feature f, store->UpdateFeature(req.PathParam("id"), body));
    return JsonResponse(200, ToJson(f));
  }, json_body);
  router->Add("DELETE", "/api/v1/features/{id}", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(Feature f, store->DeleteFeature(req.PathParam("id")));
    return JsonResponse(200, ToJson(f));
  });
  router->Add("GET", "/api/v1/features/{id}/versions", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(auto versions, store->FeatureVersions(req.PathParam("id")));
    return JsonResponse(200, json::object{{"versions", ToJsonArray(versions)},
                                          {"count", versions.size()}});
  });
  router->Add("GET", "/api/v1/features/{id}/lineage", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(json::object lineage, store->FeatureLineage(req.PathParam("id")));
    return JsonResponse(200, lineage);
  });

  // ---------------------------------------------------------------- search
  router->Add("GET", "/api/v1/search", [store](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {"q", "limit"}); !st.ok()) return ErrorResponse(st);
    FSTORE_ASSIGN_OR_RESPOND(int64_t limit, PositiveIntParam(req, "limit", 20, 1000));
    std::string q(req.Query("q").value_or(""));
    FSTORE_ASSIGN_OR_RESPOND(auto hits, store->Search(q, static_cast<size_t>(limit)));
    json::array results;
    for (const auto& h : hits) {
      json::object o{{"kind", h.kind}, {"id", h.id}, {"name", h.name},
                     {"description", h.description}, {"score", h.score}};
      if (!h.feature_set.empty()) o["feature_set"] = h.feature_set;
      json::array matched;
      for (const auto& m : h.matched) matched.emplace_back(m);
      o["matched"] = std::move(matched);
      results.emplace_back(std::move(o));
    }
    size_t count = results.size();
    return JsonResponse(200, json::object{{"query", q}, {"results", std::move(results)},
                                          {"count", count}});
  });

  // --------------------------------------------------------------- serving
  // `usage` is what monitoring counts (monitoring routes, issue #7).
  auto monitor = std::make_shared<ServingMonitor>(store);
  router->Add("POST", "/api/v1/serving/online", [store, monitor](HttpRequest& req) {
    // The request's JSON lives in a monotonic resource on this stack
    // (allocation is a pointer bump, freeing is free); the response does not
    // point into it.
    alignas(std::max_align_t) unsigned char scratch[8192];
    json::monotonic_resource resource(scratch, sizeof scratch);
    FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req, json::storage_ptr(&resource)));
    ServingUsage usage;
    const RequestContext context{.principal = req.principal, .usage = &usage};
    FSTORE_ASSIGN_OR_RESPOND(std::string out, store->ServeOnline(body, context));
    monitor->Record(req, usage, ServingMonitor::Kind::kOnline);
    HttpResponse response;
    response.body = std::move(out);
    return response;
  }, json_body);
  router->Add("POST", "/api/v1/serving/historical", [store, monitor](HttpRequest& req) {
    // The entity rows as JSON (the seed's entity_df), or as an Arrow IPC
    // stream or a Parquet file body with the features in the query string.
    const std::string_view type = req.Header("content-type").value_or("application/json");
    const std::string_view media = type.substr(0, type.find(';'));
    std::shared_ptr<arrow::RecordBatch> table;
    ServingUsage usage;
    const RequestContext context{.principal = req.principal, .usage = &usage};
    if (media == "application/vnd.apache.arrow.stream" || media == "application/vnd.apache.parquet") {
      FSTORE_ASSIGN_OR_RESPOND(table, ServeHistoricalTable(store, req.query, req.body, type, context));
    } else if (media == "application/json" || req.body.empty()) {
      FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req));
      FSTORE_ASSIGN_OR_RESPOND(table, ServeHistorical(store, body, context));
    } else {
      return ErrorResponse(MakeError(
          ErrorCode::kUnsupportedMediaType,
          "request body must be application/json, application/vnd.apache.arrow.stream or "
          "application/vnd.apache.parquet, got Content-Type '" + std::string(type) + "'",
          "Content-Type"));
    }
    for (auto& used : usage.sets) used.entities = table->num_rows();
    monitor->Record(req, usage, ServingMonitor::Kind::kHistorical);
    auto accept = req.Header("accept");
    if (accept && accept->find("application/vnd.apache.arrow.stream") != std::string_view::npos) {
      FSTORE_ASSIGN_OR_RESPOND(std::string stream, HistoricalTableToArrowStream(*table));
      HttpResponse r;
      r.content_type = "application/vnd.apache.arrow.stream";
      r.body = std::move(stream);
      return r;
    }
    return JsonResponse(200, HistoricalTableToJson(*table));
  });
  router->Add("POST", "/api/v1/serving/batch", [store, monitor](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req));
    ServingUsage usage;
    const RequestContext context{.principal = req.principal, .usage = &usage};
    FSTORE_ASSIGN_OR_RESPOND(auto job, store->batch_serving()->Submit(body, context));
    // Entity rows are known once the job has read them (a waited-for job).
    for (auto& used : usage.sets) used.entities = job.rows_read;
    monitor->Record(req, usage, ServingMonitor::Kind::kBatch);
    // 202 while the job is queued or running; 200 with the outcome after a wait.
    bool finished = job.status == JobStatus::kSucceeded || job.status == JobStatus::kFailed;
    return JsonResponse(finished ? 200 : 202, ToJson(job));
  }, json_body);
  router->Add("GET", "/api/v1/serving/batch/{id}", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(auto job, store->batch_serving()->GetJob(req.PathParam("id")));
    return JsonResponse(200, ToJson(job));
  });
  router->Add("GET", "/api/v1/serving/batch", [store](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {"status", "limit"}); !st.ok()) return ErrorResponse(st);
    FSTORE_ASSIGN_OR_RESPOND(int64_t limit, PositiveIntParam(req, "limit", 50, 1000));
    std::optional<JobStatus> status;
    if (auto text = req.Query("status")) {
      auto parsed = ParseJobStatus(*text);
      if (!parsed.ok()) {
        return ErrorResponse(InvalidArgument("status", "'" + std::string(*text) +
                                                           "' must be queued, running, "
                                                           "succeeded or failed"));
      }
      status = *parsed;
    }
    auto jobs = store->batch_serving()->ListJobs(status, static_cast<size_t>(limit),
                                                 *req.principal);
    return JsonResponse(200, json::object{{"jobs", ToJsonArray(jobs)}, {"count", jobs.size()}});
  });
  router->Add("POST", "/api/v1/serving/batch/{id}/cancel", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(auto job, store->batch_serving()->Cancel(req.PathParam("id")));
    // 200 once it has ended (a queued job at once); 202 while it is stopping.
    bool ended = job.status == JobStatus::kSucceeded || job.status == JobStatus::kFailed;
    return JsonResponse(ended ? 200 : 202, ToJson(job));
  }, json_body);
  AddMonitoringRoutes(store, router, monitor);

  // ------------------------------------------------- API keys and audit log
  // Admins only (server/auth.cc); while authentication is off (FSTORE_AUTH=auto
  // and no key yet) anyone may create the first key.
  router->Add("POST", "/api/v1/keys", [auth](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req));
    FSTORE_ASSIGN_OR_RESPOND(ApiKeyRequest request, ParseApiKeyRequest(body));
    FSTORE_ASSIGN_OR_RESPOND(NewApiKey key, auth->keys()->Create(request.role,
                                                                 std::move(request.feature_sets),
                                                                 std::move(request.name)));
    json::object o = ApiKeyJson(key.record);
    o["key"] = key.secret;  // the only time it is shown
    return JsonResponse(201, o);
  }, json_body);
  router->Add("GET", "/api/v1/keys", [auth](HttpRequest& req) {
    if (Status st = CheckQueryParams(req, {}); !st.ok()) return ErrorResponse(st);
    FSTORE_ASSIGN_OR_RESPOND(auto keys, auth->keys()->List());
    json::array list;
    for (const ApiKeyRecord& k : keys) list.emplace_back(ApiKeyJson(k));
    const size_t count = list.size();
    return JsonResponse(200, json::object{{"keys", std::move(list)}, {"count", count}});
  });
  router->Add("DELETE", "/api/v1/keys/{id}", [auth](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(ApiKeyRecord key, auth->keys()->Revoke(req.PathParam("id")));
    return JsonResponse(200, ApiKeyJson(key));
  });
  router->Add("GET", "/api/v1/audit", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(AuditFilter filter, ParseAuditFilter(req));
    FSTORE_ASSIGN_OR_RESPOND(auto events, store->registry()->ListAudit(filter));
    json::array entries;
    for (const AuditEvent& e : events) entries.emplace_back(AuditEventJson(e));
    const size_t count = entries.size();
    return JsonResponse(200, json::object{{"entries", std::move(entries)}, {"count", count}});
  });
}

}  // namespace fstore
