#include "fstore/server/router.h"

#include <stdexcept>
#include <string>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "fstore/core/status.h"
#include "fstore/server/http_error.h"
#include "fstore/server/internal/request_target.h"

namespace fstore {
namespace {

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

/// A handler answering 200 with a fixed text, for telling routes apart.
HttpHandler Text(std::string text) {
  return [text](HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/plain";
    r.body = text;
    return r;
  };
}

boost::json::object ErrorOfBody(const HttpResponse& response) {
  return boost::json::parse(response.body).as_object().at("error").as_object();
}

std::optional<std::string> HeaderOf(const HttpResponse& response, const std::string& name) {
  for (const auto& [k, v] : response.headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

TEST(RouterTest, MatchesLiteralAndParameterSegments) {
  Router router;
  router.Add("GET", "/api/v1/features", Text("list"));
  router.Add("GET", "/api/v1/features/{id}/versions/{version}", [](HttpRequest& r) {
    HttpResponse out;
    out.body = std::string(r.PathParam("id")) + "@" + std::string(r.PathParam("version"));
    return out;
  });

  auto list = Request("GET", "/api/v1/features");
  EXPECT_EQ(router.Handle(list).body, "list");
  auto versions = Request("GET", "/api/v1/features/user.age/versions/3");
  HttpResponse response = router.Handle(versions);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "user.age@3");
  EXPECT_EQ(versions.path_params.size(), 2u);

  auto too_short = Request("GET", "/api/v1/features/x/versions");
  EXPECT_EQ(router.Handle(too_short).status, 404);
  auto too_long = Request("GET", "/api/v1/features/x/versions/1/extra");
  EXPECT_EQ(router.Handle(too_long).status, 404);
}

TEST(RouterTest, TrailingSlashFindsTheSameRoute) {
  Router router;
  router.Add("GET", "/api/v1/features", Text("list"));
  router.Add("GET", "/", Text("root"));
  auto slash = Request("GET", "/api/v1/features/");
  EXPECT_EQ(router.Handle(slash).body, "list");
  auto root = Request("GET", "/");
  EXPECT_EQ(router.Handle(root).body, "root");
}

TEST(RouterTest, EmptySegmentDoesNotMatchParameter) {
  Router router;
  router.Add("GET", "/a/{id}/b", Text("x"));
  auto r = Request("GET", "/a//b");
  EXPECT_EQ(router.Handle(r).status, 404);
}

TEST(RouterTest, LiteralSegmentsWinOverParameters) {
  Router router;
  // Registered parameter-first, so registration order cannot be what decides.
  router.Add("GET", "/features/{id}", Text("by-id"));
  router.Add("GET", "/features/search", Text("search"));
  router.Add("GET", "/a/{x}/c", Text("param-then-literal"));
  router.Add("GET", "/a/b/{y}", Text("literal-then-param"));

  auto search = Request("GET", "/features/search");
  EXPECT_EQ(router.Handle(search).body, "search");
  auto by_id = Request("GET", "/features/user_age");
  EXPECT_EQ(router.Handle(by_id).body, "by-id");
  EXPECT_EQ(by_id.PathParam("id"), "user_age");
  // The first segment where the patterns differ decides.
  auto abc = Request("GET", "/a/b/c");
  EXPECT_EQ(router.Handle(abc).body, "literal-then-param");
  auto axc = Request("GET", "/a/x/c");
  EXPECT_EQ(router.Handle(axc).body, "param-then-literal");
}

TEST(RouterTest, MethodDecidesBetweenLiteralAndParameterRoutes) {
  Router router;
  router.Add("GET", "/features/{id}", Text("get"));
  router.Add("POST", "/features/search", Text("search"));
  auto get = Request("GET", "/features/search");
  EXPECT_EQ(router.Handle(get).body, "get");
  auto post = Request("POST", "/features/search");
  EXPECT_EQ(router.Handle(post).body, "search");
}

TEST(RouterTest, UnknownPathIs404NamingThePath) {
  Router router;
  router.Add("GET", "/api/v1/features", Text("list"));
  auto r = Request("GET", "/api/v1/nothing");
  HttpResponse response = router.Handle(r);
  EXPECT_EQ(response.status, 404);
  EXPECT_EQ(response.content_type, "application/json");
  boost::json::object error = ErrorOfBody(response);
  EXPECT_EQ(error.at("code"), "not_found");
  EXPECT_NE(std::string(error.at("message").as_string()).find("/api/v1/nothing"),
            std::string::npos);
}

TEST(RouterTest, WrongMethodIs405WithAllow) {
  Router router;
  router.Add("GET", "/api/v1/features/{id}", Text("get"));
  router.Add("DELETE", "/api/v1/features/{id}", Text("delete"));
  router.Add("PUT", "/api/v1/other", Text("other"));
  auto r = Request("POST", "/api/v1/features/x");
  HttpResponse response = router.Handle(r);
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(HeaderOf(response, "Allow"), "GET, DELETE");
  boost::json::object error = ErrorOfBody(response);
  EXPECT_EQ(error.at("code"), "method_not_allowed");
  EXPECT_NE(std::string(error.at("message").as_string()).find("POST"), std::string::npos);
}

TEST(RouterTest, JsonBodyRoutesRefuseOtherMediaTypes) {
  Router router;
  router.Add("POST", "/json", Text("ok"), RouteOptions{.json_body = true});
  router.Add("POST", "/any", Text("ok"));

  auto text = Request("POST", "/json", "{}", {{"content-type", "text/plain"}});
  HttpResponse refused = router.Handle(text);
  EXPECT_EQ(refused.status, 415);
  boost::json::object error = ErrorOfBody(refused);
  EXPECT_EQ(error.at("code"), "unsupported_media_type");
  EXPECT_NE(std::string(error.at("message").as_string()).find("text/plain"), std::string::npos);

  auto json_like = Request("POST", "/json", "{}", {{"content-type", "application/jsonx"}});
  EXPECT_EQ(router.Handle(json_like).status, 415);

  auto with_charset =
      Request("POST", "/json", "{}", {{"content-type", "Application/JSON ; charset=utf-8"}});
  EXPECT_EQ(router.Handle(with_charset).status, 200);
  auto plain_json = Request("POST", "/json", "{}", {{"content-type", "application/json"}});
  EXPECT_EQ(router.Handle(plain_json).status, 200);
  auto missing = Request("POST", "/json", "{}");
  EXPECT_EQ(router.Handle(missing).status, 200);
  auto empty_body = Request("POST", "/json", "", {{"content-type", "text/plain"}});
  EXPECT_EQ(router.Handle(empty_body).status, 200);
  auto not_json_route = Request("POST", "/any", "x", {{"content-type", "text/plain"}});
  EXPECT_EQ(router.Handle(not_json_route).status, 200);
}

TEST(RouterTest, ThrowingHandlerBecomes500) {
  Router router;
  router.Add("GET", "/boom", [](HttpRequest&) -> HttpResponse {
    throw std::runtime_error("kaboom");
  });
  router.Add("GET", "/int", [](HttpRequest&) -> HttpResponse { throw 42; });
  auto r = Request("GET", "/boom");
  HttpResponse response = router.Handle(r);
  EXPECT_EQ(response.status, 500);
  boost::json::object error = ErrorOfBody(response);
  EXPECT_EQ(error.at("code"), "internal");
  EXPECT_NE(std::string(error.at("message").as_string()).find("kaboom"), std::string::npos);
  auto i = Request("GET", "/int");
  EXPECT_EQ(router.Handle(i).status, 500);
}

TEST(RouterTest, RoutesListsRegistrationOrder) {
  Router router;
  router.Add("GET", "/b", Text("b"));
  router.Add("POST", "/a/{id}", Text("a"));
  std::vector<RouteInfo> routes = router.Routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0].method, "GET");
  EXPECT_EQ(routes[0].pattern, "/b");
  EXPECT_EQ(routes[1].method, "POST");
  EXPECT_EQ(routes[1].pattern, "/a/{id}");
}

TEST(RouterTest, RouterIsMovable) {
  Router router;
  router.Add("GET", "/x", Text("x"));
  Router moved = std::move(router);
  auto r = Request("GET", "/x");
  EXPECT_EQ(moved.Handle(r).body, "x");
}

TEST(HttpErrorTest, StatusOfEveryCode) {
  EXPECT_EQ(HttpStatusOf(ErrorCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kMethodNotAllowed), 405);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kAlreadyExists), 409);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kConflict), 409);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kPayloadTooLarge), 413);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kUnsupportedMediaType), 415);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kUnprocessable), 422);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kInternal), 500);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kNotImplemented), 501);
  EXPECT_EQ(HttpStatusOf(ErrorCode::kUnavailable), 503);
}

