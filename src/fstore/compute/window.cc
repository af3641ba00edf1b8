#include "fstore/compute/window.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <unordered_map>

#include <arrow/array.h>
#include <arrow/builder.h>
#include <arrow/compute/api.h>
#include <arrow/type.h>
#include <arrow/util/checked_cast.h>
#include <fmt/format.h>

#include "fstore/core/duration.h"
#include "fstore/core/time.h"

namespace fstore {
namespace json = boost::json;

std::string_view WindowFunctionName(WindowFunction function) {
  switch (function) {
    case WindowFunction::kCountStar:
    case WindowFunction::kCount:
    case WindowFunction::kCountDistinct:
      return "count";
    case WindowFunction::kSum:
      return "sum";
    case WindowFunction::kAvg:
      return "avg";
    case WindowFunction::kMin:
      return "min";
    case WindowFunction::kMax:
      return "max";
    case WindowFunction::kStddevSamp:
      return "stddev_samp";
    case WindowFunction::kFirstValue:
      return "first_value";
    case WindowFunction::kLastValue:
      return "last_value";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// PostgreSQL interval input
// ---------------------------------------------------------------------------

namespace {

struct IntervalUnit {
  std::string_view name;
  int64_t micros;  // 0: months or longer, refused
};

// PostgreSQL's spellings (src/backend/utils/adt/datetime.c, deltatktbl).
constexpr std::array<IntervalUnit, 49> kIntervalUnits = {{
    {"us", 1},          {"usec", 1},          {"usecs", 1},
    {"usecond", 1},     {"useconds", 1},      {"microsecon", 1},
    {"microsecond", 1}, {"microseconds", 1},  {"ms", 1000},
    {"msec", 1000},     {"msecs", 1000},      {"msecond", 1000},
    {"mseconds", 1000}, {"millisecon", 1000}, {"millisecond", 1000},
    {"milliseconds", 1000},
    {"s", kMicrosPerSecond},   {"sec", kMicrosPerSecond},  {"secs", kMicrosPerSecond},
    {"second", kMicrosPerSecond}, {"seconds", kMicrosPerSecond},
    {"m", kMicrosPerMinute},   {"min", kMicrosPerMinute},  {"mins", kMicrosPerMinute},
    {"minute", kMicrosPerMinute}, {"minutes", kMicrosPerMinute},
    {"h", kMicrosPerHour},     {"hr", kMicrosPerHour},     {"hrs", kMicrosPerHour},
    {"hour", kMicrosPerHour},  {"hours", kMicrosPerHour},
    {"d", kMicrosPerDay},      {"day", kMicrosPerDay},     {"days", kMicrosPerDay},
    {"w", 7 * kMicrosPerDay},  {"week", 7 * kMicrosPerDay}, {"weeks", 7 * kMicrosPerDay},
    {"mon", 0}, {"mons", 0}, {"month", 0}, {"months", 0},
    {"y", 0}, {"yr", 0}, {"yrs", 0}, {"year", 0}, {"years", 0},
    {"decade", 0}, {"century", 0}, {"millennium", 0},
}};

constexpr std::array<std::string_view, 9> kLongUnits = {
    "decades", "dec", "decs", "c", "cent", "centuries", "mil", "mils", "millennia"};

constexpr std::string_view kNotFixed =
    "is not a fixed duration (a month has 28 to 31 days, a year 365 or 366): write the "
    "window in days, weeks or hours, e.g. INTERVAL '30 days'";

Status BadInterval(std::string_view text, std::string_view what) {
  return InvalidArgument("", fmt::format("invalid interval '{}': {}", text.substr(0, 64), what));
}

bool IsDigitChar(char c) { return c >= '0' && c <= '9'; }
bool IsAlphaChar(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Reads digits[.digits] at *pos as mantissa * 10^-scale.
bool ReadDecimal(std::string_view s, size_t* pos, __int128* mantissa, int* scale) {
  *mantissa = 0;
  *scale = 0;
  size_t digits = 0;
  bool seen_point = false;
  while (*pos < s.size() && (IsDigitChar(s[*pos]) || (s[*pos] == '.' && !seen_point))) {
    if (s[*pos] == '.') {
      seen_point = true;
    } else {
      if (++digits > 30) return false;
      *mantissa = *mantissa * 10 + (s[*pos] - '0');
      if (seen_point) ++*scale;
    }
    ++*pos;
  }
  return digits > 0;
}

// mantissa * 10^-scale * unit, rounded half away from zero (PostgreSQL rounds
// fractional microseconds with rint()).
__int128 ScaleToMicros(__int128 mantissa, int scale, int64_t unit) {
  __int128 v = mantissa * unit;
  __int128 div = 1;
  for (int i = 0; i < scale; ++i) div *= 10;
  return (v + div / 2) / div;
}

}  // namespace

Result<int64_t> ParsePostgresInterval(std::string_view text, int64_t bare_number_unit_micros) {
  std::string s(text);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  size_t pos = 0;
  auto skip_space = [&] {
    while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos]))) ++pos;
  };
  skip_space();
  if (pos < s.size() && s[pos] == '@') ++pos;
  __int128 total = 0;
  bool any = false;
  bool ago = false;
  constexpr __int128 kLimit = static_cast<__int128>(1) << 100;
  while (true) {
    skip_space();
    if (pos >= s.size()) break;
    if (IsAlphaChar(s[pos])) {
      size_t start = pos;
      while (pos < s.size() && IsAlphaChar(s[pos])) ++pos;
      std::string_view word(s.data() + start, pos - start);
      if (word == "ago") {
        ago = true;
        continue;
      }
      return BadInterval(text, fmt::format("expected a number before \"{}\"", word));
    }
    int sign = 1;
    if (s[pos] == '+' || s[pos] == '-') {
      if (s[pos] == '-') sign = -1;
      ++pos;
    }
    __int128 mantissa = 0;
    int scale = 0;
    if (!ReadDecimal(s, &pos, &mantissa, &scale)) {
      return BadInterval(text, fmt::format("expected a number at \"{}\"", s.substr(pos, 16)));
    }
    __int128 micros = 0;
    if (pos < s.size() && s[pos] == ':') {
      // hh:mm[:ss[.ffffff]]
      if (scale != 0) return BadInterval(text, "hours in hh:mm:ss must be whole");
      micros = mantissa * kMicrosPerHour;
      ++pos;
      __int128 minutes = 0;
      int minute_scale = 0;
      if (!ReadDecimal(s, &pos, &minutes, &minute_scale) || minute_scale != 0 || minutes > 59) {
        return BadInterval(text, "expected minutes (00-59) after \"hh:\"");
      }
      micros += minutes * kMicrosPerMinute;
      if (pos < s.size() && s[pos] == ':') {
        ++pos;
        __int128 seconds = 0;
        int second_scale = 0;
        if (!ReadDecimal(s, &pos, &seconds, &second_scale)) {
          return BadInterval(text, "expected seconds after \"hh:mm:\"");
        }
        micros += ScaleToMicros(seconds, second_scale, kMicrosPerSecond);
      }
    } else {
      skip_space();
      size_t start = pos;
      while (pos < s.size() && IsAlphaChar(s[pos])) ++pos;
      std::string_view word(s.data() + start, pos - start);
      int64_t unit = bare_number_unit_micros;
      if (!word.empty()) {
        const IntervalUnit* found = nullptr;
        for (const IntervalUnit& u : kIntervalUnits) {
          if (u.name == word) found = &u;
        }
        bool long_unit = std::find(kLongUnits.begin(), kLongUnits.end(), word) != kLongUnits.end();
        if (found == nullptr && !long_unit) {
          return BadInterval(text, fmt::format("unknown unit \"{}\"; use microseconds, "
                                               "milliseconds, seconds, minutes, hours, days "
                                               "or weeks",
                                               word));
        }
        if (long_unit || found->micros == 0) {
          return BadInterval(text, fmt::format("\"{}\" {}", word, kNotFixed));
        }
        unit = found->micros;
      }
      micros = ScaleToMicros(mantissa, scale, unit);
    }
    total += sign * micros;
    if (total > kLimit || total < -kLimit) return BadInterval(text, "it is too long");
    any = true;
  }
  if (!any) return BadInterval(text, "it is empty; write e.g. '30 days'");
  if (ago) total = -total;
  if (total <= 0) {
    return BadInterval(text, "a window must be longer than zero");
  }
  if (total > std::numeric_limits<int64_t>::max()) return BadInterval(text, "it is too long");
  return static_cast<int64_t>(total);
}

