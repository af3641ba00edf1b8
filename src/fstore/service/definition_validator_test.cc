#include "fstore/service/definition_validator.h"

#include <cstdlib>

#include <gmock/gmock.h>
#include <arrow/type.h>
#include <boost/json/parse.hpp>

#include "fstore/compute/source_schema.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

std::string FieldOf(const Status& st) {
  const ErrorDetail* e = ErrorOf(st);
  return e ? e->field() : "<no detail>";
}

FeatureSet ValidSet() {
  FeatureSet fs;
  fs.name = "user_profile";
  fs.entities = {"user"};
  return fs;
}

Feature ValidFeature() {
  Feature f;
  f.name = "user_age";
  f.data_type = "int";
  return f;
}

TEST(ValidateIdentifierTest, AcceptsAndRefuses) {
  EXPECT_OK(ValidateIdentifier("name", "user_profile"));
  EXPECT_OK(ValidateIdentifier("name", "_x9"));
  for (const char* bad : {"", "9lives", "has space", "dash-ed", "semi;colon", "ünï"}) {
    Status st = ValidateIdentifier("name", bad);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_EQ(FieldOf(st), "name");
  }
  EXPECT_FALSE(ValidateIdentifier("name", std::string(64, 'a')).ok());
  EXPECT_OK(ValidateIdentifier("name", std::string(63, 'a')));
}

TEST(DataTypeTest, CanonicalNamesAndAliases) {
  EXPECT_EQ(*CanonicalDataType("t", "int64"), "int");
  EXPECT_EQ(*CanonicalDataType("t", "DOUBLE"), "float");
  EXPECT_EQ(*CanonicalDataType("t", "str"), "string");
  EXPECT_EQ(*CanonicalDataType("t", "boolean"), "bool");
  EXPECT_EQ(*CanonicalDataType("t", "datetime"), "timestamp");
  EXPECT_EQ(*CanonicalDataType("t", "list<float64>"), "list<float>");
  EXPECT_EQ(*CanonicalDataType("t", "array<string>"), "list<string>");
  EXPECT_FALSE(CanonicalDataType("t", "decimal").ok());
  EXPECT_FALSE(CanonicalDataType("t", "list<list<int>>").ok());
  EXPECT_FALSE(CanonicalDataType("t", "list<>").ok());
}

TEST(DataTypeTest, JsonValuesAgainstTypes) {
  EXPECT_TRUE(JsonMatchesType(json::value(3), "int"));
  EXPECT_FALSE(JsonMatchesType(json::value(3.5), "int"));
  EXPECT_TRUE(JsonMatchesType(json::value(3), "float"));
  EXPECT_FALSE(JsonMatchesType(json::value("3"), "float"));
  EXPECT_TRUE(JsonMatchesType(json::value("2024-01-01T00:00:00Z"), "timestamp"));
  EXPECT_FALSE(JsonMatchesType(json::value("yesterday"), "timestamp"));
  EXPECT_TRUE(JsonMatchesType(json::parse("[1, 2, null]"), "list<int>"));
  EXPECT_FALSE(JsonMatchesType(json::parse("[1, \"2\"]"), "list<int>"));
}

TEST(ValidateEntityTest, DefaultsAndChecks) {
  Entity e;
  e.name = "merchant";
  ASSERT_OK(ValidateEntity(&e));
  EXPECT_EQ(e.join_keys, std::vector<std::string>{"merchant_id"});
  e.join_keys = {"a", "a"};
  EXPECT_EQ(FieldOf(ValidateEntity(&e)), "join_keys[1]");
  e.join_keys = {"a"};
  e.value_type = "blob";
  EXPECT_EQ(FieldOf(ValidateEntity(&e)), "value_type");
}

TEST(ValidateFeatureSetTest, SeedExampleIsValid) {
  FeatureSet fs = ValidSet();
  fs.materialization_schedule = "0 */6 * * *";
  ASSERT_OK(ValidateFeatureSet(&fs, nullptr));
}

