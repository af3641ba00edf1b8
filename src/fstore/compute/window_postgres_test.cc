// The window engine against a real PostgreSQL: random data with many ties and
// events exactly on the window's edge, every function, at events (PostgreSQL's
// own RANGE frame) and at query times (a correlated subquery over
// ts BETWEEN q - interval AND q). Needs FSTORE_TEST_POSTGRES_URL, e.g.
// postgresql://fstore@127.0.0.1:55432/fstore_test; skipped without it.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <arrow/api.h>
#include <fmt/format.h>
#include <libpq-fe.h>

#include "fstore/compute/window.h"
#include "fstore/core/time.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};

class Postgres {
 public:
  explicit Postgres(const char* url) : conn_(PQconnectdb(url)) {}
  bool ok() const { return PQstatus(conn_.get()) == CONNECTION_OK; }
  std::string error() const { return PQerrorMessage(conn_.get()); }

  /// Runs `sql`; failures are reported as test failures and give null.
  PgResult Exec(const std::string& sql) {
    PgResult r(PQexec(conn_.get(), sql.c_str()));
    ExecStatusType st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      ADD_FAILURE() << "PostgreSQL: " << PQresultErrorMessage(r.get()) << "\n" << sql.substr(0, 500);
      return nullptr;
    }
    return r;
  }

 private:
  std::unique_ptr<PGconn, PgConnDeleter> conn_;
};

// One generated data set, sorted by (g, ts); id = position = input order.
struct Data {
  std::vector<int64_t> g, ts;
  std::vector<std::optional<int64_t>> vi;
  std::vector<std::optional<double>> vf;
  std::vector<std::optional<std::string>> vs;
  std::vector<int64_t> qg, qts;  // queries, sorted
  int64_t range_seconds = 1;
};

constexpr TimestampMicros kBase = 1'709'251'200'000'000;  // 2024-03-01T00:00:00Z