TEST(HttpErrorTest, ErrorShapeWithFieldAndPosition) {
  HttpResponse response = ErrorResponse(
      MakeError(ErrorCode::kInvalidArgument, "syntax error at or near \"FROM\"",
                "transformation", 12));
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(response.content_type, "application/json");
  boost::json::value body = boost::json::parse(response.body);
  ASSERT_EQ(body.as_object().size(), 1u);
  const boost::json::object& error = body.at("error").as_object();
  EXPECT_EQ(error.size(), 4u);
  EXPECT_EQ(error.at("code"), "invalid_argument");
  EXPECT_EQ(error.at("message"), "syntax error at or near \"FROM\"");
  EXPECT_EQ(error.at("field"), "transformation");
  EXPECT_EQ(error.at("position").as_int64(), 12);
}

TEST(HttpErrorTest, ErrorShapeOmitsUnknownFieldAndPosition) {
  HttpResponse response = ErrorResponse(NotFound("feature 'x' not found"));
  EXPECT_EQ(response.status, 404);
  const boost::json::object error = ErrorOfBody(response);
  EXPECT_EQ(error.size(), 2u);
  EXPECT_EQ(error.at("code"), "not_found");
  EXPECT_EQ(error.at("message"), "feature 'x' not found");
  EXPECT_FALSE(error.contains("field"));
  EXPECT_FALSE(error.contains("position"));
}

