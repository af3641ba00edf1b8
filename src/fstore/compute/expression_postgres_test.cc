// The transformation evaluator against a real PostgreSQL: every expression of
// testdata/expressions.txt runs as `SELECT <expr> FROM t ORDER BY id` in
// PostgreSQL and through CompiledExpression over the same rows as an Arrow
// batch; results are compared value by value (NULLs equal, floats to a relative
// 1e-9, timestamps/dates/intervals exactly), and the result types must agree.
// Lines starting with "! " must fail in both with the same message. Needs
// FSTORE_TEST_POSTGRES_URL (`eval "$(scripts/test-postgres.sh start)"`);
// skipped without it.

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <arrow/api.h>
#include <libpq-fe.h>

#include "fstore/compute/expression.h"
#include "fstore/compute/transformation.h"
#include "fstore/testing/gtest_util.h"

#ifndef FSTORE_SOURCE_DIR
#error "FSTORE_SOURCE_DIR must be defined (compute/CMakeLists.txt)"
#endif

namespace fstore {
namespace {

struct PgResultFree {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResultPtr = std::unique_ptr<PGresult, PgResultFree>;
struct PgConnFree {
  void operator()(PGconn* c) const { PQfinish(c); }
};

constexpr const char* kCreateTable = R"sql(
CREATE TEMP TABLE t (id bigint, i bigint, k bigint, n integer, f double precision, s text,
                     b boolean, d date, ts timestamptz, tn timestamp);
INSERT INTO t VALUES
 (1, 7, 2, 7, 1.5, 'Hello', true, '2024-02-29', '2024-02-29 10:30:00+00', '2024-02-29 10:30:00'),
 (2, -7, -3, -7, -2.5, ' pad ', false, '1990-06-15', '2024-01-31 00:00:00.25+00', '2024-01-31 12:00:00'),
 (3, NULL, 5, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 0, 1, 0, 0.0, 'abc', true, '1969-12-31', '1969-12-31 23:59:59+00', '1970-01-01 00:00:00'),
 (5, 2147483647, 7, 2147483647, 2.675, 'ÄbC_%x', false, '2000-02-28', '2000-03-01 00:00:00+00', '2000-02-29 23:00:00'),
 (6, -15, -4, -15, 0.5, '', true, '2023-12-31', '2023-12-31 23:59:59.999999+00', '2024-03-31 08:15:30.5'),
 (7, 100, 9, 100, 1e10, 'xHELLO worldx', NULL, '2024-01-31', '2024-01-31 12:00:00+00', '1999-12-31 23:59:59'),
 (8, 3, NULL, 3, -0.5, 'HELLO world', true, '1900-03-01', '1900-02-28 06:00:00+00', NULL);
)sql";

class ExpressionPostgresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* url = std::getenv("FSTORE_TEST_POSTGRES_URL");
    if (url == nullptr || *url == '\0') {
      GTEST_SKIP() << "FSTORE_TEST_POSTGRES_URL is not set (eval \"$(scripts/test-postgres.sh "
                      "start)\"); skipping the PostgreSQL comparison";
    }
    conn_.reset(PQconnectdb(url));
    ASSERT_EQ(PQstatus(conn_.get()), CONNECTION_OK) << PQerrorMessage(conn_.get());
    ASSERT_TRUE(Exec("SET TIME ZONE 'UTC'"));
    ASSERT_TRUE(Exec(kCreateTable));
    ASSERT_NO_FATAL_FAILURE(LoadBatch());
  }

