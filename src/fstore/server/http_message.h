#pragma once

// Transport-neutral request and response, so that routes and handlers do not
// depend on Boost.Beast (only http_server.cc does).

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fstore/security/principal.h"

namespace fstore {

struct HttpRequest {
  std::string method;  ///< "GET", "POST", ...
  std::string target;  ///< as received: "/api/v1/features?q=x"
  std::string path;    ///< percent-decoded path, no query: "/api/v1/features"
  /// Percent-decoded query parameters ('+' is a space); a repeated key keeps
  /// its last value.
  std::map<std::string, std::string> query;
  /// Filled by the router from "{name}" segments of the route pattern.
  std::map<std::string, std::string> path_params;
  /// The matched route's pattern ("/api/v1/features/{id}"), set by the
  /// router; empty when no route matched (404, 405). Metrics label by it.
  std::string route;
  /// Who sent it, set by the server's authentication before the handler
  /// runs; Anonymous() while authentication is off.
  const Principal* principal = &Principal::Anonymous();
  /// Header names lower-cased.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  /// First header of that (lower-case) name.
  std::optional<std::string_view> Header(std::string_view lower_name) const {
    for (const auto& [k, v] : headers) {
      if (k == lower_name) return std::string_view(v);
    }
    return std::nullopt;
  }
  std::optional<std::string_view> Query(const std::string& key) const {
    auto it = query.find(key);
    if (it == query.end()) return std::nullopt;
    return std::string_view(it->second);
  }
  std::string_view PathParam(const std::string& key) const {
    auto it = path_params.find(key);
    return it == path_params.end() ? std::string_view() : std::string_view(it->second);
  }
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra headers
  bool close_connection = false;  ///< send "Connection: close" and close after
};

}  // namespace fstore
