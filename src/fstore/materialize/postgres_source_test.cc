// PostgreSQL feature set sources against a real server: the schema read
// (types, NULLs, timestamptz vs timestamp), the row reader (query and table
// forms, the range pushed into the WHERE, FETCH batches), errors (unreachable
// server, bad SQL at run time, division by zero), and materialization of the
// same rows from PostgreSQL with pushdown, without pushdown, and from a
// Parquet file, compared exactly. Needs FSTORE_TEST_POSTGRES_URL
// (`eval "$(scripts/test-postgres.sh start)"`); skipped without it. Each
// test's tables carry the process id and the test's name.

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <arrow/api.h>
#include <arrow/io/api.h>
#include <gmock/gmock.h>
#include <libpq-fe.h>
#include <parquet/arrow/writer.h>

#include "fstore/compute/postgres_client.h"
#include "fstore/compute/source_schema.h"
#include "fstore/core/ids.h"
#include "fstore/materialize/feature_pipeline.h"
#include "fstore/materialize/materialization_engine.h"
#include "fstore/materialize/postgres_source.h"
#include "fstore/materialize/source_reader.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr TimestampMicros kJan1 = 1'704'067'200'000'000;  // 2024-01-01T00:00:00Z

struct PgConnFree {
  void operator()(PGconn* c) const { PQfinish(c); }
};

class PostgresSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* url = std::getenv("FSTORE_TEST_POSTGRES_URL");
    if (url == nullptr || *url == '\0') {
      GTEST_SKIP() << "FSTORE_TEST_POSTGRES_URL is not set (eval \"$(scripts/test-postgres.sh "
                      "start)\"); skipping the PostgreSQL source tests";
    }
    url_ = url;
    conn_.reset(PQconnectdb(url));
    ASSERT_EQ(PQstatus(conn_.get()), CONNECTION_OK) << PQerrorMessage(conn_.get());
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    prefix_ = "pgsrc_" + std::to_string(::getpid()) + "_";
    for (char c : name) prefix_.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    prefix_ = prefix_.substr(0, 50);
    dir_ = fs::temp_directory_path() / ("fstore_" + prefix_);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  void TearDown() override {
    engine_.reset();
    online_.reset();
    offline_.reset();
    registry_.reset();
    for (const auto& t : tables_) Exec("DROP TABLE IF EXISTS " + t);
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  void Exec(const std::string& sql) {
    PGresult* r = PQexec(conn_.get(), sql.c_str());
    ExecStatusType st = PQresultStatus(r);
    EXPECT_TRUE(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        << PQresultErrorMessage(r) << "\n" << sql;
    PQclear(r);
  }

  // A table name unique to this test (dropped at the end).
  std::string Table(const std::string& suffix) {
    std::string t = prefix_ + "_" + suffix;
    tables_.push_back(t);
    Exec("DROP TABLE IF EXISTS " + t);
    return t;
  }

  SourceDefinition QuerySource(const std::string& query) {
    SourceDefinition s;
    s.type = "postgres";
    s.query = query;
    s.connection = url_;
    return s;
  }
  SourceDefinition TableSource(const std::string& table) {
    SourceDefinition s;
    s.type = "postgres";
    s.table = table;
    s.connection = url_;
    return s;
  }

  void OpenStores() {
    ASSERT_OK_AND_ASSIGN(registry_, RegistryFromUri("sqlite://" + (dir_ / "registry.db").string()));
    ASSERT_OK(registry_->Migrate().status());
    ASSERT_OK_AND_ASSIGN(offline_, OfflineStore::Open("file://" + (dir_ / "offline").string()));
    ASSERT_OK_AND_ASSIGN(online_, OnlineStoreFromUri("rocksdb://" + (dir_ / "online").string()));
    engine_ = std::make_unique<MaterializationEngine>(registry_.get(), offline_.get(),
                                                      online_.get(), 1);
    Entity user;
    user.id = NewUuid();
    user.name = "user";
    user.join_keys = {"user_id"};
    user_ = user;
    RegistryWrite write;
    write.new_entities = {user};
    ASSERT_OK(registry_->Commit(write));
  }

  struct FeatureSpec {
    std::string name;
    std::string data_type;
    std::string transformation;
  };

  // A feature set `name` over `source` (timestamp_field ts) with `specs`.
  FeatureSet Define(const std::string& name, const SourceDefinition& source,
                    const std::vector<FeatureSpec>& specs) {
    FeatureSet set;
    set.id = NewUuid();
    set.name = name;
    set.entities = {"user"};
    set.source = source;
    set.timestamp_field = "ts";
    set.created_at = set.updated_at = kJan1;
    RegistryWrite write;
    write.feature_sets = {{set, 0}};
    for (const auto& spec : specs) {
      Feature f;
      f.id = NewUuid();
      f.name = spec.name;
      f.feature_set_id = set.id;
      f.data_type = spec.data_type;
      f.transformation = spec.transformation;
      write.features.push_back({f, 0});
    }
    EXPECT_OK(registry_->Commit(write));
    return set;
  }

  std::string url_;
  std::unique_ptr<PGconn, PgConnFree> conn_;
  std::string prefix_;
  std::vector<std::string> tables_;
  fs::path dir_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<OfflineStore> offline_;
  std::unique_ptr<OnlineStore> online_;
  std::unique_ptr<MaterializationEngine> engine_;
  Entity user_;
};

std::string TypeOf(const arrow::Schema& schema, const std::string& column) {
  auto f = schema.GetFieldByName(column);
  return f ? f->type()->ToString() : "(missing)";
}

TEST_F(PostgresSourceTest, SchemaMapsEveryTypeAndRowsComeBackExactly) {
  std::string t = Table("types");
  Exec("CREATE TABLE " + t + R"sql( (
    user_id text, ts timestamptz, tn timestamp, d date, i2 smallint, i4 integer, i8 bigint,
    f4 real, f8 double precision, num numeric, s text, vc varchar(10), bc char(3), b boolean,
    ai integer[], at text[], ats timestamptz[], af float8[], j jsonb))sql");
  Exec("INSERT INTO " + t + R"sql( VALUES
    ('u1', '2024-01-01 12:00:00+02', '2024-01-01 10:00:00.000001', '2024-02-29', -32768, 2147483647,
     -9223372036854775807, 1.5, 0.1, 12345.678901234567890, 'héllo', 'v', 'ab', true,
     '{1,NULL,3}', '{"a b","c,d",NULL}', '{"2024-01-01 00:00:00+00"}', '{}', '{"k": [1, 2]}'),
    ('u2', '1969-12-31 23:59:59.999999+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL))sql");

  // The table form; the query form gives the same.
  ASSERT_OK_AND_ASSIGN(auto schema, ReadSourceSchema(TableSource("public." + t)));
  ASSERT_NE(schema, nullptr);
  ASSERT_OK_AND_ASSIGN(auto from_query, ReadSourceSchema(QuerySource("SELECT * FROM " + t + ";")));
  EXPECT_TRUE(schema->Equals(*from_query, /*check_metadata=*/true));
  EXPECT_EQ(TypeOf(*schema, "ts"), "timestamp[us, tz=UTC]");
  EXPECT_EQ(TypeOf(*schema, "tn"), "timestamp[us]");
  EXPECT_EQ(TypeOf(*schema, "d"), "date32[day]");
  EXPECT_EQ(TypeOf(*schema, "i2"), "int16");
  EXPECT_EQ(TypeOf(*schema, "i4"), "int32");
  EXPECT_EQ(TypeOf(*schema, "i8"), "int64");
  EXPECT_EQ(TypeOf(*schema, "f4"), "float");
  EXPECT_EQ(TypeOf(*schema, "f8"), "double");
  EXPECT_EQ(TypeOf(*schema, "num"), "double");
  EXPECT_EQ(TypeOf(*schema, "s"), "string");
  EXPECT_EQ(TypeOf(*schema, "vc"), "string");
  EXPECT_EQ(TypeOf(*schema, "bc"), "string");
  EXPECT_EQ(TypeOf(*schema, "b"), "bool");
  EXPECT_EQ(TypeOf(*schema, "ai"), "list<item: int32>");
  EXPECT_EQ(TypeOf(*schema, "at"), "list<item: string>");
  EXPECT_EQ(TypeOf(*schema, "ats"), "list<item: timestamp[us, tz=UTC]>");
  EXPECT_EQ(TypeOf(*schema, "j"), "string");  // read as its text form

  PostgresScan scan;
  for (const auto& f : schema->fields()) scan.columns.push_back(f->name());
  ASSERT_OK_AND_ASSIGN(auto table, ReadPostgresSource(TableSource(t), scan));
  ASSERT_OK_AND_ASSIGN(auto batch, table->CombineChunksToBatch());
  ASSERT_EQ(batch->num_rows(), 2);
  auto json_of = [&](const std::string& column) {
    return batch->GetColumnByName(column)->ToString();
  };
  auto value = [&](const std::string& column, int row) {
    return batch->GetColumnByName(column)->GetScalar(row).ValueOrDie()->ToString();
  };
  // timestamptz -> UTC; timestamp without time zone taken as UTC.
  EXPECT_EQ(std::static_pointer_cast<arrow::TimestampArray>(batch->GetColumnByName("ts"))->Value(0),
            kJan1 + 10 * kMicrosPerHour);
  EXPECT_EQ(std::static_pointer_cast<arrow::TimestampArray>(batch->GetColumnByName("ts"))->Value(1), -1);
  EXPECT_EQ(std::static_pointer_cast<arrow::TimestampArray>(batch->GetColumnByName("tn"))->Value(0),
            kJan1 + 10 * kMicrosPerHour + 1);
  EXPECT_EQ(value("d", 0), "2024-02-29");
  EXPECT_EQ(value("i2", 0), "-32768");
  EXPECT_EQ(value("i4", 0), "2147483647");
  EXPECT_EQ(value("i8", 0), "-9223372036854775807");
  EXPECT_EQ(std::static_pointer_cast<arrow::FloatArray>(batch->GetColumnByName("f4"))->Value(0), 1.5f);
  EXPECT_EQ(std::static_pointer_cast<arrow::DoubleArray>(batch->GetColumnByName("f8"))->Value(0), 0.1);
  EXPECT_EQ(std::static_pointer_cast<arrow::DoubleArray>(batch->GetColumnByName("num"))->Value(0),
            12345.678901234567890);
  EXPECT_EQ(value("s", 0), "héllo");
  EXPECT_EQ(value("bc", 0), "ab ");  // char(n) keeps its padding, as PostgreSQL sends it
  EXPECT_EQ(value("b", 0), "true");
  EXPECT_EQ(value("ai", 0), "list<item: int32>[1, null, 3]");
  EXPECT_THAT(json_of("at"), HasSubstr("\"a b\""));
  EXPECT_THAT(json_of("at"), HasSubstr("\"c,d\""));
  EXPECT_EQ(value("j", 0), "{\"k\": [1, 2]}");
  // Row 2: NULL in every column but the first two.
  for (int c = 2; c < batch->num_columns(); ++c) {
    EXPECT_TRUE(batch->column(c)->IsNull(1)) << batch->schema()->field(c)->name();
  }
  EXPECT_EQ(std::static_pointer_cast<arrow::ListArray>(batch->GetColumnByName("af"))->value_length(0), 0);
}

TEST_F(PostgresSourceTest, TimestampsAreUtcWhateverTheSessionTimeZone) {
  std::string t = Table("tz");
  Exec("CREATE TABLE " + t + " (user_id text, ts timestamptz, tn timestamp)");
  Exec("INSERT INTO " + t + " VALUES ('u', '2024-01-01 12:00:00+02', '2024-01-01 10:00:00')");
  // The URL asks for another time zone; fstore's session is UTC regardless.
  std::string url = url_ + (url_.find('?') == std::string::npos ? "?" : "&") +
                    "options=-c%20TimeZone%3DAmerica/New_York";
  SourceDefinition source = TableSource(t);
  source.connection = url;
  PostgresScan scan;
  scan.columns = {"ts", "tn"};
  ASSERT_OK_AND_ASSIGN(auto table, ReadPostgresSource(source, scan));
  ASSERT_OK_AND_ASSIGN(auto batch, table->CombineChunksToBatch());
  EXPECT_EQ(std::static_pointer_cast<arrow::TimestampArray>(batch->column(0))->Value(0),
            kJan1 + 10 * kMicrosPerHour);
  EXPECT_EQ(std::static_pointer_cast<arrow::TimestampArray>(batch->column(1))->Value(0),
            kJan1 + 10 * kMicrosPerHour);

  // Both as the timestamp_field of a range read: 10:00 UTC is in [10:00, 10:00:00.000001).
  for (const char* column : {"ts", "tn"}) {
    FeatureSet fs;
    fs.name = "tz";
    fs.source = source;
    fs.timestamp_field = column;
    SourceReadStats stats;
    ASSERT_OK_AND_ASSIGN(auto rows, ReadSourceRange(fs, {"user_id", column},
                                                    kJan1 + 10 * kMicrosPerHour,
                                                    kJan1 + 10 * kMicrosPerHour + 1, &stats));
    EXPECT_EQ(rows->num_rows(), 1) << column;
    ASSERT_OK_AND_ASSIGN(rows, ReadSourceRange(fs, {"user_id", column}, kJan1,
                                               kJan1 + 10 * kMicrosPerHour, &stats));
    EXPECT_EQ(rows->num_rows(), 0) << column;
    ASSERT_OK_AND_ASSIGN(auto earliest, EarliestSourceEvent(fs));
    EXPECT_EQ(earliest, kJan1 + 10 * kMicrosPerHour) << column;
  }
}

TEST_F(PostgresSourceTest, TheRangeIsFilteredByPostgresRowsOutsideAreNeverComputed) {
  std::string t = Table("range");
  Exec("CREATE TABLE " + t + " (user_id text, ts timestamptz, divisor integer)");
  // Day 0 and day 2 rows have divisor 0: computing them fails.
  Exec("INSERT INTO " + t + " SELECT 'u' || (h % 3), TIMESTAMPTZ '2024-01-01 00:00:00+00' + "
       "h * INTERVAL '1 hour', CASE WHEN h / 24 = 1 THEN 1 + h % 4 ELSE 0 END "
       "FROM generate_series(0, 71) AS h");
  FeatureSet fs;
  fs.name = "range";
  fs.source = QuerySource("SELECT user_id, ts, 100 / divisor AS ratio FROM " + t +
                          "  -- a comment at the end\n;");
  fs.timestamp_field = "ts";
  SourceReadStats stats;
  ASSERT_OK_AND_ASSIGN(auto rows, ReadSourceRange(fs, {"user_id", "ts", "ratio"},
                                                  kJan1 + kMicrosPerDay, kJan1 + 2 * kMicrosPerDay,
                                                  &stats));
  EXPECT_EQ(rows->num_rows(), 24);
  EXPECT_EQ(stats.rows, 24);
  // The whole source: PostgreSQL evaluates the day-0 rows and fails.
  auto all = ReadSourceRange(fs, {"user_id", "ts", "ratio"}, kJan1, kJan1 + 3 * kMicrosPerDay,
                             &stats);
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(ErrorCodeOf(all.status()), ErrorCode::kUnprocessable);
  EXPECT_EQ(ErrorOf(all.status())->field(), "source.query");
  EXPECT_THAT(all.status().message(), HasSubstr("division by zero"));
}

TEST_F(PostgresSourceTest, RowsComeInBatchesOfOneFetch) {
  std::string t = Table("batches");
  Exec("CREATE TABLE " + t + " (user_id text, ts timestamptz, x bigint)");
  Exec("INSERT INTO " + t + " SELECT 'u' || (i % 7), TIMESTAMPTZ '2024-01-01 00:00:00+00' + "
       "i * INTERVAL '1 second', CASE WHEN i % 10 = 0 THEN NULL ELSE i END "
       "FROM generate_series(0, 2499) AS i");
  PostgresScan scan;
  scan.columns = {"x"};
  scan.fetch_rows = 1000;
  scan.time_column = "ts";
  scan.start = kJan1;
  scan.end = kJan1 + kMicrosPerDay;
  std::vector<int64_t> sizes;
  int64_t expected = 0, nulls = 0;
  bool in_order = true;
  ASSERT_OK(ScanPostgresSource(QuerySource("SELECT * FROM " + t + " ORDER BY ts"), scan,
                               [&](const std::shared_ptr<arrow::RecordBatch>& batch) {
                                 sizes.push_back(batch->num_rows());
                                 auto x = std::static_pointer_cast<arrow::Int64Array>(batch->column(0));
                                 for (int64_t i = 0; i < x->length(); ++i, ++expected) {
                                   if (x->IsNull(i)) {
                                     ++nulls;
                                     in_order = in_order && expected % 10 == 0;
                                   } else {
                                     in_order = in_order && x->Value(i) == expected;
                                   }
                                 }
                                 return Status::OK();
                               }));
  EXPECT_EQ(sizes, (std::vector<int64_t>{1000, 1000, 500}));
  EXPECT_EQ(expected, 2500);
  EXPECT_EQ(nulls, 250);
  EXPECT_TRUE(in_order);

  // No row in the range: one empty batch, with the schema.
  scan.start = kJan1 - kMicrosPerDay;
  scan.end = kJan1;
  sizes.clear();
  ASSERT_OK(ScanPostgresSource(TableSource(t), scan,
                               [&](const std::shared_ptr<arrow::RecordBatch>& batch) {
                                 sizes.push_back(batch->num_rows());
                                 EXPECT_EQ(batch->schema()->field(0)->type()->id(), arrow::Type::INT64);
                                 return Status::OK();
                               }));
  EXPECT_EQ(sizes, (std::vector<int64_t>{0}));
}

TEST_F(PostgresSourceTest, UnreachableServerAndBadSqlAreClearErrors) {
  // Nothing listens on port 1.
  SourceDefinition down = QuerySource("SELECT 1 AS x");
  down.connection = "postgresql://fstore:s3cret@127.0.0.1:1/nothing?connect_timeout=2";
  // At definition time: accepted without column checks (like a file not there yet).
  ASSERT_OK_AND_ASSIGN(auto schema, ReadSourceSchema(down));
  EXPECT_EQ(schema, nullptr);
  // To run: Unavailable, naming the server but not the password.
  auto required = RequireSourceSchema(down);
  ASSERT_FALSE(required.ok());
  EXPECT_EQ(ErrorCodeOf(required.status()), ErrorCode::kUnavailable);
  EXPECT_THAT(required.status().message(), HasSubstr("127.0.0.1:1"));
  EXPECT_THAT(required.status().message(), Not(HasSubstr("s3cret")));

  // SQL PostgreSQL refuses: Unprocessable on the field, with its message.
  auto missing = ReadSourceSchema(TableSource(prefix_ + "_no_such_table"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(ErrorCodeOf(missing.status()), ErrorCode::kUnprocessable);
  EXPECT_EQ(ErrorOf(missing.status())->field(), "source.table");
  EXPECT_THAT(missing.status().message(), HasSubstr("does not exist"));
  auto bad_column = ReadSourceSchema(QuerySource("SELECT no_such_column FROM pg_class"));
  ASSERT_FALSE(bad_column.ok());
  EXPECT_EQ(ErrorOf(bad_column.status())->field(), "source.query");
  auto twice = ReadSourceSchema(QuerySource("SELECT 1 AS a, 2 AS a"));
  ASSERT_FALSE(twice.ok());
  EXPECT_THAT(twice.status().message(), HasSubstr("'a' appears twice"));

  // A materialization job: the source became unreachable / its table was dropped.
  OpenStores();
  std::string t = Table("gone");
  Exec("CREATE TABLE " + t + " (user_id text, ts timestamptz, amount float8)");
  Exec("INSERT INTO " + t + " VALUES ('u', '2024-01-01 01:00:00+00', 1)");
  Define("gone", TableSource(t), {{"amount", "float", ""}});
  Exec("DROP TABLE " + t);
  auto job = engine_->RunNow({"gone", kJan1, kJan1 + kMicrosPerDay, "api"});
  // The table is gone before the job is prepared: refused up front, naming it.
  ASSERT_FALSE(job.ok());
  EXPECT_THAT(job.status().message(), HasSubstr("does not exist"));

  SourceDefinition unreachable = TableSource(t);
  unreachable.connection = down.connection;
  Define("down", unreachable, {{"amount", "float", ""}});
  auto down_job = engine_->RunNow({"down", kJan1, kJan1 + kMicrosPerDay, "api"});
  ASSERT_FALSE(down_job.ok());
  EXPECT_EQ(ErrorCodeOf(down_job.status()), ErrorCode::kUnavailable);
  EXPECT_THAT(down_job.status().message(), HasSubstr("cannot connect to the PostgreSQL source"));
}

// The same rows materialized (a) from PostgreSQL with pushdown, (b) from
// PostgreSQL without, (c) from a Parquet file of them: equal offline rows.
TEST_F(PostgresSourceTest, PushdownGivesTheEmbeddedEnginesValues) {
  OpenStores();
  std::string t = Table("events");
  Exec("CREATE TABLE " + t + R"sql( (
    user_id text, ts timestamptz, tn timestamp, d date, amount double precision, qty bigint,
    n integer, name text, flag boolean))sql");
  Exec("INSERT INTO " + t + R"sql(
    SELECT 'u' || (h % 4),
           TIMESTAMPTZ '2024-01-01 00:00:00+00' + h * INTERVAL '1 hour' + (h % 7) * INTERVAL '1.5 second',
           TIMESTAMP '2023-12-30 22:15:00' + h * INTERVAL '97 minutes',
           DATE '2024-02-27' + h,
           CASE WHEN h % 9 = 0 THEN NULL ELSE (h % 13) * 1.25 - 3.5 END,
           CASE WHEN h % 11 = 0 THEN NULL ELSE (h % 5) - 1 END,
           CASE WHEN h % 8 = 0 THEN NULL ELSE h * 7919 - 100000 END,
           CASE WHEN h % 6 = 0 THEN NULL WHEN h % 6 = 1 THEN '' ELSE
                (ARRAY['Alice', ' bob ', 'ÉLAN vital', 'x_y%z', 'MiXeD case'])[1 + h % 5] END,
           CASE WHEN h % 5 = 0 THEN NULL ELSE h % 2 = 0 END
    FROM generate_series(0, 71) AS h)sql");

  const std::vector<FeatureSpec> specs = {
      {"amount", "float", ""},
      {"arith", "float", "amount * 2 + qty - n / 1000.0"},
      {"int_div", "int", "qty / 2 + n % 7"},
      {"int_arith", "int", "ABS(n - 10) * 2 + qty"},
      {"ratio", "float", "CASE WHEN qty = 0 THEN NULL ELSE amount / qty END"},
      {"size", "string",
       "CASE WHEN amount > 5 THEN 'big' WHEN amount IS NULL THEN 'none' ELSE 'small' END"},
      {"who", "string", "COALESCE(name, 'anon')"},
      {"shout", "string", "upper(name) || '-' || lower(name)"},
      {"name_len", "int", "length(name)"},
      {"name_part", "string", "substr(trim(name), 2, 3)"},
      {"replaced", "string", "replace(name, 'a', '@')"},
      {"amount_int", "int", "CAST(amount AS integer)"},
      {"qty_text", "string", "qty::text || '/' || CAST(n AS text)"},
      {"rounded", "float", "round(amount::numeric, 1)"},
      {"day", "timestamp", "date_trunc('day', ts)"},
      {"hour", "float", "extract(hour from ts)"},
      {"dow", "float", "EXTRACT(DOW FROM ts)"},
      {"epoch", "float", "extract(epoch from ts)"},
      {"month_tn", "timestamp", "date_trunc('month', tn)"},
      {"minute_tn", "float", "extract(minute from tn)"},
      {"day_of_d", "float", "extract(day from d)"},
      {"flagged", "bool", "flag AND amount > 0"},
      {"nullif_qty", "int", "NULLIF(qty, 0)"},
      {"greatest", "float", "GREATEST(amount, qty, 0)"},
  };
  Define("pg_push", [&] {
    SourceDefinition s = TableSource(t);
    s.pushdown = true;
    return s;
  }(), specs);
  Define("pg_plain", TableSource(t), specs);

  // (c) the same rows as Parquet, read back from PostgreSQL as fstore reads them.
  ASSERT_OK_AND_ASSIGN(auto pg_schema, RequireSourceSchema(TableSource(t)));
  PostgresScan scan;
  for (const auto& f : pg_schema->fields()) scan.columns.push_back(f->name());
  ASSERT_OK_AND_ASSIGN(auto rows, ReadPostgresSource(TableSource(t), scan));
  std::string parquet = (dir_ / "events.parquet").string();
  ASSERT_OK_AND_ASSIGN(auto out, arrow::io::FileOutputStream::Open(parquet));
  ASSERT_OK(parquet::arrow::WriteTable(*rows, arrow::default_memory_pool(), out, 1000));
  ASSERT_OK(out->Close());
  SourceDefinition file;
  file.type = "file";
  file.path = parquet;
  file.format = "parquet";
  Define("file_src", file, specs);

  // Every scalar feature but the bare column is pushed down.
  {
    ASSERT_OK_AND_ASSIGN(auto set, registry_->FindFeatureSet("pg_push", false));
    ASSERT_OK_AND_ASSIGN(auto all_features, registry_->ListFeatures(false));
    std::vector<Feature> features;
    for (const auto& f : all_features) {
      if (f.feature_set_id == set->id) features.push_back(f);
    }
    ASSERT_OK_AND_ASSIGN(auto plan, PlanMaterialization(*set, features, {user_}, pg_schema));
    ASSERT_OK(PlanPostgresPushdown(&plan, pg_schema));
    std::vector<std::string> engine_side;
    for (const auto& p : plan.features) {
      if (p.source_column.empty()) engine_side.push_back(p.feature.name);
    }
    EXPECT_EQ(engine_side, (std::vector<std::string>{"amount"}));
  }

  std::shared_ptr<arrow::Table> offline[3];
  const char* names[3] = {"pg_push", "pg_plain", "file_src"};
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(auto job, engine_->RunNow({names[i], kJan1, kJan1 + 3 * kMicrosPerDay, "api"}));
    ASSERT_EQ(JobStatusName(job.status), "succeeded") << names[i] << ": " << job.error;
    EXPECT_EQ(job.rows_written_offline, 72) << names[i];
    ASSERT_OK_AND_ASSIGN(offline[i], offline_->Read(names[i], 1, kJan1, kJan1 + 3 * kMicrosPerDay));
    ASSERT_OK_AND_ASSIGN(offline[i], offline[i]->CombineChunks());
  }
  for (int i = 1; i < 3; ++i) {
    ASSERT_EQ(offline[i]->num_rows(), offline[0]->num_rows());
    ASSERT_TRUE(offline[i]->schema()->Equals(*offline[0]->schema()))
        << names[i] << "\n" << offline[i]->schema()->ToString() << "\n"
        << offline[0]->schema()->ToString();
    for (int c = 0; c < offline[0]->num_columns(); ++c) {
      // The created times are when each run wrote its rows: they differ.
      if (offline[0]->schema()->field(c)->name() == "created_timestamp") continue;
      EXPECT_TRUE(offline[i]->column(c)->Equals(*offline[0]->column(c)))
          << names[i] << " vs pg_push, column " << offline[0]->schema()->field(c)->name() << "\n"
          << offline[i]->column(c)->ToString() << "\n" << offline[0]->column(c)->ToString();
    }
  }
}

// A division by zero fails the run with and without pushdown: the engine
// raises what PostgreSQL raises.
TEST_F(PostgresSourceTest, DivisionByZeroFailsTheRunEitherWay) {
  OpenStores();
  std::string t = Table("zero");
  Exec("CREATE TABLE " + t + " (user_id text, ts timestamptz, qty bigint)");
  Exec("INSERT INTO " + t + " VALUES ('u', '2024-01-01 01:00:00+00', 0)");
  for (bool pushdown : {true, false}) {
    SourceDefinition s = TableSource(t);
    s.pushdown = pushdown;
    std::string name = pushdown ? "zero_push" : "zero_plain";
    Define(name, s, {{"per", "int", "10 / qty"}});
    ASSERT_OK_AND_ASSIGN(auto job, engine_->RunNow({name, kJan1, kJan1 + kMicrosPerDay, "api"}));
    EXPECT_EQ(JobStatusName(job.status), "failed") << name;
    EXPECT_THAT(job.error, HasSubstr("division by zero")) << name;
  }
}

}  // namespace
}  // namespace fstore
