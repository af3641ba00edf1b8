#pragma once

// The PostgreSQL registry's schema, as an ordered list of migrations: the same
// tables, versions and meaning as the SQLite registry's (sqlite/migrations.h),
// in PostgreSQL's types. A migration is never edited once released: a schema
// change is a new entry at the end, here and in SQLite's list alike.
// PostgresRegistry::Migrate() applies each pending one in its own transaction,
// under an advisory lock so that servers starting at once apply it once, and
// records it in schema_migrations(version, applied_at).

#include <span>
#include <string_view>

namespace fstore {

struct PostgresMigration {
  int version;                   ///< 1, 2, 3, ... in order, no gaps
  std::string_view description;  ///< what it changes, for logs
  std::string_view sql;          ///< one or more statements, run as one script
};

/// All migrations, oldest first; the last one's version is the current schema.
std::span<const PostgresMigration> PostgresMigrations();

}  // namespace fstore
