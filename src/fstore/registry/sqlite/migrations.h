#pragma once

// The SQLite registry's schema, as an ordered list of migrations. A migration
// is never edited once released: a schema change is a new entry at the end.
// SqliteRegistry::Migrate() applies each pending one in its own transaction and
// records it in schema_migrations(version, applied_at).

#include <span>
#include <string_view>

namespace fstore {

struct SqliteMigration {
  int version;                   ///< 1, 2, 3, ... in order, no gaps
  std::string_view description;  ///< what it changes, for logs
  std::string_view sql;          ///< one or more statements, run as one script
};

/// All migrations, oldest first; the last one's version is the current schema.
std::span<const SqliteMigration> SqliteMigrations();

}  // namespace fstore