TEST(ValidateFeatureSetTest, EachFieldIsChecked) {
  struct Case {
    std::function<void(FeatureSet*)> mutate;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](FeatureSet* f) { f->name = "bad name"; }, "name"},
      {[](FeatureSet* f) { f->entities.clear(); }, "entities"},
      {[](FeatureSet* f) { f->entities = {"user", "user"}; }, "entities[1]"},
      {[](FeatureSet* f) { f->source_type = "nightly"; }, "source_type"},
      {[](FeatureSet* f) { f->ttl = "30 days"; }, "ttl"},
      {[](FeatureSet* f) { f->ttl = "0s"; }, "ttl"},
      {[](FeatureSet* f) { f->materialization_schedule = "0 */6 * *"; }, "materialization_schedule"},
      {[](FeatureSet* f) { f->materialization_schedule = "61 * * * *"; },
       "materialization_schedule"},
      {[](FeatureSet* f) { f->on_invalid = "ignore"; }, "on_invalid"},
      {[](FeatureSet* f) { f->timestamp_field = ""; }, "timestamp_field"},
      {[](FeatureSet* f) { f->created_timestamp_field = f->timestamp_field; },
       "created_timestamp_field"},
      {[](FeatureSet* f) { f->source = SourceDefinition{"ftp", "", "", "", "", ""}; },
       "source.type"},
      {[](FeatureSet* f) { f->source = SourceDefinition{"file", "", "", "", "", ""}; },
       "source.path"},
      {[](FeatureSet* f) { f->source = SourceDefinition{"file", "x.orc", "orc", "", "", ""}; },
       "source.format"},
      {[](FeatureSet* f) { f->source = SourceDefinition{"postgres", "", "", "q", "t", ""}; },
       "source"},
      {[](FeatureSet* f) { f->tags = {""}; }, "tags[0]"},
  };
  for (const auto& c : cases) {
    FeatureSet fs = ValidSet();
    c.mutate(&fs);
    Status st = ValidateFeatureSet(&fs, nullptr);
    EXPECT_FALSE(st.ok()) << c.field;
    EXPECT_EQ(FieldOf(st), c.field);
  }
}

TEST(ValidateFeatureSetTest, CronMessageNamesTheCronField) {
  FeatureSet fs = ValidSet();
  fs.materialization_schedule = "0 25 * * *";
  Status st = ValidateFeatureSet(&fs, nullptr);
  EXPECT_THAT(st.message(), HasSubstr("hour"));
}

TEST(ValidateFeatureSetTest, FormatInferredAndSchemaChecked) {
  FeatureSet fs = ValidSet();
  fs.source = SourceDefinition{"file", "/data/events.CSV", "", "", "", ""};
  auto schema = arrow::schema({arrow::field("user_id", arrow::utf8()),
                               arrow::field("ts", arrow::timestamp(arrow::TimeUnit::MICRO))});
  fs.timestamp_field = "ts";
  ASSERT_OK(ValidateFeatureSet(&fs, schema));
  EXPECT_EQ(fs.source->format, "csv");
  fs.timestamp_field = "event_time";
  Status st = ValidateFeatureSet(&fs, schema);
  EXPECT_EQ(FieldOf(st), "timestamp_field");
  EXPECT_EQ(ErrorCodeOf(st), ErrorCode::kUnprocessable);
  EXPECT_THAT(st.message(), HasSubstr("user_id, ts"));
}

TEST(ValidateFeatureTest, SeedExamplesAreValid) {
  Feature age = ValidFeature();
  age.transformation = "EXTRACT(YEAR FROM AGE(current_date, date_of_birth))";
  age.validation_rules.min_value = 0;
  age.validation_rules.max_value = 150;
  ASSERT_OK_AND_ASSIGN(auto parsed, ValidateFeature(&age, nullptr));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_TRUE(parsed->reads_clock);

  Feature balance;
  balance.name = "account_balance";
  balance.data_type = "float";
  balance.default_value = json::value(0.0);
  ASSERT_OK(ValidateFeature(&balance, nullptr).status());

  Feature segment;
  segment.name = "user_segment";
  segment.data_type = "string";
  segment.allowed_values = json::parse(R"(["premium", "standard", "basic"])").as_array();
  ASSERT_OK(ValidateFeature(&segment, nullptr).status());
}

