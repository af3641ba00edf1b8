#include "fstore/core/text.h"
#include "fstore/compute/expression.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <arrow/compute/initialize.h>
#include <boost/json.hpp>

#include "fstore/compute/internal/pg_datetime.h"

namespace fstore {
namespace expression_internal {

namespace json = boost::json;
namespace cp = arrow::compute;
using arrow::Datum;

// ---------------------------------------------------------------------------
// Types

enum class PgType {
  kUnknown,  // an untyped string literal or NULL, resolved by its context
  kBool,
  kInt4,  // integer and smallint
  kInt8,
  kFloat8,  // double precision and real
  kNumeric,
  kText,
  kDate,
  kTimestamp,
  kTimestampTz,
  kInterval,
};

const char* PgName(PgType t) {
  switch (t) {
    case PgType::kUnknown: return "unknown";
    case PgType::kBool: return "boolean";
    case PgType::kInt4: return "integer";
    case PgType::kInt8: return "bigint";
    case PgType::kFloat8: return "double precision";
    case PgType::kNumeric: return "numeric";
    case PgType::kText: return "text";
    case PgType::kDate: return "date";
    case PgType::kTimestamp: return "timestamp without time zone";
    case PgType::kTimestampTz: return "timestamp with time zone";
    case PgType::kInterval: return "interval";
  }
  return "unknown";
}

std::shared_ptr<arrow::DataType> ArrowTypeOf(PgType t) {
  switch (t) {
    case PgType::kBool: return arrow::boolean();
    case PgType::kInt4:
    case PgType::kInt8: return arrow::int64();
    case PgType::kFloat8:
    case PgType::kNumeric: return arrow::float64();
    case PgType::kUnknown:
    case PgType::kText: return arrow::utf8();
    case PgType::kDate: return arrow::date32();
    case PgType::kTimestamp:
    case PgType::kTimestampTz: return arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
    case PgType::kInterval: return arrow::month_day_nano_interval();
  }
  return arrow::utf8();
}

bool IsNumber(PgType t) {
  return t == PgType::kInt4 || t == PgType::kInt8 || t == PgType::kFloat8 ||
         t == PgType::kNumeric;
}
bool IsInteger(PgType t) { return t == PgType::kInt4 || t == PgType::kInt8; }
bool IsDateTime(PgType t) {
  return t == PgType::kDate || t == PgType::kTimestamp || t == PgType::kTimestampTz;
}
bool IsTimestamp(PgType t) { return t == PgType::kTimestamp || t == PgType::kTimestampTz; }
int NumberRank(PgType t) {
  switch (t) {
    case PgType::kInt4: return 0;
    case PgType::kInt8: return 1;
    case PgType::kNumeric: return 2;
    case PgType::kFloat8: return 3;
    default: return -1;
  }
}

// ---------------------------------------------------------------------------
// Nodes

struct Frame {
  const EvalContext* ctx = nullptr;
  int64_t length = 0;
  const std::vector<Datum>* columns = nullptr;
  /// Rows whose value is needed (boolean, no nulls); null means all rows.
  /// Operations that can fail ignore the other rows, as PostgreSQL's lazy
  /// CASE/COALESCE/AND/OR would never have computed them.
  std::shared_ptr<arrow::Array> mask;
};

using EvalFn = std::function<Result<Datum>(const Frame&)>;

struct Node {
  PgType type = PgType::kUnknown;
  int position = 1;
  /// The node or one below raises errors for some values (division, casts...).
  bool can_fail = false;
  bool reads_clock = false;
  /// Known at compile time (a literal, or folded from literals).
  std::shared_ptr<arrow::Scalar> constant;
  /// An untyped literal (string or NULL) whose type its context decides.
  bool unknown_literal = false;
  EvalFn eval;
};

}  // namespace expression_internal

namespace {

using namespace expression_internal;  // NOLINT: this file implements it
namespace json = boost::json;
namespace cp = arrow::compute;
using arrow::Datum;
using NodePtr = std::shared_ptr<Node>;

constexpr int kPrefixLength = 7;  // "SELECT ", which transformation.cc prepends
constexpr const char* kField = "transformation";

Status CompileError(int position, std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(message), kField, position);
}
Status UnknownColumn(int position, std::string message) {
  return MakeError(ErrorCode::kUnprocessable, std::move(message), kField, position);
}
Status RunError(int position, std::string message) {
  return MakeError(ErrorCode::kUnprocessable, std::move(message), kField, position);
}

int PositionOf(const json::object& node, int fallback) {
  if (auto* loc = node.if_contains("location"); loc && loc->is_int64() && loc->as_int64() >= 0) {
    return std::max(static_cast<int>(loc->as_int64()) - kPrefixLength + 1, 1);
  }
  return fallback;
}

// {"String": {"sval": "x"}} -> "x"
std::string StringValue(const json::value& v) {
  if (auto* o = v.if_object()) {
    if (auto* s = o->if_contains("String"); s && s->is_object()) {
      if (auto* sval = s->as_object().if_contains("sval"); sval && sval->is_string()) {
        return std::string(sval->as_string());
      }
      return "";
    }
  }
  return "";
}

// The node's type name and its fields: {"A_Const": {...}} -> ("A_Const", {...}).
std::pair<std::string, const json::object*> Unwrap(const json::value& v) {
  if (auto* o = v.if_object(); o && o->size() == 1) {
    const auto& [key, inner] = *o->begin();
    if (inner.is_object()) return {std::string(key), &inner.as_object()};
  }
  return {"", nullptr};
}

// A child node, or null (which binds to an error) when the tree lacks it.
const json::value& Child(const json::object& o, const char* key) {
  static const json::value kMissing;
  if (auto* v = o.if_contains(key)) return *v;
  return kMissing;
}

const json::array* ArrayField(const json::object& o, const char* key) {
  if (auto* v = o.if_contains(key); v && v->is_array()) return &v->as_array();
  return nullptr;
}

std::string StringField(const json::object& o, const char* key) {
  if (auto* v = o.if_contains(key); v && v->is_string()) return std::string(v->as_string());
  return "";
}

// The last name of a qualified name list (pg_catalog.int4 -> int4), lower-case.
std::string LastName(const json::array* names) {
  if (names == nullptr || names->empty()) return "";
  return AsciiLower(StringValue(names->back()));
}

// ---------------------------------------------------------------------------
// Evaluation helpers

Result<Datum> Call(const std::string& name, const std::vector<Datum>& args,
                   const cp::FunctionOptions* options = nullptr) {
  return cp::CallFunction(name, args, options);
}

Result<std::shared_ptr<arrow::Array>> ToArray(const Datum& d, int64_t length) {
  if (d.is_array()) return d.make_array();
  if (d.is_scalar()) return arrow::MakeArrayFromScalar(*d.scalar(), length);
  return Status::Invalid("expected an array or a scalar");
}

// PostgreSQL's message for an Arrow compute error of a checked kernel.
Status MapRunError(const Status& st, int position, const std::string& overflow_message) {
  if (ErrorOf(st) != nullptr) return st;
  std::string m = AsciiLower(st.message());
  if (m.find("divide by zero") != std::string::npos) return RunError(position, "division by zero");
  if (m.find("overflow") != std::string::npos) return RunError(position, overflow_message);
  if (m.find("logarithm of zero") != std::string::npos) {
    return RunError(position, "cannot take logarithm of zero");
  }
  if (m.find("logarithm of negative") != std::string::npos) {
    return RunError(position, "cannot take logarithm of a negative number");
  }
  if (m.find("square root of negative") != std::string::npos) {
    return RunError(position, "cannot take square root of a negative number");
  }
  return RunError(position, st.message());
}

Result<Datum> Checked(Result<Datum> r, int position, const std::string& overflow_message) {
  if (!r.ok()) return MapRunError(r.status(), position, overflow_message);
  return r;
}

// Nulls out the rows not in the frame's mask, so that a checked kernel skips them.
Result<Datum> ActiveOnly(const Frame& f, const Datum& d) {
  if (!f.mask) return d;
  std::shared_ptr<arrow::Scalar> null = arrow::MakeNullScalar(d.type());
  return Call("if_else", {Datum(f.mask), d, Datum(null)});
}

Result<Datum> CastDatum(const Datum& d, const std::shared_ptr<arrow::DataType>& to) {
  if (d.type()->Equals(*to)) return d;
  cp::CastOptions options = cp::CastOptions::Safe(to);
  // bigint -> double precision rounds to the nearest double, as PostgreSQL's.
  options.allow_float_truncate = arrow::is_floating(to->id());
  return cp::Cast(d, options);
}

std::shared_ptr<arrow::Scalar> BoolScalar(bool v) { return std::make_shared<arrow::BooleanScalar>(v); }

// True where `d` is true; false where false or null.
Result<Datum> TrueOnly(const Datum& d) { return Call("coalesce", {d, Datum(BoolScalar(false))}); }

Result<std::shared_ptr<arrow::Array>> AndMasks(const std::shared_ptr<arrow::Array>& outer,
                                               const Datum& inner, int64_t length) {
  ARROW_ASSIGN_OR_RAISE(Datum t, TrueOnly(inner));
  if (outer) {
    ARROW_ASSIGN_OR_RAISE(t, Call("and", {Datum(outer), t}));
  }
  return ToArray(t, length);
}

pg::Interval ToPg(const arrow::MonthDayNanoIntervalType::MonthDayNanos& v) {
  return pg::Interval{v.months, v.days, v.nanoseconds / 1000};
}

std::optional<arrow::MonthDayNanoIntervalType::MonthDayNanos> FromPg(const pg::Interval& v) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  constexpr int64_t kMaxMicros = std::numeric_limits<int64_t>::max() / 1000;
  if (std::llabs(v.months) > kMax || std::llabs(v.days) > kMax || std::llabs(v.micros) > kMaxMicros) {
    return std::nullopt;
  }
  return arrow::MonthDayNanoIntervalType::MonthDayNanos{static_cast<int32_t>(v.months),
                                                        static_cast<int32_t>(v.days),
                                                        v.micros * 1000};
}

// Row-by-row evaluation where no Arrow kernel fits (calendar arithmetic, text
// forms, PostgreSQL's input parsers): `fn(i, builder)` appends the value of
// row i, which has no null input; rows with a null input are null.
template <typename Builder, typename Fn>
Result<Datum> MapRows(const Frame& f, const std::vector<Datum>& inputs,
                      const std::shared_ptr<arrow::DataType>& out_type, Fn fn) {
  int64_t length = f.length;
  bool all_scalar = std::all_of(inputs.begin(), inputs.end(),
                                [](const Datum& d) { return d.is_scalar(); });
  if (all_scalar) length = 1;
  std::vector<std::shared_ptr<arrow::Array>> arrays;
  for (const auto& d : inputs) {
    ARROW_ASSIGN_OR_RAISE(auto a, ToArray(d, length));
    arrays.push_back(std::move(a));
  }
  std::unique_ptr<arrow::ArrayBuilder> base;
  ARROW_RETURN_NOT_OK(arrow::MakeBuilder(arrow::default_memory_pool(), out_type, &base));
  auto* builder = static_cast<Builder*>(base.get());
  ARROW_RETURN_NOT_OK(builder->Reserve(length));
  for (int64_t i = 0; i < length; ++i) {
    bool any_null = false;
    for (const auto& a : arrays) any_null = any_null || a->IsNull(i);
    if (any_null) {
      ARROW_RETURN_NOT_OK(builder->AppendNull());
    } else {
      ARROW_RETURN_NOT_OK(fn(i, arrays, builder));
    }
  }
  ARROW_ASSIGN_OR_RAISE(auto out, builder->Finish());
  if (all_scalar) {
    ARROW_ASSIGN_OR_RAISE(auto s, out->GetScalar(0));
    return Datum(s);
  }
  return Datum(out);
}

int64_t TimestampAt(const std::shared_ptr<arrow::Array>& a, int64_t i) {
  return static_cast<const arrow::TimestampArray&>(*a).Value(i);
}
pg::Interval IntervalAt(const std::shared_ptr<arrow::Array>& a, int64_t i) {
  return ToPg(static_cast<const arrow::MonthDayNanoIntervalArray&>(*a).GetValue(i));
}
std::string_view TextAt(const std::shared_ptr<arrow::Array>& a, int64_t i) {
  return static_cast<const arrow::StringArray&>(*a).GetView(i);
}

Status AppendInterval(arrow::MonthDayNanoIntervalBuilder* b, const pg::Interval& v, int position) {
  auto mdn = FromPg(v);
  if (!mdn) return RunError(position, "interval out of range");
  return b->Append(*mdn);
}

// Rounds the decimal form of `x` to `digits` places (negative: left of the
// point), half away from zero, or truncates. Done on decimal digits because
// PostgreSQL's numeric is decimal: round(2.675, 2) is 2.68 although the double
// 2.675 is slightly below; the double is read with 15 significant digits, as
// PostgreSQL converts a float8 to numeric.
double RoundDecimal(double x, int digits, bool truncate) {
  if (!std::isfinite(x) || x == 0) return x;
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.14e", std::fabs(x));  // d.dddddddddddddde+XX
  std::string mantissa;
  mantissa += buf[0];
  mantissa.append(buf + 2, 14);
  int exponent = std::atoi(std::strchr(buf, 'e') + 1);
  // value = 0.<mantissa> * 10^(exponent + 1); keep (exponent + 1 + digits) digits.
  int keep = exponent + 1 + digits;
  if (keep >= static_cast<int>(mantissa.size())) return x;
  bool round_up = !truncate && keep >= 0 && mantissa[keep] >= '5';
  if (keep < 0) return x > 0 ? 0.0 : -0.0;
  std::string kept = mantissa.substr(0, keep);
  // Carry.
  int pos = keep - 1;
  if (round_up) {
    while (pos >= 0 && kept[pos] == '9') kept[pos--] = '0';
    if (pos >= 0) {
      kept[pos] += 1;
    } else {
      kept.insert(kept.begin(), '1');
      ++exponent;
    }
  }
  if (kept.empty()) kept = "0";
  std::string text = "0." + kept + "e" + std::to_string(exponent + 1);
  double v = std::strtod(text.c_str(), nullptr);
  return x < 0 ? -v : v;
}

// ---------------------------------------------------------------------------
// Node construction

std::shared_ptr<arrow::Scalar> EmptyFold(const NodePtr& n) {
  static const std::vector<Datum> kNoColumns;
  EvalContext ctx;
  Frame f{&ctx, 1, &kNoColumns, nullptr};
  auto r = n->eval(f);
  if (!r.ok()) return nullptr;
  const Datum& d = *r;
  if (d.is_scalar()) return d.scalar();
  if (d.is_array() && d.length() == 1) {
    auto s = d.make_array()->GetScalar(0);
    if (s.ok()) return *s;
  }
  return nullptr;
}

NodePtr Constant(PgType type, int position, std::shared_ptr<arrow::Scalar> value) {
  auto n = std::make_shared<Node>();
  n->type = type;
  n->position = position;
  n->constant = value;
  n->eval = [value](const Frame&) -> Result<Datum> { return Datum(value); };
  return n;
}