// ---------------------------------------------------------------------------
// ParseWindowSpec
// ---------------------------------------------------------------------------

namespace {

constexpr std::string_view kQueryPrefix = "SELECT ";  // as in transformation.cc

// Frame option bits of PostgreSQL 15 (src/include/nodes/parsenodes.h).
constexpr int64_t kFrameNonDefault = 0x00001;
constexpr int64_t kFrameRange = 0x00002;
constexpr int64_t kFrameRows = 0x00004;
constexpr int64_t kFrameGroups = 0x00008;
constexpr int64_t kFrameStartUnboundedPreceding = 0x00020;
constexpr int64_t kFrameEndUnboundedPreceding = 0x00040;
constexpr int64_t kFrameStartUnboundedFollowing = 0x00080;
constexpr int64_t kFrameEndUnboundedFollowing = 0x00100;
constexpr int64_t kFrameStartCurrentRow = 0x00200;
constexpr int64_t kFrameEndCurrentRow = 0x00400;
constexpr int64_t kFrameStartOffsetPreceding = 0x00800;
constexpr int64_t kFrameEndOffsetPreceding = 0x01000;
constexpr int64_t kFrameStartOffsetFollowing = 0x02000;
constexpr int64_t kFrameEndOffsetFollowing = 0x04000;
constexpr int64_t kFrameExclusion = 0x08000 | 0x10000 | 0x20000;

// Interval field masks of typmods (INTERVAL '1' DAY), src/include/utils/datetime.h.
constexpr int64_t kMaskMonth = 1 << 1;
constexpr int64_t kMaskYear = 1 << 2;
constexpr int64_t kMaskDay = 1 << 3;
constexpr int64_t kMaskHour = 1 << 10;
constexpr int64_t kMaskMinute = 1 << 11;
constexpr int64_t kMaskSecond = 1 << 12;

constexpr std::string_view kSupported =
    "supported are COUNT(*), COUNT(x), COUNT(DISTINCT x), SUM, AVG, MIN, MAX, STDDEV_SAMP, "
    "first_value and last_value";
constexpr std::string_view kFrameExample =
    "RANGE BETWEEN INTERVAL '30 days' PRECEDING AND CURRENT ROW";

// Aggregates and window functions that PostgreSQL knows but fstore does not
// compute in a window; named so that the error says "not supported" rather
// than treating them as scalar functions.
constexpr std::array<std::string_view, 40> kOtherAggregates = {
    "array_agg",  "string_agg",   "json_agg",       "jsonb_agg",   "json_object_agg",
    "jsonb_object_agg", "bool_and", "bool_or",      "every",       "bit_and",
    "bit_or",     "bit_xor",      "variance",       "var_samp",    "var_pop",
    "stddev_pop", "corr",         "covar_pop",      "covar_samp",  "regr_avgx",
    "regr_avgy",  "regr_count",   "regr_intercept", "regr_r2",     "regr_slope",
    "regr_sxx",   "regr_sxy",     "regr_syy",       "percentile_cont", "percentile_disc",
    "mode",       "row_number",   "rank",           "dense_rank",  "percent_rank",
    "cume_dist",  "ntile",        "lag",            "lead",        "nth_value",
};

std::string FuncName(const json::object& call) {
  std::string name;
  if (auto* names = call.if_contains("funcname"); names && names->is_array()) {
    const auto& arr = names->as_array();
    if (!arr.empty() && arr.back().is_object()) {
      if (auto* s = arr.back().as_object().if_contains("String"); s && s->is_object()) {
        if (auto* v = s->as_object().if_contains("sval"); v && v->is_string()) {
          name = std::string(v->as_string());
        }
      }
    }
  }
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return name;
}

std::optional<WindowFunction> KnownFunction(const std::string& name) {
  if (name == "count") return WindowFunction::kCount;
  if (name == "sum") return WindowFunction::kSum;
  if (name == "avg") return WindowFunction::kAvg;
  if (name == "min") return WindowFunction::kMin;
  if (name == "max") return WindowFunction::kMax;
  if (name == "stddev_samp" || name == "stddev") return WindowFunction::kStddevSamp;
  if (name == "first_value") return WindowFunction::kFirstValue;
  if (name == "last_value") return WindowFunction::kLastValue;
  return std::nullopt;
}

bool IsAggregateName(const std::string& name) {
  return KnownFunction(name).has_value() ||
         std::find(kOtherAggregates.begin(), kOtherAggregates.end(), name) !=
             kOtherAggregates.end();
}

std::optional<int> PositionOf(const json::object& node) {
  if (auto* loc = node.if_contains("location"); loc && loc->is_int64() && loc->as_int64() >= 0) {
    return std::max(1, static_cast<int>(loc->as_int64()) + 1 -
                           static_cast<int>(kQueryPrefix.size()));
  }
  return std::nullopt;
}

Status Refuse(std::string message, const json::object* at = nullptr) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(message), "transformation",
                   at ? PositionOf(*at) : std::nullopt);
}

// The first FuncCall in `v` that is an aggregate or has OVER, depth-first.
const json::object* FindAggregate(const json::value& v) {
  if (auto* arr = v.if_array()) {
    for (const auto& item : *arr) {
      if (auto* found = FindAggregate(item)) return found;
    }
    return nullptr;
  }
  const json::object* obj = v.if_object();
  if (obj == nullptr) return nullptr;
  for (const auto& [key, child] : *obj) {
    if (key == "FuncCall" && child.is_object()) {
      const json::object& call = child.as_object();
      if (call.contains("over") || IsAggregateName(FuncName(call))) return &call;
    }
    if (auto* found = FindAggregate(child)) return found;
  }
  return nullptr;
}

