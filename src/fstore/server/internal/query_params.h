#pragma once

// Query parameter checks the route files share (api_routes.cc,
// monitoring_routes.cc): each refusal is InvalidArgument naming the parameter.

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "fstore/core/status.h"
#include "fstore/server/http_message.h"

namespace fstore::server_internal {

/// An integer parameter from 1 to `max`, `fallback` when absent.
inline Result<int64_t> PositiveIntParam(const HttpRequest& request, const std::string& name,
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

/// Refuses query parameters a route does not know, naming them.
inline Status CheckQueryParams(const HttpRequest& request,
                               std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : request.query) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return InvalidArgument(key, "unknown query parameter");
    }
  }
  return Status::OK();
}

}  // namespace fstore::server_internal