  PgResultPtr Exec(const std::string& sql, std::string* error = nullptr) {
    PgResultPtr r(PQexec(conn_.get(), sql.c_str()));
    ExecStatusType st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      const char* primary = PQresultErrorField(r.get(), PG_DIAG_MESSAGE_PRIMARY);
      if (error != nullptr) {
        *error = primary ? primary : PQresultErrorMessage(r.get());
      } else {
        ADD_FAILURE() << "PostgreSQL: " << PQresultErrorMessage(r.get()) << "\n" << sql;
      }
      return nullptr;
    }
    return r;
  }

  // The table, read back from PostgreSQL into Arrow: the same rows, exactly.
  void LoadBatch() {
    auto r = Exec(
        "SELECT id, i, k, n, f, s, b, d - DATE '1970-01-01', "
        "(EXTRACT(EPOCH FROM ts) * 1000000)::bigint, (EXTRACT(EPOCH FROM tn) * 1000000)::bigint "
        "FROM t ORDER BY id");
    ASSERT_TRUE(r);
    arrow::Int64Builder id, i, k, ts, tn;
    arrow::Int32Builder n, d;
    arrow::DoubleBuilder f;
    arrow::StringBuilder s;
    arrow::BooleanBuilder b;
    for (int row = 0; row < PQntuples(r.get()); ++row) {
      auto null = [&](int c) { return PQgetisnull(r.get(), row, c) != 0; };
      auto text = [&](int c) { return std::string(PQgetvalue(r.get(), row, c)); };
      auto int64 = [&](arrow::Int64Builder* out, int c) {
        ASSERT_OK(null(c) ? out->AppendNull() : out->Append(std::stoll(text(c))));
      };
      auto int32 = [&](arrow::Int32Builder* out, int c) {
        ASSERT_OK(null(c) ? out->AppendNull() : out->Append(std::stoi(text(c))));
      };
      int64(&id, 0);
      int64(&i, 1);
      int64(&k, 2);
      int32(&n, 3);
      ASSERT_OK(null(4) ? f.AppendNull() : f.Append(std::strtod(text(4).c_str(), nullptr)));
      ASSERT_OK(null(5) ? s.AppendNull() : s.Append(text(5)));
      ASSERT_OK(null(6) ? b.AppendNull() : b.Append(text(6) == "t"));
      int32(&d, 7);
      int64(&ts, 8);
      int64(&tn, 9);
    }
    auto finish = [](arrow::ArrayBuilder* builder) { return builder->Finish().ValueOrDie(); };
    auto cast = [](std::shared_ptr<arrow::Array> a, std::shared_ptr<arrow::DataType> to) {
      return a->View(to).ValueOrDie();
    };
    auto schema = arrow::schema({
        arrow::field("id", arrow::int64()),
        arrow::field("i", arrow::int64()),
        arrow::field("k", arrow::int64()),
        arrow::field("n", arrow::int32()),
        arrow::field("f", arrow::float64()),
        arrow::field("s", arrow::utf8()),
        arrow::field("b", arrow::boolean()),
        arrow::field("d", arrow::date32()),
        arrow::field("ts", arrow::timestamp(arrow::TimeUnit::MICRO, "UTC")),
        arrow::field("tn", arrow::timestamp(arrow::TimeUnit::MICRO)),
    });
    auto rows = PQntuples(r.get());
    batch_ = arrow::RecordBatch::Make(
        schema, rows,
        {finish(&id), finish(&i), finish(&k), finish(&n), finish(&f), finish(&s), finish(&b),
         cast(finish(&d), arrow::date32()),
         cast(finish(&ts), arrow::timestamp(arrow::TimeUnit::MICRO, "UTC")),
         cast(finish(&tn), arrow::timestamp(arrow::TimeUnit::MICRO))});
  }

  std::unique_ptr<PGconn, PgConnFree> conn_;
  std::shared_ptr<arrow::RecordBatch> batch_;
};

std::vector<std::string> ReadExpressions() {
  std::ifstream in(std::string(FSTORE_SOURCE_DIR) + "/src/fstore/compute/testdata/expressions.txt");
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    out.push_back(line);
  }
  return out;
}

// PostgreSQL's type of an expression -> the Arrow type we must infer.
std::shared_ptr<arrow::DataType> ArrowTypeForPg(const std::string& pg) {
  if (pg == "integer" || pg == "bigint" || pg == "smallint") return arrow::int64();
  if (pg == "double precision" || pg == "numeric" || pg == "real") return arrow::float64();
  if (pg == "text" || pg == "character varying" || pg == "unknown") return arrow::utf8();
  if (pg == "boolean") return arrow::boolean();
  if (pg == "date") return arrow::date32();
  if (pg.rfind("timestamp", 0) == 0) return arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
  if (pg == "interval") return arrow::month_day_nano_interval();
  return nullptr;
}

// PostgreSQL's value of `x` in a comparable text form, by our result type.
std::string Projection(const arrow::DataType& type) {
  switch (type.id()) {
    case arrow::Type::DATE32: return "x - DATE '1970-01-01'";
    case arrow::Type::TIMESTAMP: return "(EXTRACT(EPOCH FROM x) * 1000000)::bigint";
    case arrow::Type::INTERVAL_MONTH_DAY_NANO:
      return "(EXTRACT(YEAR FROM x) * 12 + EXTRACT(MONTH FROM x))::bigint || ' ' || "
             "EXTRACT(DAY FROM x)::bigint || ' ' || ((EXTRACT(HOUR FROM x) * 3600 + "
             "EXTRACT(MINUTE FROM x) * 60) * 1000000 + EXTRACT(MICROSECONDS FROM x))::bigint";
    default: return "x";
  }
}

