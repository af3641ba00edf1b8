#pragma once

// A feature's `transformation`: one PostgreSQL scalar expression (optionally a
// window aggregate with OVER), parsed by libpg_query (the PostgreSQL 15
// parser). Parsing happens when a feature is defined, so that a syntax error
// is reported then, with the parser's message and the character position in
// the expression. Binding and evaluation over Arrow batches build on this.

#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include "fstore/core/status.h"

namespace fstore {

struct ParsedTransformation {
  /// The expression node of PostgreSQL's parse tree (libpg_query's JSON form).
  boost::json::value expression;
  /// Column references, distinct, in order of first appearance; a qualified
  /// reference keeps its dots ("t.amount").
  std::vector<std::string> column_refs;
  /// Called functions, distinct, lower-case, without the pg_catalog schema.
  std::vector<std::string> functions;
  /// An OVER (...) window appears.
  bool is_window = false;
  /// Reads the clock (current_date, current_timestamp, now(), localtimestamp...).
  bool reads_clock = false;
};

/// Parses `sql` as a single expression. Errors are InvalidArgument with field
/// "transformation" and the 1-based character position within `sql`: syntax
/// errors (PostgreSQL's message), more than one expression, a whole query
/// ("SELECT ... FROM"), aliases, subqueries, and NUL bytes.
Result<ParsedTransformation> ParseTransformation(std::string_view sql);

}  // namespace fstore
