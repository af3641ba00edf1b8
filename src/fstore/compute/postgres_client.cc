#include "fstore/compute/postgres_client.h"

#include <libpq-fe.h>
#include <pg_query.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include <arrow/type.h>
#include <arrow/util/key_value_metadata.h>
#include <boost/json/parse.hpp>


namespace fstore {
namespace json = boost::json;

namespace {

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

// libpg_query's parse of `sql`; a syntax error is InvalidArgument on `field`
// at the parser's 1-based position shifted by `prefix_length`.
Result<json::value> Parse(const std::string& sql, const std::string& field, int prefix_length) {
  PgQueryParseResult result = pg_query_parse(sql.c_str());
  struct Free {
    PgQueryParseResult* r;
    ~Free() { pg_query_free_parse_result(*r); }
  } free_result{&result};
  if (result.error != nullptr) {
    int pos = result.error->cursorpos > 0 ? result.error->cursorpos - prefix_length : 0;
    return MakeError(ErrorCode::kInvalidArgument, result.error->message, field,
                     pos > 0 ? std::optional<int>(pos) : std::nullopt);
  }
  boost::system::error_code ec;
  json::value tree = json::parse(result.parse_tree, ec);
  if (ec) return Internal("libpg_query returned an unreadable parse tree: " + ec.message());
  return tree;
}

const json::array* Statements(const json::value& tree) {
  if (auto* o = tree.if_object()) {
    if (auto* s = o->if_contains("stmts"); s && s->is_array()) return &s->as_array();
  }
  return nullptr;
}

// "DeleteStmt" -> "DELETE"
std::string StatementName(std::string_view key) {
  std::string name(key.substr(0, key.size() >= 4 && key.substr(key.size() - 4) == "Stmt"
                                     ? key.size() - 4
                                     : key.size()));
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (i > 0 && std::isupper(static_cast<unsigned char>(name[i]))) out.push_back(' ');
    out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(name[i]))));
  }
  return out;
}

// The first data-modifying statement anywhere in the tree (a WITH may hold
// one), or empty.
std::string FindModifyingStatement(const json::value& v) {
  static const std::set<std::string, std::less<>> kModifying = {"InsertStmt", "UpdateStmt",
                                                                 "DeleteStmt", "MergeStmt"};
  if (const auto* o = v.if_object()) {
    for (const auto& [key, value] : *o) {
      if (kModifying.count(key)) return StatementName(key);
      std::string found = FindModifyingStatement(value);
      if (!found.empty()) return found;
    }
  } else if (const auto* a = v.if_array()) {
    for (const auto& e : *a) {
      std::string found = FindModifyingStatement(e);
      if (!found.empty()) return found;
    }
  }
  return {};
}

Result<std::string> CheckQuery(const std::string& text) {
  const std::string field = "source.query";
  if (text.find('\0') != std::string::npos) {
    return InvalidArgument(field, "must not contain NUL bytes");
  }
  if (Trim(text).empty()) return InvalidArgument(field, "is empty: expected a SELECT statement");
  ARROW_ASSIGN_OR_RAISE(json::value tree, Parse(text, field, 0));
  const json::array* stmts = Statements(tree);
  if (stmts == nullptr || stmts->empty()) {
    return InvalidArgument(field, "holds no statement: expected a SELECT statement");
  }
  if (stmts->size() != 1) {
    return InvalidArgument(field, "must be a single SELECT statement, not " +
                                      std::to_string(stmts->size()) + " statements");
  }
  const json::object& raw = (*stmts)[0].as_object();
  const json::object* stmt = nullptr;
  if (auto* s = raw.if_contains("stmt"); s && s->is_object()) stmt = &s->as_object();
  if (stmt == nullptr || stmt->empty()) return InvalidArgument(field, "must be a SELECT statement");
  const auto& [kind, body] = *stmt->begin();
  if (kind != "SelectStmt") {
    return InvalidArgument(field, "must be a SELECT statement, not " + StatementName(kind));
  }
  const json::object& select = body.as_object();
  if (select.contains("intoClause")) {
    return InvalidArgument(field, "must not be SELECT INTO (it creates a table)");
  }
  if (select.contains("lockingClause")) {
    return InvalidArgument(field, "must not lock rows (FOR UPDATE / FOR SHARE)");
  }
  std::string modifying = FindModifyingStatement(body);
  if (!modifying.empty()) {
    return InvalidArgument(field, "must only read: it holds " + modifying + " in a WITH");
  }
  // The statement's own text: without the trailing semicolon or what follows it.
  int64_t location = 0, length = 0;
  if (auto* l = raw.if_contains("stmt_location"); l && l->is_int64()) location = l->as_int64();
  if (auto* l = raw.if_contains("stmt_len"); l && l->is_int64()) length = l->as_int64();
  std::string statement =
      length > 0 ? text.substr(static_cast<size_t>(location), static_cast<size_t>(length))
                 : text.substr(static_cast<size_t>(location));
  statement = Trim(statement);
  while (!statement.empty() && statement.back() == ';') statement = Trim(statement.substr(0, statement.size() - 1));
  return statement;
}