// A node computed from `children` by `fn`; folded to a constant when all
// children are constants and it evaluates without error (an error is left for
// the rows that need the value, as PostgreSQL would raise it only then).
NodePtr Make(PgType type, int position, const std::vector<NodePtr>& children, bool can_fail,
             EvalFn fn) {
  auto n = std::make_shared<Node>();
  n->type = type;
  n->position = position;
  n->can_fail = can_fail;
  n->eval = std::move(fn);
  bool all_constant = !children.empty();
  for (const auto& c : children) {
    n->can_fail = n->can_fail || c->can_fail;
    n->reads_clock = n->reads_clock || c->reads_clock;
    all_constant = all_constant && c->constant != nullptr;
  }
  if (all_constant && !n->reads_clock) {
    if (auto value = EmptyFold(n)) return Constant(type, position, value);
  }
  return n;
}

NodePtr Relabel(const NodePtr& n, PgType type) {
  if (n->type == type) return n;
  auto copy = std::make_shared<Node>(*n);
  copy->type = type;
  copy->unknown_literal = false;
  return copy;
}

struct CastTarget {
  PgType type = PgType::kUnknown;
  int int_bits = 64;        // 16 or 32: range checked
  bool float4 = false;      // rounded through float32
  int varchar_length = -1;  // varchar(n): truncated
  int numeric_scale = -1;   // numeric(p, s): rounded
  int numeric_precision = -1;  // numeric(p, s): |value| < 10^(p - s)
  std::string name;         // as PostgreSQL names it in messages
};

CastTarget TargetFor(PgType t) {
  CastTarget c;
  c.type = t;
  c.int_bits = t == PgType::kInt4 ? 32 : 64;
  c.name = PgName(t);
  return c;
}

std::string OutOfRange(const CastTarget& t) {
  if (t.int_bits == 16) return "smallint out of range";
  if (t.int_bits == 32) return "integer out of range";
  return "bigint out of range";
}

Result<Datum> CheckIntRange(const Datum& d, int bits, int position) {
  if (bits >= 64) return d;
  auto narrow = bits == 16 ? arrow::int16() : arrow::int32();
  auto r = CastDatum(d, narrow);
  if (!r.ok()) {
    return RunError(position, bits == 16 ? "smallint out of range" : "integer out of range");
  }
  return d;
}

Result<NodePtr> Cast(const NodePtr& n, const CastTarget& target, int position);

// ---------------------------------------------------------------------------
// The binder: PostgreSQL parse tree -> nodes.

struct ColumnBinding {
  std::string name;  // as in the input schema
  PgType type;
};

Result<PgType> PgTypeOfArrow(const arrow::DataType& t) {
  switch (t.id()) {
    case arrow::Type::BOOL: return PgType::kBool;
    case arrow::Type::INT8:
    case arrow::Type::INT16:
    case arrow::Type::INT32:
    case arrow::Type::UINT8:
    case arrow::Type::UINT16: return PgType::kInt4;
    case arrow::Type::INT64:
    case arrow::Type::UINT32:
    case arrow::Type::UINT64: return PgType::kInt8;
    case arrow::Type::HALF_FLOAT:
    case arrow::Type::FLOAT:
    case arrow::Type::DOUBLE: return PgType::kFloat8;
    case arrow::Type::DECIMAL128:
    case arrow::Type::DECIMAL256: return PgType::kNumeric;
    case arrow::Type::STRING:
    case arrow::Type::LARGE_STRING:
    case arrow::Type::STRING_VIEW:
    case arrow::Type::NA: return PgType::kText;
    case arrow::Type::DATE32:
    case arrow::Type::DATE64: return PgType::kDate;
    case arrow::Type::TIMESTAMP:
      return static_cast<const arrow::TimestampType&>(t).timezone().empty()
                 ? PgType::kTimestamp
                 : PgType::kTimestampTz;
    case arrow::Type::INTERVAL_MONTH_DAY_NANO: return PgType::kInterval;
    case arrow::Type::DICTIONARY: {
      const auto& value = *static_cast<const arrow::DictionaryType&>(t).value_type();
      if (value.id() == arrow::Type::STRING || value.id() == arrow::Type::LARGE_STRING) {
        return PgType::kText;
      }
      break;
    }
    default: break;
  }
  return Status::Invalid("unsupported type");
}

const std::set<std::string>& WindowFunctionNames() {
  static const std::set<std::string> names = {"count", "sum", "avg", "min", "max",
                                              "stddev_samp", "stddev", "first_value",
                                              "last_value"};
  return names;
}

class Binder {
 public:
  explicit Binder(const arrow::Schema& schema) : schema_(schema) {}

  std::vector<ColumnBinding> columns;

  Result<NodePtr> Bind(const json::value& v, int fallback);

 private:
  Result<NodePtr> BindColumnRef(const json::object& o, int pos);
  Result<NodePtr> BindConst(const json::object& o, int pos);
  Result<NodePtr> BindTypeCast(const json::object& o, int pos);
  Result<NodePtr> BindAExpr(const json::object& o, int pos);
  Result<NodePtr> BindBoolExpr(const json::object& o, int pos);
  Result<NodePtr> BindCase(const json::object& o, int pos);
  Result<NodePtr> BindCoalesce(const json::object& o, int pos);
  Result<NodePtr> BindMinMax(const json::object& o, int pos);
  Result<NodePtr> BindNullTest(const json::object& o, int pos);
  Result<NodePtr> BindBooleanTest(const json::object& o, int pos);
  Result<NodePtr> BindClock(const json::object& o, int pos);
  Result<NodePtr> BindFuncCall(const json::object& o, int pos);

  const arrow::Schema& schema_;
};

// -- type resolution --------------------------------------------------------

Result<NodePtr> Coerce(const NodePtr& n, PgType target, int position) {
  if (n->type == target) return n;
  if (n->type == PgType::kUnknown) return Cast(n, TargetFor(target), position);
  if (IsNumber(n->type) && IsNumber(target) && NumberRank(n->type) <= NumberRank(target)) {
    if (IsInteger(n->type) && IsInteger(target)) return Relabel(n, target);
    if (n->type == PgType::kNumeric) return Relabel(n, target);
    return Cast(n, TargetFor(target), position);
  }
  if (IsDateTime(n->type) && IsTimestamp(target)) {
    if (IsTimestamp(n->type)) return Relabel(n, target);
    return Cast(n, TargetFor(target), position);
  }
  return CompileError(position, std::string("cannot cast type ") + PgName(n->type) + " to " +
                                    PgName(target));
}

// PostgreSQL's UNION/CASE type resolution, for the types we have.
Result<PgType> CommonType(const std::vector<NodePtr>& nodes, const std::string& context,
                          int position) {
  std::optional<PgType> common;
  for (const auto& n : nodes) {
    if (n->type == PgType::kUnknown) continue;
    if (!common) {
      common = n->type;
      continue;
    }
    PgType a = *common, b = n->type;
    if (a == b) continue;
    if (IsNumber(a) && IsNumber(b)) {
      common = NumberRank(a) >= NumberRank(b) ? a : b;
    } else if (IsDateTime(a) && IsDateTime(b)) {
      if (a == PgType::kTimestampTz || b == PgType::kTimestampTz) {
        common = PgType::kTimestampTz;
      } else {
        common = PgType::kTimestamp;
      }
    } else {
      return CompileError(position, context + " types " + PgName(a) + " and " + PgName(b) +
                                        " cannot be matched");
    }
  }
  return common.value_or(PgType::kText);
}

Result<std::vector<NodePtr>> CoerceAll(std::vector<NodePtr> nodes, PgType target) {
  for (auto& n : nodes) {
    ARROW_ASSIGN_OR_RAISE(n, Coerce(n, target, n->position));
  }
  return nodes;
}

Status OperatorDoesNotExist(int pos, const std::string& op, const NodePtr& l, const NodePtr& r) {
  if (!l) return CompileError(pos, "operator does not exist: " + op + " " + PgName(r->type));
  return CompileError(pos, std::string("operator does not exist: ") + PgName(l->type) + " " + op +
                               " " + PgName(r->type));
}

// -- casts ------------------------------------------------------------------

Result<NodePtr> CastFromText(const NodePtr& n, const CastTarget& target, int pos) {
  const std::string type_name = target.name;
  const PgType to = target.type;
  if (IsNumber(to)) {
    auto out_type = IsInteger(to) ? arrow::int64() : arrow::float64();
    return Make(to, pos, {n}, true, [n, out_type, target, pos](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      ARROW_ASSIGN_OR_RAISE(v, ActiveOnly(f, v));
      ARROW_ASSIGN_OR_RAISE(v, Call("utf8_trim_whitespace", {v}));
      auto r = CastDatum(v, out_type);
      if (!r.ok()) {
        std::string m = r.status().message();
        if (m.find("overflow") != std::string::npos || m.find("out of range") != std::string::npos) {
          return RunError(pos, OutOfRange(target));
        }
        return RunError(pos, "invalid input syntax for type " + target.name);
      }
      Datum out = *r;
      if (IsInteger(target.type)) return CheckIntRange(out, target.int_bits, pos);
      if (target.float4) {
        ARROW_ASSIGN_OR_RAISE(out, CastDatum(out, arrow::float32()));
        return CastDatum(out, arrow::float64());
      }
      return out;
    });
  }
  auto out_type = ArrowTypeOf(to);
  switch (to) {
    case PgType::kText: return Relabel(n, PgType::kText);
    case PgType::kBool:
      return Make(to, pos, {n}, true, [n, pos](const Frame& f) -> Result<Datum> {
        ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
        ARROW_ASSIGN_OR_RAISE(v, ActiveOnly(f, v));
        return MapRows<arrow::BooleanBuilder>(
            f, {v}, arrow::boolean(), [pos](int64_t i, const auto& in, auto* b) -> Status {
              auto parsed = pg::ParseBool(TextAt(in[0], i));
              if (!parsed) {
                return RunError(pos, "invalid input syntax for type boolean: \"" +
                                         std::string(TextAt(in[0], i)) + "\"");
              }
              return b->Append(*parsed);
            });
      });
    case PgType::kDate:
    case PgType::kTimestamp:
    case PgType::kTimestampTz:
      return Make(to, pos, {n}, true, [n, to, out_type, pos](const Frame& f) -> Result<Datum> {
        ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
        ARROW_ASSIGN_OR_RAISE(v, ActiveOnly(f, v));
        auto parse = [pos, to](std::string_view text) -> Result<int64_t> {
          std::string trimmed(text);
          while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) {
            trimmed.pop_back();
          }
          size_t start = trimmed.find_first_not_of(" \t\n");
          if (start != std::string::npos) trimmed = trimmed.substr(start);
          auto r = ParseTimestamp(trimmed);
          if (!r.ok() && trimmed.size() == 16 && trimmed[13] == ':') {
            r = ParseTimestamp(trimmed + ":00");  // PostgreSQL accepts hh:mm
          }
          if (!r.ok()) {
            return RunError(pos, std::string("invalid input syntax for type ") +
                                     (to == PgType::kDate ? "date" : "timestamp") + ": \"" +
                                     std::string(text) + "\"");
          }
          return *r;
        };
        if (to == PgType::kDate) {
          return MapRows<arrow::Date32Builder>(
              f, {v}, out_type, [&parse](int64_t i, const auto& in, auto* b) -> Status {
                ARROW_ASSIGN_OR_RAISE(int64_t micros, parse(TextAt(in[0], i)));
                int64_t days = micros / kMicrosPerDay;
                if (micros % kMicrosPerDay < 0) --days;
                return b->Append(static_cast<int32_t>(days));
              });
        }
        return MapRows<arrow::TimestampBuilder>(
            f, {v}, out_type, [&parse](int64_t i, const auto& in, auto* b) -> Status {
              ARROW_ASSIGN_OR_RAISE(int64_t micros, parse(TextAt(in[0], i)));
              return b->Append(micros);
            });
      });
    case PgType::kInterval:
      return Make(to, pos, {n}, true, [n, pos](const Frame& f) -> Result<Datum> {
        ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
        ARROW_ASSIGN_OR_RAISE(v, ActiveOnly(f, v));
        return MapRows<arrow::MonthDayNanoIntervalBuilder>(
            f, {v}, arrow::month_day_nano_interval(),
            [pos](int64_t i, const auto& in, auto* b) -> Status {
              std::string error;
              auto parsed = pg::ParseInterval(TextAt(in[0], i), &error);
              if (!parsed) return RunError(pos, error);
              return AppendInterval(b, *parsed, pos);
            });
      });
    default: break;
  }
  return CompileError(pos, "cannot cast type text to " + type_name);
}

// PostgreSQL's float8out: the shortest digits that read back exactly, in
// fixed notation for decimal exponents in [-4, 15), else as 1.5e+16.
std::string FormatFloat8(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // [-]d[.ddd]e[+-]XX
  bool negative = sci[0] == '-';
  if (negative) sci.erase(0, 1);
  size_t e = sci.find('e');
  int exponent = std::atoi(sci.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] != '.') digits += sci[i];
  }
  std::string out = negative ? "-" : "";
  if (exponent < -4 || exponent >= 15) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + exp_buf;
  }
  if (exponent < 0) return out + "0." + std::string(-exponent - 1, '0') + digits;
  if (static_cast<int>(digits.size()) <= exponent + 1) {
    return out + digits + std::string(exponent + 1 - digits.size(), '0');
  }
  return out + digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
}

// `n` as text the way PostgreSQL's output functions write it (what concat()
// and || use): booleans are t/f there, unlike CAST(b AS text).
Result<NodePtr> OutputText(const NodePtr& n, int pos);

Result<NodePtr> CastToText(const NodePtr& n, int pos) {
  PgType from = n->type;
  if (from == PgType::kFloat8 || from == PgType::kNumeric) {
    return Make(PgType::kText, pos, {n}, false, [n](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      return MapRows<arrow::StringBuilder>(
          f, {v}, arrow::utf8(), [](int64_t i, const auto& in, auto* b) -> Status {
            return b->Append(FormatFloat8(static_cast<const arrow::DoubleArray&>(*in[0]).Value(i)));
          });
    });
  }
  if (from == PgType::kTimestamp || from == PgType::kTimestampTz) {
    bool zone = from == PgType::kTimestampTz;
    return Make(PgType::kText, pos, {n}, false, [n, zone](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      return MapRows<arrow::StringBuilder>(
          f, {v}, arrow::utf8(), [zone](int64_t i, const auto& in, auto* b) -> Status {
            return b->Append(pg::FormatTimestampText(TimestampAt(in[0], i), zone));
          });
    });
  }
  if (from == PgType::kInterval) {
    return Make(PgType::kText, pos, {n}, false, [n](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      return MapRows<arrow::StringBuilder>(
          f, {v}, arrow::utf8(), [](int64_t i, const auto& in, auto* b) -> Status {
            return b->Append(pg::FormatInterval(IntervalAt(in[0], i)));
          });
    });
  }
  // Arrow's text forms of integers, doubles (shortest round trip, as
  // PostgreSQL 12+), booleans (true/false) and dates (ISO) are PostgreSQL's.
  return Make(PgType::kText, pos, {n}, false, [n](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
    return CastDatum(v, arrow::utf8());
  });
}