TEST(ValidateFeatureTest, RulesMustBeConsistent) {
  struct Case {
    std::function<void(Feature*)> mutate;
    std::string field;
    ErrorCode code;
  };
  std::vector<Case> cases = {
      {[](Feature* f) { f->data_type = "decimal"; }, "data_type", ErrorCode::kInvalidArgument},
      {[](Feature* f) { f->data_type = ""; }, "data_type", ErrorCode::kInvalidArgument},
      {[](Feature* f) {
         f->validation_rules.min_value = 10;
         f->validation_rules.max_value = 1;
       },
       "validation_rules.min_value", ErrorCode::kUnprocessable},
      {[](Feature* f) {
         f->data_type = "string";
         f->validation_rules.max_value = 1;
       },
       "validation_rules.max_value", ErrorCode::kUnprocessable},
      {[](Feature* f) { f->validation_rules.allowed_values = json::parse(R"([1, "x"])").as_array(); },
       "validation_rules.allowed_values[1]", ErrorCode::kInvalidArgument},
      {[](Feature* f) { f->allowed_values = json::parse(R"([1.5])").as_array(); },
       "allowed_values[0]", ErrorCode::kInvalidArgument},
      {[](Feature* f) { f->default_value = json::value("zero"); }, "default_value",
       ErrorCode::kInvalidArgument},
      {[](Feature* f) {
         f->default_value = json::value(200);
         f->validation_rules.max_value = 150;
       },
       "default_value", ErrorCode::kUnprocessable},
      {[](Feature* f) {
         f->default_value = json::value(4);
         f->allowed_values = json::parse("[1, 2]").as_array();
       },
       "default_value", ErrorCode::kUnprocessable},
      {[](Feature* f) {
         f->data_type = "string";
         f->validation_rules.regex = "([a-z";
       },
       "validation_rules.regex", ErrorCode::kInvalidArgument},
      {[](Feature* f) { f->validation_rules.regex = "^a"; }, "validation_rules.regex",
       ErrorCode::kUnprocessable},
      {[](Feature* f) {
         f->data_type = "string";
         f->validation_rules.max_length = 0;
       },
       "validation_rules.max_length", ErrorCode::kInvalidArgument},
      {[](Feature* f) { f->window_size = "30 days"; }, "window_size", ErrorCode::kInvalidArgument},
      {[](Feature* f) { f->window_size = "30d"; }, "transformation", ErrorCode::kInvalidArgument},
      {[](Feature* f) { f->source_features = {"a"}; }, "transformation",
       ErrorCode::kInvalidArgument},
      {[](Feature* f) { f->transformation = "a +"; }, "transformation",
       ErrorCode::kInvalidArgument},
  };
  for (const auto& c : cases) {
    Feature f = ValidFeature();
    c.mutate(&f);
    Status st = ValidateFeature(&f, nullptr).status();
    EXPECT_FALSE(st.ok()) << c.field;
    EXPECT_EQ(FieldOf(st), c.field);
    if (!st.ok()) {
      EXPECT_EQ(ErrorCodeOf(st), c.code) << c.field << ": " << st.ToString();
    }
  }
}

TEST(ValidateFeatureTest, ColumnsCheckedAgainstTheSourceSchema) {
  auto schema = arrow::schema({arrow::field("user_id", arrow::utf8()),
                               arrow::field("amount", arrow::float64())});
  Feature f = ValidFeature();
  f.name = "amount";
  f.data_type = "float";
  ASSERT_OK(ValidateFeature(&f, schema).status());  // the column itself
  f.name = "amount_x2";
  Status st = ValidateFeature(&f, schema).status();
  EXPECT_EQ(FieldOf(st), "name");
  f.transformation = "amount * 2";
  ASSERT_OK(ValidateFeature(&f, schema).status());
  f.transformation = "amout * 2";
  st = ValidateFeature(&f, schema).status();
  EXPECT_EQ(FieldOf(st), "transformation");
  EXPECT_THAT(st.message(), HasSubstr("'amout'"));
  // A derived feature's inputs are not source columns.
  f.transformation = "a / NULLIF(b, 0)";
  f.source_features = {"a", "other_set:b"};
  ASSERT_OK(ValidateFeature(&f, schema).status());
}

}  // namespace
}  // namespace fstore