/// special_floats: some infinities, NaNs and -0.0; shifted: floats around 1000
/// with a spread of 1 (cancellation for STDDEV_SAMP, precision for SUM).
Data Generate(uint64_t seed, bool special_floats, bool shifted) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  Data d;
  const int64_t groups = uniform(1, 6);
  const int64_t n = uniform(50, 400);
  const int64_t span = uniform(5, 80);  // seconds: small, so ties abound
  const int64_t ranges[] = {1, 2, 3, 5, 10, 30};
  d.range_seconds = ranges[uniform(0, 5)];
  struct Row {
    int64_t g, ts;
    size_t order;
  };
  std::vector<Row> rows;
  for (int64_t i = 0; i < n; ++i) {
    int64_t t = kBase + uniform(0, span) * kMicrosPerSecond;
    if (chance(0.1)) t += uniform(0, 999'999);  // off the grid now and then
    rows.push_back({uniform(1, groups), t, static_cast<size_t>(i)});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.g != b.g ? a.g < b.g : a.ts < b.ts;
  });
  const std::vector<double> repeated = {0.5, -1.25, 3.0, 100.0, 1e-3};
  const std::vector<std::string> words = {"a", "b", "ab", "ba", "c", "B", "aa"};
  for (const Row& r : rows) {
    d.g.push_back(r.g);
    d.ts.push_back(r.ts);
    d.vi.push_back(chance(0.2) ? std::nullopt : std::optional<int64_t>(uniform(-20, 20)));
    if (chance(0.2)) {
      d.vf.push_back(std::nullopt);
    } else if (special_floats && chance(0.05)) {
      const double specials[] = {INFINITY, -INFINITY, NAN, -0.0, 0.0};
      d.vf.push_back(specials[uniform(0, 4)]);
    } else if (chance(0.3)) {
      d.vf.push_back(repeated[uniform(0, 4)]);
    } else {
      d.vf.push_back(shifted ? 1000 + std::normal_distribution<double>(0, 1)(rng)
                             : std::normal_distribution<double>(0, 1000)(rng));
    }
    d.vs.push_back(chance(0.2) ? std::nullopt
                               : std::optional<std::string>(words[uniform(0, 6)]));
  }
  // Queries: at events, between them, before and after, also for group 0 and
  // groups+1, which have no events.
  const int64_t m = uniform(20, 120);
  std::vector<std::pair<int64_t, int64_t>> queries;
  for (int64_t i = 0; i < m; ++i) {
    int64_t t;
    if (chance(0.4) && n > 0) {
      t = d.ts[uniform(0, n - 1)] + (chance(0.5) ? d.range_seconds * kMicrosPerSecond : 0);
    } else {
      t = kBase + uniform(-d.range_seconds - 2, span + d.range_seconds + 2) * kMicrosPerSecond +
          (chance(0.3) ? uniform(0, 999'999) : 0);
    }
    queries.emplace_back(uniform(0, groups + 1), t);
  }
  std::sort(queries.begin(), queries.end());
  for (const auto& [g, t] : queries) {
    d.qg.push_back(g);
    d.qts.push_back(t);
  }
  return d;
}

std::string Timestamp(int64_t micros) {
  std::string s = FormatTimestamp(micros);  // RFC 3339, "Z"
  return "'" + s + "'";
}

std::string FloatLiteral(double v) {
  if (std::isnan(v)) return "'NaN'::float8";
  if (std::isinf(v)) return v > 0 ? "'Infinity'::float8" : "'-Infinity'::float8";
  if (v == 0 && std::signbit(v)) return "'-0'::float8";
  return fmt::format("{:.17g}::float8", v);
}

template <typename T, typename F>
std::string Literal(const std::optional<T>& v, F&& format) {
  return v ? format(*v) : std::string("NULL");
}

void Load(Postgres& pg, const Data& d) {
  pg.Exec("DROP TABLE IF EXISTS t; DROP TABLE IF EXISTS q");
  pg.Exec("CREATE TEMP TABLE t (id int, g bigint, ts timestamptz, vi bigint, vf float8, vs text)");
  pg.Exec("CREATE TEMP TABLE q (qid int, g bigint, ts timestamptz)");
  std::string sql = "INSERT INTO t VALUES ";
  for (size_t i = 0; i < d.g.size(); ++i) {
    if (i > 0) sql += ",";
    sql += fmt::format("({},{},{},{},{},{})", i, d.g[i], Timestamp(d.ts[i]),
                       Literal(d.vi[i], [](int64_t v) { return std::to_string(v); }),
                       Literal(d.vf[i], FloatLiteral),
                       Literal(d.vs[i], [](const std::string& v) { return "'" + v + "'"; }));
  }
  if (!d.g.empty()) pg.Exec(sql);
  sql = "INSERT INTO q VALUES ";
  for (size_t i = 0; i < d.qg.size(); ++i) {
    if (i > 0) sql += ",";
    sql += fmt::format("({},{},{})", i, d.qg[i], Timestamp(d.qts[i]));
  }
  if (!d.qg.empty()) pg.Exec(sql);
  pg.Exec("CREATE INDEX ON t (g, ts); ANALYZE t; ANALYZE q");
}

std::shared_ptr<arrow::Int64Array> Int64s(const std::vector<int64_t>& v) {
  arrow::Int64Builder b;
  EXPECT_TRUE(b.AppendValues(v).ok());
  return std::static_pointer_cast<arrow::Int64Array>(b.Finish().ValueOrDie());
}

std::shared_ptr<arrow::Array> Column(const Data& d, const std::string& name) {
  if (name == "vi") {
    arrow::Int64Builder b;
    for (const auto& v : d.vi) EXPECT_TRUE((v ? b.Append(*v) : b.AppendNull()).ok());
    return b.Finish().ValueOrDie();
  }
  if (name == "vf") {
    arrow::DoubleBuilder b;
    for (const auto& v : d.vf) EXPECT_TRUE((v ? b.Append(*v) : b.AppendNull()).ok());
    return b.Finish().ValueOrDie();
  }
  arrow::StringBuilder b;
  for (const auto& v : d.vs) EXPECT_TRUE((v ? b.Append(*v) : b.AppendNull()).ok());
  return b.Finish().ValueOrDie();
}

struct Case {
  WindowFunction function;
  std::string column;  // "" for COUNT(*)
};

// The aggregate's SQL over `col` (with the "C" collation for text, as the
// engine compares bytes).
std::string AggregateSql(WindowFunction f, const std::string& col) {
  std::string c = col == "vs" ? col + " COLLATE \"C\"" : col;
  switch (f) {
    case WindowFunction::kCountStar: return "count(*)";
    case WindowFunction::kCount: return "count(" + c + ")";
    case WindowFunction::kCountDistinct: return "count(DISTINCT " + c + ")";
    case WindowFunction::kSum: return "sum(" + c + ")";
    case WindowFunction::kAvg: return "avg(" + c + ")";
    case WindowFunction::kMin: return "min(" + c + ")";
    case WindowFunction::kMax: return "max(" + c + ")";
    case WindowFunction::kStddevSamp: return "stddev_samp(" + c + ")";
    case WindowFunction::kFirstValue: return "first_value(" + c + ")";
    case WindowFunction::kLastValue: return "last_value(" + c + ")";
  }
  return "";
}

/// PostgreSQL's result at each event, in (g, ts, id) order.
std::string AtEventsSql(const Case& c, int64_t range_seconds) {
  const std::string interval = fmt::format("INTERVAL '{} seconds'", range_seconds);
  const std::string frame =
      fmt::format("t2.g = t.g AND t2.ts BETWEEN t.ts - {} AND t.ts", interval);
  switch (c.function) {
    case WindowFunction::kCountDistinct:
      // PostgreSQL has no DISTINCT in window functions: the frame as a subquery.
      return fmt::format("SELECT (SELECT count(DISTINCT t2.{}) FROM t t2 WHERE {}) FROM t ORDER "
                         "BY g, ts, id",
                         c.column, frame);
    case WindowFunction::kFirstValue:
    case WindowFunction::kLastValue: {
      // PostgreSQL leaves the order of peers unspecified; the engine's is input
      // order (id), so the reference spells it out.
      const char* dir = c.function == WindowFunction::kFirstValue ? "" : " DESC";
      return fmt::format("SELECT (SELECT t2.{} FROM t t2 WHERE {} ORDER BY t2.ts{}, t2.id{} "
                         "LIMIT 1) FROM t ORDER BY g, ts, id",
                         c.column, frame, dir, dir);
    }
    default:
      return fmt::format("SELECT {} OVER (PARTITION BY g ORDER BY ts RANGE BETWEEN {} PRECEDING "
                         "AND CURRENT ROW) FROM t ORDER BY g, ts, id",
                         AggregateSql(c.function, c.column), interval);
  }
}

/// PostgreSQL's result at each query time, in query order.
std::string AtTimesSql(const Case& c, int64_t range_seconds) {
  const std::string frame = fmt::format(
      "t.g = q.g AND t.ts BETWEEN q.ts - INTERVAL '{} seconds' AND q.ts", range_seconds);
  if (c.function == WindowFunction::kFirstValue || c.function == WindowFunction::kLastValue) {
    const char* dir = c.function == WindowFunction::kFirstValue ? "" : " DESC";
    return fmt::format("SELECT (SELECT t.{} FROM t WHERE {} ORDER BY t.ts{}, t.id{} LIMIT 1) "
                       "FROM q ORDER BY qid",
                       c.column, frame, dir, dir);
  }
  return fmt::format("SELECT (SELECT {} FROM t WHERE {}) FROM q ORDER BY qid",
                     AggregateSql(c.function, c.column), frame);
}

/// Compares the engine's values with PostgreSQL's text results; returns the
/// number of mismatches (each reported).
int Compare(const std::shared_ptr<arrow::Array>& ours, PGresult* theirs, const std::string& what) {
  if (theirs == nullptr) return 1;
  const int rows = PQntuples(theirs);
  EXPECT_EQ(ours->length(), rows) << what;
  if (ours->length() != rows) return 1;
  int mismatches = 0;
  for (int i = 0; i < rows; ++i) {
    const bool pg_null = PQgetisnull(theirs, i, 0);
    const std::string text = pg_null ? "" : PQgetvalue(theirs, i, 0);
    bool same = true;
    std::string ours_text = "NULL";
    if (ours->IsNull(i) || pg_null) {
      same = ours->IsNull(i) == pg_null;
      if (ours->IsValid(i)) ours_text = ours->GetScalar(i).ValueOrDie()->ToString();
    } else if (ours->type_id() == arrow::Type::STRING) {
      ours_text = std::static_pointer_cast<arrow::StringArray>(ours)->GetString(i);
      same = ours_text == text;
    } else if (ours->type_id() == arrow::Type::INT64) {
      const int64_t v = std::static_pointer_cast<arrow::Int64Array>(ours)->Value(i);
      ours_text = std::to_string(v);
      same = ours_text == text;
    } else {
      const double v = std::static_pointer_cast<arrow::DoubleArray>(ours)->Value(i);
      const double w = std::strtod(text.c_str(), nullptr);  // parses NaN, Infinity
      ours_text = fmt::format("{:.17g}", v);
      if (std::isnan(v) || std::isnan(w)) {
        same = std::isnan(v) && std::isnan(w);
      } else if (std::isinf(v) || std::isinf(w)) {
        same = v == w;
      } else {
        // PostgreSQL sums floats left to right; the engine compensates: allow
        // the rounding of a naive sum of values of a few thousand.
        same = std::abs(v - w) <= 1e-9 * std::max(1.0, std::abs(w));
      }
    }
    if (!same) {
      ++mismatches;
      if (mismatches <= 5) {
        ADD_FAILURE() << what << " row " << i << ": engine " << ours_text << ", PostgreSQL "
                      << (pg_null ? "NULL" : text);
      }
    }
  }
  return mismatches;
}

TEST(WindowPostgresTest, RandomizedAgainstPostgres) {
  const char* url = std::getenv("FSTORE_TEST_POSTGRES_URL");
  if (url == nullptr || *url == '\0') {
    GTEST_SKIP() << "set FSTORE_TEST_POSTGRES_URL (e.g. "
                    "postgresql://fstore@127.0.0.1:55432/fstore_test) to compare with PostgreSQL";
  }
  Postgres pg(url);
  ASSERT_TRUE(pg.ok()) << pg.error();
  pg.Exec("SET TimeZone = 'UTC'");
  pg.Exec("SET client_min_messages = warning");
  pg.Exec("SET extra_float_digits = 3");

  const std::vector<Case> cases = {
      {WindowFunction::kCountStar, ""},       {WindowFunction::kCount, "vi"},
      {WindowFunction::kCount, "vs"},         {WindowFunction::kCountDistinct, "vi"},
      {WindowFunction::kCountDistinct, "vf"}, {WindowFunction::kCountDistinct, "vs"},
      {WindowFunction::kSum, "vi"},           {WindowFunction::kSum, "vf"},
      {WindowFunction::kAvg, "vi"},           {WindowFunction::kAvg, "vf"},
      {WindowFunction::kMin, "vi"},           {WindowFunction::kMin, "vf"},
      {WindowFunction::kMin, "vs"},           {WindowFunction::kMax, "vi"},
      {WindowFunction::kMax, "vf"},           {WindowFunction::kMax, "vs"},
      {WindowFunction::kStddevSamp, "vi"},    {WindowFunction::kStddevSamp, "vf"},
      {WindowFunction::kFirstValue, "vi"},    {WindowFunction::kFirstValue, "vs"},
      {WindowFunction::kLastValue, "vf"},     {WindowFunction::kLastValue, "vs"},
  };
  constexpr int kRounds = 20;
  int compared = 0;
  for (int round = 0; round < kRounds; ++round) {
    const Data d = Generate(0x5eed0000 + round, /*special_floats=*/round % 4 == 2,
                            /*shifted=*/round % 4 == 3);
    SCOPED_TRACE(fmt::format("round {}: {} rows, {} queries, range {}s", round, d.g.size(),
                             d.qg.size(), d.range_seconds));
    Load(pg, d);
    auto groups = Int64s(d.g);
    auto times = Int64s(d.ts);
    auto qg = Int64s(d.qg);
    auto qt = Int64s(d.qts);
    for (const Case& c : cases) {
      WindowSpec spec;
      spec.function = c.function;
      spec.range_micros = d.range_seconds * kMicrosPerSecond;
      std::shared_ptr<arrow::Array> values = c.column.empty() ? nullptr : Column(d, c.column);
      const std::string what =
          fmt::format("{}({})", WindowFunctionName(c.function),
                      c.column.empty() ? "*" : (c.function == WindowFunction::kCountDistinct
                                                    ? "DISTINCT " + c.column
                                                    : c.column));
      ASSERT_OK_AND_ASSIGN(auto at_events, WindowAtEvents(spec, *groups, *times, values));
      PgResult expected = pg.Exec(AtEventsSql(c, d.range_seconds));
      EXPECT_EQ(Compare(at_events, expected.get(), what + " at events"), 0);
      ASSERT_OK_AND_ASSIGN(auto at_times, WindowAtTimes(spec, *groups, *times, values, *qg, *qt));
      expected = pg.Exec(AtTimesSql(c, d.range_seconds));
      EXPECT_EQ(Compare(at_times, expected.get(), what + " at times"), 0);
      compared += static_cast<int>(at_events->length() + at_times->length());
    }
  }
  RecordProperty("values_compared", compared);
  std::printf("[window vs PostgreSQL] %d values compared over %d rounds\n", compared, kRounds);
}

}  // namespace
}  // namespace fstore