std::string ColumnName(const json::value& node) {
  const json::object* obj = node.if_object();
  if (obj == nullptr) return {};
  const json::value* ref = obj->if_contains("ColumnRef");
  if (ref == nullptr || !ref->is_object()) return {};
  std::string name;
  if (auto* fields = ref->as_object().if_contains("fields"); fields && fields->is_array()) {
    for (const auto& f : fields->as_array()) {
      const json::object* fo = f.if_object();
      const json::value* s = fo ? fo->if_contains("String") : nullptr;
      const json::value* sval = (s && s->is_object()) ? s->as_object().if_contains("sval") : nullptr;
      if (sval == nullptr || !sval->is_string()) return {};
      if (!name.empty()) name += ".";
      name += std::string(sval->as_string());
    }
  }
  return name;
}

const json::object* Inner(const json::value& node, std::string_view key) {
  const json::object* obj = node.if_object();
  if (obj == nullptr) return nullptr;
  const json::value* inner = obj->if_contains(key);
  return (inner && inner->is_object()) ? &inner->as_object() : nullptr;
}

// The RANGE offset: INTERVAL '30 days', '30 days'::interval, or a string
// literal (coerced to interval by PostgreSQL since ORDER BY is a timestamp).
Result<int64_t> FrameOffsetMicros(const json::value& offset, const json::object& over) {
  const json::object* constant = Inner(offset, "A_Const");
  int64_t bare_unit = kMicrosPerSecond;
  bool qualified = false;  // INTERVAL '1' DAY
  const json::object* cast = Inner(offset, "TypeCast");
  if (cast != nullptr) {
    const json::object* type = nullptr;
    if (auto* tn = cast->if_contains("typeName"); tn && tn->is_object()) type = &tn->as_object();
    std::string type_name;
    if (type != nullptr) {
      if (auto* names = type->if_contains("names"); names && names->is_array() &&
                                                     !names->as_array().empty()) {
        const json::value& last = names->as_array().back();
        if (auto* s = Inner(last, "String")) {
          if (auto* sval = s->if_contains("sval"); sval && sval->is_string()) {
            type_name = std::string(sval->as_string());
          }
        }
      }
    }
    if (type_name != "interval") {
      return Refuse("the RANGE offset must be an interval such as INTERVAL '30 days', not a " +
                        (type_name.empty() ? std::string("cast") : type_name),
                    cast);
    }
    if (auto* typmods = type->if_contains("typmods"); typmods && typmods->is_array()) {
      const auto& mods = typmods->as_array();
      qualified = true;
      int64_t mask = -1;
      if (mods.size() == 1) {
        // {"A_Const": {"ival": {"ival": 8}}}
        if (const json::object* c = Inner(mods[0], "A_Const")) {
          if (auto* outer = c->if_contains("ival"); outer && outer->is_object()) {
            if (auto* v = outer->as_object().if_contains("ival"); v && v->is_int64()) {
              mask = v->as_int64();
            }
          }
        }
      }
      if (mask > 0 && (mask & (kMaskMonth | kMaskYear))) {
        return Refuse(fmt::format("a RANGE offset in months or years {}", kNotFixed), type);
      }
      if (mask == kMaskDay) {
        bare_unit = kMicrosPerDay;
      } else if (mask == kMaskHour) {
        bare_unit = kMicrosPerHour;
      } else if (mask == kMaskMinute) {
        bare_unit = kMicrosPerMinute;
      } else if (mask == kMaskSecond) {
        bare_unit = kMicrosPerSecond;
      } else {
        return Refuse("an interval with a field qualifier other than DAY, HOUR, MINUTE or "
                      "SECOND is not supported: write it without one, e.g. INTERVAL '1 day 2 "
                      "hours'",
                      type);
      }
    }
    if (auto* arg = cast->if_contains("arg")) constant = Inner(*arg, "A_Const");
  }
  const json::value* sval = nullptr;
  if (constant != nullptr) {
    if (auto* sv = constant->if_contains("sval"); sv && sv->is_object()) {
      sval = sv->as_object().if_contains("sval");
    }
  }
  if (sval == nullptr || !sval->is_string()) {
    return Refuse(fmt::format("the RANGE offset must be a constant interval such as INTERVAL "
                              "'30 days' (the ORDER BY column is a timestamp): {}",
                              kFrameExample),
                  constant ? constant : &over);
  }
  std::string_view text = sval->as_string();
  if (qualified) {
    // INTERVAL '1' DAY: only a bare number is unambiguous.
    bool bare = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
      return IsDigitChar(c) || c == ' ';
    });
    if (!bare) {
      return Refuse("with a field qualifier (INTERVAL '1' DAY) the interval must be a bare "
                    "number; otherwise write INTERVAL '1 day 2 hours' without one",
                    constant);
    }
  }
  auto micros = ParsePostgresInterval(text, bare_unit);
  if (!micros.ok()) return Refuse("in the RANGE offset: " + ErrorMessageOf(micros.status()), constant);
  return *micros;
}

Status CheckFrame(const json::object& over) {
  int64_t opts = 0;
  if (auto* fo = over.if_contains("frameOptions"); fo && fo->is_int64()) opts = fo->as_int64();
  const std::string hint = fmt::format("write {}", kFrameExample);
  if (!(opts & kFrameNonDefault)) {
    return Refuse(fmt::format("the window needs a frame giving its length (the default frame "
                              "is unbounded): {}",
                              hint),
                  &over);
  }
  if (opts & kFrameRows) {
    return Refuse(fmt::format("ROWS frames are not supported: a window is a length of time; {}",
                              hint),
                  &over);
  }
  if (opts & kFrameGroups) {
    return Refuse(fmt::format("GROUPS frames are not supported: a window is a length of time; {}",
                              hint),
                  &over);
  }
  if (opts & (kFrameStartOffsetFollowing | kFrameEndOffsetFollowing |
              kFrameStartUnboundedFollowing | kFrameEndUnboundedFollowing)) {
    return Refuse(fmt::format("FOLLOWING is not supported: a feature at time t must not see "
                              "events after t; {}",
                              hint),
                  &over);
  }
  if (opts & kFrameStartUnboundedPreceding) {
    return Refuse(fmt::format("UNBOUNDED PRECEDING is not supported: the window needs a length "
                              "(an unbounded window would need all history at every run); {}",
                              hint),
                  &over);
  }
  if (opts & (kFrameEndOffsetPreceding | kFrameEndUnboundedPreceding)) {
    return Refuse(fmt::format("the frame must end at CURRENT ROW; {}", hint), &over);
  }
  if (opts & kFrameExclusion) {
    return Refuse(fmt::format("EXCLUDE in a frame is not supported; {}", hint), &over);
  }
  if (opts & kFrameStartCurrentRow) {
    return Refuse(fmt::format("the frame must start at INTERVAL '...' PRECEDING, not CURRENT "
                              "ROW; {}",
                              hint),
                  &over);
  }
  if (!(opts & kFrameRange) || !(opts & kFrameStartOffsetPreceding) ||
      !(opts & kFrameEndCurrentRow)) {
    return Refuse(fmt::format("unsupported window frame; {}", hint), &over);
  }
  return Status::OK();
}

}  // namespace

