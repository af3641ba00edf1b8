#include "fstore/server/router.h"

#include <algorithm>
#include <cctype>
#include <exception>
#include <string_view>
#include <utility>

#include <spdlog/spdlog.h>

#include "fstore/core/status.h"
#include "fstore/core/text.h"
#include "fstore/server/http_error.h"

namespace fstore {

namespace {

/// One segment of a route pattern: a literal, or a "{name}" parameter.
struct PatternSegment {
  std::string text;  ///< the literal, or the parameter's name
  bool is_param = false;
};

/// Splits "/a/b/" into {"a", "b"}: a trailing slash is ignored so that
/// "/api/v1/features/" finds the same route as "/api/v1/features".
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.starts_with('/')) path.remove_prefix(1);
  if (path.ends_with('/')) path.remove_suffix(1);
  if (path.empty()) return out;
  while (true) {
    const size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

std::string AsciiLower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// True for "application/json" with any parameters ("; charset=utf-8"),
/// compared case-insensitively.
bool IsJsonMediaType(std::string_view content_type) {
  const std::string_view media_type = Trim(content_type.substr(0, content_type.find(';')));
  return AsciiLower(media_type) == "application/json";
}

}  // namespace

struct Router::Route {
  std::string method;
  std::string pattern;
  std::vector<PatternSegment> segments;
  HttpHandler handler;
  RouteOptions options;

  /// Whether `path` matches; fills `params` when it does.
  bool Match(const std::vector<std::string_view>& path,
             std::map<std::string, std::string>* params) const {
    if (path.size() != segments.size()) return false;
    for (size_t i = 0; i < path.size(); ++i) {
      if (!segments[i].is_param && segments[i].text != path[i]) return false;
      if (segments[i].is_param && path[i].empty()) return false;
    }
    params->clear();
    for (size_t i = 0; i < path.size(); ++i) {
      if (segments[i].is_param) (*params)[segments[i].text] = std::string(path[i]);
    }
    return true;
  }

  /// Whether this route is more specific than `other` (both matching the same
  /// path): at the first segment where they differ, a literal beats a parameter.
  bool MoreSpecificThan(const Route& other) const {
    for (size_t i = 0; i < segments.size() && i < other.segments.size(); ++i) {
      if (segments[i].is_param != other.segments[i].is_param) return !segments[i].is_param;
    }
    return false;
  }
};

Router::Router() = default;
Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

void Router::Add(std::string method, std::string pattern, HttpHandler handler,
                 RouteOptions options) {
  Route route;
  for (std::string_view segment : SplitPath(pattern)) {
    PatternSegment s;
    if (segment.size() >= 2 && segment.front() == '{' && segment.back() == '}') {
      s.is_param = true;
      s.text = std::string(segment.substr(1, segment.size() - 2));
    } else {
      s.text = std::string(segment);
    }
    route.segments.push_back(std::move(s));
  }
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.handler = std::move(handler);
  route.options = options;
  routes_.push_back(std::move(route));
}

HttpResponse Router::Handle(HttpRequest& request) const {
  const std::vector<std::string_view> path = SplitPath(request.path);
  // Among routes whose pattern matches the path, the most specific one with
  // the request's method wins; if none has the method, 405 lists those that do.
  const Route* best = nullptr;
  std::map<std::string, std::string> best_params;
  std::vector<std::string> allowed;
  std::map<std::string, std::string> params;
  for (const Route& route : routes_) {
    if (!route.Match(path, &params)) continue;
    if (std::find(allowed.begin(), allowed.end(), route.method) == allowed.end()) {
      allowed.push_back(route.method);
    }
    if (route.method != request.method) continue;
    if (best == nullptr || route.MoreSpecificThan(*best)) {
      best = &route;
      best_params = std::move(params);
    }
  }

  if (allowed.empty()) {
    return ErrorResponse(NotFound("no route for path '" + request.path + "'"));
  }
  if (best == nullptr) {
    std::string allow;
    for (const std::string& method : allowed) {
      if (!allow.empty()) allow += ", ";
      allow += method;
    }
    HttpResponse response = ErrorResponse(
        MakeError(ErrorCode::kMethodNotAllowed, "method " + request.method +
                                                    " is not allowed on '" + request.path +
                                                    "'; allowed: " + allow));
    response.headers.emplace_back("Allow", std::move(allow));
    return response;
  }

  request.route = best->pattern;
  request.path_params = std::move(best_params);
  if (!interceptor_) return RunRoute(*best, request);
  std::shared_ptr<const void> state;
  std::optional<HttpResponse> refusal;
  try {
    refusal = interceptor_->Before(request, &state);
  } catch (const std::exception& e) {
    spdlog::error("interceptor for {} {} threw: {}", request.method, best->pattern, e.what());
    refusal = ErrorResponse(Internal(std::string("unexpected error: ") + e.what()));
  }
  HttpResponse response = refusal ? std::move(*refusal) : RunRoute(*best, request);
  try {
    interceptor_->After(request, state, &response);
  } catch (const std::exception& e) {
    spdlog::error("interceptor for {} {} threw after the handler: {}", request.method,
                  best->pattern, e.what());
  }
  return response;
}

HttpResponse Router::RunRoute(const Route& route, HttpRequest& request) const {
  const Route* best = &route;
  if (best->options.json_body && !request.body.empty()) {
    const std::optional<std::string_view> content_type = request.Header("content-type");
    if (content_type && !IsJsonMediaType(*content_type)) {
      return ErrorResponse(MakeError(
          ErrorCode::kUnsupportedMediaType,
          "request body must be application/json, got Content-Type '" +
              std::string(*content_type) + "'",
          "Content-Type"));
    }
  }

  try {
    return best->handler(request);
  } catch (const std::exception& e) {
    spdlog::error("handler for {} {} threw: {}", request.method, best->pattern, e.what());
    return ErrorResponse(Internal(std::string("unexpected error: ") + e.what()));
  } catch (...) {
    spdlog::error("handler for {} {} threw a non-standard exception", request.method,
                  best->pattern);
    return ErrorResponse(Internal("unexpected error"));
  }
}

void Router::SetInterceptor(std::shared_ptr<const RouteInterceptor> interceptor) {
  interceptor_ = std::move(interceptor);
}

std::vector<RouteInfo> Router::Routes() const {
  std::vector<RouteInfo> out;
  out.reserve(routes_.size());
  for (const Route& route : routes_) out.push_back({route.method, route.pattern});
  return out;
}

}  // namespace fstore
