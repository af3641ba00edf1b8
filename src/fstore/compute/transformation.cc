#include "fstore/compute/transformation.h"

#include <algorithm>
#include <cctype>

#include <boost/json/parse.hpp>
#include <pg_query.h>

namespace fstore {
namespace json = boost::json;

namespace {

// We hand libpg_query "SELECT <expression>"; positions it reports are shifted
// back by the prefix so that they point into the user's text.
constexpr std::string_view kPrefix = "SELECT ";
constexpr std::string_view kField = "transformation";

Status ErrorAt(std::string message, int location_in_query) {
  int position = location_in_query - static_cast<int>(kPrefix.size());
  return MakeError(ErrorCode::kInvalidArgument, std::move(message), std::string(kField),
                   std::max(position, 1));
}

// location fields in the JSON tree are 0-based offsets into the query.
int LocationOf(const json::object& node) {
  if (auto* loc = node.if_contains("location"); loc && loc->is_int64() && loc->as_int64() >= 0) {
    return static_cast<int>(loc->as_int64()) + 1;
  }
  return static_cast<int>(kPrefix.size()) + 1;
}

std::string StringNodeValue(const json::value& v) {
  // {"String": {"sval": "x"}}
  if (auto* o = v.if_object()) {
    if (auto* s = o->if_contains("String"); s && s->is_object()) {
      if (auto* sval = s->as_object().if_contains("sval"); sval && sval->is_string()) {
        return std::string(sval->as_string());
      }
    }
    if (o->contains("A_Star")) return "*";
  }
  return {};
}

void AddDistinct(std::vector<std::string>* list, std::string value) {
  if (std::find(list->begin(), list->end(), value) == list->end()) {
    list->push_back(std::move(value));
  }
}

// libpg_query 15-4.0's JSON output drops the value of a non-positive integer
// constant ("-3", "0", "-(3)" all come out as {"ival": {}}). Read it back
// from the query text at the constant's location: an optional '-', spaces
// and '(', then the digits.
void RestoreIntegerConstants(json::value& node, std::string_view query) {
  if (auto* arr = node.if_array()) {
    for (auto& item : *arr) RestoreIntegerConstants(item, query);
    return;
  }
  auto* obj = node.if_object();
  if (obj == nullptr) return;
  if (auto* c = obj->if_contains("A_Const"); c && c->is_object()) {
    auto& konst = c->as_object();
    auto* ival = konst.if_contains("ival");
    auto* loc = konst.if_contains("location");
    if (ival && ival->is_object() && ival->as_object().empty() && loc && loc->is_int64()) {
      size_t i = static_cast<size_t>(loc->as_int64());
      bool negative = false;
      while (i < query.size() && (query[i] == '-' || query[i] == ' ' || query[i] == '(' ||
                                  query[i] == '\t' || query[i] == '\n' || query[i] == '+')) {
        if (query[i] == '-') negative = !negative;
        ++i;
      }
      int64_t value = 0;
      while (i < query.size() && std::isdigit(static_cast<unsigned char>(query[i]))) {
        value = value * 10 + (query[i] - '0');
        ++i;
      }
      ival->as_object()["ival"] = negative ? -value : value;
    }
  }
  for (auto& [key, child] : *obj) RestoreIntegerConstants(child, query);
}

class TreeWalker {
 public:
  explicit TreeWalker(ParsedTransformation* out) : out_(out) {}

  Status Walk(const json::value& v) {
    if (auto* arr = v.if_array()) {
      for (const auto& item : *arr) ARROW_RETURN_NOT_OK(Walk(item));
      return Status::OK();
    }
    const json::object* obj = v.if_object();
    if (obj == nullptr) return Status::OK();
    for (const auto& [key, child] : *obj) {
      if (key == "ColumnRef" && child.is_object()) {
        ARROW_RETURN_NOT_OK(OnColumnRef(child.as_object()));
      } else if (key == "FuncCall" && child.is_object()) {
        OnFuncCall(child.as_object());
      } else if (key == "SQLValueFunction") {
        out_->reads_clock = true;
      } else if (key == "SubLink" && child.is_object()) {
        return ErrorAt("subqueries are not supported in a transformation",
                       LocationOf(child.as_object()));
      } else if (key == "ParamRef" && child.is_object()) {
        return ErrorAt("parameters ($1) are not supported in a transformation",
                       LocationOf(child.as_object()));
      }
      ARROW_RETURN_NOT_OK(Walk(child));
    }
    return Status::OK();
  }