TEST(HttpErrorTest, PlainArrowStatusesMapThroughTheirCodes) {
  EXPECT_EQ(ErrorResponse(Status::Invalid("bad")).status, 400);
  EXPECT_EQ(ErrorResponse(Status::KeyError("missing")).status, 404);
  EXPECT_EQ(ErrorResponse(Status::IOError("down")).status, 503);
  HttpResponse internal = ErrorResponse(Status::UnknownError("oops"));
  EXPECT_EQ(internal.status, 500);
  EXPECT_EQ(ErrorOfBody(internal).at("message"), "oops");
}

TEST(HttpErrorTest, EveryCodeRoundTripsThroughErrorResponse) {
  for (ErrorCode code :
       {ErrorCode::kInvalidArgument, ErrorCode::kUnauthenticated, ErrorCode::kPermissionDenied,
        ErrorCode::kNotFound, ErrorCode::kMethodNotAllowed, ErrorCode::kAlreadyExists,
        ErrorCode::kConflict, ErrorCode::kPayloadTooLarge, ErrorCode::kUnsupportedMediaType,
        ErrorCode::kUnprocessable, ErrorCode::kInternal, ErrorCode::kNotImplemented,
        ErrorCode::kUnavailable}) {
    HttpResponse response = ErrorResponse(MakeError(code, "m"));
    EXPECT_EQ(response.status, HttpStatusOf(code));
    EXPECT_EQ(ErrorOfBody(response).at("code").as_string(), ErrorCodeName(code));
  }
}

TEST(HttpErrorTest, JsonResponseSerializes) {
  HttpResponse response = JsonResponse(201, boost::json::object{{"name", "x"}, {"n", 2}});
  EXPECT_EQ(response.status, 201);
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_EQ(boost::json::parse(response.body), (boost::json::object{{"name", "x"}, {"n", 2}}));
}

TEST(RequestTargetTest, SplitsAndDecodes) {
  std::string path;
  std::map<std::string, std::string> query;
  server_internal::SplitRequestTarget("/api/v1/features/a%20b%2Fc?x=1&y=a+b%26c&x=2&flag&&",
                                      &path, &query);
  EXPECT_EQ(path, "/api/v1/features/a b/c");
  EXPECT_EQ(query, (std::map<std::string, std::string>{{"x", "2"}, {"y", "a b&c"}, {"flag", ""}}));

  server_internal::SplitRequestTarget("/a+b%zz%4", &path, &query);
  EXPECT_EQ(path, "/a+b%zz%4");  // '+' is literal in paths; bad escapes stay as they are
  EXPECT_TRUE(query.empty());

  server_internal::SplitRequestTarget("http://host:8002/x?q=%C3%A9#frag", &path, &query);
  EXPECT_EQ(path, "/x");
  EXPECT_EQ(query.at("q"), "\xC3\xA9");

  server_internal::SplitRequestTarget("?a=1", &path, &query);
  EXPECT_EQ(path, "/");
  EXPECT_EQ(query.at("a"), "1");
}

}  // namespace
}  // namespace fstore