Result<NodePtr> Cast(const NodePtr& n, const CastTarget& target, int pos) {
  const PgType from = n->type;
  const PgType to = target.type;
  NodePtr out;
  if (from == PgType::kUnknown && !n->constant) {
    return CompileError(pos, "cannot cast type unknown to " + target.name);
  }
  if (from == PgType::kUnknown && !n->constant->is_valid) {
    out = Constant(to, pos, arrow::MakeNullScalar(ArrowTypeOf(to)));
  } else if (from == PgType::kUnknown || from == PgType::kText) {
    if (to == PgType::kText) {
      out = Relabel(n, PgType::kText);
    } else {
      ARROW_ASSIGN_OR_RAISE(out, CastFromText(Relabel(n, PgType::kText), target, pos));
    }
    if (n->constant) {  // a literal: report its error now, as PostgreSQL does
      static const std::vector<Datum> kNoColumns;
      EvalContext ctx;
      Frame f{&ctx, 1, &kNoColumns, nullptr};
      auto r = out->eval(f);
      if (!r.ok()) return CompileError(pos, ErrorMessageOf(r.status()));
    }
  } else if (to == PgType::kText) {
    ARROW_ASSIGN_OR_RAISE(out, CastToText(n, pos));
  } else if (IsNumber(from) && IsInteger(to)) {
    out = Make(to, pos, {n}, true, [n, from, target, pos](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      if (!IsInteger(from)) {
        ARROW_ASSIGN_OR_RAISE(v, ActiveOnly(f, v));
        // float8 -> int rounds half to even (rint); numeric -> int half away from zero.
        cp::RoundOptions round(0, from == PgType::kNumeric
                                      ? cp::RoundMode::HALF_TOWARDS_INFINITY
                                      : cp::RoundMode::HALF_TO_EVEN);
        ARROW_ASSIGN_OR_RAISE(v, Call("round", {v}, &round));
        auto r = CastDatum(v, arrow::int64());
        if (!r.ok()) return RunError(pos, OutOfRange(target));
        v = *r;
      }
      return CheckIntRange(v, target.int_bits, pos);
    });
  } else if (IsNumber(from) && (to == PgType::kFloat8 || to == PgType::kNumeric)) {
    out = Make(to, pos, {n}, target.numeric_scale >= 0, [n, target, pos](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      ARROW_ASSIGN_OR_RAISE(v, CastDatum(v, arrow::float64()));
      if (target.float4) {
        ARROW_ASSIGN_OR_RAISE(v, CastDatum(v, arrow::float32()));
        ARROW_ASSIGN_OR_RAISE(v, CastDatum(v, arrow::float64()));
      }
      if (target.numeric_scale >= 0) {
        int scale = target.numeric_scale;
        double limit = std::pow(10.0, target.numeric_precision - scale);
        return MapRows<arrow::DoubleBuilder>(
            f, {v}, arrow::float64(),
            [scale, limit, pos](int64_t i, const auto& in, auto* b) -> Status {
              double x = RoundDecimal(static_cast<const arrow::DoubleArray&>(*in[0]).Value(i),
                                      scale, false);
              if (std::fabs(x) >= limit) return RunError(pos, "numeric field overflow");
              return b->Append(x);
            });
      }
      return v;
    });
  } else if (from == PgType::kBool && IsInteger(to)) {
    out = Make(to, pos, {n}, false, [n](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      return CastDatum(v, arrow::int64());
    });
  } else if (from == PgType::kInt4 && to == PgType::kBool) {
    out = Make(to, pos, {n}, false, [n](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      return Call("not_equal", {v, Datum(std::make_shared<arrow::Int64Scalar>(0))});
    });
  } else if (from == to || (IsTimestamp(from) && IsTimestamp(to))) {
    out = Relabel(n, to);
  } else if (from == PgType::kDate && IsTimestamp(to)) {
    out = Make(to, pos, {n}, false, [n](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      ARROW_ASSIGN_OR_RAISE(v, CastDatum(v, arrow::int32()));
      ARROW_ASSIGN_OR_RAISE(v, CastDatum(v, arrow::int64()));
      ARROW_ASSIGN_OR_RAISE(
          v, Call("multiply", {v, Datum(std::make_shared<arrow::Int64Scalar>(kMicrosPerDay))}));
      return CastDatum(v, ArrowTypeOf(PgType::kTimestamp));
    });
  } else if (IsTimestamp(from) && to == PgType::kDate) {
    out = Make(to, pos, {n}, false, [n](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      cp::RoundTemporalOptions day(1, cp::CalendarUnit::DAY);
      ARROW_ASSIGN_OR_RAISE(v, Call("floor_temporal", {v}, &day));
      return CastDatum(v, arrow::date32());
    });
  } else {
    return CompileError(pos, std::string("cannot cast type ") + PgName(from) + " to " +
                                 target.name);
  }
  if (to == PgType::kText && target.varchar_length >= 0) {
    int64_t len = target.varchar_length;
    NodePtr text = out;
    out = Make(PgType::kText, pos, {text}, false, [text, len](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, text->eval(f));
      cp::SliceOptions slice(0, len);
      return Call("utf8_slice_codeunits", {v}, &slice);
    });
  }
  return out;
}

// -- type names -------------------------------------------------------------

Result<CastTarget> ResolveTypeName(const json::object& type_name, int pos) {
  std::string name = LastName(ArrayField(type_name, "names"));
  if (type_name.contains("arrayBounds")) {
    return CompileError(pos, "array types are not supported in a transformation");
  }
  std::vector<int64_t> mods;
  if (auto* typmods = ArrayField(type_name, "typmods")) {
    for (const auto& m : *typmods) {
      auto [kind, c] = Unwrap(m);
      int64_t value = 0;
      if (kind == "A_Const" && c->contains("ival")) {
        if (auto* iv = c->at("ival").if_object(); iv && iv->contains("ival")) {
          value = iv->at("ival").to_number<int64_t>();
        }
      } else {
        return CompileError(pos, "type modifiers must be integer constants");
      }
      mods.push_back(value);
    }
  }
  CastTarget t;
  if (name == "int4" || name == "int" || name == "integer") {
    t = TargetFor(PgType::kInt4);
  } else if (name == "int2" || name == "smallint") {
    t = TargetFor(PgType::kInt4);
    t.int_bits = 16;
    t.name = "smallint";
  } else if (name == "int8" || name == "bigint") {
    t = TargetFor(PgType::kInt8);
  } else if (name == "float8" || name == "float" || name == "double") {
    t = TargetFor(PgType::kFloat8);
  } else if (name == "float4" || name == "real") {
    t = TargetFor(PgType::kFloat8);
    t.float4 = true;
    t.name = "real";
  } else if (name == "numeric" || name == "decimal") {
    t = TargetFor(PgType::kNumeric);
    if (!mods.empty()) t.numeric_precision = static_cast<int>(mods[0]);
    if (mods.size() >= 2) t.numeric_scale = static_cast<int>(mods[1]);
    if (mods.size() == 1) t.numeric_scale = 0;
  } else if (name == "text") {
    t = TargetFor(PgType::kText);
  } else if (name == "varchar") {
    t = TargetFor(PgType::kText);
    t.name = "character varying";
    if (!mods.empty()) t.varchar_length = static_cast<int>(mods[0]);
  } else if (name == "bool" || name == "boolean") {
    t = TargetFor(PgType::kBool);
  } else if (name == "date") {
    t = TargetFor(PgType::kDate);
  } else if (name == "timestamp") {
    t = TargetFor(PgType::kTimestamp);
  } else if (name == "timestamptz") {
    t = TargetFor(PgType::kTimestampTz);
  } else if (name == "interval") {
    if (!mods.empty()) {
      return CompileError(pos, "INTERVAL with a field qualifier is not supported: write "
                               "INTERVAL '1 day'");
    }
    t = TargetFor(PgType::kInterval);
  } else {
    return CompileError(pos, "type \"" + name + "\" is not supported in a transformation");
  }
  return t;
}

// -- arithmetic -------------------------------------------------------------

NodePtr IntervalLoop(PgType type, int pos, std::vector<NodePtr> args,
                     std::function<Result<std::optional<int64_t>>(
                         int64_t, const std::vector<std::shared_ptr<arrow::Array>>&)>
                         timestamp_fn) {
  return Make(type, pos, args, false, [args, timestamp_fn, pos](const Frame& f) -> Result<Datum> {
    std::vector<Datum> values;
    for (const auto& a : args) {
      ARROW_ASSIGN_OR_RAISE(Datum v, a->eval(f));
      values.push_back(std::move(v));
    }
    return MapRows<arrow::TimestampBuilder>(
        f, values, ArrowTypeOf(PgType::kTimestamp),
        [&](int64_t i, const auto& in, auto* b) -> Status {
          ARROW_ASSIGN_OR_RAISE(auto r, timestamp_fn(i, in));
          if (!r) return RunError(pos, "timestamp out of range");
          return b->Append(*r);
        });
  });
}

Result<NodePtr> BindArithmetic(const std::string& op, NodePtr l, NodePtr r, int pos) {
  // An untyped literal takes the other operand's type (timestamp + '1 day' is
  // an interval, as PostgreSQL resolves it).
  if (l->type == PgType::kUnknown && r->type != PgType::kUnknown) {
    PgType t = r->type;
    if (IsDateTime(r->type) && op == "+") t = PgType::kInterval;
    ARROW_ASSIGN_OR_RAISE(l, Coerce(l, t, l->position));
  } else if (r->type == PgType::kUnknown && l->type != PgType::kUnknown) {
    PgType t = l->type;
    if (IsDateTime(l->type) && op == "+") t = PgType::kInterval;
    ARROW_ASSIGN_OR_RAISE(r, Coerce(r, t, r->position));
  }
  const PgType lt = l->type, rt = r->type;

  if (IsNumber(lt) && IsNumber(rt)) {
    PgType t = NumberRank(lt) >= NumberRank(rt) ? lt : rt;
    if (op == "^") t = (lt == PgType::kNumeric || rt == PgType::kNumeric) && !(lt == PgType::kFloat8 || rt == PgType::kFloat8) ? PgType::kNumeric : PgType::kFloat8;
    if (op == "%" && t == PgType::kFloat8) return OperatorDoesNotExist(pos, op, l, r);
    ARROW_ASSIGN_OR_RAISE(l, Coerce(l, t, pos));
    ARROW_ASSIGN_OR_RAISE(r, Coerce(r, t, pos));
    const bool integer = IsInteger(t);
    const int bits = t == PgType::kInt4 ? 32 : 64;
    const std::string overflow = bits == 32 ? "integer out of range" : "bigint out of range";
    const bool can_fail = op == "/" || op == "%" || op == "^";
    return Make(t, pos, {l, r}, can_fail,
                [l, r, op, integer, bits, overflow, pos](const Frame& f) -> Result<Datum> {
                  ARROW_ASSIGN_OR_RAISE(Datum a, l->eval(f));
                  ARROW_ASSIGN_OR_RAISE(Datum b, r->eval(f));
                  Result<Datum> out;
                  if (op == "+") {
                    out = Call(integer ? "add_checked" : "add", {a, b});
                  } else if (op == "-") {
                    out = Call(integer ? "subtract_checked" : "subtract", {a, b});
                  } else if (op == "*") {
                    out = Call(integer ? "multiply_checked" : "multiply", {a, b});
                  } else if (op == "/") {
                    // Integers: C division, truncating toward zero, as PostgreSQL.
                    ARROW_ASSIGN_OR_RAISE(b, ActiveOnly(f, b));
                    out = Call("divide_checked", {a, b});
                  } else if (op == "%") {
                    // a - trunc(a / b) * b: the remainder has the dividend's sign,
                    // as PostgreSQL's (Arrow has no modulo kernel).
                    ARROW_ASSIGN_OR_RAISE(b, ActiveOnly(f, b));
                    ARROW_ASSIGN_OR_RAISE(Datum q, Checked(Call("divide_checked", {a, b}), pos, overflow));
                    if (!integer) {
                      ARROW_ASSIGN_OR_RAISE(q, Call("trunc", {q}));
                    }
                    ARROW_ASSIGN_OR_RAISE(Datum qb, Checked(Call(integer ? "multiply_checked" : "multiply", {q, b}), pos, overflow));
                    out = Call(integer ? "subtract_checked" : "subtract", {a, qb});
                  } else {  // ^
                    ARROW_ASSIGN_OR_RAISE(a, ActiveOnly(f, a));
                    out = Call("power", {a, b});
                  }
                  ARROW_ASSIGN_OR_RAISE(Datum v, Checked(std::move(out), pos, overflow));
                  if (integer) return CheckIntRange(v, bits, pos);
                  return v;
                });
  }

  // date +/- integer -> date; date - date -> integer (days).
  auto date_days = [](const NodePtr& n) -> EvalFn {
    return [n](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      ARROW_ASSIGN_OR_RAISE(v, CastDatum(v, arrow::int32()));
      return CastDatum(v, arrow::int64());
    };
  };
  if ((op == "+" || op == "-") && lt == PgType::kDate && IsInteger(rt)) {
    EvalFn days = date_days(l);
    return Make(PgType::kDate, pos, {l, r}, false,
                [days, r, op, pos](const Frame& f) -> Result<Datum> {
                  ARROW_ASSIGN_OR_RAISE(Datum a, days(f));
                  ARROW_ASSIGN_OR_RAISE(Datum b, r->eval(f));
                  ARROW_ASSIGN_OR_RAISE(
                      Datum v, Checked(Call(op == "+" ? "add_checked" : "subtract_checked", {a, b}),
                                       pos, "date out of range"));
                  auto r32 = CastDatum(v, arrow::int32());
                  if (!r32.ok()) return RunError(pos, "date out of range");
                  return CastDatum(*r32, arrow::date32());
                });
  }
  if (op == "+" && IsInteger(lt) && rt == PgType::kDate) return BindArithmetic(op, r, l, pos);
  if (op == "-" && lt == PgType::kDate && rt == PgType::kDate) {
    EvalFn a = date_days(l), b = date_days(r);
    return Make(PgType::kInt4, pos, {l, r}, false, [a, b](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum x, a(f));
      ARROW_ASSIGN_OR_RAISE(Datum y, b(f));
      return Call("subtract", {x, y});
    });
  }
  // date/timestamp +/- interval -> timestamp.
  if ((op == "+" || op == "-") && IsDateTime(lt) && rt == PgType::kInterval) {
    PgType t = lt == PgType::kDate ? PgType::kTimestamp : lt;
    ARROW_ASSIGN_OR_RAISE(l, Coerce(l, t, pos));
    const bool minus = op == "-";
    NodePtr n = IntervalLoop(
        t, pos, {l, r},
        [minus](int64_t i, const auto& in) -> Result<std::optional<int64_t>> {
          pg::Interval iv = IntervalAt(in[1], i);
          if (minus) iv = pg::Interval{-iv.months, -iv.days, -iv.micros};
          return pg::AddInterval(TimestampAt(in[0], i), iv);
        });
    return n;
  }
  if (op == "+" && lt == PgType::kInterval && IsDateTime(rt)) return BindArithmetic(op, r, l, pos);
  // timestamp - timestamp -> interval (days and time, as PostgreSQL's).
  if (op == "-" && IsDateTime(lt) && IsDateTime(rt)) {
    PgType t = (lt == PgType::kTimestampTz || rt == PgType::kTimestampTz) ? PgType::kTimestampTz
                                                                          : PgType::kTimestamp;
    ARROW_ASSIGN_OR_RAISE(l, Coerce(l, t, pos));
    ARROW_ASSIGN_OR_RAISE(r, Coerce(r, t, pos));
    return Make(PgType::kInterval, pos, {l, r}, false, [l, r, pos](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum a, l->eval(f));
      ARROW_ASSIGN_OR_RAISE(Datum b, r->eval(f));
      return MapRows<arrow::MonthDayNanoIntervalBuilder>(
          f, {a, b}, arrow::month_day_nano_interval(),
          [pos](int64_t i, const auto& in, auto* builder) -> Status {
            int64_t diff = 0;
            if (__builtin_sub_overflow(TimestampAt(in[0], i), TimestampAt(in[1], i), &diff)) {
              return RunError(pos, "interval out of range");
            }
            return AppendInterval(builder,
                                  pg::Interval{0, diff / kMicrosPerDay, diff % kMicrosPerDay}, pos);
          });
    });
  }
  // interval +/- interval, interval * number, number * interval, interval / number.
  if ((op == "+" || op == "-") && lt == PgType::kInterval && rt == PgType::kInterval) {
    const bool minus = op == "-";
    return Make(PgType::kInterval, pos, {l, r}, false,
                [l, r, minus, pos](const Frame& f) -> Result<Datum> {
                  ARROW_ASSIGN_OR_RAISE(Datum a, l->eval(f));
                  ARROW_ASSIGN_OR_RAISE(Datum b, r->eval(f));
                  return MapRows<arrow::MonthDayNanoIntervalBuilder>(
                      f, {a, b}, arrow::month_day_nano_interval(),
                      [minus, pos](int64_t i, const auto& in, auto* builder) -> Status {
                        pg::Interval x = IntervalAt(in[0], i), y = IntervalAt(in[1], i);
                        int64_t s = minus ? -1 : 1;
                        return AppendInterval(builder,
                                              pg::Interval{x.months + s * y.months,
                                                           x.days + s * y.days,
                                                           x.micros + s * y.micros},
                                              pos);
                      });
                });
  }
  if (op == "*" && IsNumber(lt) && rt == PgType::kInterval) return BindArithmetic(op, r, l, pos);
  if ((op == "*" || op == "/") && lt == PgType::kInterval && IsNumber(rt)) {
    const bool divide = op == "/";
    ARROW_ASSIGN_OR_RAISE(r, Coerce(r, PgType::kFloat8, pos));
    return Make(PgType::kInterval, pos, {l, r}, divide,
                [l, r, divide, pos](const Frame& f) -> Result<Datum> {
                  ARROW_ASSIGN_OR_RAISE(Datum a, l->eval(f));
                  ARROW_ASSIGN_OR_RAISE(Datum b, r->eval(f));
                  if (divide) {
                    ARROW_ASSIGN_OR_RAISE(b, ActiveOnly(f, b));
                  }
                  return MapRows<arrow::MonthDayNanoIntervalBuilder>(
                      f, {a, b}, arrow::month_day_nano_interval(),
                      [divide, pos](int64_t i, const auto& in, auto* builder) -> Status {
                        double factor = static_cast<const arrow::DoubleArray&>(*in[1]).Value(i);
                        if (divide) {
                          if (factor == 0) return RunError(pos, "division by zero");
                          factor = 1.0 / factor;
                        }
                        auto v = pg::MultiplyInterval(IntervalAt(in[0], i), factor);
                        if (!v) return RunError(pos, "interval out of range");
                        return AppendInterval(builder, *v, pos);
                      });
                });
  }
  return OperatorDoesNotExist(pos, op, l, r);
}