Result<std::vector<std::string>> CheckTable(const std::string& text) {
  const std::string field = "source.table";
  auto not_a_name = [&]() {
    return InvalidArgument(field, "'" + text + "' is not a table name: expected name or "
                                                "schema.name (quote a name with \"...\" to keep "
                                                "its case)");
  };
  if (text.find('\0') != std::string::npos || Trim(text).empty()) return not_a_name();
  const std::string prefix = "SELECT * FROM ";
  auto tree = Parse(prefix + text, field, static_cast<int>(prefix.size()));
  if (!tree.ok()) return not_a_name();
  const json::array* stmts = Statements(*tree);
  if (stmts == nullptr || stmts->size() != 1) return not_a_name();
  const json::value* select = nullptr;
  if (auto* s = (*stmts)[0].as_object().if_contains("stmt"); s && s->is_object()) {
    select = s->as_object().if_contains("SelectStmt");
  }
  if (select == nullptr || !select->is_object()) return not_a_name();
  for (const auto& [key, value] : select->as_object()) {
    if (key != "targetList" && key != "fromClause" && key != "limitOption" && key != "op") {
      return not_a_name();
    }
  }
  const json::value* from = select->as_object().if_contains("fromClause");
  if (from == nullptr || !from->is_array() || from->as_array().size() != 1) return not_a_name();
  const json::value* range = from->as_array()[0].as_object().if_contains("RangeVar");
  if (range == nullptr || !range->is_object()) return not_a_name();
  const json::object& rv = range->as_object();
  if (rv.contains("alias")) return not_a_name();
  if (auto* inh = rv.if_contains("inh"); inh == nullptr || !inh->is_bool() || !inh->as_bool()) {
    return not_a_name();  // ONLY name
  }
  std::vector<std::string> parts;
  for (const char* key : {"catalogname", "schemaname", "relname"}) {
    if (auto* p = rv.if_contains(key); p && p->is_string() && !p->as_string().empty()) {
      parts.emplace_back(p->as_string());
    }
  }
  if (parts.empty()) return not_a_name();
  return parts;
}

bool IsConnectionSqlState(const char* state) {
  if (state == nullptr) return false;
  std::string_view s(state);
  return s.rfind("08", 0) == 0 || s.rfind("57", 0) == 0 || s.rfind("53", 0) == 0;
}

}  // namespace

std::string PostgresRelationField(const SourceDefinition& source) {
  return source.query.empty() ? "source.table" : "source.query";
}

Result<PostgresRelation> ParsePostgresRelation(const SourceDefinition& source) {
  PostgresRelation relation;
  if (!source.query.empty() && !source.table.empty()) {
    return InvalidArgument("source", "a postgres source takes exactly one of query or table, "
                                     "not both");
  }
  if (!source.query.empty()) {
    ARROW_ASSIGN_OR_RAISE(relation.query, CheckQuery(source.query));
  } else if (!source.table.empty()) {
    ARROW_ASSIGN_OR_RAISE(relation.table, CheckTable(source.table));
  } else {
    return InvalidArgument("source", "a postgres source needs a query (a SELECT) or a table");
  }
  return relation;
}

Status CheckPostgresUrl(const std::string& url) {
  const std::string field = "source.connection";
  if (url.empty()) {
    return InvalidArgument(field, "is required for a postgres source: a URL such as "
                                  "postgresql://user@host:5432/db");
  }
  if (url.rfind("postgresql://", 0) != 0 && url.rfind("postgres://", 0) != 0) {
    return InvalidArgument(field, "must be a postgresql:// URL, not '" +
                                      RedactedPostgresUrl(url) + "'");
  }
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  if (options == nullptr) {
    std::string message = error != nullptr ? Trim(error) : "unparsable";
    if (error != nullptr) PQfreemem(error);
    return InvalidArgument(field, "is not a valid PostgreSQL URL: " + message);
  }
  PQconninfoFree(options);
  return Status::OK();
}