Result<std::optional<WindowSpec>> ParseWindowSpec(const ParsedTransformation& parsed,
                                                  const std::string& window_size) {
  std::optional<int64_t> size;
  if (!window_size.empty()) {
    auto d = ParseDuration(window_size);
    if (!d.ok()) return InvalidArgument("window_size", ErrorMessageOf(d.status()));
    size = *d;
  }

  const json::object* call = Inner(parsed.expression, "FuncCall");
  std::string name = call ? FuncName(*call) : std::string();
  const bool top_is_window =
      call != nullptr && (call->contains("over") || IsAggregateName(name));
  if (!top_is_window) {
    if (const json::object* nested = FindAggregate(parsed.expression)) {
      return Refuse(fmt::format("{}(...) inside an expression is not supported: define the "
                                "aggregate as a feature of its own and compute the expression "
                                "in a derived feature",
                                FuncName(*nested)),
                    nested);
    }
    if (size) {
      return InvalidArgument("window_size",
                             "is set, but the transformation is not an aggregate: a windowed "
                             "feature is COUNT(*), SUM(x), AVG(x), ... over its window");
    }
    return std::nullopt;
  }

  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  std::optional<WindowFunction> fn = KnownFunction(name);
  if (!fn) {
    return Refuse(fmt::format("{} is not supported in a windowed feature; {}", upper, kSupported),
                  call);
  }
  if (call->contains("agg_filter")) {
    return Refuse(fmt::format("FILTER (WHERE ...) is not supported; put the condition inside "
                              "the aggregate instead, e.g. {}(CASE WHEN <condition> THEN x END)",
                              upper),
                  call);
  }
  if (call->contains("agg_order")) {
    return Refuse(fmt::format("ORDER BY inside {}(...) is not supported", upper), call);
  }
  if (auto* wg = call->if_contains("agg_within_group"); wg && wg->is_bool() && wg->as_bool()) {
    return Refuse("WITHIN GROUP is not supported in a windowed feature", call);
  }
  if (auto* v = call->if_contains("func_variadic"); v && v->is_bool() && v->as_bool()) {
    return Refuse("VARIADIC is not supported in a windowed feature", call);
  }
  const bool star = call->contains("agg_star") && call->at("agg_star").is_bool() &&
                    call->at("agg_star").as_bool();
  const bool distinct = call->contains("agg_distinct") && call->at("agg_distinct").is_bool() &&
                        call->at("agg_distinct").as_bool();
  const json::array* args = nullptr;
  if (auto* a = call->if_contains("args"); a && a->is_array()) args = &a->as_array();
  const size_t nargs = args ? args->size() : 0;

  WindowSpec spec;
  spec.function = *fn;
  if (star) {
    if (*fn != WindowFunction::kCount) {
      return Refuse(fmt::format("{}(*) is not valid: only COUNT takes *", upper), call);
    }
    spec.function = WindowFunction::kCountStar;
  } else {
    if (nargs != 1) {
      return Refuse(fmt::format("{} takes exactly one argument, got {}", upper, nargs), call);
    }
    spec.argument = (*args)[0];
    if (const json::object* nested = FindAggregate(spec.argument)) {
      return Refuse(fmt::format("{}(...) inside {}(...) is not supported: aggregates and window "
                                "functions cannot be nested",
                                FuncName(*nested), upper),
                    nested);
    }
    if (distinct) {
      if (*fn != WindowFunction::kCount) {
        return Refuse(fmt::format("DISTINCT is only supported in COUNT(DISTINCT x), not in {}",
                                  upper),
                      call);
      }
      spec.function = WindowFunction::kCountDistinct;
    }
  }

  const json::value* over_value = call->if_contains("over");
  if (over_value == nullptr) {
    // The shorthand: the frame is window_size.
    if (!size) {
      return InvalidArgument(
          "window_size",
          fmt::format("is required for the aggregate {}(...) (e.g. \"30d\"), or give the "
                      "window in the transformation: {}(...) OVER (PARTITION BY <key> ORDER BY "
                      "<timestamp> {})",
                      upper, upper, kFrameExample));
    }
    spec.range_micros = *size;
    return spec;
  }
  if (!over_value->is_object()) return Refuse("malformed OVER clause", call);
  const json::object& over = over_value->as_object();
  if (over.contains("name") || over.contains("refname")) {
    return Refuse("a named window (OVER w) is not supported: write the window inline, OVER "
                  "(PARTITION BY ... ORDER BY ... RANGE ...)",
                  &over);
  }
  const json::array* partition = nullptr;
  if (auto* p = over.if_contains("partitionClause"); p && p->is_array()) {
    partition = &p->as_array();
  }
  if (partition == nullptr || partition->empty()) {
    return Refuse("OVER (...) needs PARTITION BY the entity's join key(s): a window over all "
                  "entities is not a feature",
                  &over);
  }
  for (const auto& item : *partition) {
    std::string col = ColumnName(item);
    if (col.empty()) {
      const json::object* at = item.is_object() && !item.as_object().empty() &&
                                       item.as_object().begin()->value().is_object()
                                   ? &item.as_object().begin()->value().as_object()
                                   : &over;
      return Refuse("PARTITION BY must list columns, not expressions", at);
    }
    spec.partition_by.push_back(std::move(col));
  }
  const json::array* order = nullptr;
  if (auto* o = over.if_contains("orderClause"); o && o->is_array()) order = &o->as_array();
  if (order == nullptr || order->empty()) {
    return Refuse(fmt::format("OVER (...) needs ORDER BY the event timestamp column, e.g. "
                              "ORDER BY ts {}",
                              kFrameExample),
                  &over);
  }
  if (order->size() != 1) {
    return Refuse("ORDER BY in a windowed feature must be a single timestamp column", &over);
  }
  const json::object* sort = Inner((*order)[0], "SortBy");
  if (sort == nullptr) return Refuse("malformed ORDER BY", &over);
  std::string order_col = sort->contains("node") ? ColumnName(sort->at("node")) : std::string();
  if (order_col.empty()) {
    return Refuse("ORDER BY in a windowed feature must be a single timestamp column, not an "
                  "expression",
                  &over);
  }
  if (auto* dir = sort->if_contains("sortby_dir"); dir && dir->is_string()) {
    std::string_view d = dir->as_string();
    if (d != "SORTBY_DEFAULT" && d != "SORTBY_ASC") {
      return Refuse("ORDER BY ... DESC (or USING) is not supported: the window looks back in "
                    "time, ORDER BY ts ascending",
                    &over);
    }
  }
  spec.order_by = std::move(order_col);
  ARROW_RETURN_NOT_OK(CheckFrame(over));
  const json::value* start_offset = over.if_contains("startOffset");
  if (start_offset == nullptr) return Refuse("the frame has no PRECEDING offset", &over);
  ARROW_ASSIGN_OR_RAISE(spec.range_micros, FrameOffsetMicros(*start_offset, over));
  if (size && *size != spec.range_micros) {
    return InvalidArgument(
        "window_size", fmt::format("is \"{}\" but the OVER frame of the transformation is \"{}\"; "
                                   "they must agree (or leave window_size empty)",
                                   window_size, FormatDuration(spec.range_micros)));
  }
  return spec;
}

// ---------------------------------------------------------------------------
// Result types
// ---------------------------------------------------------------------------

