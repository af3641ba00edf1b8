#pragma once

// The REST API: binds the routes of the seed's contract (and /health, /ready,
// /openapi.json, /docs) to the FeatureStore facade. Every route here is also
// described in openapi.json (tests/integration checks both lists agree).

#include "fstore/server/router.h"
#include "fstore/service/feature_store.h"

namespace fstore {

/// Registers every API route on `router`; `store` must outlive it.
void AddApiRoutes(FeatureStore* store, Router* router);

}  // namespace fstore
