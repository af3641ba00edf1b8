#pragma once

// The conformance suite every Registry backend passes (after Arrow's
// GenericFileSystemTest). The tests are written once, in
// registry_conformance_test.cc, against RegistryConformanceTest; a backend
// joins by instantiating the suite with a RegistryBackend that makes empty
// stores for it, e.g. in registry/postgres/postgres_registry_test.cc:
//
//   INSTANTIATE_TEST_SUITE_P(Postgres, RegistryConformanceTest,
//                            ::testing::Values(PostgresBackend()), RegistryBackendName);
//
// Capability flags skip the tests a backend cannot run (a private in-memory
// database cannot be reopened).

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fstore/registry/registry.h"

namespace fstore {

/// Opens a new connection to one store.
using RegistryOpener = std::function<Result<std::unique_ptr<Registry>>()>;

/// One empty store made for one test.
struct RegistryStore {
  /// Opens a connection to the store; may be called several times.
  RegistryOpener open;
  /// Drops the store (temporary files, a scratch schema); may be empty.
  std::function<void()> drop;
  /// Runs a statement on the store behind the registry's back (to damage a
  /// row); empty when the backend's store cannot be reached that way.
  std::function<Status(const std::string& sql)> run_sql;
};

/// A backend under test.
struct RegistryBackend {
  std::string name;  ///< the parameter's name in test names: "SqliteFile"
  /// Makes a new, empty, unmigrated store; called once per test.
  std::function<Result<RegistryStore>()> new_store;
  /// Data committed through one connection is there after closing it and
  /// opening another.
  bool persistent = true;
  /// Connections opened concurrently from one RegistryStore share its data.
  bool shared_between_connections = true;
};

/// Prints a backend by its name (in gtest's output).
void PrintTo(const RegistryBackend& backend, std::ostream* os);

/// For INSTANTIATE_TEST_SUITE_P's name generator.
std::string RegistryBackendName(const ::testing::TestParamInfo<RegistryBackend>& info);

/// Fixture: a migrated registry_ on a fresh store per test.
class RegistryConformanceTest : public ::testing::TestWithParam<RegistryBackend> {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// Another connection to this test's store.
  Result<std::unique_ptr<Registry>> OpenAnother();

  /// Definitions with fresh ids, version 1, and every field set.
  static Entity NewEntity(const std::string& name);
  static FeatureSet NewFeatureSet(const std::string& name);
  static Feature NewFeature(const FeatureSet& feature_set, const std::string& name);

  /// The next version of `current` (a copy with version + 1 and a new
  /// updated_at) as a put that expects `current`'s version.
  static VersionedPut<FeatureSet> NextVersion(const FeatureSet& current);
  static VersionedPut<Feature> NextVersion(const Feature& current);

  /// Commits one new feature set (and the given features).
  Status CreateFeatureSet(const FeatureSet& feature_set, const std::vector<Feature>& features = {});

  RegistryStore store_;
  std::unique_ptr<Registry> registry_;
};

}  // namespace fstore