namespace {

bool IsIntegerType(arrow::Type::type id) {
  switch (id) {
    case arrow::Type::INT8:
    case arrow::Type::INT16:
    case arrow::Type::INT32:
    case arrow::Type::INT64:
    case arrow::Type::UINT8:
    case arrow::Type::UINT16:
    case arrow::Type::UINT32:
    case arrow::Type::UINT64:
      return true;
    default:
      return false;
  }
}

bool IsFloatType(arrow::Type::type id) {
  return id == arrow::Type::FLOAT || id == arrow::Type::DOUBLE;
}

bool IsTemporalType(arrow::Type::type id) {
  switch (id) {
    case arrow::Type::TIMESTAMP:
    case arrow::Type::DATE32:
    case arrow::Type::DATE64:
    case arrow::Type::TIME32:
    case arrow::Type::TIME64:
    case arrow::Type::DURATION:
      return true;
    default:
      return false;
  }
}

bool IsBytesType(arrow::Type::type id) {
  switch (id) {
    case arrow::Type::STRING:
    case arrow::Type::LARGE_STRING:
    case arrow::Type::BINARY:
    case arrow::Type::LARGE_BINARY:
    case arrow::Type::STRING_VIEW:
    case arrow::Type::BINARY_VIEW:
      return true;
    default:
      return false;
  }
}

}  // namespace

Result<std::shared_ptr<arrow::DataType>> WindowResultType(
    WindowFunction function, const std::shared_ptr<arrow::DataType>& input) {
  if (function == WindowFunction::kCountStar) return arrow::int64();
  if (input == nullptr) {
    return InvalidArgument("transformation", fmt::format("{} needs an argument",
                                                         WindowFunctionName(function)));
  }
  const arrow::Type::type id = input->id();
  const bool orderable = IsIntegerType(id) || IsFloatType(id) || IsTemporalType(id) ||
                         IsBytesType(id) || id == arrow::Type::BOOL || id == arrow::Type::NA;
  auto refuse = [&](std::string_view needs) -> Status {
    return InvalidArgument("transformation",
                           fmt::format("{}(x) needs {} argument, but x is {}",
                                       WindowFunctionName(function), needs, input->ToString()));
  };
  switch (function) {
    case WindowFunction::kCountStar:
    case WindowFunction::kCount:
    case WindowFunction::kCountDistinct:
      if (function == WindowFunction::kCountDistinct && !orderable) {
        return refuse("a number, string, binary, bool or temporal");
      }
      return arrow::int64();
    case WindowFunction::kSum:
      if (IsIntegerType(id)) return arrow::int64();
      if (IsFloatType(id)) return arrow::float64();
      return refuse("a numeric");
    case WindowFunction::kAvg:
    case WindowFunction::kStddevSamp:
      if (IsIntegerType(id) || IsFloatType(id)) return arrow::float64();
      return refuse("a numeric");
    case WindowFunction::kMin:
    case WindowFunction::kMax:
      if (orderable) return input;
      return refuse("a number, string, binary, bool or temporal");
    case WindowFunction::kFirstValue:
    case WindowFunction::kLastValue:
      return input;
  }
  return Internal("unknown window function");
}

// ---------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------

namespace {

/// The argument's values in one of three comparable representations, so that
/// every aggregate is written once: integers (all integer, bool and temporal
/// types, whose storage is an integer), floats, and byte strings (views into
/// the input array, which outlives the computation).
struct Column {
  enum class Kind { kNull, kInt, kFloat, kBytes };
  Kind kind = Kind::kNull;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string_view> bytes;
  std::vector<uint8_t> valid;

