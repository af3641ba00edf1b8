#include "fstore/registry/postgres/migrations.h"

#include <array>

namespace fstore {
namespace {

// The SQLite schema (sqlite/migrations.cc) in PostgreSQL's types: each table
// keeps the current version of an object, *_versions every version ever
// committed; `body` is the object's full JSON (codec.h ToJson) as text, not
// jsonb, so that it reads back byte for byte (jsonb would rewrite 1e3 as 1000).
// Times are UTC microseconds (BIGINT). Text that queries compare or sort on is
// COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
// Deletion is soft (deleted_at set), so a name is unique only among live rows.
// Unique constraints and indexes on a name have "name" in their own name:
// Commit() maps a violation to AlreadyExists on the field the index names.
constexpr std::string_view kV1Schema = R"sql(
CREATE TABLE entities (
  id         TEXT COLLATE "C" PRIMARY KEY,
  name       TEXT COLLATE "C" NOT NULL CONSTRAINT entities_name_key UNIQUE,
  version    BIGINT NOT NULL,
  body       TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);

CREATE TABLE feature_sets (
  id         TEXT COLLATE "C" PRIMARY KEY,
  name       TEXT COLLATE "C" NOT NULL,
  version    BIGINT NOT NULL,
  body       TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  deleted_at BIGINT
);
CREATE UNIQUE INDEX feature_sets_live_name ON feature_sets (name) WHERE deleted_at IS NULL;
CREATE INDEX feature_sets_name ON feature_sets (name, deleted_at);

CREATE TABLE feature_set_versions (
  id         TEXT COLLATE "C" NOT NULL REFERENCES feature_sets (id),
  version    BIGINT NOT NULL,
  body       TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (id, version)
);

CREATE TABLE features (
  id             TEXT COLLATE "C" PRIMARY KEY,
  feature_set_id TEXT COLLATE "C" NOT NULL REFERENCES feature_sets (id),
  name           TEXT COLLATE "C" NOT NULL,
  version        BIGINT NOT NULL,
  body           TEXT NOT NULL,
  created_at     BIGINT NOT NULL,
  updated_at     BIGINT NOT NULL,
  deleted_at     BIGINT
);
CREATE UNIQUE INDEX features_live_name ON features (feature_set_id, name)
  WHERE deleted_at IS NULL;

CREATE TABLE feature_versions (
  id         TEXT COLLATE "C" NOT NULL REFERENCES features (id),
  version    BIGINT NOT NULL,
  body       TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (id, version)
);

-- One row: the change sequence, bumped once per commit. Commit() locks this
-- row first (SELECT ... FOR UPDATE), which serialises definition writes.
CREATE TABLE registry_state (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  change_seq BIGINT NOT NULL
);
INSERT INTO registry_state (id, change_seq) VALUES (1, 0);
)sql";

// Materialization jobs and per-feature-set scheduling state, as SQLite's
// migration 2: a job row is the job's current record, replaced by id;
// feature_set_id is not a foreign key (a job record outlives its definition);
// a missing feature_set_state row, or a NULL in it, means "never".
constexpr std::string_view kV2Schema = R"sql(
CREATE TABLE materialization_jobs (
  id             TEXT COLLATE "C" PRIMARY KEY,
  feature_set_id TEXT COLLATE "C" NOT NULL,
  status         TEXT COLLATE "C" NOT NULL,
  created_at     BIGINT NOT NULL,
  body           TEXT NOT NULL
);
CREATE INDEX materialization_jobs_feature_set
  ON materialization_jobs (feature_set_id, created_at);
CREATE INDEX materialization_jobs_status ON materialization_jobs (status, created_at);

CREATE TABLE feature_set_state (
  feature_set_id      TEXT COLLATE "C" PRIMARY KEY,
  watermark           BIGINT,
  last_scheduled_slot BIGINT
);
)sql";

// API keys and the audit log, as SQLite's migration 3: a key row, written
// once and then only revoked, holds a salted hash (never the secret)
// and its feature sets as a JSON array of names. Audit entries are
// append-only; seq comes from an identity sequence, so concurrent appends
// from several servers get distinct values (increasing in the order they
// were drawn; a rolled-back append leaves a gap).
constexpr std::string_view kV3Schema = R"sql(
CREATE TABLE api_keys (
  id           TEXT COLLATE "C" PRIMARY KEY,
  name         TEXT NOT NULL,
  role         TEXT COLLATE "C" NOT NULL,
  feature_sets TEXT NOT NULL,
  salt         TEXT NOT NULL,
  hash         TEXT NOT NULL,
  created_at   BIGINT NOT NULL,
  revoked_at   BIGINT
);
CREATE INDEX api_keys_created ON api_keys (created_at, id);

CREATE TABLE audit_log (
  seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  time    BIGINT NOT NULL,
  key_id  TEXT COLLATE "C" NOT NULL,
  action  TEXT COLLATE "C" NOT NULL,
  target  TEXT COLLATE "C" NOT NULL,
  outcome TEXT COLLATE "C" NOT NULL,
  status  INTEGER NOT NULL,
  detail  TEXT NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time);
)sql";

// Per-run feature statistics and daily usage counts, as SQLite's migration 4:
// a statistics row is replaced by (job_id, feature), its body opaque text; a
// usage row is a running sum, added to in place (INSERT ... ON CONFLICT DO
// UPDATE, atomic under concurrent servers); feature is '' on a feature set's
// own row.
constexpr std::string_view kV4Schema = R"sql(
CREATE TABLE feature_statistics (
  job_id           TEXT COLLATE "C" NOT NULL,
  feature          TEXT COLLATE "C" NOT NULL,
  feature_set_id   TEXT COLLATE "C" NOT NULL,
  feature_set_name TEXT COLLATE "C" NOT NULL,
  computed_at      BIGINT NOT NULL,
  body             TEXT NOT NULL,
  PRIMARY KEY (job_id, feature)
);
CREATE INDEX feature_statistics_computed ON feature_statistics (computed_at);
CREATE INDEX feature_statistics_feature_set
  ON feature_statistics (feature_set_id, computed_at);

CREATE TABLE usage_daily (
  day            TEXT COLLATE "C" NOT NULL,
  key_id         TEXT COLLATE "C" NOT NULL,
  feature_set    TEXT COLLATE "C" NOT NULL,
  feature        TEXT COLLATE "C" NOT NULL,
  requests       BIGINT NOT NULL,
  entities       BIGINT NOT NULL,
  entities_found BIGINT NOT NULL,
  PRIMARY KEY (day, key_id, feature_set, feature)
);
)sql";

constexpr std::array kMigrations = {
    PostgresMigration{1, "entities, feature sets, features and their versions", kV1Schema},
    PostgresMigration{2, "materialization jobs, watermarks and schedule slots", kV2Schema},
    PostgresMigration{3, "api keys and the audit log", kV3Schema},
    PostgresMigration{4, "feature statistics and daily usage", kV4Schema},
};

}  // namespace

std::span<const PostgresMigration> PostgresMigrations() { return kMigrations; }

}  // namespace fstore