std::string RedactedPostgresUrl(const std::string& url) {
  std::string out = url;
  size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    // user:password@host
    size_t start = scheme + 3;
    size_t at = out.find('@', start);
    size_t slash = out.find('/', start);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
      size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // ...?password=...
  for (size_t pw = out.find("password="); pw != std::string::npos;
       pw = out.find("password=", pw + 12)) {
    size_t begin = pw + 9;
    size_t end = out.find('&', begin);
    out.replace(begin, (end == std::string::npos ? out.size() : end) - begin, "***");
  }
  return out;
}

void PostgresResultFree::operator()(pg_result* result) const { PQclear(result); }

Result<std::unique_ptr<PostgresConnection>> PostgresConnection::Open(const std::string& url) {
  ARROW_RETURN_NOT_OK(CheckPostgresUrl(url));
  // The URL comes after our defaults so that its own settings win.
  const char* keys[] = {"connect_timeout", "fallback_application_name", "dbname", nullptr};
  const char* values[] = {"10", "fstore", url.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn == nullptr) return Unavailable("cannot connect to PostgreSQL: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string reason = Trim(PQerrorMessage(conn));
    PQfinish(conn);
    return Unavailable("cannot connect to the PostgreSQL source at " + RedactedPostgresUrl(url) +
                       ": " + reason);
  }
  std::unique_ptr<PostgresConnection> out(new PostgresConnection(conn));
  // UTC timestamps; PostgreSQL's default text forms (what the embedded engine
  // reproduces); nothing written by a source read.
  ARROW_RETURN_NOT_OK(out->Execute(
      "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; "
      "SET extra_float_digits = 1; SET client_encoding = 'UTF8'; "
      "SET default_transaction_read_only = on",
      "source.connection"));
  return out;
}

PostgresConnection::~PostgresConnection() { PQfinish(conn_); }

Result<PostgresResult> PostgresConnection::Execute(const std::string& sql,
                                                   const std::vector<PostgresParam>& params,
                                                   bool binary_results, const std::string& field) {
  std::vector<Oid> types;
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  for (const auto& p : params) {
    types.push_back(p.type_oid);
    values.push_back(p.binary.data());
    lengths.push_back(static_cast<int>(p.binary.size()));
    formats.push_back(1);
  }
  PostgresResult result(PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()),
                                     types.data(), values.data(), lengths.data(), formats.data(),
                                     binary_results ? 1 : 0));
  ExecStatusType status = PQresultStatus(result.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return result;
  if (PQstatus(conn_) == CONNECTION_BAD || result == nullptr) {
    return Unavailable("the connection to the PostgreSQL source was lost: " +
                       Trim(PQerrorMessage(conn_)));
  }
  const char* state = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(result.get(), PG_DIAG_MESSAGE_PRIMARY);
  const char* detail = PQresultErrorField(result.get(), PG_DIAG_MESSAGE_DETAIL);
  const char* hint = PQresultErrorField(result.get(), PG_DIAG_MESSAGE_HINT);
  std::string message = "PostgreSQL: ";
  message += primary ? primary : Trim(PQresultErrorMessage(result.get()));
  if (detail) message += std::string(" (") + detail + ")";
  if (hint) message += std::string(" hint: ") + hint;
  if (IsConnectionSqlState(state)) return Unavailable(message);
  return Unprocessable(field, message);
}

Status PostgresConnection::Execute(const std::string& sql, const std::string& field) {
  // Several statements in one string need the simple protocol.
  PostgresResult result(PQexec(conn_, sql.c_str()));
  ExecStatusType status = PQresultStatus(result.get());
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) return Status::OK();
  if (PQstatus(conn_) == CONNECTION_BAD || result == nullptr) {
    return Unavailable("the connection to the PostgreSQL source was lost: " +
                       Trim(PQerrorMessage(conn_)));
  }
  const char* state = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
  std::string message = "PostgreSQL: " + Trim(PQresultErrorMessage(result.get()));
  if (IsConnectionSqlState(state)) return Unavailable(message);
  return Unprocessable(field, message);
}