  bool IsValid(int64_t i) const { return valid[i] != 0; }
};

template <typename ArrayType>
void CopyInts(const arrow::Array& array, Column* out) {
  const auto& a = arrow::internal::checked_cast<const ArrayType&>(array);
  out->kind = Column::Kind::kInt;
  out->ints.resize(a.length());
  for (int64_t i = 0; i < a.length(); ++i) out->ints[i] = static_cast<int64_t>(a.Value(i));
}

template <typename ArrayType>
void CopyFloats(const arrow::Array& array, Column* out) {
  const auto& a = arrow::internal::checked_cast<const ArrayType&>(array);
  out->kind = Column::Kind::kFloat;
  out->floats.resize(a.length());
  for (int64_t i = 0; i < a.length(); ++i) out->floats[i] = static_cast<double>(a.Value(i));
}

template <typename ArrayType>
void CopyBytes(const arrow::Array& array, Column* out) {
  const auto& a = arrow::internal::checked_cast<const ArrayType&>(array);
  out->kind = Column::Kind::kBytes;
  out->bytes.resize(a.length());
  for (int64_t i = 0; i < a.length(); ++i) {
    auto v = a.GetView(i);
    out->bytes[i] = std::string_view(v.data(), v.size());
  }
}

Result<Column> ToColumn(const arrow::Array& array) {
  Column c;
  const int64_t n = array.length();
  c.valid.resize(n);
  for (int64_t i = 0; i < n; ++i) c.valid[i] = array.IsValid(i) ? 1 : 0;
  switch (array.type_id()) {
    case arrow::Type::NA:
      break;
    case arrow::Type::BOOL: {
      const auto& a = arrow::internal::checked_cast<const arrow::BooleanArray&>(array);
      c.kind = Column::Kind::kInt;
      c.ints.resize(n);
      for (int64_t i = 0; i < n; ++i) c.ints[i] = a.Value(i) ? 1 : 0;
      break;
    }
    case arrow::Type::INT8: CopyInts<arrow::Int8Array>(array, &c); break;
    case arrow::Type::INT16: CopyInts<arrow::Int16Array>(array, &c); break;
    case arrow::Type::INT32: CopyInts<arrow::Int32Array>(array, &c); break;
    case arrow::Type::INT64: CopyInts<arrow::Int64Array>(array, &c); break;
    case arrow::Type::UINT8: CopyInts<arrow::UInt8Array>(array, &c); break;
    case arrow::Type::UINT16: CopyInts<arrow::UInt16Array>(array, &c); break;
    case arrow::Type::UINT32: CopyInts<arrow::UInt32Array>(array, &c); break;
    case arrow::Type::UINT64: {
      const auto& a = arrow::internal::checked_cast<const arrow::UInt64Array&>(array);
      for (int64_t i = 0; i < n; ++i) {
        if (c.valid[i] && a.Value(i) > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
          return InvalidArgument("transformation",
                                 fmt::format("uint64 value {} at row {} is beyond int64, the "
                                             "window aggregates' integer range",
                                             a.Value(i), i));
        }
      }
      CopyInts<arrow::UInt64Array>(array, &c);
      break;
    }
    case arrow::Type::DATE32: CopyInts<arrow::Date32Array>(array, &c); break;
    case arrow::Type::DATE64: CopyInts<arrow::Date64Array>(array, &c); break;
    case arrow::Type::TIMESTAMP: CopyInts<arrow::TimestampArray>(array, &c); break;
    case arrow::Type::TIME32: CopyInts<arrow::Time32Array>(array, &c); break;
    case arrow::Type::TIME64: CopyInts<arrow::Time64Array>(array, &c); break;
    case arrow::Type::DURATION: CopyInts<arrow::DurationArray>(array, &c); break;
    case arrow::Type::FLOAT: CopyFloats<arrow::FloatArray>(array, &c); break;
    case arrow::Type::DOUBLE: CopyFloats<arrow::DoubleArray>(array, &c); break;
    case arrow::Type::STRING: CopyBytes<arrow::StringArray>(array, &c); break;
    case arrow::Type::LARGE_STRING: CopyBytes<arrow::LargeStringArray>(array, &c); break;
    case arrow::Type::BINARY: CopyBytes<arrow::BinaryArray>(array, &c); break;
    case arrow::Type::LARGE_BINARY: CopyBytes<arrow::LargeBinaryArray>(array, &c); break;
    case arrow::Type::STRING_VIEW: CopyBytes<arrow::StringViewArray>(array, &c); break;
    case arrow::Type::BINARY_VIEW: CopyBytes<arrow::BinaryViewArray>(array, &c); break;
    default:
      return InvalidArgument("transformation",
                             fmt::format("window aggregates do not support values of type {}",
                                         array.type()->ToString()));
  }
  return c;
}

/// t - range, saturating at the smallest int64.
int64_t FrameStart(int64_t t, int64_t range) {
  int64_t lo;
  if (__builtin_sub_overflow(t, range, &lo)) return std::numeric_limits<int64_t>::min();
  return lo;
}

/// Runs `agg` over each event's frame. The aggregator has Reset() (a new
/// group), Add(i) (row i enters the frame), Remove(i) (row i leaves; rows
/// leave in the order they entered) and Emit(out, start, end) (the frame is
/// rows [start, end); write output `out`).
template <typename Aggregator>
void SlideAtEvents(const int64_t* groups, const int64_t* times, int64_t n, int64_t range,
                   Aggregator& agg) {
  int64_t i = 0;
  while (i < n) {
    int64_t group_end = i;
    while (group_end < n && groups[group_end] == groups[i]) ++group_end;
    agg.Reset();
    int64_t start = i;
    int64_t end = i;
    int64_t k = i;
    while (k < group_end) {
      int64_t peers_end = k;
      while (peers_end < group_end && times[peers_end] == times[k]) ++peers_end;
      const int64_t lo = FrameStart(times[k], range);
      for (; start < end && times[start] < lo; ++start) agg.Remove(start);
      // Rows not yet added are at or after times[k] >= lo: skip none.
      for (; end < peers_end; ++end) agg.Add(end);
      for (int64_t r = k; r < peers_end; ++r) agg.Emit(r, start, end);
      k = peers_end;
    }
    i = group_end;
  }
}

/// Runs `agg` over each query's frame: the rows of the query's group with
/// time in [t - range, t].
template <typename Aggregator>
void SlideAtTimes(const int64_t* groups, const int64_t* times, int64_t n,
                  const int64_t* query_groups, const int64_t* query_times, int64_t m,
                  int64_t range, Aggregator& agg) {
  int64_t e = 0;
  int64_t q = 0;
  while (q < m) {
    const int64_t group = query_groups[q];
    while (e < n && groups[e] < group) ++e;
    int64_t group_end = e;
    while (group_end < n && groups[group_end] == group) ++group_end;
    agg.Reset();
    int64_t start = e;
    int64_t end = e;
    for (; q < m && query_groups[q] == group; ++q) {
      const int64_t t = query_times[q];
      for (; end < group_end && times[end] <= t; ++end) agg.Add(end);
      const int64_t lo = FrameStart(t, range);
      for (; start < end && times[start] < lo; ++start) agg.Remove(start);
      agg.Emit(q, start, end);
    }
    e = group_end;
  }
}

/// Output of int64 or float64 results.
template <typename T>
struct Output {
  std::vector<T> values;
  std::vector<uint8_t> valid;
  explicit Output(int64_t n) : values(n), valid(n) {}
  void Set(int64_t i, T v) {
    values[i] = v;
    valid[i] = 1;
  }
};

Result<std::shared_ptr<arrow::Array>> Finish(const Output<int64_t>& out) {
  arrow::Int64Builder b;
  // An empty vector's data() may be null: UB in memcpy even for 0 bytes.
  if (!out.values.empty()) {
    ARROW_RETURN_NOT_OK(b.AppendValues(out.values.data(), static_cast<int64_t>(out.values.size()),
                                       out.valid.data()));
  }
  return b.Finish();
}

Result<std::shared_ptr<arrow::Array>> Finish(const Output<double>& out) {
  arrow::DoubleBuilder b;
  // An empty vector's data() may be null: UB in memcpy even for 0 bytes.
  if (!out.values.empty()) {
    ARROW_RETURN_NOT_OK(b.AppendValues(out.values.data(), static_cast<int64_t>(out.values.size()),
                                       out.valid.data()));
  }
  return b.Finish();
}

/// The input rows chosen as results (MIN, MAX, first/last value), -1 for NULL;
/// gathered from the input with Take so that every type keeps its type.
Result<std::shared_ptr<arrow::Array>> Gather(const std::shared_ptr<arrow::Array>& values,
                                             const std::vector<int64_t>& rows) {
  arrow::Int64Builder b;
  ARROW_RETURN_NOT_OK(b.Reserve(static_cast<int64_t>(rows.size())));
  for (int64_t r : rows) {
    if (r < 0) {
      b.UnsafeAppendNull();
    } else {
      b.UnsafeAppend(r);
    }
  }
  ARROW_ASSIGN_OR_RAISE(auto indices, b.Finish());
  static const Status init = arrow::compute::Initialize();
  ARROW_RETURN_NOT_OK(init);
  ARROW_ASSIGN_OR_RAISE(arrow::Datum taken, arrow::compute::Take(values, indices));
  return taken.make_array();
}

// --- aggregators -----------------------------------------------------------

struct CountStarAgg {
  Output<int64_t>* out;
  void Reset() {}
  void Add(int64_t) {}
  void Remove(int64_t) {}
  void Emit(int64_t o, int64_t start, int64_t end) { out->Set(o, end - start); }
};

struct CountAgg {
  const Column* col;
  Output<int64_t>* out;
  int64_t count = 0;
  void Reset() { count = 0; }
  void Add(int64_t i) { count += col->valid[i]; }
  void Remove(int64_t i) { count -= col->valid[i]; }
  void Emit(int64_t o, int64_t, int64_t) { out->Set(o, count); }
};

/// Distinct values: a multiset of the frame's non-null values.
template <typename Key>
struct CountDistinctAgg {
  std::vector<Key> keys;  // per row
  const Column* col;
  Output<int64_t>* out;
  std::unordered_map<Key, int64_t> counts;
  void Reset() { counts.clear(); }
  void Add(int64_t i) {
    if (col->valid[i]) ++counts[keys[i]];
  }
  void Remove(int64_t i) {
    if (!col->valid[i]) return;
    auto it = counts.find(keys[i]);
    if (--it->second == 0) counts.erase(it);
  }
  void Emit(int64_t o, int64_t, int64_t) { out->Set(o, static_cast<int64_t>(counts.size())); }
};

/// Integer SUM/AVG: exact in 128 bits.
struct IntSumAgg {
  const Column* col;
  bool average;
  Output<int64_t>* sum_out;   // SUM
  Output<double>* avg_out;    // AVG
  __int128 sum = 0;
  int64_t count = 0;
  int64_t overflow_row = -1;
  void Reset() {
    sum = 0;
    count = 0;
  }
  void Add(int64_t i) {
    if (!col->valid[i]) return;
    sum += col->ints[i];
    ++count;
  }
  void Remove(int64_t i) {
    if (!col->valid[i]) return;
    sum -= col->ints[i];
    --count;
  }
  void Emit(int64_t o, int64_t, int64_t) {
    if (count == 0) return;
    if (average) {
      avg_out->Set(o, static_cast<double>(static_cast<long double>(sum) /
                                          static_cast<long double>(count)));
      return;
    }
    if (sum > std::numeric_limits<int64_t>::max() || sum < std::numeric_limits<int64_t>::min()) {
      if (overflow_row < 0) overflow_row = o;
      return;
    }
    sum_out->Set(o, static_cast<int64_t>(sum));
  }
};

/// A FIFO queue that aggregates its contents with an associative Combine and
/// no inverse ("two stacks"): amortised O(1) per push, pop and query, and the
/// result combines only the values in the queue, so no rounding error is left
/// behind by values that have left the window (as subtracting them would).
template <typename Monoid>
class AggregatingQueue {
 public:
  using Value = typename Monoid::Value;
  void Clear() {
    front_.clear();
    back_.clear();
    back_total_ = Monoid::Identity();
  }
  void Push(const Value& v) {
    back_.push_back(v);
    back_total_ = Monoid::Combine(back_total_, v);
  }
  void Pop() {
    if (front_.empty()) {
      // Move the back stack over, storing suffix aggregates (oldest on top).
      Value acc = Monoid::Identity();
      for (size_t k = back_.size(); k-- > 0;) {
        acc = Monoid::Combine(back_[k], acc);
        front_.push_back(acc);
      }
      back_.clear();
      back_total_ = Monoid::Identity();
    }
    front_.pop_back();
  }
  Value Total() const {
    return front_.empty() ? back_total_ : Monoid::Combine(front_.back(), back_total_);
  }

