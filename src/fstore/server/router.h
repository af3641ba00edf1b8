#pragma once

// Maps (method, path) to a handler. Patterns are literal segments and "{name}"
// segments ("/api/v1/features/{id}/versions"); literal segments win over
// parameters. A path with no route is 404; a path whose route lacks the method
// is 405 with an Allow header. Handlers are registered before serving starts;
// Route() is then safe to call from any thread.

#include <functional>
#include <string>
#include <vector>

#include "fstore/server/http_message.h"

namespace fstore {

using HttpHandler = std::function<HttpResponse(HttpRequest&)>;

struct RouteOptions {
  /// The handler reads a JSON body: a non-empty body whose Content-Type is not
  /// application/json (parameters such as charset allowed) is refused with 415
  /// before the handler runs. A missing Content-Type is taken as JSON.
  bool json_body = false;
};

struct RouteInfo {
  std::string method;
  std::string pattern;
};

class Router {
 public:
  // Out of line because Route is defined in router.cc.
  Router();
  ~Router();
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;

  void Add(std::string method, std::string pattern, HttpHandler handler,
           RouteOptions options = {});

  /// Finds the route, fills request.path_params, applies RouteOptions checks
  /// and runs the handler; errors are ErrorResponse()s. A handler that throws
  /// becomes a 500 (handlers should not throw; this is the last net).
  HttpResponse Handle(HttpRequest& request) const;

  /// Every registered route, in registration order (for OpenAPI coverage tests).
  std::vector<RouteInfo> Routes() const;

 private:
  struct Route;
  std::vector<Route> routes_;
};

}  // namespace fstore