namespace fstore {
namespace {

FeatureSet PostgresSet(const std::string& query, const std::string& table,
                       const std::string& connection = "postgresql://fstore@db:5432/events") {
  FeatureSet fs = ValidSet();
  SourceDefinition s;
  s.type = "postgres";
  s.query = query;
  s.table = table;
  s.connection = connection;
  fs.source = s;
  return fs;
}

TEST(ValidatePostgresSourceTest, AcceptsQueriesAndTables) {
  for (const char* query :
       {"SELECT user_id, ts, amount FROM events", "select * from events;  ",
        "WITH t AS (SELECT * FROM events) SELECT * FROM t -- trailing comment",
        "SELECT 1 AS x UNION ALL SELECT 2", "VALUES (1, 2)"}) {
    FeatureSet fs = PostgresSet(query, "");
    Status st = ValidateFeatureSet(&fs, nullptr);
    EXPECT_TRUE(st.ok()) << query << ": " << st.ToString();
  }
  for (const char* table : {"events", "public.events", "\"Mixed\".\"Case Name\"", "db.s.t"}) {
    FeatureSet fs = PostgresSet("", table);
    Status st = ValidateFeatureSet(&fs, nullptr);
    EXPECT_TRUE(st.ok()) << table << ": " << st.ToString();
  }
  FeatureSet fs = PostgresSet("", "events");
  fs.source->type = "PostgreSQL";
  fs.source->pushdown = true;
  ASSERT_OK(ValidateFeatureSet(&fs, nullptr));
  EXPECT_EQ(fs.source->type, "postgres");
}

TEST(ValidatePostgresSourceTest, BadInputsNameTheirField) {
  struct Case {
    FeatureSet fs;
    std::string field;
    std::string message;
  };
  FeatureSet pushdown_on_file = ValidSet();
  pushdown_on_file.source = SourceDefinition{"file", "x.parquet", "", "", "", "", true};
  FeatureSet with_path = PostgresSet("SELECT 1", "");
  with_path.source->path = "/x";
  std::vector<Case> cases = {
      {PostgresSet("SELECT 1", "", ""), "source.connection", "is required"},
      {PostgresSet("SELECT 1", "", "mysql://x/y"), "source.connection", "postgresql://"},
      {PostgresSet("SELECT 1", "events"), "source", "exactly one of query or table"},
      {PostgresSet("", ""), "source", "query"},
      {PostgresSet("DELETE FROM t", ""), "source.query", "not DELETE"},
      {PostgresSet("UPDATE t SET a = 1", ""), "source.query", "not UPDATE"},
      {PostgresSet("SELECT 1; SELECT 2", ""), "source.query", "single SELECT statement"},
      {PostgresSet("SELECT 1; DROP TABLE t", ""), "source.query", "single SELECT statement"},
      {PostgresSet("SELECT * INTO copy FROM t", ""), "source.query", "SELECT INTO"},
      {PostgresSet("SELECT * FROM t FOR UPDATE", ""), "source.query", "FOR UPDATE"},
      {PostgresSet("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", ""), "source.query",
       "DELETE"},
      {PostgresSet("SELEC 1", ""), "source.query", "syntax error"},
      {PostgresSet("", "events; DROP TABLE x"), "source.table", "not a table name"},
      {PostgresSet("", "events WHERE true"), "source.table", "not a table name"},
      {PostgresSet("", "a.b.c.d"), "source.table", "not a table name"},
      {PostgresSet("", "9events"), "source.table", "not a table name"},
      {pushdown_on_file, "source.pushdown", "postgres sources only"},
      {with_path, "source.path", "not path"},
  };
  for (auto& c : cases) {
    Status st = ValidateFeatureSet(&c.fs, nullptr);
    ASSERT_FALSE(st.ok()) << c.field << " " << c.message;
    EXPECT_EQ(ErrorCodeOf(st), ErrorCode::kInvalidArgument);
    EXPECT_EQ(FieldOf(st), c.field) << st.message();
    EXPECT_THAT(st.message(), HasSubstr(c.message));
  }
  // A syntax error gives its position in the query.
  FeatureSet fs = PostgresSet("SELECT a FROM t WHERE", "");
  Status st = ValidateFeatureSet(&fs, nullptr);
  ASSERT_NE(ErrorOf(st), nullptr);
  EXPECT_EQ(ErrorOf(st)->position(), 22);
}

}  // namespace
}  // namespace fstore

namespace fstore {
namespace {

// Column references are checked against the columns PostgreSQL reports for
// the query (needs FSTORE_TEST_POSTGRES_URL; skipped without it).
TEST(ValidatePostgresSourceTest, TransformationColumnsCheckedAgainstTheQuery) {
  const char* url = std::getenv("FSTORE_TEST_POSTGRES_URL");
  if (url == nullptr || *url == '\0') {
    GTEST_SKIP() << "FSTORE_TEST_POSTGRES_URL is not set (eval \"$(scripts/test-postgres.sh "
                    "start)\")";
  }
  FeatureSet fs = PostgresSet(
      "SELECT 'u1'::text AS user_id, TIMESTAMPTZ '2024-01-01 00:00:00+00' AS ts, "
      "1.5::float8 AS amount",
      "", url);
  fs.timestamp_field = "ts";
  ASSERT_OK(ValidateFeatureSet(&fs, nullptr));
  ASSERT_OK_AND_ASSIGN(auto schema, ReadSourceSchema(*fs.source));
  ASSERT_NE(schema, nullptr);
  ASSERT_OK(ValidateFeatureSet(&fs, schema));

  Feature ok = ValidFeature();
  ok.data_type = "float";
  ok.transformation = "amount * 2";
  EXPECT_OK(ValidateFeature(&ok, schema).status());
  Feature bad = ValidFeature();
  bad.data_type = "float";
  bad.transformation = "amount * 2 + bogus";
  Status st = ValidateFeature(&bad, schema).status();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(ErrorCodeOf(st), ErrorCode::kUnprocessable);
  EXPECT_EQ(FieldOf(st), "transformation");
  EXPECT_THAT(st.message(), HasSubstr("'bogus'"));
  EXPECT_THAT(st.message(), HasSubstr("amount"));

  FeatureSet wrong_ts = fs;
  wrong_ts.timestamp_field = "event_time";
  EXPECT_EQ(FieldOf(ValidateFeatureSet(&wrong_ts, schema)), "timestamp_field");
}

}  // namespace
}  // namespace fstore