 private:
  std::vector<Value> front_;
  std::vector<Value> back_;
  Value back_total_ = Monoid::Identity();
};

/// Compensated (Neumaier/TwoSum) floating-point sum with a count.
struct FloatSumMonoid {
  struct Value {
    double sum = 0;
    double compensation = 0;
    int64_t count = 0;
  };
  static Value Identity() { return {}; }
  static Value Combine(const Value& a, const Value& b) {
    if (a.count == 0) return b;
    if (b.count == 0) return a;
    Value r;
    r.count = a.count + b.count;
    r.sum = a.sum + b.sum;
    if (!std::isfinite(r.sum)) {
      r.compensation = 0;  // inf/NaN absorb everything, as in PostgreSQL
      return r;
    }
    // TwoSum: the exact rounding error of a.sum + b.sum.
    const double bv = r.sum - a.sum;
    const double err = (a.sum - (r.sum - bv)) + (b.sum - bv);
    r.compensation = a.compensation + b.compensation + err;
    return r;
  }
  static double Result(const Value& v) {
    return std::isfinite(v.sum) ? v.sum + v.compensation : v.sum;
  }
};

struct FloatSumAgg {
  const Column* col;
  bool average;
  Output<double>* out;
  AggregatingQueue<FloatSumMonoid> queue;
  void Reset() { queue.Clear(); }
  void Add(int64_t i) {
    if (col->valid[i]) queue.Push({col->floats[i], 0, 1});
  }
  void Remove(int64_t i) {
    if (col->valid[i]) queue.Pop();
  }
  void Emit(int64_t o, int64_t, int64_t) {
    FloatSumMonoid::Value total = queue.Total();
    if (total.count == 0) return;
    double sum = FloatSumMonoid::Result(total);
    out->Set(o, average ? sum / static_cast<double>(total.count) : sum);
  }
};

/// Count, mean and sum of squared deviations, combined with Chan et al.'s
/// pairwise update (the parallel form of Welford's/Youngs-Cramer's method
/// PostgreSQL uses for float8 variance).
struct MomentsMonoid {
  struct Value {
    double n = 0;
    double mean = 0;
    double m2 = 0;
  };
  static Value Identity() { return {}; }
  static Value Combine(const Value& a, const Value& b) {
    if (a.n == 0) return b;
    if (b.n == 0) return a;
    Value r;
    r.n = a.n + b.n;
    const double delta = b.mean - a.mean;
    r.mean = a.mean + delta * (b.n / r.n);
    r.m2 = a.m2 + b.m2 + delta * delta * (a.n * b.n / r.n);
    return r;
  }
};

struct StddevAgg {
  const Column* col;
  Output<double>* out;
  AggregatingQueue<MomentsMonoid> queue;
  double Value(int64_t i) const {
    return col->kind == Column::Kind::kFloat ? col->floats[i]
                                              : static_cast<double>(col->ints[i]);
  }
  void Reset() { queue.Clear(); }
  void Add(int64_t i) {
    if (col->valid[i]) queue.Push({1, Value(i), 0});
  }
  void Remove(int64_t i) {
    if (col->valid[i]) queue.Pop();
  }
  void Emit(int64_t o, int64_t, int64_t) {
    MomentsMonoid::Value total = queue.Total();
    if (total.n < 2) return;
    if (!std::isfinite(total.mean) || !std::isfinite(total.m2)) {
      out->Set(o, std::numeric_limits<double>::quiet_NaN());  // PostgreSQL: NaN with inf/NaN
      return;
    }
    out->Set(o, std::sqrt(std::max(total.m2 / (total.n - 1), 0.0)));
  }
};

/// PostgreSQL's order: NaN above every number and equal to itself.
struct FloatLess {
  bool operator()(double a, double b) const {
    if (std::isnan(a)) return false;
    if (std::isnan(b)) return true;
    return a < b;
  }
};

/// MIN or MAX with a monotonic deque of row indices: the front is the answer.
/// Among equal values the latest row is kept, as PostgreSQL's
/// smaller(state, new) keeps the new value on ties.
template <typename T, typename Less>
struct ExtremumAgg {
  const std::vector<T>* values;
  const Column* col;
  bool maximum;
  std::vector<int64_t>* rows;
  std::deque<int64_t> dq;
  Less less;
  void Reset() { dq.clear(); }
  bool Dominates(int64_t newer, int64_t older) const {
    // The newer row makes the older one useless if it is at least as good.
    const T& a = (*values)[newer];
    const T& b = (*values)[older];
    return maximum ? !less(a, b) : !less(b, a);
  }
  void Add(int64_t i) {
    if (!col->valid[i]) return;
    while (!dq.empty() && Dominates(i, dq.back())) dq.pop_back();
    dq.push_back(i);
  }
  void Remove(int64_t i) {
    if (!dq.empty() && dq.front() == i) dq.pop_front();
  }
  void Emit(int64_t o, int64_t, int64_t) { (*rows)[o] = dq.empty() ? -1 : dq.front(); }
};

struct FirstLastAgg {
  bool last;
  std::vector<int64_t>* rows;
  void Reset() {}
  void Add(int64_t) {}
  void Remove(int64_t) {}
  void Emit(int64_t o, int64_t start, int64_t end) {
    (*rows)[o] = start == end ? -1 : (last ? end - 1 : start);
  }
};

Status CheckSorted(const arrow::Int64Array& groups, const arrow::Int64Array& times,
                   std::string_view what) {
  if (groups.length() != times.length()) {
    return InvalidArgument("", fmt::format("{}: {} group ids but {} times", what, groups.length(),
                                           times.length()));
  }
  if (groups.null_count() > 0 || times.null_count() > 0) {
    return InvalidArgument("", fmt::format("{}: group ids and times must not be NULL", what));
  }
  const int64_t* g = groups.raw_values();
  const int64_t* t = times.raw_values();
  for (int64_t i = 1; i < groups.length(); ++i) {
    if (g[i] < g[i - 1] || (g[i] == g[i - 1] && t[i] < t[i - 1])) {
      return InvalidArgument(
          "", fmt::format("{} are not sorted by group, then time, at row {} (group {} time {} "
                          "after group {} time {})",
                          what, i, g[i], t[i], g[i - 1], t[i - 1]));
    }
  }
  return Status::OK();
}

/// Computes `spec` with `slide` (a callable running an aggregator over the
/// frames, events' or queries') producing `n_out` results.
template <typename Slide>
Result<std::shared_ptr<arrow::Array>> Compute(const WindowSpec& spec, int64_t n_events,
                                              const std::shared_ptr<arrow::Array>& values,
                                              int64_t n_out, Slide&& slide) {
  if (spec.range_micros <= 0) {
    return InvalidArgument("window_size", "the window's range must be longer than zero");
  }
  if (spec.function == WindowFunction::kCountStar) {
    Output<int64_t> out(n_out);
    CountStarAgg agg{&out};
    slide(agg);
    return Finish(out);
  }
  if (values == nullptr) {
    return InvalidArgument("", fmt::format("{}(x) needs the argument's values",
                                           WindowFunctionName(spec.function)));
  }
  if (values->length() != n_events) {
    return InvalidArgument("", fmt::format("{} values for {} events", values->length(), n_events));
  }
  ARROW_RETURN_NOT_OK(WindowResultType(spec.function, values->type()));
  ARROW_ASSIGN_OR_RAISE(Column col, ToColumn(*values));
  using Kind = Column::Kind;

  switch (spec.function) {
    case WindowFunction::kCountStar:
      break;
    case WindowFunction::kCount: {
      Output<int64_t> out(n_out);
      CountAgg agg{&col, &out};
      slide(agg);
      return Finish(out);
    }
    case WindowFunction::kCountDistinct: {
      Output<int64_t> out(n_out);
      if (col.kind == Kind::kBytes) {
        CountDistinctAgg<std::string_view> agg{col.bytes, &col, &out, {}};
        slide(agg);
      } else {
        std::vector<uint64_t> keys(n_events);
        for (int64_t i = 0; i < n_events; ++i) {
          if (col.kind == Kind::kInt) {
            keys[i] = static_cast<uint64_t>(col.ints[i]);
          } else if (col.kind == Kind::kFloat) {
            double v = col.floats[i];
            if (v == 0) v = 0;  // -0.0 equals 0.0
            if (std::isnan(v)) v = std::numeric_limits<double>::quiet_NaN();  // one NaN
            uint64_t bits;
            std::memcpy(&bits, &v, sizeof bits);
            keys[i] = bits;
          }
        }
        CountDistinctAgg<uint64_t> agg{std::move(keys), &col, &out, {}};
        slide(agg);
      }
      return Finish(out);
    }
    case WindowFunction::kSum:
    case WindowFunction::kAvg: {
      const bool average = spec.function == WindowFunction::kAvg;
      if (col.kind == Kind::kInt) {
        Output<int64_t> sums(average ? 0 : n_out);
        Output<double> avgs(average ? n_out : 0);
        IntSumAgg agg{&col, average, &sums, &avgs};
        slide(agg);
        if (agg.overflow_row >= 0) {
          return InvalidArgument(
              "transformation",
              fmt::format("SUM overflows int64 at result row {}: cast the argument to a float "
                          "(SUM(x::float8))",
                          agg.overflow_row));
        }
        return average ? Finish(avgs) : Finish(sums);
      }
      Output<double> out(n_out);
      FloatSumAgg agg{&col, average, &out, {}};
      slide(agg);
      return Finish(out);
    }
    case WindowFunction::kStddevSamp: {
      Output<double> out(n_out);
      StddevAgg agg{&col, &out, {}};
      slide(agg);
      return Finish(out);
    }
    case WindowFunction::kMin:
    case WindowFunction::kMax: {
      const bool maximum = spec.function == WindowFunction::kMax;
      std::vector<int64_t> rows(n_out, -1);
      if (col.kind == Kind::kInt) {
        ExtremumAgg<int64_t, std::less<int64_t>> agg{&col.ints, &col, maximum, &rows, {}, {}};
        slide(agg);
      } else if (col.kind == Kind::kFloat) {
        ExtremumAgg<double, FloatLess> agg{&col.floats, &col, maximum, &rows, {}, {}};
        slide(agg);
      } else if (col.kind == Kind::kBytes) {
        ExtremumAgg<std::string_view, std::less<std::string_view>> agg{
            &col.bytes, &col, maximum, &rows, {}, {}};
        slide(agg);
      }
      return Gather(values, rows);
    }
    case WindowFunction::kFirstValue:
    case WindowFunction::kLastValue: {
      std::vector<int64_t> rows(n_out, -1);
      FirstLastAgg agg{spec.function == WindowFunction::kLastValue, &rows};
      slide(agg);
      return Gather(values, rows);
    }
  }
  return Internal("unknown window function");
}

}  // namespace