Result<NodePtr> BindNegate(NodePtr n, int pos) {
  if (n->type == PgType::kUnknown) {
    ARROW_ASSIGN_OR_RAISE(n, Coerce(n, PgType::kFloat8, pos));
  }
  if (IsNumber(n->type)) {
    bool integer = IsInteger(n->type);
    int bits = n->type == PgType::kInt4 ? 32 : 64;
    return Make(n->type, pos, {n}, false, [n, integer, bits, pos](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      ARROW_ASSIGN_OR_RAISE(v, Checked(Call(integer ? "negate_checked" : "negate", {v}), pos,
                                       bits == 32 ? "integer out of range" : "bigint out of range"));
      if (integer) return CheckIntRange(v, bits, pos);
      return v;
    });
  }
  if (n->type == PgType::kInterval) {
    return Make(PgType::kInterval, pos, {n}, false, [n, pos](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
      return MapRows<arrow::MonthDayNanoIntervalBuilder>(
          f, {v}, arrow::month_day_nano_interval(),
          [pos](int64_t i, const auto& in, auto* b) -> Status {
            pg::Interval x = IntervalAt(in[0], i);
            return AppendInterval(b, pg::Interval{-x.months, -x.days, -x.micros}, pos);
          });
    });
  }
  return OperatorDoesNotExist(pos, "-", nullptr, n);
}

// -- comparison -------------------------------------------------------------

Result<Datum> IntervalSpans(const Frame& f, const Datum& d) {
  return MapRows<arrow::Int64Builder>(f, {d}, arrow::int64(),
                                      [](int64_t i, const auto& in, auto* b) -> Status {
                                        return b->Append(pg::IntervalSpanMicros(IntervalAt(in[0], i)));
                                      });
}

const char* ComparisonKernel(const std::string& op) {
  if (op == "=") return "equal";
  if (op == "<>" || op == "!=") return "not_equal";
  if (op == "<") return "less";
  if (op == "<=") return "less_equal";
  if (op == ">") return "greater";
  if (op == ">=") return "greater_equal";
  return nullptr;
}

// Brings both operands of a comparison (or IN, CASE x WHEN) to one type.
Result<std::pair<NodePtr, NodePtr>> UnifyForComparison(const std::string& op, NodePtr l, NodePtr r,
                                                       int pos) {
  if (l->type == PgType::kUnknown && r->type == PgType::kUnknown) {
    ARROW_ASSIGN_OR_RAISE(l, Coerce(l, PgType::kText, pos));
    ARROW_ASSIGN_OR_RAISE(r, Coerce(r, PgType::kText, pos));
  } else if (l->type == PgType::kUnknown) {
    ARROW_ASSIGN_OR_RAISE(l, Coerce(l, r->type, l->position));
  } else if (r->type == PgType::kUnknown) {
    ARROW_ASSIGN_OR_RAISE(r, Coerce(r, l->type, r->position));
  }
  PgType lt = l->type, rt = r->type;
  if (lt == rt || (IsNumber(lt) && IsNumber(rt)) || (IsDateTime(lt) && IsDateTime(rt))) {
    auto t = CommonType({l, r}, "", pos);
    if (!t.ok()) return OperatorDoesNotExist(pos, op, l, r);
    ARROW_ASSIGN_OR_RAISE(l, Coerce(l, *t, pos));
    ARROW_ASSIGN_OR_RAISE(r, Coerce(r, *t, pos));
    return std::make_pair(l, r);
  }
  return OperatorDoesNotExist(pos, op, l, r);
}

Result<NodePtr> BindComparison(const std::string& op, NodePtr l, NodePtr r, int pos) {
  ARROW_ASSIGN_OR_RAISE(auto pair, UnifyForComparison(op, l, r, pos));
  std::tie(l, r) = pair;
  std::string kernel = ComparisonKernel(op);
  bool interval = l->type == PgType::kInterval;
  return Make(PgType::kBool, pos, {l, r}, false,
              [l, r, kernel, interval](const Frame& f) -> Result<Datum> {
                ARROW_ASSIGN_OR_RAISE(Datum a, l->eval(f));
                ARROW_ASSIGN_OR_RAISE(Datum b, r->eval(f));
                if (interval) {
                  ARROW_ASSIGN_OR_RAISE(a, IntervalSpans(f, a));
                  ARROW_ASSIGN_OR_RAISE(b, IntervalSpans(f, b));
                }
                return Call(kernel, {a, b});
              });
}

Result<NodePtr> BindNot(NodePtr n, int pos) {
  return Make(PgType::kBool, pos, {n}, false, [n](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
    return Call("invert", {v});
  });
}

Result<NodePtr> RequireBool(NodePtr n, const std::string& construct) {
  if (n->type == PgType::kUnknown) return Coerce(n, PgType::kBool, n->position);
  if (n->type != PgType::kBool) {
    return CompileError(n->position, "argument of " + construct + " must be type boolean, not type " +
                                         PgName(n->type));
  }
  return n;
}

// AND / OR over several operands with SQL's three-valued logic; an operand
// that can fail is evaluated only for the rows the previous ones left open.
Result<NodePtr> BindLogical(bool is_and, std::vector<NodePtr> args, int pos) {
  for (auto& a : args) {
    ARROW_ASSIGN_OR_RAISE(a, RequireBool(a, is_and ? "AND" : "OR"));
  }
  return Make(PgType::kBool, pos, args, false, [args, is_and](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum acc, args[0]->eval(f));
    for (size_t k = 1; k < args.size(); ++k) {
      Frame sub = f;
      if (args[k]->can_fail) {
        // Rows still undecided: AND needs those not false, OR those not true.
        Datum open = acc;
        if (!is_and) {
          ARROW_ASSIGN_OR_RAISE(open, Call("invert", {acc}));
        }
        ARROW_ASSIGN_OR_RAISE(open, Call("coalesce", {open, Datum(BoolScalar(true))}));
        ARROW_ASSIGN_OR_RAISE(sub.mask, AndMasks(f.mask, open, f.length));
      }
      ARROW_ASSIGN_OR_RAISE(Datum next, args[k]->eval(sub));
      ARROW_ASSIGN_OR_RAISE(acc, Call(is_and ? "and_kleene" : "or_kleene", {acc, next}));
    }
    return acc;
  });
}

// -- LIKE / regular expressions ------------------------------------------------

Result<NodePtr> BindPatternMatch(const std::string& op, NodePtr l, NodePtr r, int pos) {
  if (l->type == PgType::kUnknown) {
    ARROW_ASSIGN_OR_RAISE(l, Coerce(l, PgType::kText, pos));
  }
  if (r->type == PgType::kUnknown) {
    ARROW_ASSIGN_OR_RAISE(r, Coerce(r, PgType::kText, pos));
  }
  if (l->type != PgType::kText || r->type != PgType::kText) return OperatorDoesNotExist(pos, op, l, r);
  if (!r->constant) {
    return CompileError(r->position, "the pattern of " + op + " must be a constant in a transformation");
  }
  if (!r->constant->is_valid) {
    return Constant(PgType::kBool, pos, arrow::MakeNullScalar(arrow::boolean()));
  }
  std::string pattern = static_cast<const arrow::StringScalar&>(*r->constant).ToString();
  bool negate = op[0] == '!';
  bool ignore_case = op.back() == '*';
  bool like = op.find("~~") != std::string::npos;
  if (like && !pattern.empty() && pattern.back() == '\\') {
    // PostgreSQL: "LIKE pattern must not end with escape character".
    return CompileError(r->position, "LIKE pattern must not end with escape character");
  }
  auto options = std::make_shared<cp::MatchSubstringOptions>(pattern, ignore_case);
  std::string kernel = like ? "match_like" : "match_substring_regex";
  return Make(PgType::kBool, pos, {l}, false,
              [l, options, kernel, negate](const Frame& f) -> Result<Datum> {
                ARROW_ASSIGN_OR_RAISE(Datum v, l->eval(f));
                ARROW_ASSIGN_OR_RAISE(v, Call(kernel, {v}, options.get()));
                if (negate) return Call("invert", {v});
                return v;
              });
}

// -- text ---------------------------------------------------------------------

Result<NodePtr> OutputText(const NodePtr& n, int pos) {
  if (n->type != PgType::kBool) return Cast(n, TargetFor(PgType::kText), pos);
  auto t = std::make_shared<arrow::StringScalar>("t");
  auto f_ = std::make_shared<arrow::StringScalar>("f");
  return Make(PgType::kText, pos, {n}, false, [n, t, f_](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
    return Call("if_else", {v, Datum(t), Datum(f_)});
  });
}

Result<NodePtr> AsText(NodePtr n) {
  if (n->type == PgType::kText) return n;
  if (n->type == PgType::kUnknown) return Coerce(n, PgType::kText, n->position);
  return OutputText(n, n->position);
}

Result<NodePtr> BindConcatOperator(NodePtr l, NodePtr r, int pos) {
  bool l_text = l->type == PgType::kText || l->type == PgType::kUnknown;
  bool r_text = r->type == PgType::kText || r->type == PgType::kUnknown;
  if (!l_text && !r_text) return OperatorDoesNotExist(pos, "||", l, r);
  // text || anynonarray casts the other side to text (true, not t).
  for (NodePtr* side : {&l, &r}) {
    if ((*side)->type != PgType::kText) {
      ARROW_ASSIGN_OR_RAISE(*side, Cast(*side, TargetFor(PgType::kText), (*side)->position));
    }
  }
  return Make(PgType::kText, pos, {l, r}, false, [l, r](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum a, l->eval(f));
    ARROW_ASSIGN_OR_RAISE(Datum b, r->eval(f));
    cp::JoinOptions join(cp::JoinOptions::EMIT_NULL);
    return Call("binary_join_element_wise",
                {a, b, Datum(std::make_shared<arrow::StringScalar>(""))}, &join);
  });
}

// -- binding ------------------------------------------------------------------

Result<NodePtr> Binder::Bind(const json::value& v, int fallback) {
  // Not a structured binding: clang (the fuzz build) cannot capture those in lambdas.
  const auto unwrapped = Unwrap(v);
  const std::string& kind = unwrapped.first;
  const json::object* o = unwrapped.second;
  if (o == nullptr) return CompileError(fallback, "unexpected expression");
  int pos = PositionOf(*o, fallback);
  if (kind == "ColumnRef") return BindColumnRef(*o, pos);
  if (kind == "A_Const") return BindConst(*o, pos);
  if (kind == "TypeCast") return BindTypeCast(*o, pos);
  if (kind == "A_Expr") return BindAExpr(*o, pos);
  if (kind == "BoolExpr") return BindBoolExpr(*o, pos);
  if (kind == "CaseExpr") return BindCase(*o, pos);
  if (kind == "CoalesceExpr") return BindCoalesce(*o, pos);
  if (kind == "MinMaxExpr") return BindMinMax(*o, pos);
  if (kind == "NullTest") return BindNullTest(*o, pos);
  if (kind == "BooleanTest") return BindBooleanTest(*o, pos);
  if (kind == "SQLValueFunction") return BindClock(*o, pos);
  if (kind == "FuncCall") return BindFuncCall(*o, pos);
  if (kind == "SubLink") return CompileError(pos, "subqueries are not supported in a transformation");
  return CompileError(pos, kind + " is not supported in a transformation");
}