 private:
  Status OnColumnRef(const json::object& node) {
    std::string name;
    if (auto* fields = node.if_contains("fields"); fields && fields->is_array()) {
      for (const auto& f : fields->as_array()) {
        std::string part = StringNodeValue(f);
        if (part == "*") {
          return ErrorAt("'*' is not a column; use COUNT(*) to count rows", LocationOf(node));
        }
        if (!name.empty()) name += ".";
        name += part;
      }
    }
    if (!name.empty()) AddDistinct(&out_->column_refs, std::move(name));
    return Status::OK();
  }

  void OnFuncCall(const json::object& node) {
    std::string name;
    if (auto* names = node.if_contains("funcname"); names && names->is_array()) {
      const auto& arr = names->as_array();
      if (!arr.empty()) name = StringNodeValue(arr.back());
    }
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (name == "now" || name == "clock_timestamp" || name == "statement_timestamp" ||
        name == "transaction_timestamp" || name == "timeofday") {
      out_->reads_clock = true;
    }
    if (node.contains("over")) out_->is_window = true;
    if (!name.empty()) AddDistinct(&out_->functions, std::move(name));
  }

  ParsedTransformation* out_;
};

}  // namespace

Result<ParsedTransformation> ParseTransformation(std::string_view sql) {
  if (sql.find('\0') != std::string_view::npos) {
    return InvalidArgument(std::string(kField), "must not contain NUL bytes");
  }
  bool blank = std::all_of(sql.begin(), sql.end(),
                           [](unsigned char c) { return std::isspace(c); });
  if (blank) return InvalidArgument(std::string(kField), "is empty");

  std::string query(kPrefix);
  query.append(sql);
  PgQueryParseResult result = pg_query_parse(query.c_str());
  struct Free {
    PgQueryParseResult* r;
    ~Free() { pg_query_free_parse_result(*r); }
  } free_result{&result};

  if (result.error != nullptr) {
    std::string message = result.error->message;
    return ErrorAt(std::move(message), result.error->cursorpos > 0
                                           ? result.error->cursorpos
                                           : static_cast<int>(query.size()));
  }

  boost::system::error_code ec;
  json::value tree = json::parse(result.parse_tree, ec);
  if (ec) return Internal("libpg_query returned an unreadable parse tree: " + ec.message());
  RestoreIntegerConstants(tree, query);

  const json::array* stmts = nullptr;
  if (auto* o = tree.if_object()) {
    if (auto* s = o->if_contains("stmts"); s && s->is_array()) stmts = &s->as_array();
  }
  if (stmts == nullptr || stmts->size() != 1) {
    return InvalidArgument(std::string(kField),
                           "must be a single expression, not several statements");
  }
  const json::value* select = nullptr;
  if (auto* stmt = (*stmts)[0].as_object().if_contains("stmt"); stmt && stmt->is_object()) {
    select = stmt->as_object().if_contains("SelectStmt");
  }
  if (select == nullptr || !select->is_object()) {
    return InvalidArgument(std::string(kField), "must be an expression");
  }
  const json::object& sel = select->as_object();
  for (const char* clause : {"fromClause", "whereClause", "groupClause", "havingClause",
                             "sortClause", "limitCount", "limitOffset", "windowClause",
                             "distinctClause", "valuesLists", "intoClause", "withClause",
                             "larg", "lockingClause"}) {
    if (sel.contains(clause)) {
      return InvalidArgument(std::string(kField),
                             "must be a single expression, not a query (found a " +
                                 std::string(clause) + ")");
    }
  }
  const json::value* targets = sel.if_contains("targetList");
  if (targets == nullptr || !targets->is_array() || targets->as_array().empty()) {
    return InvalidArgument(std::string(kField), "must be an expression");
  }
  const json::array& list = targets->as_array();
  if (list.size() != 1) {
    const json::value& second = list[1];
    int loc = static_cast<int>(kPrefix.size()) + 1;
    if (auto* rt = second.as_object().if_contains("ResTarget"); rt && rt->is_object()) {
      loc = LocationOf(rt->as_object());
    }
    return ErrorAt("must be a single expression: found " + std::to_string(list.size()) +
                       " separated by commas",
                   loc);
  }
  const json::value* res_target = list[0].as_object().if_contains("ResTarget");
  if (res_target == nullptr || !res_target->is_object()) {
    return InvalidArgument(std::string(kField), "must be an expression");
  }
  const json::object& target = res_target->as_object();
  if (target.contains("name")) {
    return ErrorAt("an alias (AS ...) is not allowed: the feature's name is its column name",
                   LocationOf(target));
  }
  const json::value* expr = target.if_contains("val");
  if (expr == nullptr) return InvalidArgument(std::string(kField), "must be an expression");

  ParsedTransformation parsed;
  parsed.expression = *expr;
  TreeWalker walker(&parsed);
  ARROW_RETURN_NOT_OK(walker.Walk(*expr));
  return parsed;
}

}  // namespace fstore
