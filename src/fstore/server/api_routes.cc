#include "fstore/server/api_routes.h"

#include <charconv>
#include <string>

#include <boost/json/serialize.hpp>

#include "fstore/registry/codec.h"
#include "fstore/server/http_error.h"
#include "fstore/service/batch_serving.h"
#include "fstore/service/historical_serving.h"

namespace fstore::server_resources {
extern const std::string_view kOpenApiJson;
extern const std::string_view kDocsHtml;
}  // namespace fstore::server_resources

namespace fstore {
namespace json = boost::json;

namespace {

#define FSTORE_ASSIGN_OR_RESPOND(lhs, rexpr)           \
  auto FSTORE_CONCAT_RESULT(__LINE__) = (rexpr);       \
  if (!FSTORE_CONCAT_RESULT(__LINE__).ok()) {          \
    return ErrorResponse(FSTORE_CONCAT_RESULT(__LINE__).status()); \
  }                                                    \
  lhs = std::move(FSTORE_CONCAT_RESULT(__LINE__)).ValueUnsafe();
#define FSTORE_CONCAT_RESULT_IMPL(line) _result_##line
#define FSTORE_CONCAT_RESULT(line) FSTORE_CONCAT_RESULT_IMPL(line)

Result<json::value> BodyJson(const HttpRequest& request) {
  if (request.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    return InvalidArgument("", "a JSON request body is required");
  }
  return ParseJson(request.body);
}

Result<int64_t> PositiveIntParam(const HttpRequest& request, const std::string& name,
                                 int64_t fallback, int64_t max) {
  auto text = request.Query(name);
  if (!text) return fallback;
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || ptr != text->data() + text->size() || value < 1 || value > max) {
    return InvalidArgument(name, "'" + std::string(*text) + "' must be an integer from 1 to " +
                                     std::to_string(max));
  }
  return value;
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

/// Refuses query parameters a route does not know, naming them.
Status CheckQueryParams(const HttpRequest& request, std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : request.query) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return InvalidArgument(key, "unknown query parameter");
    }
  }
  return Status::OK();
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

HttpResponse NotBuilt(std::string what, std::string issue) {
  return ErrorResponse(NotImplemented(what + " is not built yet (" + issue + ")"));
}

}  // namespace

void AddApiRoutes(FeatureStore* store, Router* router) {
  const RouteOptions json_body{.json_body = true};

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
  router->Add("POST", "/api/v1/serving/online", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req));
    ServingUsage usage;
    const RequestContext context{.principal = req.principal, .usage = &usage};
    FSTORE_ASSIGN_OR_RESPOND(json::object out, store->ServeOnline(body, context));
    return JsonResponse(200, out);
  }, json_body);
  router->Add("POST", "/api/v1/serving/historical", [store](HttpRequest& req) {
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
  router->Add("POST", "/api/v1/serving/batch", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(json::value body, BodyJson(req));
    ServingUsage usage;
    const RequestContext context{.principal = req.principal, .usage = &usage};
    FSTORE_ASSIGN_OR_RESPOND(auto job, store->batch_serving()->Submit(body, context));
    // 202 while the job is queued or running; 200 with the outcome after a wait.
    bool finished = job.status == JobStatus::kSucceeded || job.status == JobStatus::kFailed;
    return JsonResponse(finished ? 200 : 202, ToJson(job));
  }, json_body);
  router->Add("GET", "/api/v1/serving/batch/{id}", [store](HttpRequest& req) {
    FSTORE_ASSIGN_OR_RESPOND(auto job, store->batch_serving()->GetJob(req.PathParam("id")));
    return JsonResponse(200, ToJson(job));
  });
  for (const char* path : {"/monitoring/metrics", "/monitoring/statistics",
                           "/monitoring/data-freshness", "/monitoring/usage"}) {
    router->Add("GET", path, [](HttpRequest&) {
      return NotBuilt("monitoring", "issue #7");
    });
  }
}

}  // namespace fstore