Result<NodePtr> Binder::BindColumnRef(const json::object& o, int pos) {
  std::vector<std::string> parts;
  if (auto* fields = ArrayField(o, "fields")) {
    for (const auto& part : *fields) parts.push_back(StringValue(part));
  }
  std::string full;
  for (const auto& p : parts) full += (full.empty() ? "" : ".") + p;
  // The first field of that name (a schema may repeat one), else the last
  // part of a qualified name ("t.amount" -> "amount").
  auto find = [this](const std::string& name) {
    std::vector<int> found = schema_.GetAllFieldIndices(name);
    return found.empty() ? -1 : found.front();
  };
  int index = find(full);
  if (index < 0 && parts.size() > 1) index = find(parts.back());
  if (index < 0) return UnknownColumn(pos, "column \"" + full + "\" does not exist");
  const auto& field = schema_.field(index);
  auto type = PgTypeOfArrow(*field->type());
  if (!type.ok()) {
    return UnknownColumn(pos, "column \"" + field->name() + "\" has type " +
                                  field->type()->ToString() + ", which a transformation cannot read");
  }
  size_t slot = 0;
  while (slot < columns.size() && columns[slot].name != field->name()) ++slot;
  if (slot == columns.size()) columns.push_back(ColumnBinding{field->name(), *type});
  auto n = std::make_shared<Node>();
  n->type = *type;
  n->position = pos;
  n->eval = [slot](const Frame& f) -> Result<Datum> { return (*f.columns)[slot]; };
  return n;
}

Result<NodePtr> Binder::BindConst(const json::object& o, int pos) {
  if (o.contains("isnull")) {
    NodePtr n = Constant(PgType::kUnknown, pos, arrow::MakeNullScalar(arrow::utf8()));
    n->unknown_literal = true;
    return n;
  }
  if (auto* iv = o.if_contains("ival")) {
    int64_t value = 0;
    if (auto* inner = iv->if_object(); inner && inner->contains("ival")) {
      value = inner->at("ival").to_number<int64_t>();
    }
    return Constant(PgType::kInt4, pos, std::make_shared<arrow::Int64Scalar>(value));
  }
  if (auto* fv = o.if_contains("fval")) {
    std::string text;
    if (auto* inner = fv->if_object(); inner && inner->contains("fval")) {
      text = std::string(inner->at("fval").as_string());
    }
    bool integral = !text.empty() && text.find_first_not_of("0123456789-+") == std::string::npos;
    if (integral) {
      errno = 0;
      char* end = nullptr;
      long long value = std::strtoll(text.c_str(), &end, 10);
      if (errno == 0 && *end == '\0') {
        return Constant(PgType::kInt8, pos, std::make_shared<arrow::Int64Scalar>(value));
      }
    }
    return Constant(PgType::kNumeric, pos,
                    std::make_shared<arrow::DoubleScalar>(std::strtod(text.c_str(), nullptr)));
  }
  if (auto* bv = o.if_contains("boolval")) {
    bool value = false;
    if (auto* inner = bv->if_object(); inner && inner->contains("boolval")) {
      value = inner->at("boolval").as_bool();
    }
    return Constant(PgType::kBool, pos, BoolScalar(value));
  }
  if (auto* sv = o.if_contains("sval")) {
    std::string text;
    if (auto* inner = sv->if_object(); inner && inner->contains("sval")) {
      text = std::string(inner->at("sval").as_string());
    }
    NodePtr n = Constant(PgType::kUnknown, pos, std::make_shared<arrow::StringScalar>(text));
    n->unknown_literal = true;
    return n;
  }
  return CompileError(pos, "this kind of constant is not supported in a transformation");
}

Result<NodePtr> Binder::BindTypeCast(const json::object& o, int pos) {
  const json::value* arg = o.if_contains("arg");
  const json::value* type_name = o.if_contains("typeName");
  if (arg == nullptr || type_name == nullptr || !type_name->is_object()) {
    return CompileError(pos, "malformed cast");
  }
  int type_pos = PositionOf(type_name->as_object(), pos);
  ARROW_ASSIGN_OR_RAISE(NodePtr n, Bind(*arg, pos));
  ARROW_ASSIGN_OR_RAISE(CastTarget target, ResolveTypeName(type_name->as_object(), type_pos));
  return Cast(n, target, n->unknown_literal ? n->position : pos);
}

Result<NodePtr> Binder::BindAExpr(const json::object& o, int pos) {
  std::string kind = StringField(o, "kind");
  std::string op;
  if (auto* names = ArrayField(o, "name"); names && !names->empty()) op = StringValue(names->back());
  const json::value* lexpr = o.if_contains("lexpr");
  const json::value* rexpr = o.if_contains("rexpr");
  if (kind == "AEXPR_OP") {
    if (rexpr == nullptr) return CompileError(pos, "operator " + op + " is not supported");
    if (lexpr == nullptr) {
      ARROW_ASSIGN_OR_RAISE(NodePtr r, Bind(*rexpr, pos));
      if (op == "-") return BindNegate(r, pos);
      if (op == "+") return r;
      return CompileError(pos, "prefix operator " + op + " is not supported in a transformation");
    }
    ARROW_ASSIGN_OR_RAISE(NodePtr l, Bind(*lexpr, pos));
    ARROW_ASSIGN_OR_RAISE(NodePtr r, Bind(*rexpr, pos));
    if (op == "+" || op == "-" || op == "*" || op == "/" || op == "%" || op == "^") {
      return BindArithmetic(op, l, r, pos);
    }
    if (ComparisonKernel(op) != nullptr) return BindComparison(op, l, r, pos);
    if (op == "||") return BindConcatOperator(l, r, pos);
    if (op == "~" || op == "!~" || op == "~*" || op == "!~*" || op == "~~" || op == "!~~" ||
        op == "~~*" || op == "!~~*") {
      return BindPatternMatch(op, l, r, pos);
    }
    return CompileError(pos, "operator " + op + " is not supported in a transformation");
  }
  if (lexpr == nullptr || rexpr == nullptr) {
    return CompileError(pos, kind + " is not supported in a transformation");
  }
  ARROW_ASSIGN_OR_RAISE(NodePtr l, Bind(*lexpr, pos));
  if (kind == "AEXPR_LIKE" || kind == "AEXPR_ILIKE") {
    ARROW_ASSIGN_OR_RAISE(NodePtr r, Bind(*rexpr, pos));
    return BindPatternMatch(op, l, r, pos);
  }
  if (kind == "AEXPR_NULLIF") {
    ARROW_ASSIGN_OR_RAISE(NodePtr r, Bind(*rexpr, pos));
    ARROW_ASSIGN_OR_RAISE(NodePtr eq, BindComparison("=", l, r, pos));
    if (l->type == PgType::kUnknown) {
      ARROW_ASSIGN_OR_RAISE(l, Coerce(l, PgType::kText, pos));
    }
    auto null = arrow::MakeNullScalar(ArrowTypeOf(l->type));
    return Make(l->type, pos, {l, eq}, false, [l, eq, null](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, l->eval(f));
      ARROW_ASSIGN_OR_RAISE(Datum same, eq->eval(f));
      ARROW_ASSIGN_OR_RAISE(same, TrueOnly(same));
      return Call("if_else", {same, Datum(null), v});
    });
  }
  if (kind == "AEXPR_DISTINCT" || kind == "AEXPR_NOT_DISTINCT") {
    ARROW_ASSIGN_OR_RAISE(NodePtr r, Bind(*rexpr, pos));
    ARROW_ASSIGN_OR_RAISE(NodePtr ne, BindComparison("<>", l, r, pos));
    bool distinct = kind == "AEXPR_DISTINCT";
    return Make(PgType::kBool, pos, {l, r, ne}, false,
                [l, r, ne, distinct](const Frame& f) -> Result<Datum> {
                  ARROW_ASSIGN_OR_RAISE(Datum a, l->eval(f));
                  ARROW_ASSIGN_OR_RAISE(Datum b, r->eval(f));
                  ARROW_ASSIGN_OR_RAISE(Datum differ, ne->eval(f));
                  ARROW_ASSIGN_OR_RAISE(Datum a_null, Call("is_null", {a}));
                  ARROW_ASSIGN_OR_RAISE(Datum b_null, Call("is_null", {b}));
                  // Both null: not distinct; one null: distinct; else <>.
                  ARROW_ASSIGN_OR_RAISE(Datum one_null, Call("xor", {a_null, b_null}));
                  ARROW_ASSIGN_OR_RAISE(Datum v, Call("coalesce", {differ, one_null}));
                  if (!distinct) return Call("invert", {v});
                  return v;
                });
  }
  auto items = [&]() -> Result<std::vector<NodePtr>> {
    std::vector<NodePtr> out;
    auto [list_kind, list] = Unwrap(*rexpr);
    const json::array* arr = list ? ArrayField(*list, "items") : nullptr;
    if (arr == nullptr) return CompileError(pos, "expected a list");
    for (const auto& item : *arr) {
      ARROW_ASSIGN_OR_RAISE(NodePtr n, Bind(item, pos));
      out.push_back(n);
    }
    return out;
  };
  if (kind == "AEXPR_IN") {
    ARROW_ASSIGN_OR_RAISE(std::vector<NodePtr> list, items());
    bool negated = op == "<>";
    std::vector<NodePtr> tests;
    for (const auto& item : list) {
      ARROW_ASSIGN_OR_RAISE(NodePtr t, BindComparison(negated ? "<>" : "=", l, item, pos));
      tests.push_back(t);
    }
    // x IN (a, b) is x = a OR x = b, with its NULL semantics; NOT IN the AND of <>.
    return BindLogical(/*is_and=*/negated, tests, pos);
  }
  if (kind == "AEXPR_BETWEEN" || kind == "AEXPR_NOT_BETWEEN" || kind == "AEXPR_BETWEEN_SYM" ||
      kind == "AEXPR_NOT_BETWEEN_SYM") {
    ARROW_ASSIGN_OR_RAISE(std::vector<NodePtr> list, items());
    if (list.size() != 2) return CompileError(pos, "BETWEEN needs two bounds");
    bool negated = kind.find("NOT") != std::string::npos;
    auto between = [&](const NodePtr& lo, const NodePtr& hi) -> Result<NodePtr> {
      if (negated) {
        ARROW_ASSIGN_OR_RAISE(NodePtr a, BindComparison("<", l, lo, pos));
        ARROW_ASSIGN_OR_RAISE(NodePtr b, BindComparison(">", l, hi, pos));
        return BindLogical(false, {a, b}, pos);
      }
      ARROW_ASSIGN_OR_RAISE(NodePtr a, BindComparison(">=", l, lo, pos));
      ARROW_ASSIGN_OR_RAISE(NodePtr b, BindComparison("<=", l, hi, pos));
      return BindLogical(true, {a, b}, pos);
    };
    ARROW_ASSIGN_OR_RAISE(NodePtr forward, between(list[0], list[1]));
    if (kind.find("SYM") == std::string::npos) return forward;
    ARROW_ASSIGN_OR_RAISE(NodePtr backward, between(list[1], list[0]));
    return BindLogical(/*is_and=*/negated, {forward, backward}, pos);
  }
  return CompileError(pos, kind + " is not supported in a transformation");
}

Result<NodePtr> Binder::BindBoolExpr(const json::object& o, int pos) {
  std::string op = StringField(o, "boolop");
  std::vector<NodePtr> args;
  if (auto* arr = ArrayField(o, "args")) {
    for (const auto& a : *arr) {
      ARROW_ASSIGN_OR_RAISE(NodePtr n, Bind(a, pos));
      args.push_back(n);
    }
  }
  if (args.empty()) return CompileError(pos, "malformed boolean expression");
  if (op == "NOT_EXPR") {
    ARROW_ASSIGN_OR_RAISE(NodePtr n, RequireBool(args[0], "NOT"));
    return BindNot(n, pos);
  }
  return BindLogical(op == "AND_EXPR", std::move(args), pos);
}

Result<NodePtr> Binder::BindCase(const json::object& o, int pos) {
  std::optional<NodePtr> subject;
  if (auto* arg = o.if_contains("arg")) {
    ARROW_ASSIGN_OR_RAISE(NodePtr s, Bind(*arg, pos));
    subject = s;
  }
  std::vector<NodePtr> conditions, results;
  if (auto* arr = ArrayField(o, "args")) {
    for (const auto& w : *arr) {
      auto [kind, when] = Unwrap(w);
      if (kind != "CaseWhen") return CompileError(pos, "malformed CASE");
      int when_pos = PositionOf(*when, pos);
      ARROW_ASSIGN_OR_RAISE(NodePtr cond, Bind(Child(*when, "expr"), when_pos));
      if (subject) {
        ARROW_ASSIGN_OR_RAISE(cond, BindComparison("=", *subject, cond, when_pos));
      } else {
        ARROW_ASSIGN_OR_RAISE(cond, RequireBool(cond, "CASE/WHEN"));
      }
      ARROW_ASSIGN_OR_RAISE(NodePtr result, Bind(Child(*when, "result"), when_pos));
      conditions.push_back(cond);
      results.push_back(result);
    }
  }
  NodePtr otherwise;
  if (auto* def = o.if_contains("defresult")) {
    ARROW_ASSIGN_OR_RAISE(otherwise, Bind(*def, pos));
  } else {
    otherwise = Constant(PgType::kUnknown, pos, arrow::MakeNullScalar(arrow::utf8()));
    otherwise->unknown_literal = true;
  }
  results.push_back(otherwise);
  ARROW_ASSIGN_OR_RAISE(PgType type, CommonType(results, "CASE", pos));
  ARROW_ASSIGN_OR_RAISE(results, CoerceAll(results, type));
  std::vector<NodePtr> children = conditions;
  children.insert(children.end(), results.begin(), results.end());
  bool lazy = false;
  for (const auto& c : children) lazy = lazy || c->can_fail;
  auto arrow_type = ArrowTypeOf(type);
  return Make(type, pos, children, false,
              [conditions, results, lazy, arrow_type](const Frame& f) -> Result<Datum> {
                // Row i takes the first branch whose condition is true there.
                std::vector<std::shared_ptr<arrow::Array>> taken;
                std::vector<std::string> names;
                std::shared_ptr<arrow::Array> open = f.mask;  // rows not yet decided
                std::vector<Datum> values;
                for (size_t k = 0; k < conditions.size(); ++k) {
                  Frame sub = f;
                  sub.mask = open;
                  ARROW_ASSIGN_OR_RAISE(Datum c, conditions[k]->eval(lazy ? sub : f));
                  ARROW_ASSIGN_OR_RAISE(auto t, AndMasks(lazy ? open : nullptr, c, f.length));
                  if (lazy) {
                    ARROW_ASSIGN_OR_RAISE(Datum not_t, Call("invert", {Datum(t)}));
                    ARROW_ASSIGN_OR_RAISE(open, AndMasks(open, not_t, f.length));
                  }
                  Frame branch = f;
                  branch.mask = t;
                  ARROW_ASSIGN_OR_RAISE(Datum v, results[k]->eval(lazy ? branch : f));
                  taken.push_back(t);
                  names.push_back("c" + std::to_string(k));
                  values.push_back(std::move(v));
                }
                Frame rest = f;
                rest.mask = open;
                ARROW_ASSIGN_OR_RAISE(Datum otherwise, results.back()->eval(lazy ? rest : f));
                if (taken.empty()) return otherwise;
                ARROW_ASSIGN_OR_RAISE(auto conds, arrow::StructArray::Make(taken, names));
                std::vector<Datum> args{Datum(conds)};
                for (auto& v : values) args.push_back(std::move(v));
                args.push_back(std::move(otherwise));
                return Call("case_when", args);
              });
}

