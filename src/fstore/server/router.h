#pragma once

// Maps (method, path) to a handler. Patterns are literal segments and "{name}"
// segments ("/api/v1/features/{id}/versions"); literal segments win over
// parameters. A path with no route is 404; a path whose route lacks the method
// is 405 with an Allow header. Handlers are registered before serving starts;
// Route() is then safe to call from any thread.

#include <functional>
#include <memory>
#include <optional>
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

/// Runs around the handler of every matched route: authentication,
/// authorization and the audit log (server/auth.h). Not run for 404 and 405.
class RouteInterceptor {
 public:
  virtual ~RouteInterceptor() = default;
  /// After route matching (request.route and path_params are set), before
  /// the RouteOptions checks and the handler. Returns the response to answer
  /// instead of running the handler, or nullopt to run it. May set
  /// request.principal to an object that `*state` keeps alive; `*state` is
  /// also handed to After (per-request state of the interceptor's own).
  virtual std::optional<HttpResponse> Before(HttpRequest& request,
                                             std::shared_ptr<const void>* state) const = 0;
  /// After the handler, or after Before's refusal; may change the response.
  virtual void After(const HttpRequest& request, const std::shared_ptr<const void>& state,
                     HttpResponse* response) const = 0;
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

  /// Installs the interceptor every matched request passes through (one at
  /// most; null removes it). Call before serving starts.
  void SetInterceptor(std::shared_ptr<const RouteInterceptor> interceptor);

  /// Every registered route, in registration order (for OpenAPI coverage tests).
  std::vector<RouteInfo> Routes() const;

 private:
  struct Route;
  /// The RouteOptions checks and the handler of a matched route.
  HttpResponse RunRoute(const Route& route, HttpRequest& request) const;
  std::vector<Route> routes_;
  std::shared_ptr<const RouteInterceptor> interceptor_;
};

}  // namespace fstore