Result<std::string> PostgresConnection::QuoteIdentifier(std::string_view name) {
  char* quoted = PQescapeIdentifier(conn_, name.data(), name.size());
  if (quoted == nullptr) {
    return InvalidArgument("source", "cannot quote '" + std::string(name) +
                                         "': " + Trim(PQerrorMessage(conn_)));
  }
  std::string out(quoted);
  PQfreemem(quoted);
  return out;
}

Result<std::string> PostgresConnection::FromItem(const PostgresRelation& relation) {
  if (!relation.query.empty()) return "(\n" + relation.query + "\n)";
  std::string out;
  for (const auto& part : relation.table) {
    if (!out.empty()) out += '.';
    ARROW_ASSIGN_OR_RAISE(std::string quoted, QuoteIdentifier(part));
    out += quoted;
  }
  return out;
}

PostgresColumnType PostgresTypeOf(uint32_t oid) {
  using arrow::DataType;
  static const std::map<uint32_t, std::pair<std::shared_ptr<DataType>, const char*>> kScalars = {
      {16, {arrow::boolean(), "bool"}},
      {21, {arrow::int16(), "int2"}},
      {23, {arrow::int32(), "int4"}},
      {20, {arrow::int64(), "int8"}},
      {700, {arrow::float32(), "float4"}},
      {701, {arrow::float64(), "float8"}},
      {1700, {arrow::float64(), "numeric"}},
      {25, {arrow::utf8(), "text"}},
      {1043, {arrow::utf8(), "varchar"}},
      {1042, {arrow::utf8(), "bpchar"}},
      {19, {arrow::utf8(), "name"}},
      {1114, {arrow::timestamp(arrow::TimeUnit::MICRO), "timestamp"}},
      {1184, {arrow::timestamp(arrow::TimeUnit::MICRO, "UTC"), "timestamptz"}},
      {1082, {arrow::date32(), "date"}},
  };
  // array type oid -> element type oid
  static const std::map<uint32_t, uint32_t> kArrays = {
      {1000, 16},  {1005, 21},  {1007, 23},   {1016, 20},   {1021, 700},
      {1022, 701}, {1231, 1700}, {1009, 25},  {1015, 1043}, {1014, 1042},
      {1003, 19},  {1115, 1114}, {1185, 1184}, {1182, 1082},
  };
  if (auto it = kScalars.find(oid); it != kScalars.end()) {
    return {it->second.first, it->second.second};
  }
  if (auto it = kArrays.find(oid); it != kArrays.end()) {
    const auto& element = kScalars.at(it->second);
    return {arrow::list(element.first), std::string("_") + element.second};
  }
  return {nullptr, "oid:" + std::to_string(oid)};
}

Result<std::shared_ptr<arrow::Schema>> PostgresResultSchema(const pg_result* result,
                                                            const std::string& field) {
  std::vector<std::shared_ptr<arrow::Field>> fields;
  std::set<std::string> names;
  const int n = PQnfields(result);
  for (int i = 0; i < n; ++i) {
    std::string name = PQfname(result, i);
    if (!names.insert(name).second) {
      return Unprocessable(field, "column '" + name + "' appears twice in the source: give "
                                                      "the columns distinct names");
    }
    PostgresColumnType type = PostgresTypeOf(PQftype(result, i));
    fields.push_back(arrow::field(name, type.arrow_type ? type.arrow_type : arrow::utf8(),
                                  /*nullable=*/true,
                                  arrow::key_value_metadata({kPostgresTypeKey}, {type.name})));
  }
  return arrow::schema(fields);
}

Result<std::shared_ptr<arrow::Schema>> ReadPostgresSchema(const SourceDefinition& source) {
  ARROW_ASSIGN_OR_RAISE(PostgresRelation relation, ParsePostgresRelation(source));
  ARROW_ASSIGN_OR_RAISE(auto conn, PostgresConnection::Open(source.connection));
  ARROW_ASSIGN_OR_RAISE(std::string from, conn->FromItem(relation));
  const std::string field = PostgresRelationField(source);
  ARROW_ASSIGN_OR_RAISE(auto result,
                        conn->Execute("SELECT * FROM " + from + " AS q LIMIT 0", {}, true, field));
  return PostgresResultSchema(result.get(), field);
}

}  // namespace fstore
