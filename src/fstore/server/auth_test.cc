#include "fstore/server/auth.h"

#include <filesystem>
#include <set>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "fstore/core/ids.h"
#include "fstore/server/api_routes.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace json = boost::json;

HttpRequest Request(std::string method, std::string path, std::string body = {},
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
  HttpRequest r;
  r.method = std::move(method);
  r.target = path;
  r.path = std::move(path);
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

TEST(CredentialOf, BearerOrXApiKey) {
  auto bearer = CredentialOf(Request("GET", "/", "", {{"authorization", "Bearer abc"}}));
  ASSERT_TRUE(bearer.ok());
  EXPECT_EQ(*bearer, "abc");
  auto lower = CredentialOf(Request("GET", "/", "", {{"authorization", "bearer  abc "}}));
  ASSERT_TRUE(lower.ok());
  EXPECT_EQ(*lower, "abc");
  auto header = CredentialOf(Request("GET", "/", "", {{"x-api-key", "xyz"}}));
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(*header, "xyz");
  auto none = CredentialOf(Request("GET", "/"));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, std::nullopt);
}

TEST(CredentialOf, MalformedAuthorizationIsUnauthenticatedSayingWhy) {
  for (const char* value : {"Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "abc"}) {
    auto r = CredentialOf(Request("GET", "/", "", {{"authorization", value}}));
    ASSERT_FALSE(r.ok()) << value;
    EXPECT_EQ(ErrorCodeOf(r.status()), ErrorCode::kUnauthenticated);
    EXPECT_EQ(ErrorOf(r.status())->field(), "Authorization");
  }
  auto empty = CredentialOf(Request("GET", "/", "", {{"x-api-key", " "}}));
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(ErrorOf(empty.status())->field(), "X-API-Key");
}

TEST(AccessRules, OneRulePerRouteAndOnlyOperationsAreOpen) {
  std::set<std::pair<std::string_view, std::string_view>> seen;
  for (const AccessRule& rule : AccessRules()) {
    EXPECT_TRUE(seen.insert({rule.method, rule.route}).second)
        << rule.method << " " << rule.route << " twice";
    if (rule.open) {
      EXPECT_TRUE(rule.route == "/" || rule.route == "/health" || rule.route == "/ready" ||
                  rule.route == "/openapi.json" || rule.route == "/docs")
          << rule.route;
    }
    // Every change is audited; reads are not.
    if (rule.method != "GET") {
      // Serving itself is counted by monitoring, not audited.
      const bool serving = rule.route == "/api/v1/serving/online" ||
                           rule.route == "/api/v1/serving/historical" ||
                           rule.route == "/api/v1/serving/batch";
      EXPECT_EQ(rule.action.empty(), serving) << rule.method << " " << rule.route;
    }
  }
  EXPECT_EQ(FindAccessRule("GET", "/api/v1/audit")->role, Role::kAdmin);
  EXPECT_EQ(FindAccessRule("POST", "/api/v1/keys")->role, Role::kAdmin);
  EXPECT_EQ(FindAccessRule("POST", "/api/v1/feature-sets/{id}/materialize")->role,
            Role::kWriter);
  EXPECT_EQ(FindAccessRule("POST", "/api/v1/serving/historical")->role, Role::kReader);
  EXPECT_EQ(FindAccessRule("GET", "/nope"), nullptr);
}

/// A real store in a temp dir with the API routes and their auth.
class ServerAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("fstore_auth_" + NewUuid());
    std::filesystem::create_directories(dir_);
    FeatureStoreOptions options;
    options.registry_uri = "sqlite://" + (dir_ / "registry.db").string();
    options.offline_store_uri = "file://" + (dir_ / "offline").string();
    options.online_store_uri = "rocksdb://" + (dir_ / "online").string();
    ASSERT_OK_AND_ASSIGN(store_, FeatureStore::Open(options));
    auth_ = std::make_shared<ServerAuth>(store_.get(), ServerAuthOptions{});
    AddApiRoutes(store_.get(), &router_, auth_);
    for (const char* name : {"a", "b"}) {
      ASSERT_OK(store_
                    ->CreateFeatureSet(json::parse(std::string(R"({"name": ")") + name +
                                                   R"(", "entities": ["user"]})"))
                    .status());
      json::value f = json::parse(R"({"name": "x", "data_type": "int"})");
      f.as_object()["feature_set_id"] = name;
      ASSERT_OK(store_->CreateFeature(f).status());
    }
  }
  void TearDown() override {
    router_ = Router();
    auth_.reset();
    if (store_) (void)store_->Close();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string Key(Role role, std::vector<std::string> sets = {}) {
    auto key = auth_->keys()->Create(role, std::move(sets), "");
    EXPECT_TRUE(key.ok()) << key.status().ToString();
    return key.ok() ? key->secret : "";
  }
  HttpResponse Call(const std::string& key, std::string method, std::string path,
                    std::string body = {}) {
    HttpRequest r = Request(std::move(method), std::move(path), std::move(body),
                            {{"authorization", "Bearer " + key}});
    return router_.Handle(r);
  }
  std::vector<AuditEvent> Audit() {
    AuditFilter filter;
    filter.limit = 1000;
    auto events = store_->registry()->ListAudit(filter);
    EXPECT_TRUE(events.ok()) << events.status().ToString();
    return events.ValueOr({});
  }

  std::filesystem::path dir_;
  std::unique_ptr<FeatureStore> store_;
  std::shared_ptr<ServerAuth> auth_;
  Router router_;
};

TEST_F(ServerAuthTest, EveryApiRouteHasARule) {
  // A route without one would need an admin (fail closed): name it here.
  std::vector<RouteInfo> routes = router_.Routes();
  ASSERT_GT(routes.size(), 30u);
  for (const RouteInfo& route : routes) {
    EXPECT_NE(FindAccessRule(route.method, route.pattern), nullptr)
        << route.method << " " << route.pattern << " has no access rule";
  }
}

