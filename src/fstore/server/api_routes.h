#pragma once

// The REST API: binds the routes of the seed's contract (and /health, /ready,
// /openapi.json, /docs) to the FeatureStore facade. Every route here is also
// described in openapi.json (tests/integration checks both lists agree).

#include <memory>

#include "fstore/server/auth.h"
#include "fstore/server/router.h"
#include "fstore/service/feature_store.h"

namespace fstore {

/// Registers every API route on `router` and installs `auth` as its
/// interceptor (authentication, roles, feature-set limits, audit log); with
/// null, a ServerAuth with default options (FSTORE_AUTH=auto). `store` must
/// outlive the router.
void AddApiRoutes(FeatureStore* store, Router* router,
                  std::shared_ptr<ServerAuth> auth = nullptr);

}  // namespace fstore
