#include "fstore/registry/sqlite/migrations.h"

#include <array>

namespace fstore {
namespace {

// Each table keeps the current version of an object; *_versions keep every
// version ever committed (immutable, append-only). `body` is the object's full
// JSON (codec.h ToJson), decoded with DecodeMode::kStored; the other columns
// duplicate what queries filter and sort on. Times are UTC microseconds.
// Deletion is soft (deleted_at set), so a name is unique only among live rows.
constexpr std::string_view kV1Schema = R"sql(
CREATE TABLE entities (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL UNIQUE,
  version    INTEGER NOT NULL,
  body       TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE feature_sets (
  id         TEXT PRIMARY KEY,
  name       TEXT NOT NULL,
  version    INTEGER NOT NULL,
  body       TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  deleted_at INTEGER
);
CREATE UNIQUE INDEX feature_sets_live_name ON feature_sets (name) WHERE deleted_at IS NULL;
CREATE INDEX feature_sets_name ON feature_sets (name, deleted_at);

CREATE TABLE feature_set_versions (
  id         TEXT NOT NULL REFERENCES feature_sets (id),
  version    INTEGER NOT NULL,
  body       TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (id, version)
) WITHOUT ROWID;

CREATE TABLE features (
  id             TEXT PRIMARY KEY,
  feature_set_id TEXT NOT NULL REFERENCES feature_sets (id),
  name           TEXT NOT NULL,
  version        INTEGER NOT NULL,
  body           TEXT NOT NULL,
  created_at     INTEGER NOT NULL,
  updated_at     INTEGER NOT NULL,
  deleted_at     INTEGER
);
CREATE UNIQUE INDEX features_live_name ON features (feature_set_id, name)
  WHERE deleted_at IS NULL;

CREATE TABLE feature_versions (
  id         TEXT NOT NULL REFERENCES features (id),
  version    INTEGER NOT NULL,
  body       TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (id, version)
) WITHOUT ROWID;

-- One row: the change sequence, bumped once per commit.
CREATE TABLE registry_state (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  change_seq INTEGER NOT NULL
);
INSERT INTO registry_state (id, change_seq) VALUES (1, 0);
)sql";

constexpr std::array kMigrations = {
    SqliteMigration{1, "entities, feature sets, features and their versions", kV1Schema},
};

}  // namespace

std::span<const SqliteMigration> SqliteMigrations() { return kMigrations; }

}  // namespace fstore