TEST_F(ServerAuthTest, OpenUntilTheFirstKeyThen401WithChallenge) {
  HttpRequest before = Request("GET", "/api/v1/entities");
  EXPECT_EQ(router_.Handle(before).status, 200);
  Key(Role::kAdmin);
  HttpRequest after = Request("GET", "/api/v1/entities");
  HttpResponse r = router_.Handle(after);
  EXPECT_EQ(r.status, 401);
  bool challenge = false;
  for (const auto& [k, v] : r.headers) challenge |= k == "WWW-Authenticate" && v == "Bearer";
  EXPECT_TRUE(challenge);
  HttpRequest health = Request("GET", "/health");
  EXPECT_EQ(router_.Handle(health).status, 200);
}

TEST_F(ServerAuthTest, RolesAreOrdered) {
  const std::string reader = Key(Role::kReader);
  const std::string writer = Key(Role::kWriter);
  const std::string admin = Key(Role::kAdmin);
  EXPECT_EQ(Call(reader, "GET", "/api/v1/feature-sets/a").status, 200);
  EXPECT_EQ(Call(reader, "PATCH", "/api/v1/feature-sets/a", R"({"description": "d"})").status,
            403);
  EXPECT_EQ(Call(writer, "PATCH", "/api/v1/feature-sets/a", R"({"description": "d"})").status,
            200);
  EXPECT_EQ(Call(writer, "GET", "/api/v1/keys").status, 403);
  EXPECT_EQ(Call(writer, "GET", "/api/v1/audit").status, 403);
  EXPECT_EQ(Call(admin, "GET", "/api/v1/keys").status, 200);
  EXPECT_EQ(Call(admin, "GET", "/api/v1/audit").status, 200);
}

TEST_F(ServerAuthTest, LimitedKeyIsRefusedOtherSetsAndListsAreFiltered) {
  const std::string limited = Key(Role::kWriter, {"a"});
  EXPECT_EQ(Call(limited, "GET", "/api/v1/feature-sets/a").status, 200);
  HttpResponse other = Call(limited, "GET", "/api/v1/feature-sets/b");
  EXPECT_EQ(other.status, 403);
  EXPECT_NE(other.body.find("'b'"), std::string::npos) << other.body;
  EXPECT_EQ(Call(limited, "GET", "/api/v1/features/b:x").status, 403);
  EXPECT_EQ(Call(limited, "GET", "/api/v1/features/a:x").status, 200);
  EXPECT_EQ(Call(limited, "POST", "/api/v1/feature-sets",
                 R"({"name": "c", "entities": ["user"]})").status,
            403);
  EXPECT_EQ(Call(limited, "POST", "/api/v1/features",
                 R"({"name": "y", "feature_set_id": "b", "data_type": "int"})").status,
            403);

  HttpResponse sets = Call(limited, "GET", "/api/v1/feature-sets");
  ASSERT_EQ(sets.status, 200);
  json::object o = json::parse(sets.body).as_object();
  ASSERT_EQ(o.at("count").as_int64(), 1);
  EXPECT_EQ(o.at("feature_sets").as_array()[0].as_object().at("name").as_string(), "a");
  HttpResponse features = Call(limited, "GET", "/api/v1/features");
  ASSERT_EQ(features.status, 200);
  EXPECT_EQ(json::parse(features.body).as_object().at("count").as_int64(), 1);

  // An unlimited key sees both.
  const std::string all = Key(Role::kReader);
  HttpResponse both = Call(all, "GET", "/api/v1/feature-sets");
  EXPECT_EQ(json::parse(both.body).as_object().at("count").as_int64(), 2);
}

TEST_F(ServerAuthTest, ChangesAndRefusalsAreAudited) {
  const std::string writer = Key(Role::kWriter, {"a"});
  const std::string writer_id = "key_" + writer.substr(4, 16);
  ASSERT_EQ(Call(writer, "PATCH", "/api/v1/feature-sets/a", R"({"description": "d"})").status,
            200);
  ASSERT_EQ(Call(writer, "DELETE", "/api/v1/feature-sets/b").status, 403);
  ASSERT_EQ(Call(writer, "GET", "/api/v1/keys").status, 403);
  ASSERT_EQ(Call(writer, "PATCH", "/api/v1/feature-sets/a", R"({"ttl": "nonsense"})").status,
            400);
  std::vector<AuditEvent> events = Audit();  // newest first
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[3].action, "feature_set.update");
  EXPECT_EQ(events[3].target, "a");
  EXPECT_EQ(events[3].outcome, "success");
  EXPECT_EQ(events[3].key_id, writer_id);
  EXPECT_EQ(events[2].action, "feature_set.delete");
  EXPECT_EQ(events[2].target, "b");
  EXPECT_EQ(events[2].outcome, "denied");
  EXPECT_EQ(events[2].status, 403);
  EXPECT_EQ(events[1].action, "auth.denied");
  EXPECT_EQ(events[1].target, "GET /api/v1/keys");
  EXPECT_EQ(events[0].action, "feature_set.update");
  EXPECT_EQ(events[0].outcome, "failure");
  EXPECT_EQ(events[0].status, 400);
  EXPECT_EQ(events[0].detail.rfind("invalid_argument", 0), 0u) << events[0].detail;
  for (const AuditEvent& e : events) {
    EXPECT_EQ(e.detail.find(writer), std::string::npos);
    EXPECT_EQ(e.detail.find("nonsense"), std::string::npos);  // no request body
  }
}

}  // namespace
}  // namespace fstore