Result<NodePtr> Binder::BindCoalesce(const json::object& o, int pos) {
  std::vector<NodePtr> args;
  if (auto* arr = ArrayField(o, "args")) {
    for (const auto& a : *arr) {
      ARROW_ASSIGN_OR_RAISE(NodePtr n, Bind(a, pos));
      args.push_back(n);
    }
  }
  ARROW_ASSIGN_OR_RAISE(PgType type, CommonType(args, "COALESCE", pos));
  ARROW_ASSIGN_OR_RAISE(args, CoerceAll(args, type));
  return Make(type, pos, args, false, [args](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum acc, args[0]->eval(f));
    for (size_t k = 1; k < args.size(); ++k) {
      Frame sub = f;
      if (args[k]->can_fail) {  // only where everything before is null
        ARROW_ASSIGN_OR_RAISE(Datum open, Call("is_null", {acc}));
        ARROW_ASSIGN_OR_RAISE(sub.mask, AndMasks(f.mask, open, f.length));
      }
      ARROW_ASSIGN_OR_RAISE(Datum next, args[k]->eval(sub));
      ARROW_ASSIGN_OR_RAISE(acc, Call("coalesce", {acc, next}));
    }
    return acc;
  });
}

Result<NodePtr> Binder::BindMinMax(const json::object& o, int pos) {
  bool greatest = StringField(o, "op") == "IS_GREATEST";
  std::vector<NodePtr> args;
  if (auto* arr = ArrayField(o, "args")) {
    for (const auto& a : *arr) {
      ARROW_ASSIGN_OR_RAISE(NodePtr n, Bind(a, pos));
      args.push_back(n);
    }
  }
  ARROW_ASSIGN_OR_RAISE(PgType type, CommonType(args, greatest ? "GREATEST" : "LEAST", pos));
  ARROW_ASSIGN_OR_RAISE(args, CoerceAll(args, type));
  if (type == PgType::kInterval || type == PgType::kBool) {
    return CompileError(pos, std::string(greatest ? "GREATEST" : "LEAST") + " of " + PgName(type) +
                                 " is not supported in a transformation");
  }
  return Make(type, pos, args, false, [args, greatest](const Frame& f) -> Result<Datum> {
    std::vector<Datum> values;
    for (const auto& a : args) {
      ARROW_ASSIGN_OR_RAISE(Datum v, a->eval(f));
      values.push_back(std::move(v));
    }
    cp::ElementWiseAggregateOptions skip_nulls(true);  // PostgreSQL ignores NULLs here
    auto type = values[0].type();
    // Arrow's element-wise min/max has no timestamp kernel: compare the micros.
    bool timestamp = type->id() == arrow::Type::TIMESTAMP;
    if (timestamp) {
      for (auto& v : values) {
        ARROW_ASSIGN_OR_RAISE(v, CastDatum(v, arrow::int64()));
      }
    }
    ARROW_ASSIGN_OR_RAISE(Datum out, Call(greatest ? "max_element_wise" : "min_element_wise",
                                          values, &skip_nulls));
    if (timestamp) return CastDatum(out, type);
    return out;
  });
}

Result<NodePtr> Binder::BindNullTest(const json::object& o, int pos) {
  ARROW_ASSIGN_OR_RAISE(NodePtr n, Bind(Child(o, "arg"), pos));
  bool is_null = StringField(o, "nulltesttype") == "IS_NULL";
  return Make(PgType::kBool, pos, {n}, false, [n, is_null](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
    return Call(is_null ? "is_null" : "is_valid", {v});
  });
}

Result<NodePtr> Binder::BindBooleanTest(const json::object& o, int pos) {
  ARROW_ASSIGN_OR_RAISE(NodePtr n, Bind(Child(o, "arg"), pos));
  std::string test = StringField(o, "booltesttype");
  ARROW_ASSIGN_OR_RAISE(n, RequireBool(n, "IS TRUE"));
  return Make(PgType::kBool, pos, {n}, false, [n, test](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum v, n->eval(f));
    auto fill = [&](const Datum& d, bool value) {
      return Call("coalesce", {d, Datum(BoolScalar(value))});
    };
    if (test == "IS_TRUE") return fill(v, false);
    if (test == "IS_NOT_TRUE") {
      ARROW_ASSIGN_OR_RAISE(Datum t, fill(v, false));
      return Call("invert", {t});
    }
    if (test == "IS_FALSE") {
      ARROW_ASSIGN_OR_RAISE(Datum t, fill(v, true));
      return Call("invert", {t});
    }
    if (test == "IS_NOT_FALSE") return fill(v, true);
    if (test == "IS_UNKNOWN") return Call("is_null", {v});
    return Call("is_valid", {v});
  });
}

NodePtr ClockNode(PgType type, int pos, int precision) {
  auto n = std::make_shared<Node>();
  n->type = type;
  n->position = pos;
  n->reads_clock = true;
  n->eval = [type, precision](const Frame& f) -> Result<Datum> {
    int64_t clock = f.ctx->clock;
    if (type == PgType::kDate) {
      int64_t days = clock / kMicrosPerDay - (clock % kMicrosPerDay < 0 ? 1 : 0);
      return Datum(std::make_shared<arrow::Date32Scalar>(static_cast<int32_t>(days)));
    }
    if (precision >= 0 && precision < 6) {
      int64_t unit = 1;
      for (int i = precision; i < 6; ++i) unit *= 10;
      clock = static_cast<int64_t>(std::llround(static_cast<double>(clock) / static_cast<double>(unit))) * unit;
    }
    return Datum(std::make_shared<arrow::TimestampScalar>(clock, ArrowTypeOf(type)));
  };
  return n;
}

Result<NodePtr> Binder::BindClock(const json::object& o, int pos) {
  std::string op = StringField(o, "op");
  int precision = -1;
  if (auto* tm = o.if_contains("typmod"); tm && tm->is_int64()) precision = static_cast<int>(tm->as_int64());
  if (op == "SVFOP_CURRENT_DATE") return ClockNode(PgType::kDate, pos, -1);
  if (op == "SVFOP_CURRENT_TIMESTAMP" || op == "SVFOP_CURRENT_TIMESTAMP_N") {
    return ClockNode(PgType::kTimestampTz, pos, precision);
  }
  if (op == "SVFOP_LOCALTIMESTAMP" || op == "SVFOP_LOCALTIMESTAMP_N") {
    return ClockNode(PgType::kTimestamp, pos, precision);
  }
  return CompileError(pos, "this SQL value function is not supported in a transformation");
}

// -- functions ------------------------------------------------------------------

Status FunctionDoesNotExist(int pos, const std::string& name, const std::vector<NodePtr>& args) {
  std::string sig = name + "(";
  for (size_t i = 0; i < args.size(); ++i) sig += std::string(i ? ", " : "") + PgName(args[i]->type);
  return CompileError(pos, "function " + sig + ") does not exist");
}

Result<int64_t> ConstantInt(const NodePtr& n, const std::string& what) {
  if (!n->constant || !IsInteger(n->type)) {
    return CompileError(n->position, what + " must be an integer constant in a transformation");
  }
  if (!n->constant->is_valid) return CompileError(n->position, what + " must not be NULL");
  // Clamped so that offsets computed from it cannot overflow; no string is longer.
  constexpr int64_t kLimit = int64_t{1} << 40;
  return std::clamp(static_cast<const arrow::Int64Scalar&>(*n->constant).value, -kLimit, kLimit);
}

Result<std::string> ConstantText(const NodePtr& n, const std::string& what) {
  if (!n->constant || (n->type != PgType::kText && n->type != PgType::kUnknown)) {
    return CompileError(n->position, what + " must be a text constant in a transformation");
  }
  if (!n->constant->is_valid) return CompileError(n->position, what + " must not be NULL");
  return static_cast<const arrow::StringScalar&>(*n->constant).ToString();
}

// A unary kernel over float64: int arguments become double precision, as
// PostgreSQL resolves sqrt(int) to sqrt(double precision).
Result<NodePtr> FloatFunction(const std::string& name, const std::string& kernel, NodePtr arg,
                              int pos, bool can_fail, bool keep_numeric = true) {
  if (arg->type == PgType::kUnknown) {
    ARROW_ASSIGN_OR_RAISE(arg, Coerce(arg, PgType::kFloat8, pos));
  }
  if (!IsNumber(arg->type)) return FunctionDoesNotExist(pos, name, {arg});
  PgType type = keep_numeric && arg->type == PgType::kNumeric ? PgType::kNumeric : PgType::kFloat8;
  ARROW_ASSIGN_OR_RAISE(arg, Coerce(arg, type, pos));
  return Make(type, pos, {arg}, can_fail, [arg, kernel, pos](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum v, arg->eval(f));
    ARROW_ASSIGN_OR_RAISE(v, ActiveOnly(f, v));
    return Checked(Call(kernel, {v}), pos, "value out of range: overflow");
  });
}

struct ExtractField {
  std::string name;
};

std::string CanonicalField(std::string field) {
  field = AsciiLower(field);
  static const std::vector<std::pair<std::vector<std::string>, std::string>> kAliases = {
      {{"year", "years", "y", "yr", "yrs"}, "year"},
      {{"month", "months", "mon", "mons"}, "month"},
      {{"day", "days", "d"}, "day"},
      {{"hour", "hours", "h", "hr", "hrs"}, "hour"},
      {{"minute", "minutes", "m", "min", "mins"}, "minute"},
      {{"second", "seconds", "s", "sec", "secs"}, "second"},
      {{"millisecond", "milliseconds", "ms", "msec", "msecs"}, "milliseconds"},
      {{"microsecond", "microseconds", "us", "usec", "usecs"}, "microseconds"},
      {{"week", "weeks", "w"}, "week"},
      {{"quarter", "qtr"}, "quarter"},
      {{"decade", "decades"}, "decade"},
      {{"century", "centuries"}, "century"},
      {{"millennium", "millennia", "millenniums"}, "millennium"},
  };
  for (const auto& [aliases, canonical] : kAliases) {
    if (std::find(aliases.begin(), aliases.end(), field) != aliases.end()) return canonical;
  }
  return field;  // dow, doy, isodow, isoyear, epoch, ...
}

Result<NodePtr> BindExtract(const std::string& name, const std::vector<NodePtr>& args, int pos) {
  if (args.size() != 2) return FunctionDoesNotExist(pos, name, args);
  ARROW_ASSIGN_OR_RAISE(std::string raw, ConstantText(args[0], "the field of " + name));
  std::string field = CanonicalField(raw);
  NodePtr source = args[1];
  PgType result = name == "extract" ? PgType::kNumeric : PgType::kFloat8;
  if (source->type == PgType::kUnknown) {
    ARROW_ASSIGN_OR_RAISE(source, Coerce(source, PgType::kTimestampTz, pos));
  }
  auto unsupported = [&](const char* type) {
    return CompileError(pos, "unit \"" + raw + "\" not supported for type " + type);
  };
  if (source->type == PgType::kInterval) {
    static const std::set<std::string> kIntervalFields = {
        "year", "month", "day", "hour", "minute", "second", "milliseconds", "microseconds",
        "epoch", "quarter", "decade", "century", "millennium"};
    if (!kIntervalFields.count(field)) return unsupported("interval");
    // Arrow has no field kernels for month_day_nano intervals.
    return Make(result, pos, {source}, false, [source, field](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, source->eval(f));
      return MapRows<arrow::DoubleBuilder>(
          f, {v}, arrow::float64(), [&field](int64_t i, const auto& in, auto* b) -> Status {
            pg::Interval iv = IntervalAt(in[0], i);
            double out = 0;
            if (field == "year") out = static_cast<double>(iv.months / 12);
            else if (field == "month") out = static_cast<double>(iv.months % 12);
            else if (field == "day") out = static_cast<double>(iv.days);
            else if (field == "hour") out = static_cast<double>(iv.micros / kMicrosPerHour);
            else if (field == "minute") out = static_cast<double>((iv.micros / kMicrosPerMinute) % 60);
            else if (field == "second") out = static_cast<double>(iv.micros % kMicrosPerMinute) / 1e6;
            else if (field == "milliseconds") out = static_cast<double>(iv.micros % kMicrosPerMinute) / 1e3;
            else if (field == "microseconds") out = static_cast<double>(iv.micros % kMicrosPerMinute);
            else if (field == "quarter") out = static_cast<double>((iv.months % 12) / 3 + 1);
            else if (field == "decade") out = static_cast<double>(iv.months / 120);
            else if (field == "century") out = static_cast<double>(iv.months / 1200);
            else if (field == "millennium") out = static_cast<double>(iv.months / 12000);
            else {  // epoch: a year is 365.25 days, a month 30 days
              out = static_cast<double>(iv.micros) / 1e6 +
                    (static_cast<double>(iv.months / 12) * 365.25 +
                     static_cast<double>(iv.months % 12) * 30.0 + static_cast<double>(iv.days)) *
                        86400.0;
            }
            return b->Append(out);
          });
    });
  }
  if (!IsDateTime(source->type)) return FunctionDoesNotExist(pos, name, {args[0], source});
  bool is_date = source->type == PgType::kDate;
  static const std::set<std::string> kDateFields = {"year", "month", "day", "dow", "isodow", "doy",
                                                     "week", "quarter", "isoyear", "epoch",
                                                     "decade", "century", "millennium", "julian"};
  static const std::set<std::string> kTimeFields = {"hour", "minute", "second", "milliseconds",
                                                     "microseconds"};
  if (!kDateFields.count(field) && !(kTimeFields.count(field) && !is_date)) {
    return unsupported(PgName(source->type));
  }
  if (field == "julian") return CompileError(pos, "EXTRACT(julian ...) is not supported");
  if (is_date) {
    ARROW_ASSIGN_OR_RAISE(source, Coerce(source, PgType::kTimestamp, pos));
  }
  return Make(result, pos, {source}, false, [source, field](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum ts, source->eval(f));
    auto as_double = [](Result<Datum> r) -> Result<Datum> {
      ARROW_RETURN_NOT_OK(r.status());
      return CastDatum(*r, arrow::float64());
    };
    auto i64 = [](int64_t v) { return Datum(std::make_shared<arrow::Int64Scalar>(v)); };
    auto f64 = [](double v) { return Datum(std::make_shared<arrow::DoubleScalar>(v)); };
    if (field == "year" || field == "month" || field == "day" || field == "hour" ||
        field == "minute" || field == "quarter") {
      return as_double(Call(field, {ts}));
    }
    if (field == "doy") return as_double(Call("day_of_year", {ts}));
    if (field == "week") return as_double(Call("iso_week", {ts}));
    if (field == "isoyear") return as_double(Call("iso_year", {ts}));
    if (field == "dow" || field == "isodow") {
      // dow: Sunday = 0 .. Saturday = 6; isodow: Monday = 1 .. Sunday = 7.
      cp::DayOfWeekOptions options(field == "dow", field == "dow" ? 7 : 1);
      return as_double(Call("day_of_week", {ts}, &options));
    }
    if (field == "second" || field == "milliseconds" || field == "microseconds") {
      ARROW_ASSIGN_OR_RAISE(Datum sec, as_double(Call("second", {ts})));
      ARROW_ASSIGN_OR_RAISE(Datum micros, as_double(Call("microsecond", {ts})));
      ARROW_ASSIGN_OR_RAISE(Datum millis, as_double(Call("millisecond", {ts})));
      // Whole microseconds of the minute, then scaled: exact in a double.
      ARROW_ASSIGN_OR_RAISE(Datum us, Call("multiply", {sec, f64(1e6)}));
      ARROW_ASSIGN_OR_RAISE(Datum ms_us, Call("multiply", {millis, f64(1e3)}));
      ARROW_ASSIGN_OR_RAISE(us, Call("add", {us, ms_us}));
      ARROW_ASSIGN_OR_RAISE(us, Call("add", {us, micros}));
      if (field == "microseconds") return us;
      return Call("divide", {us, f64(field == "second" ? 1e6 : 1e3)});
    }
    if (field == "epoch") {
      ARROW_ASSIGN_OR_RAISE(Datum raw, CastDatum(ts, arrow::int64()));
      ARROW_ASSIGN_OR_RAISE(raw, CastDatum(raw, arrow::float64()));
      return Call("divide", {raw, f64(1e6)});
    }
    // decade, century, millennium from the year (years > 0).
    ARROW_ASSIGN_OR_RAISE(Datum year, Call("year", {ts}));
    if (field == "decade") return as_double(Call("divide", {year, i64(10)}));
    int64_t span = field == "century" ? 100 : 1000;
    ARROW_ASSIGN_OR_RAISE(Datum shifted, Call("add", {year, i64(span - 1)}));
    return as_double(Call("divide", {shifted, i64(span)}));
  });
}