// Our value at `row` in the same text form; compares floats with tolerance.
::testing::AssertionResult SameValue(const arrow::Array& ours, int64_t row, const std::string& pg) {
  switch (ours.type_id()) {
    case arrow::Type::INT64: {
      auto v = static_cast<const arrow::Int64Array&>(ours).Value(row);
      if (std::to_string(v) == pg) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << v;
    }
    case arrow::Type::DOUBLE: {
      double v = static_cast<const arrow::DoubleArray&>(ours).Value(row);
      double want = std::strtod(pg.c_str(), nullptr);
      if ((std::isnan(v) && std::isnan(want)) || v == want ||
          std::fabs(v - want) <= 1e-9 * std::max(std::fabs(v), std::fabs(want))) {
        return ::testing::AssertionSuccess();
      }
      return ::testing::AssertionFailure() << std::to_string(v);
    }
    case arrow::Type::BOOL: {
      bool v = static_cast<const arrow::BooleanArray&>(ours).Value(row);
      if ((v ? "t" : "f") == pg) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << (v ? "t" : "f");
    }
    case arrow::Type::STRING: {
      auto v = std::string(static_cast<const arrow::StringArray&>(ours).GetView(row));
      if (v == pg) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << "'" << v << "'";
    }
    case arrow::Type::DATE32: {
      auto v = static_cast<const arrow::Date32Array&>(ours).Value(row);
      if (std::to_string(v) == pg) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << v;
    }
    case arrow::Type::TIMESTAMP: {
      auto v = static_cast<const arrow::TimestampArray&>(ours).Value(row);
      if (std::to_string(v) == pg) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << v << " (" << FormatTimestamp(v) << ")";
    }
    case arrow::Type::INTERVAL_MONTH_DAY_NANO: {
      auto v = static_cast<const arrow::MonthDayNanoIntervalArray&>(ours).GetValue(row);
      std::string text = std::to_string(v.months) + " " + std::to_string(v.days) + " " +
                         std::to_string(v.nanoseconds / 1000);
      if (text == pg) return ::testing::AssertionSuccess();
      return ::testing::AssertionFailure() << text;
    }
    default: return ::testing::AssertionFailure() << "unexpected type " << ours.type()->ToString();
  }
}

TEST_F(ExpressionPostgresTest, SameResultsAsPostgres) {
  std::vector<std::string> expressions = ReadExpressions();
  ASSERT_GT(expressions.size(), 80u);
  int compared = 0;
  for (std::string expr : expressions) {
    bool expect_error = expr.rfind("! ", 0) == 0;
    if (expect_error) expr = expr.substr(2);
    SCOPED_TRACE(expr);
    auto parsed = ParseTransformation(expr);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    Status supported = CheckSupported(*parsed);
    EXPECT_TRUE(supported.ok()) << supported.ToString();
    auto compiled = CompiledExpression::Compile(*parsed, batch_->schema());
    if (expect_error && !compiled.ok()) {  // refused at definition time, as PostgreSQL's planner
      std::string pg_error;
      EXPECT_FALSE(Exec("SELECT " + expr + " FROM t", &pg_error)) << "PostgreSQL did not fail";
      EXPECT_EQ(ErrorMessageOf(compiled.status()), pg_error);
      ++compared;
      continue;
    }
    if (!compiled.ok()) {
      ADD_FAILURE() << "does not compile: " << compiled.status().ToString();
      continue;
    }
    auto ours = compiled->Evaluate(*batch_, EvalContext{});

    std::string pg_error;
    auto pg = Exec("WITH v AS (SELECT id, (" + expr + ") AS x FROM t) SELECT " +
                       Projection(*compiled->type()) + ", pg_typeof(x)::text FROM v ORDER BY id",
                   &pg_error);
    if (expect_error) {
      EXPECT_FALSE(pg) << "PostgreSQL did not fail";
      ASSERT_FALSE(ours.ok()) << "we did not fail: " << (*ours)->ToString();
      EXPECT_EQ(ErrorMessageOf(ours.status()), pg_error);
      const ErrorDetail* e = ErrorOf(ours.status());
      ASSERT_NE(e, nullptr);
      EXPECT_EQ(e->field(), "transformation");
      ++compared;
      continue;
    }
    if (!pg) {
      ADD_FAILURE() << "PostgreSQL failed: " << pg_error;
      continue;
    }
    if (!ours.ok()) {
      ADD_FAILURE() << "we failed: " << ours.status().ToString();
      continue;
    }
    const arrow::Array& values = **ours;
    ASSERT_EQ(values.length(), PQntuples(pg.get()));
    std::string pg_type = PQntuples(pg.get()) > 0 ? PQgetvalue(pg.get(), 0, 1) : "";
    auto want_type = ArrowTypeForPg(pg_type);
    EXPECT_TRUE(want_type && want_type->Equals(*compiled->type()))
        << "PostgreSQL's type " << pg_type << ", ours " << compiled->type()->ToString();
    for (int row = 0; row < PQntuples(pg.get()); ++row) {
      bool pg_null = PQgetisnull(pg.get(), row, 0) != 0;
      std::string pg_value = pg_null ? "NULL" : PQgetvalue(pg.get(), row, 0);
      if (pg_null || values.IsNull(row)) {
        EXPECT_EQ(pg_null, values.IsNull(row))
            << "row id " << row + 1 << ": PostgreSQL " << pg_value << ", ours "
            << (values.IsNull(row) ? "NULL" : values.GetScalar(row).ValueOrDie()->ToString());
        continue;
      }
      EXPECT_TRUE(SameValue(values, row, pg_value))
          << "row id " << row + 1 << ": PostgreSQL " << pg_value;
    }
    ++compared;
  }
  EXPECT_EQ(compared, static_cast<int>(expressions.size()));
}

}  // namespace
}  // namespace fstore