Result<std::shared_ptr<arrow::Array>> WindowAtEvents(const WindowSpec& spec,
                                                     const arrow::Int64Array& group_ids,
                                                     const arrow::Int64Array& times,
                                                     const std::shared_ptr<arrow::Array>& values) {
  ARROW_RETURN_NOT_OK(CheckSorted(group_ids, times, "events"));
  const int64_t n = group_ids.length();
  const int64_t* g = group_ids.raw_values();
  const int64_t* t = times.raw_values();
  return Compute(spec, n, values, n,
                 [&](auto& agg) { SlideAtEvents(g, t, n, spec.range_micros, agg); });
}

Result<std::shared_ptr<arrow::Array>> WindowAtTimes(const WindowSpec& spec,
                                                    const arrow::Int64Array& group_ids,
                                                    const arrow::Int64Array& times,
                                                    const std::shared_ptr<arrow::Array>& values,
                                                    const arrow::Int64Array& query_group_ids,
                                                    const arrow::Int64Array& query_times) {
  ARROW_RETURN_NOT_OK(CheckSorted(group_ids, times, "events"));
  ARROW_RETURN_NOT_OK(CheckSorted(query_group_ids, query_times, "queries"));
  const int64_t n = group_ids.length();
  const int64_t m = query_group_ids.length();
  const int64_t* g = group_ids.raw_values();
  const int64_t* t = times.raw_values();
  const int64_t* qg = query_group_ids.raw_values();
  const int64_t* qt = query_times.raw_values();
  return Compute(spec, n, values, m, [&](auto& agg) {
    SlideAtTimes(g, t, n, qg, qt, m, spec.range_micros, agg);
  });
}

}  // namespace fstore
