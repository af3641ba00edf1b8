#pragma once

// The conformance suite every OnlineStore backend passes (after Arrow's
// GenericFileSystemTest and registry_conformance.h). The tests are written
// once, in online_store_conformance_test.cc, against
// OnlineStoreConformanceTest; a backend joins by instantiating the suite with
// an OnlineStoreBackend that makes empty stores for it, e.g. in
// online/redis/redis_online_store_test.cc:
//
//   INSTANTIATE_TEST_SUITE_P(Redis, OnlineStoreConformanceTest,
//                            ::testing::Values(RedisBackend()), OnlineStoreBackendName);
//
// Capability flags skip the tests a backend cannot run.

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "fstore/online/online_store.h"

namespace fstore {

/// Opens a new connection to one store.
using OnlineStoreOpener = std::function<Result<std::unique_ptr<OnlineStore>>()>;

/// One empty store made for one test.
struct OnlineStoreInstance {
  /// Opens the store; called again after the previous connection is closed.
  OnlineStoreOpener open;
  /// Drops the store (temporary directory, a scratch database); may be empty.
  std::function<void()> drop;
};

/// A backend under test.
struct OnlineStoreBackend {
  std::string name;  ///< the parameter's name in test names: "RocksDb"
  /// Makes a new, empty store; called once per test.
  std::function<Result<OnlineStoreInstance>()> new_store;
  /// Data made durable with Sync() is there after Close() and a new open.
  bool persistent = true;
  /// When set and it returns a reason, every test of the backend is skipped
  /// with it (a server the environment does not provide).
  std::function<std::string()> skip_reason;
};

/// Prints a backend by its name (in gtest's output).
void PrintTo(const OnlineStoreBackend& backend, std::ostream* os);

/// Prints records and values readably in gtest's failure messages.
void PrintTo(const OnlineRecord& record, std::ostream* os);
void PrintTo(const FeatureValue& value, std::ostream* os);

/// For INSTANTIATE_TEST_SUITE_P's name generator.
std::string OnlineStoreBackendName(const ::testing::TestParamInfo<OnlineStoreBackend>& info);

/// Fixture: an open store_ on a fresh, empty store per test.
class OnlineStoreConformanceTest : public ::testing::TestWithParam<OnlineStoreBackend> {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// Closes store_ and opens the same store again into store_.
  Status Reopen();

  OnlineStoreInstance instance_;
  std::unique_ptr<OnlineStore> store_;
};

}  // namespace fstore
