#include "fstore/registry/registry.h"

#include <filesystem>
#include <system_error>

#include "fstore/registry/postgres/postgres_registry.h"
#include "fstore/registry/sqlite/sqlite_registry.h"

namespace fstore {
namespace {

constexpr std::string_view kSqliteMemory = "sqlite::memory:";
constexpr std::string_view kSqlitePrefix = "sqlite://";

/// The database file a sqlite URI names: "sqlite:///abs/x.db" -> "/abs/x.db",
/// "sqlite://rel/x.db" -> "rel/x.db" (relative to the working directory).
Result<std::string> SqlitePath(const std::string& uri) {
  if (uri == kSqliteMemory) return std::string(":memory:");
  if (!uri.starts_with(kSqlitePrefix)) {
    return InvalidArgument("DATABASE_URL", "a SQLite registry URI looks like "
                                           "sqlite:///abs/path.db, sqlite://relative/path.db "
                                           "or sqlite::memory:, got '" + uri + "'");
  }
  std::string path = uri.substr(kSqlitePrefix.size());
  if (path == ":memory:") return path;
  if (path.empty() || path.back() == '/') {
    return InvalidArgument("DATABASE_URL",
                           "the SQLite registry URI '" + uri + "' names no database file");
  }
  return path;
}

Result<std::unique_ptr<Registry>> OpenSqlite(const std::string& uri) {
  ARROW_ASSIGN_OR_RAISE(std::string path, SqlitePath(uri));
  if (path != ":memory:") {
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
      std::filesystem::create_directories(parent, ec);
      if (ec) {
        return Unavailable("cannot create the registry directory '" + parent.string() +
                           "': " + ec.message());
      }
    }
  }
  ARROW_ASSIGN_OR_RAISE(auto registry, SqliteRegistry::Open(path));
  return std::unique_ptr<Registry>(std::move(registry));
}

}  // namespace

Result<std::unique_ptr<Registry>> RegistryFromUri(const std::string& uri) {
  // The scheme decides the backend; everything after it is the backend's.
  std::string scheme = uri.substr(0, uri.find(':'));
  if (scheme == "sqlite") return OpenSqlite(uri);
  if (scheme == "postgresql" || scheme == "postgres") {
    // libpq reads both schemes; the URL goes to it whole.
    ARROW_ASSIGN_OR_RAISE(auto registry, PostgresRegistry::Open(uri));
    return std::unique_ptr<Registry>(std::move(registry));
  }
  if (scheme.empty() || scheme.size() == uri.size()) {
    return InvalidArgument("DATABASE_URL", "the registry URI must start with a scheme "
                                           "(sqlite:// or postgresql://)");
  }
  // Only the scheme is echoed: the rest may hold credentials.
  return InvalidArgument("DATABASE_URL", "unsupported registry URI scheme '" + scheme +
                                             "': use sqlite:// or postgresql://");
}

}  // namespace fstore