Result<NodePtr> BindDateTrunc(const std::vector<NodePtr>& args, int pos) {
  if (args.size() != 2) return FunctionDoesNotExist(pos, "date_trunc", args);
  ARROW_ASSIGN_OR_RAISE(std::string raw, ConstantText(args[0], "the unit of date_trunc"));
  std::string unit = CanonicalField(raw);
  NodePtr source = args[1];
  if (source->type == PgType::kUnknown || source->type == PgType::kDate) {
    // PostgreSQL truncates a date as a timestamp with time zone.
    ARROW_ASSIGN_OR_RAISE(source, Coerce(source, PgType::kTimestampTz, pos));
  }
  if (!IsTimestamp(source->type)) return FunctionDoesNotExist(pos, "date_trunc", args);
  static const std::vector<std::pair<std::string, std::pair<cp::CalendarUnit, int>>> kUnits = {
      {"milliseconds", {cp::CalendarUnit::MILLISECOND, 1}},
      {"second", {cp::CalendarUnit::SECOND, 1}},
      {"minute", {cp::CalendarUnit::MINUTE, 1}},
      {"hour", {cp::CalendarUnit::HOUR, 1}},
      {"day", {cp::CalendarUnit::DAY, 1}},
      {"week", {cp::CalendarUnit::WEEK, 1}},
      {"month", {cp::CalendarUnit::MONTH, 1}},
      {"quarter", {cp::CalendarUnit::QUARTER, 1}},
      {"year", {cp::CalendarUnit::YEAR, 1}},
      {"decade", {cp::CalendarUnit::YEAR, 10}},
  };
  if (unit == "microseconds") return source;
  for (const auto& [name, spec] : kUnits) {
    if (name != unit) continue;
    auto options = std::make_shared<cp::RoundTemporalOptions>(spec.second, spec.first,
                                                              /*week_starts_monday=*/true);
    return Make(source->type, pos, {source}, false, [source, options](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, source->eval(f));
      return Call("floor_temporal", {v}, options.get());
    });
  }
  return CompileError(args[0]->position, "unit \"" + raw + "\" not supported for date_trunc");
}

Result<NodePtr> BindAge(std::vector<NodePtr> args, int pos) {
  if (args.empty() || args.size() > 2) return FunctionDoesNotExist(pos, "age", args);
  if (args.size() == 1) {
    // age(x) is age(current_date, x): midnight of the clock's day.
    args.insert(args.begin(), ClockNode(PgType::kDate, pos, -1));
  }
  for (auto& a : args) {
    if (a->type == PgType::kUnknown || a->type == PgType::kDate) {
      ARROW_ASSIGN_OR_RAISE(a, Coerce(a, PgType::kTimestamp, pos));
    }
    if (!IsTimestamp(a->type)) return FunctionDoesNotExist(pos, "age", args);
  }
  NodePtr a = args[0], b = args[1];
  return Make(PgType::kInterval, pos, {a, b}, false, [a, b, pos](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum x, a->eval(f));
    ARROW_ASSIGN_OR_RAISE(Datum y, b->eval(f));
    // PostgreSQL's symbolic field-wise difference has no Arrow kernel.
    return MapRows<arrow::MonthDayNanoIntervalBuilder>(
        f, {x, y}, arrow::month_day_nano_interval(),
        [pos](int64_t i, const auto& in, auto* builder) -> Status {
          return AppendInterval(builder, pg::Age(TimestampAt(in[0], i), TimestampAt(in[1], i)), pos);
        });
  });
}

Result<NodePtr> RequireText(const std::string& name, NodePtr n, const std::vector<NodePtr>& args,
                            int pos) {
  if (n->type == PgType::kUnknown) return Coerce(n, PgType::kText, pos);
  if (n->type != PgType::kText) return FunctionDoesNotExist(pos, name, args);
  return n;
}

NodePtr TextKernel(PgType type, int pos, const NodePtr& arg, const std::string& kernel,
                   std::shared_ptr<cp::FunctionOptions> options) {
  return Make(type, pos, {arg}, false, [arg, kernel, options](const Frame& f) -> Result<Datum> {
    ARROW_ASSIGN_OR_RAISE(Datum v, arg->eval(f));
    ARROW_ASSIGN_OR_RAISE(v, Call(kernel, {v}, options.get()));
    if (kernel == "utf8_length") return CastDatum(v, arrow::int64());
    return v;
  });
}

Result<NodePtr> Binder::BindFuncCall(const json::object& o, int pos) {
  std::string name = LastName(ArrayField(o, "funcname"));
  if (o.contains("over")) {
    return CompileError(pos, "window function " + name +
                                 "() is not a scalar expression: window aggregation computes it");
  }
  if (o.contains("agg_star") || o.contains("agg_distinct") || o.contains("agg_order") ||
      o.contains("agg_filter") || o.contains("func_variadic") ||
      WindowFunctionNames().count(name)) {
    return CompileError(pos, "aggregate " + name + "() is not a scalar expression");
  }
  std::vector<NodePtr> args;
  if (auto* arr = ArrayField(o, "args")) {
    for (const auto& a : *arr) {
      ARROW_ASSIGN_OR_RAISE(NodePtr n, Bind(a, pos));
      args.push_back(n);
    }
  }
  const size_t argc = args.size();
  auto arity = [&](size_t lo, size_t hi) -> Status {
    if (argc < lo || argc > hi) return FunctionDoesNotExist(pos, name, args);
    return Status::OK();
  };

  // Clock.
  if (name == "now" || name == "transaction_timestamp" || name == "statement_timestamp" ||
      name == "clock_timestamp") {
    ARROW_RETURN_NOT_OK(arity(0, 0));
    return ClockNode(PgType::kTimestampTz, pos, -1);
  }
  if (name == "extract" || name == "date_part") return BindExtract(name, args, pos);
  if (name == "date_trunc") return BindDateTrunc(args, pos);
  if (name == "age") return BindAge(args, pos);

  // Mathematics.
  if (name == "abs") {
    ARROW_RETURN_NOT_OK(arity(1, 1));
    NodePtr a = args[0];
    if (a->type == PgType::kUnknown) {
      ARROW_ASSIGN_OR_RAISE(a, Coerce(a, PgType::kFloat8, pos));
    }
    if (!IsNumber(a->type)) return FunctionDoesNotExist(pos, name, args);
    bool integer = IsInteger(a->type);
    return Make(a->type, pos, {a}, false, [a, integer, pos](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, a->eval(f));
      return Checked(Call(integer ? "abs_checked" : "abs", {v}), pos, "bigint out of range");
    });
  }
  if (name == "sqrt") {
    ARROW_RETURN_NOT_OK(arity(1, 1));
    return FloatFunction(name, "sqrt_checked", args[0], pos, true);
  }
  if (name == "ln") {
    ARROW_RETURN_NOT_OK(arity(1, 1));
    return FloatFunction(name, "ln_checked", args[0], pos, true);
  }
  if (name == "log10" || (name == "log" && argc == 1)) {
    ARROW_RETURN_NOT_OK(arity(1, 1));
    return FloatFunction(name, "log10_checked", args[0], pos, true);
  }
  if (name == "exp") {
    ARROW_RETURN_NOT_OK(arity(1, 1));
    return FloatFunction(name, "exp", args[0], pos, false);
  }
  if (name == "floor" || name == "ceil" || name == "ceiling" || name == "sign") {
    ARROW_RETURN_NOT_OK(arity(1, 1));
    return FloatFunction(name, name == "ceiling" ? "ceil" : name, args[0], pos, false);
  }
  if (name == "log" && argc == 2) {  // log(base, x): numeric
    NodePtr base = args[0], x = args[1];
    for (NodePtr* p : {&base, &x}) {
      if ((*p)->type == PgType::kUnknown) {
        ARROW_ASSIGN_OR_RAISE(*p, Coerce(*p, PgType::kNumeric, pos));
      }
      // log(numeric, numeric) only: a double precision argument does not match.
      if (!IsNumber((*p)->type) || (*p)->type == PgType::kFloat8) {
        return FunctionDoesNotExist(pos, name, args);
      }
      ARROW_ASSIGN_OR_RAISE(*p, Coerce(*p, PgType::kNumeric, pos));
    }
    return Make(PgType::kNumeric, pos, {base, x}, true, [base, x, pos](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum b, base->eval(f));
      ARROW_ASSIGN_OR_RAISE(Datum v, x->eval(f));
      ARROW_ASSIGN_OR_RAISE(b, ActiveOnly(f, b));
      ARROW_ASSIGN_OR_RAISE(v, ActiveOnly(f, v));
      ARROW_ASSIGN_OR_RAISE(Datum ln_b, Checked(Call("ln_checked", {b}), pos, ""));
      ARROW_ASSIGN_OR_RAISE(Datum ln_v, Checked(Call("ln_checked", {v}), pos, ""));
      return Checked(Call("divide_checked", {ln_v, ln_b}), pos, "");
    });
  }
  if (name == "power" || name == "pow") {
    ARROW_RETURN_NOT_OK(arity(2, 2));
    NodePtr a = args[0], b = args[1];
    for (NodePtr* p : {&a, &b}) {
      if ((*p)->type == PgType::kUnknown) {
        ARROW_ASSIGN_OR_RAISE(*p, Coerce(*p, PgType::kFloat8, pos));
      }
      if (!IsNumber((*p)->type)) return FunctionDoesNotExist(pos, name, args);
    }
    return BindArithmetic("^", a, b, pos);
  }
  if (name == "mod") {
    ARROW_RETURN_NOT_OK(arity(2, 2));
    NodePtr a = args[0], b = args[1];
    for (NodePtr* p : {&a, &b}) {
      if ((*p)->type == PgType::kUnknown) {
        ARROW_ASSIGN_OR_RAISE(*p, Coerce(*p, PgType::kNumeric, pos));
      }
      if (!IsNumber((*p)->type) || (*p)->type == PgType::kFloat8) {
        return FunctionDoesNotExist(pos, name, args);  // mod(numeric|integer) only
      }
    }
    return BindArithmetic("%", a, b, pos);
  }
  if (name == "round" || name == "trunc") {
    ARROW_RETURN_NOT_OK(arity(1, 2));
    NodePtr a = args[0];
    if (a->type == PgType::kUnknown) {
      ARROW_ASSIGN_OR_RAISE(a, Coerce(a, PgType::kFloat8, pos));
    }
    if (!IsNumber(a->type)) return FunctionDoesNotExist(pos, name, args);
    bool truncate = name == "trunc";
    if (argc == 1 && a->type != PgType::kNumeric) {
      // round(double precision) rounds half to even (rint); ints are doubles here.
      ARROW_ASSIGN_OR_RAISE(a, Coerce(a, PgType::kFloat8, pos));
      return Make(PgType::kFloat8, pos, {a}, false, [a, truncate](const Frame& f) -> Result<Datum> {
        ARROW_ASSIGN_OR_RAISE(Datum v, a->eval(f));
        if (truncate) return Call("trunc", {v});
        cp::RoundOptions options(0, cp::RoundMode::HALF_TO_EVEN);
        return Call("round", {v}, &options);
      });
    }
    int64_t digits = 0;
    if (argc == 2) {
      // Only numeric has the two-argument form; PostgreSQL does not convert a
      // double precision to numeric implicitly.
      if (a->type == PgType::kFloat8) return FunctionDoesNotExist(pos, name, args);
      ARROW_ASSIGN_OR_RAISE(digits, ConstantInt(args[1], "the digits of " + name));
    }
    ARROW_ASSIGN_OR_RAISE(a, Coerce(a, a->type == PgType::kFloat8 ? PgType::kFloat8 : PgType::kNumeric, pos));
    int d = static_cast<int>(std::clamp<int64_t>(digits, -400, 400));
    return Make(PgType::kNumeric, pos, {a}, false, [a, d, truncate](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum v, a->eval(f));
      ARROW_ASSIGN_OR_RAISE(v, CastDatum(v, arrow::float64()));
      // Decimal rounding of numeric: see RoundDecimal.
      return MapRows<arrow::DoubleBuilder>(
          f, {v}, arrow::float64(), [d, truncate](int64_t i, const auto& in, auto* b) -> Status {
            return b->Append(
                RoundDecimal(static_cast<const arrow::DoubleArray&>(*in[0]).Value(i), d, truncate));
          });
    });
  }

  // Text.
  if (name == "lower" || name == "upper") {
    ARROW_RETURN_NOT_OK(arity(1, 1));
    ARROW_ASSIGN_OR_RAISE(NodePtr s, RequireText(name, args[0], args, pos));
    return TextKernel(PgType::kText, pos, s, "utf8_" + name, nullptr);
  }
  if (name == "length" || name == "char_length" || name == "character_length") {
    ARROW_RETURN_NOT_OK(arity(1, 1));
    ARROW_ASSIGN_OR_RAISE(NodePtr s, RequireText(name, args[0], args, pos));
    return TextKernel(PgType::kInt4, pos, s, "utf8_length", nullptr);
  }
  if (name == "substring" || name == "substr") {
    ARROW_RETURN_NOT_OK(arity(2, 3));
    ARROW_ASSIGN_OR_RAISE(NodePtr s, RequireText(name, args[0], args, pos));
    ARROW_ASSIGN_OR_RAISE(int64_t start, ConstantInt(args[1], "the start of " + name));
    int64_t stop = std::numeric_limits<int64_t>::max();
    if (argc == 3) {
      ARROW_ASSIGN_OR_RAISE(int64_t count, ConstantInt(args[2], "the length of " + name));
      if (count < 0) return CompileError(args[2]->position, "negative substring length not allowed");
      stop = std::max<int64_t>(start - 1 + count, 0);
    }
    // PostgreSQL counts from 1 and clips a start before the string; Arrow's
    // negative indexes would count from the end, so both are clamped at 0.
    int64_t begin = std::max<int64_t>(start - 1, 0);
    if (stop < begin) stop = begin;
    return TextKernel(PgType::kText, pos, s, "utf8_slice_codeunits",
                      std::make_shared<cp::SliceOptions>(begin, stop));
  }
  if (name == "left" || name == "right") {
    ARROW_RETURN_NOT_OK(arity(2, 2));
    ARROW_ASSIGN_OR_RAISE(NodePtr s, RequireText(name, args[0], args, pos));
    ARROW_ASSIGN_OR_RAISE(int64_t n, ConstantInt(args[1], "the length of " + name));
    constexpr int64_t kEnd = std::numeric_limits<int64_t>::max();
    std::shared_ptr<cp::SliceOptions> options;
    if (name == "left") {
      options = std::make_shared<cp::SliceOptions>(0, n);  // negative: all but the last -n
    } else if (n > 0) {
      options = std::make_shared<cp::SliceOptions>(-n, kEnd);
    } else if (n == 0) {
      options = std::make_shared<cp::SliceOptions>(0, 0);
    } else {
      options = std::make_shared<cp::SliceOptions>(-n, kEnd);  // all but the first -n
    }
    return TextKernel(PgType::kText, pos, s, "utf8_slice_codeunits", options);
  }
  if (name == "btrim" || name == "ltrim" || name == "rtrim" || name == "trim") {
    ARROW_RETURN_NOT_OK(arity(1, 2));
    ARROW_ASSIGN_OR_RAISE(NodePtr s, RequireText(name, args[0], args, pos));
    std::string chars = " ";  // PostgreSQL trims spaces only by default
    if (argc == 2) {
      ARROW_ASSIGN_OR_RAISE(chars, ConstantText(args[1], "the characters of " + name));
    }
    std::string kernel = name == "ltrim" ? "utf8_ltrim" : name == "rtrim" ? "utf8_rtrim" : "utf8_trim";
    return TextKernel(PgType::kText, pos, s, kernel, std::make_shared<cp::TrimOptions>(chars));
  }
  if (name == "replace") {
    ARROW_RETURN_NOT_OK(arity(3, 3));
    ARROW_ASSIGN_OR_RAISE(NodePtr s, RequireText(name, args[0], args, pos));
    ARROW_ASSIGN_OR_RAISE(std::string from, ConstantText(args[1], "the pattern of replace"));
    ARROW_ASSIGN_OR_RAISE(std::string to, ConstantText(args[2], "the replacement of replace"));
    if (from.empty()) return s;
    return TextKernel(PgType::kText, pos, s, "replace_substring",
                      std::make_shared<cp::ReplaceSubstringOptions>(from, to));
  }
  if (name == "position" || name == "strpos") {
    ARROW_RETURN_NOT_OK(arity(2, 2));
    ARROW_ASSIGN_OR_RAISE(NodePtr s, RequireText(name, args[0], args, pos));
    ARROW_ASSIGN_OR_RAISE(NodePtr sub, RequireText(name, args[1], args, pos));
    return Make(PgType::kInt4, pos, {s, sub}, false, [s, sub](const Frame& f) -> Result<Datum> {
      ARROW_ASSIGN_OR_RAISE(Datum a, s->eval(f));
      ARROW_ASSIGN_OR_RAISE(Datum b, sub->eval(f));
      // Character (not byte) positions, with a per-row needle: no Arrow kernel.
      return MapRows<arrow::Int64Builder>(
          f, {a, b}, arrow::int64(), [](int64_t i, const auto& in, auto* builder) -> Status {
            std::string_view hay = TextAt(in[0], i), needle = TextAt(in[1], i);
            size_t at = hay.find(needle);
            if (at == std::string_view::npos) return builder->Append(0);
            int64_t chars = 0;
            for (size_t k = 0; k < at; ++k) {
              if ((static_cast<unsigned char>(hay[k]) & 0xC0) != 0x80) ++chars;
            }
            return builder->Append(chars + 1);
          });
    });
  }
  if (name == "concat") {
    if (argc == 0) return FunctionDoesNotExist(pos, name, args);
    std::vector<NodePtr> texts;
    for (const auto& a : args) {
      ARROW_ASSIGN_OR_RAISE(NodePtr t, AsText(a));
      texts.push_back(t);
    }
    return Make(PgType::kText, pos, texts, false, [texts](const Frame& f) -> Result<Datum> {
      std::vector<Datum> values;
      for (const auto& t : texts) {
        ARROW_ASSIGN_OR_RAISE(Datum v, t->eval(f));
        values.push_back(std::move(v));
      }
      values.push_back(Datum(std::make_shared<arrow::StringScalar>("")));
      cp::JoinOptions skip_nulls(cp::JoinOptions::REPLACE, "");  // concat ignores NULLs
      return Call("binary_join_element_wise", values, &skip_nulls);
    });
  }
  return CompileError(pos, "function " + name + "() is not supported in a transformation");
}

