#pragma once

// The HTTP/1.1 server (Boost.Beast): keep-alive, one io_context run by
// `threads` threads, a request body limit (413 and close past it), header and
// read timeouts, and graceful shutdown: Shutdown() stops accepting, lets
// in-flight requests finish (up to a deadline), then closes every connection.
// Handlers run on the I/O threads and may block briefly (registry calls).

#include <cstdint>
#include <memory>
#include <string>

#include "fstore/core/status.h"
#include "fstore/server/router.h"

namespace fstore {

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 8002;                 ///< 0: any free port (see HttpServer::port())
  int threads = 0;                 ///< 0: one per core
  int64_t max_body_bytes = 8 << 20;
  int header_timeout_seconds = 10;
  int read_timeout_seconds = 30;
  int idle_timeout_seconds = 60;
};

class HttpServer {
 public:
  /// Binds and starts serving on background threads. `router` must outlive
  /// the server. Fails (Unavailable) if the address cannot be bound.
  static Result<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                   const Router* router);
  virtual ~HttpServer() = default;

  /// The bound port (the chosen one when options.port was 0).
  virtual int port() const = 0;

  /// Stops accepting, waits up to `grace_seconds` for in-flight requests, then
  /// closes connections and joins the threads. Idempotent.
  virtual void Shutdown(int grace_seconds = 10) = 0;

  /// Blocks until SIGINT or SIGTERM arrives (installs the handlers), then
  /// calls Shutdown().
  virtual void WaitForSignal() = 0;
};

}  // namespace fstore
