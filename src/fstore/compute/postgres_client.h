#pragma once

// The libpq edge of a feature set whose source is PostgreSQL
// (`{"type": "postgres", "query": "SELECT ...", "connection": "postgresql://..."}`
// or `"table": "schema.table"` instead of the query). Shared by the
// definition-time schema read (source_schema.h) and the materializer's row
// reader (materialize/postgres_source.h); it lives in compute because the
// schema read does. No libpq type leaks out except the opaque pg_conn /
// pg_result that libpq-fe.h names PGconn / PGresult.
//
// Session: every connection runs with TimeZone UTC, DateStyle ISO and
// PostgreSQL's default float output, so that timestamps are UTC and values
// computed in PostgreSQL read the way the embedded engine computes them.
//
// Types: a source column's PostgreSQL type maps to one Arrow type
//   smallint -> int16, integer -> int32, bigint -> int64,
//   real -> float32, double precision -> float64, numeric -> float64 (rounded),
//   text, varchar, char(n), name -> utf8, boolean -> boolean,
//   timestamp -> timestamp[us] (taken as UTC), timestamptz -> timestamp[us, UTC],
//   date -> date32, and one-dimensional arrays of these -> list<...>.
// Any other type (json, uuid, interval, ...) is read as its text form (utf8).
// Each schema field carries its PostgreSQL type name in its metadata
// (kPostgresTypeKey), e.g. "int4", "_text", "timestamptz".

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <arrow/type_fwd.h>

#include "fstore/core/status.h"
#include "fstore/registry/definitions.h"

struct pg_conn;
struct pg_result;

namespace fstore {

/// The schema field metadata key holding a column's PostgreSQL type name.
inline constexpr const char* kPostgresTypeKey = "postgres_type";

/// What a postgres source reads: its checked query, or its table's name parts.
struct PostgresRelation {
  /// The SELECT, without trailing semicolons or whitespace; empty for a table.
  std::string query;
  /// [catalog.][schema.]name, case-folded as PostgreSQL does for unquoted
  /// names ("Public.Events" -> public, events; "\"Events\"" stays Events).
  std::vector<std::string> table;
};

/// Checks a postgres source's query or table without a server: the query
/// must be one SELECT statement (no SELECT INTO, no FOR UPDATE, no INSERT/
/// UPDATE/DELETE/MERGE in a WITH), the table a [schema.]name. Errors are
/// InvalidArgument on "source.query" (with PostgreSQL's parser message and the
/// 1-based position) or "source.table".
Result<PostgresRelation> ParsePostgresRelation(const SourceDefinition& source);

/// Checks a connection URL without connecting: postgresql:// or postgres://,
/// parsed by libpq. InvalidArgument on "source.connection".
Status CheckPostgresUrl(const std::string& url);

/// `url` with its password replaced by "***", for messages and logs.
std::string RedactedPostgresUrl(const std::string& url);

struct PostgresResultFree {
  void operator()(pg_result* result) const;
};
/// A libpq result (PGresult), freed on destruction.
using PostgresResult = std::unique_ptr<pg_result, PostgresResultFree>;

/// One parameter of a query, sent in binary with an explicit type.
struct PostgresParam {
  uint32_t type_oid = 0;
  std::string binary;  ///< network byte order
};

/// A session with a PostgreSQL server. Not thread-safe: one user at a time.
class PostgresConnection {
 public:
  /// Connects to `url` (connect_timeout 10 s unless the URL sets one) and
  /// sets the session (see the top of this file). A failure is Unavailable,
  /// naming the URL without its password and libpq's reason.
  static Result<std::unique_ptr<PostgresConnection>> Open(const std::string& url);
  ~PostgresConnection();
  PostgresConnection(const PostgresConnection&) = delete;
  PostgresConnection& operator=(const PostgresConnection&) = delete;

  /// Runs a command or query; results in binary when `binary_results`.
  /// Errors: the connection lost or an SQLSTATE of class 08 / 57 is
  /// Unavailable; any other server error is Unprocessable on `field` with
  /// PostgreSQL's message (and its detail/hint).
  Result<PostgresResult> Execute(const std::string& sql, const std::vector<PostgresParam>& params,
                                 bool binary_results, const std::string& field);
  Status Execute(const std::string& sql, const std::string& field);

  /// `name` as a quoted SQL identifier (PQescapeIdentifier).
  Result<std::string> QuoteIdentifier(std::string_view name);

  /// The relation as a FROM item: "(\n<query>\n)" or the quoted table name.
  Result<std::string> FromItem(const PostgresRelation& relation);

  pg_conn* native() { return conn_; }

 private:
  explicit PostgresConnection(pg_conn* conn) : conn_(conn) {}
  pg_conn* conn_;
};

/// The Arrow type fstore reads a PostgreSQL type as (by pg_type oid), with
/// its type name; null type for a type read as text.
struct PostgresColumnType {
  std::shared_ptr<arrow::DataType> arrow_type;  ///< null: not supported, read as text
  std::string name;                             ///< "int4", "_float8", or "oid:<n>"
};
PostgresColumnType PostgresTypeOf(uint32_t oid);

/// The columns of a result (its names and types, PostgresTypeOf; a type read
/// as text is utf8 here), each with kPostgresTypeKey metadata. A column name
/// that appears twice is Unprocessable on `field`.
Result<std::shared_ptr<arrow::Schema>> PostgresResultSchema(const pg_result* result,
                                                            const std::string& field);

/// The source's columns: runs `SELECT * FROM (<query>) AS q LIMIT 0` (or the
/// table). Connection failures are Unavailable; SQL errors (a missing table, a
/// bad column) Unprocessable on source.query / source.table.
Result<std::shared_ptr<arrow::Schema>> ReadPostgresSchema(const SourceDefinition& source);

/// The field a postgres source's SQL errors are reported on.
std::string PostgresRelationField(const SourceDefinition& source);

}  // namespace fstore