// ---------------------------------------------------------------------------
// CheckSupported

const std::set<std::string>& ScalarFunctionNames() {
  static const std::set<std::string> names = {
      "now", "transaction_timestamp", "statement_timestamp", "clock_timestamp", "extract",
      "date_part", "date_trunc", "age", "abs", "sqrt", "ln", "log", "log10", "exp", "floor",
      "ceil", "ceiling", "sign", "power", "pow", "mod", "round", "trunc", "lower", "upper",
      "length", "char_length", "character_length", "substring", "substr", "left", "right",
      "btrim", "ltrim", "rtrim", "trim", "replace", "position", "strpos", "concat"};
  return names;
}

class SupportChecker {
 public:
  Status Check(const json::value& v, int fallback, bool in_window_arg) {
    // Not a structured binding: clang (the fuzz build) cannot capture those in lambdas.
    const auto unwrapped = Unwrap(v);
    const std::string& kind = unwrapped.first;
    const json::object* o = unwrapped.second;
    if (o == nullptr) {
      if (auto* arr = v.if_array()) {
        for (const auto& item : *arr) ARROW_RETURN_NOT_OK(Check(item, fallback, in_window_arg));
        return Status::OK();
      }
      return Status::OK();
    }
    int pos = PositionOf(*o, fallback);
    auto children = [&](std::initializer_list<const char*> keys) -> Status {
      for (const char* key : keys) {
        if (auto* c = o->if_contains(key)) ARROW_RETURN_NOT_OK(Check(*c, pos, in_window_arg));
      }
      return Status::OK();
    };
    if (kind == "ColumnRef" || kind == "A_Const") return Status::OK();
    if (kind == "List") return children({"items"});
    if (kind == "A_Expr") {
      std::string ak = StringField(*o, "kind");
      std::string op;
      if (auto* names = ArrayField(*o, "name"); names && !names->empty()) op = StringValue(names->back());
      static const std::set<std::string> kOps = {"+", "-", "*", "/", "%", "^", "=", "<>", "!=",
                                                 "<", "<=", ">", ">=", "||", "~", "!~", "~*",
                                                 "!~*", "~~", "!~~", "~~*", "!~~*"};
      static const std::set<std::string> kKinds = {
          "AEXPR_OP", "AEXPR_IN", "AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN", "AEXPR_BETWEEN_SYM",
          "AEXPR_NOT_BETWEEN_SYM", "AEXPR_LIKE", "AEXPR_ILIKE", "AEXPR_NULLIF", "AEXPR_DISTINCT",
          "AEXPR_NOT_DISTINCT"};
      if (!kKinds.count(ak)) {
        std::string what = ak == "AEXPR_SIMILAR" ? "SIMILAR TO" : ak == "AEXPR_OP_ANY" ? "ANY (...)"
                           : ak == "AEXPR_OP_ALL" ? "ALL (...)" : ak;
        return CompileError(pos, what + " is not supported in a transformation");
      }
      if (ak == "AEXPR_OP" && !kOps.count(op)) {
        return CompileError(pos, "operator " + op + " is not supported in a transformation");
      }
      if (ak == "AEXPR_OP" && !o->contains("lexpr") && op != "-" && op != "+") {
        return CompileError(pos, "prefix operator " + op + " is not supported in a transformation");
      }
      return children({"lexpr", "rexpr"});
    }
    if (kind == "BoolExpr" || kind == "CoalesceExpr" || kind == "MinMaxExpr") return children({"args"});
    if (kind == "CaseExpr") return children({"arg", "args", "defresult"});
    if (kind == "CaseWhen") return children({"expr", "result"});
    if (kind == "NullTest" || kind == "BooleanTest") return children({"arg"});
    if (kind == "TypeCast") {
      if (auto* tn = o->if_contains("typeName"); tn && tn->is_object()) {
        ARROW_RETURN_NOT_OK(ResolveTypeName(tn->as_object(), PositionOf(tn->as_object(), pos)).status());
      }
      return children({"arg"});
    }
    if (kind == "SQLValueFunction") {
      std::string op = StringField(*o, "op");
      if (op == "SVFOP_CURRENT_DATE" || op == "SVFOP_CURRENT_TIMESTAMP" ||
          op == "SVFOP_CURRENT_TIMESTAMP_N" || op == "SVFOP_LOCALTIMESTAMP" ||
          op == "SVFOP_LOCALTIMESTAMP_N") {
        return Status::OK();
      }
      std::string what = AsciiLower(op.size() > 6 ? op.substr(6) : op);
      return CompileError(pos, what + " is not supported in a transformation");
    }
    if (kind == "FuncCall") {
      std::string name = LastName(ArrayField(*o, "funcname"));
      bool window = o->contains("over");
      if (window || WindowFunctionNames().count(name)) {
        if (!WindowFunctionNames().count(name)) {
          return CompileError(pos, "window function " + name + "() is not supported in a transformation");
        }
        if (in_window_arg) {
          return CompileError(pos, "window function calls cannot be nested");
        }
        if (o->contains("agg_filter") || o->contains("agg_order")) {
          return CompileError(pos, "FILTER and ORDER BY inside " + name + "() are not supported");
        }
        if (auto* args = o->if_contains("args")) return Check(*args, pos, true);
        return Status::OK();
      }
      if (!ScalarFunctionNames().count(name)) {
        return CompileError(pos, "function " + name + "() is not supported in a transformation");
      }
      if (o->contains("agg_star") || o->contains("agg_distinct") || o->contains("agg_filter") ||
          o->contains("agg_order") || o->contains("func_variadic")) {
        return CompileError(pos, name + "() does not take *, DISTINCT, ORDER BY or FILTER");
      }
      return children({"args"});
    }
    if (kind == "SubLink") return CompileError(pos, "subqueries are not supported in a transformation");
    static const std::vector<std::pair<std::string, std::string>> kNames = {
        {"A_ArrayExpr", "ARRAY[...]"}, {"RowExpr", "ROW(...)"}, {"A_Indirection", "subscripts"},
        {"CollateClause", "COLLATE"}, {"ParamRef", "parameters ($1)"}, {"GroupingFunc", "GROUPING"},
        {"XmlExpr", "XML functions"}};
    for (const auto& [k, what] : kNames) {
      if (k == kind) return CompileError(pos, what + " is not supported in a transformation");
    }
    return CompileError(pos, kind + " is not supported in a transformation");
  }
};

// The first window function call in the tree (position and name), if any.
std::optional<std::pair<int, std::string>> FindWindow(const json::value& v, int fallback) {
  if (auto* arr = v.if_array()) {
    for (const auto& item : *arr) {
      if (auto w = FindWindow(item, fallback)) return w;
    }
    return std::nullopt;
  }
  const json::object* o = v.if_object();
  if (o == nullptr) return std::nullopt;
  int pos = PositionOf(*o, fallback);
  if (auto* fc = o->if_contains("FuncCall"); fc && fc->is_object() && fc->as_object().contains("over")) {
    return std::make_pair(PositionOf(fc->as_object(), pos),
                          LastName(ArrayField(fc->as_object(), "funcname")));
  }
  for (const auto& [key, child] : *o) {
    if (auto w = FindWindow(child, pos)) return w;
  }
  return std::nullopt;
}

}  // namespace

Status CheckSupported(const ParsedTransformation& parsed) {
  return SupportChecker().Check(parsed.expression, 1, false);
}

Result<CompiledExpression> CompiledExpression::Compile(
    const ParsedTransformation& parsed, const std::shared_ptr<arrow::Schema>& input) {
  static std::once_flag init_once;
  static Status init_status;
  std::call_once(init_once, [] { init_status = arrow::compute::Initialize(); });
  ARROW_RETURN_NOT_OK(init_status);
  if (auto window = FindWindow(parsed.expression, 1)) {
    return CompileError(window->first, "window function " + window->second +
                                           "() is not a scalar expression: window aggregation "
                                           "computes it");
  }
  if (input == nullptr) return Status::Invalid("CompiledExpression::Compile: no input schema");
  Binder binder(*input);
  ARROW_ASSIGN_OR_RAISE(NodePtr root, binder.Bind(parsed.expression, 1));
  if (root->type == PgType::kUnknown) {
    ARROW_ASSIGN_OR_RAISE(root, Coerce(root, PgType::kText, 1));
  }
  CompiledExpression out;
  out.root_ = root;
  out.type_ = ArrowTypeOf(root->type);
  for (const auto& c : binder.columns) out.input_columns_.push_back(c.name);
  out.column_types_.reserve(binder.columns.size());
  for (const auto& c : binder.columns) out.column_types_.push_back(ArrowTypeOf(c.type));
  return out;
}

bool CompiledExpression::reads_clock() const { return root_->reads_clock; }

Result<std::shared_ptr<arrow::Array>> CompiledExpression::Evaluate(
    const arrow::RecordBatch& batch, const EvalContext& ctx) const {
  std::vector<Datum> columns;
  columns.reserve(input_columns_.size());
  for (size_t i = 0; i < input_columns_.size(); ++i) {
    std::vector<int> found = batch.schema()->GetAllFieldIndices(input_columns_[i]);
    std::shared_ptr<arrow::Array> column = found.empty() ? nullptr : batch.column(found.front());
    if (column == nullptr) {
      return UnknownColumn(1, "column \"" + input_columns_[i] + "\" is missing from the batch");
    }
    const auto& want = column_types_[i];
    if (!column->type()->Equals(*want)) {
      cp::CastOptions options = cp::CastOptions::Safe(want);
      options.allow_time_truncate = true;
      options.allow_decimal_truncate = true;
      auto cast = cp::Cast(*column, want, options);
      if (!cast.ok()) {
        return UnknownColumn(1, "column \"" + input_columns_[i] + "\" of type " +
                                    column->type()->ToString() + " cannot be read as " +
                                    want->ToString() + ": " + cast.status().message());
      }
      column = *cast;
    }
    columns.emplace_back(std::move(column));
  }
  Frame frame{&ctx, batch.num_rows(), &columns, nullptr};
  Result<Datum> evaluated = root_->eval(frame);
  if (!evaluated.ok()) {
    if (ErrorOf(evaluated.status()) != nullptr) return evaluated.status();
    // An Arrow error no PostgreSQL message was mapped to: a bug of ours.
    return MakeError(ErrorCode::kInternal,
                     "evaluating the transformation: " + evaluated.status().message(), kField);
  }
  Datum result = std::move(evaluated).ValueUnsafe();
  ARROW_ASSIGN_OR_RAISE(auto array, ToArray(result, batch.num_rows()));
  if (!array->type()->Equals(*type_)) {
    ARROW_ASSIGN_OR_RAISE(Datum cast, CastDatum(array, type_));
    array = cast.make_array();
  }
  return array;
}

}  // namespace fstore
