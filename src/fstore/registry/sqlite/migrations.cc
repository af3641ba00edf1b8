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

// Materialization jobs and per-feature-set scheduling state. Jobs are not
// versioned: a row is the job's current record, replaced by id (`body` as
// above, codec.h ToJson(MaterializationJob)). feature_set_id is not a foreign
// key: a job record outlives whatever happens to its definition. A missing
// feature_set_state row, or a NULL in it, means "never": no watermark yet, no
// scheduled run yet.
constexpr std::string_view kV2Schema = R"sql(
CREATE TABLE materialization_jobs (
  id             TEXT PRIMARY KEY,
  feature_set_id TEXT NOT NULL,
  status         TEXT NOT NULL,
  created_at     INTEGER NOT NULL,
  body           TEXT NOT NULL
);
CREATE INDEX materialization_jobs_feature_set
  ON materialization_jobs (feature_set_id, created_at);
CREATE INDEX materialization_jobs_status ON materialization_jobs (status, created_at);

CREATE TABLE feature_set_state (
  feature_set_id      TEXT PRIMARY KEY,
  watermark           INTEGER,
  last_scheduled_slot INTEGER
);
)sql";

// API keys and the audit log (registry/operations.h). A key row is written
// once, when the key is created, and then only has revoked_at set; it holds a
// salted hash of the secret, never the secret. feature_sets is a JSON array of
// feature set names ("[]": every feature set). Audit entries are append-only;
// seq (AUTOINCREMENT: never reused, even after the newest row is deleted)
// orders them.
constexpr std::string_view kV3Schema = R"sql(
CREATE TABLE api_keys (
  id           TEXT PRIMARY KEY,
  name         TEXT NOT NULL,
  role         TEXT NOT NULL,
  feature_sets TEXT NOT NULL,
  salt         TEXT NOT NULL,
  hash         TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  revoked_at   INTEGER
);
CREATE INDEX api_keys_created ON api_keys (created_at, id);

CREATE TABLE audit_log (
  seq     INTEGER PRIMARY KEY AUTOINCREMENT,
  time    INTEGER NOT NULL,
  key_id  TEXT NOT NULL,
  action  TEXT NOT NULL,
  target  TEXT NOT NULL,
  outcome TEXT NOT NULL,
  status  INTEGER NOT NULL,
  detail  TEXT NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time);
)sql";

// Per-run feature statistics and daily usage counts (registry/operations.h).
// A statistics row is replaced by (job_id, feature); `body` is opaque (JSON,
// or ciphertext with encryption at rest). A usage row is a running sum,
// added to in place; feature is '' on a feature set's own row.
constexpr std::string_view kV4Schema = R"sql(
CREATE TABLE feature_statistics (
  job_id           TEXT NOT NULL,
  feature          TEXT NOT NULL,
  feature_set_id   TEXT NOT NULL,
  feature_set_name TEXT NOT NULL,
  computed_at      INTEGER NOT NULL,
  body             TEXT NOT NULL,
  PRIMARY KEY (job_id, feature)
);
CREATE INDEX feature_statistics_computed ON feature_statistics (computed_at);
CREATE INDEX feature_statistics_feature_set
  ON feature_statistics (feature_set_id, computed_at);

CREATE TABLE usage_daily (
  day            TEXT NOT NULL,
  key_id         TEXT NOT NULL,
  feature_set    TEXT NOT NULL,
  feature        TEXT NOT NULL,
  requests       INTEGER NOT NULL,
  entities       INTEGER NOT NULL,
  entities_found INTEGER NOT NULL,
  PRIMARY KEY (day, key_id, feature_set, feature)
) WITHOUT ROWID;
)sql";

constexpr std::array kMigrations = {
    SqliteMigration{1, "entities, feature sets, features and their versions", kV1Schema},
    SqliteMigration{2, "materialization jobs, watermarks and schedule slots", kV2Schema},
    SqliteMigration{3, "api keys and the audit log", kV3Schema},
    SqliteMigration{4, "feature statistics and daily usage", kV4Schema},
};

}  // namespace

std::span<const SqliteMigration> SqliteMigrations() { return kMigrations; }

}  // namespace fstore
