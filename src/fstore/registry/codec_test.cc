#include "fstore/registry/codec.h"

#include <gmock/gmock.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

json::value J(std::string_view text) { return json::parse(text); }

std::string FieldOf(const Status& st) {
  const ErrorDetail* e = ErrorOf(st);
  return e ? e->field() : "<no detail>";
}

TEST(CodecTest, DecodesTheSeedFeatureSetVerbatim) {
  FeatureSet fs;
  ASSERT_OK(DecodeFeatureSet(J(R"({
    "name": "user_profile",
    "description": "User demographic and behavioral features",
    "owner": "data-team",
    "entities": ["user"],
    "source_type": "batch",
    "offline_enabled": true,
    "online_enabled": true,
    "materialization_schedule": "0 */6 * * *"
  })"), DecodeMode::kCreate, &fs));
  EXPECT_EQ(fs.name, "user_profile");
  EXPECT_EQ(fs.owner, "data-team");
  EXPECT_EQ(fs.entities, std::vector<std::string>{"user"});
  EXPECT_EQ(fs.materialization_schedule, "0 */6 * * *");
  EXPECT_TRUE(fs.online_enabled);
}

TEST(CodecTest, DecodesTheSeedFeatureVerbatim) {
  Feature f;
  ASSERT_OK(DecodeFeature(J(R"J({
    "name": "user_age",
    "feature_set_id": "feature-set-uuid",
    "description": "User age in years",
    "data_type": "int",
    "transformation": "EXTRACT(YEAR FROM AGE(current_date, date_of_birth))",
    "validation_rules": {"min_value": 0, "max_value": 150}
  })J"), DecodeMode::kCreate, &f));
  EXPECT_EQ(f.feature_set_id, "feature-set-uuid");
  ASSERT_TRUE(f.validation_rules.min_value.has_value());
  EXPECT_EQ(*f.validation_rules.max_value, 150);
  // Integral bounds go out as integers, not 1.5E2.
  EXPECT_EQ(json::serialize(ToJson(f)["validation_rules"]), R"({"min_value":0,"max_value":150})");
}

TEST(CodecTest, StoredFormRoundTrips) {
  FeatureSet fs;
  fs.id = "f0";
  fs.name = "s";
  fs.entities = {"user", "merchant"};
  fs.tags = {"a"};
  fs.source = SourceDefinition{"file", "/x/*.parquet", "parquet", "", "", ""};
  fs.ttl = "30d";
  fs.version = 7;
  fs.created_at = 1'700'000'000'123'456;
  fs.updated_at = 1'700'000'001'000'000;
  fs.deleted_at = 1'700'000'002'000'000;
  FeatureSet back;
  ASSERT_OK(DecodeFeatureSet(ToJson(fs), DecodeMode::kStored, &back));
  EXPECT_EQ(json::serialize(ToJson(back)), json::serialize(ToJson(fs)));
  EXPECT_EQ(back.deleted_at, fs.deleted_at);

  Feature f;
  f.id = "x";
  f.name = "n";
  f.data_type = "list<int>";
  f.default_value = J("[1,2]");
  f.allowed_values = J("[[1],[2]]").as_array();
  f.validation_rules.min_value = 0.5;
  f.validation_rules.regex = "^a";
  f.source_features = {"a", "s:b"};
  Feature fback;
  ASSERT_OK(DecodeFeature(ToJson(f), DecodeMode::kStored, &fback));
  EXPECT_EQ(json::serialize(ToJson(fback)), json::serialize(ToJson(f)));
}

TEST(CodecTest, UnknownFieldIsNamed) {
  FeatureSet fs;
  Status st = DecodeFeatureSet(J(R"({"name": "x", "materialisation_schedule": "* * * * *"})"),
                               DecodeMode::kCreate, &fs);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(FieldOf(st), "materialisation_schedule");
  EXPECT_THAT(st.message(), HasSubstr("unknown field"));
}

TEST(CodecTest, PostgresSourceFields) {
  FeatureSet fs;
  ASSERT_OK(DecodeFeatureSet(J(R"({"name": "x", "source": {"type": "postgres",
      "query": "SELECT * FROM events", "connection": "postgresql://u@h/db", "pushdown": true}})"),
                             DecodeMode::kCreate, &fs));
  ASSERT_TRUE(fs.source.has_value());
  EXPECT_EQ(fs.source->query, "SELECT * FROM events");
  EXPECT_EQ(fs.source->connection, "postgresql://u@h/db");
  EXPECT_TRUE(fs.source->pushdown);
  FeatureSet back;
  ASSERT_OK(DecodeFeatureSet(ToJson(fs), DecodeMode::kStored, &back));
  EXPECT_EQ(json::serialize(ToJson(back)), json::serialize(ToJson(fs)));
  EXPECT_EQ(json::serialize(ToJson(*fs.source)),
            R"({"type":"postgres","query":"SELECT * FROM events",)"
            R"("connection":"postgresql://u@h/db","pushdown":true})");

  Status st = DecodeFeatureSet(J(R"({"source": {"type": "postgres", "table": "t", "dsn": "x"}})"),
                               DecodeMode::kCreate, &fs);
  EXPECT_EQ(FieldOf(st), "source.dsn");
  EXPECT_THAT(st.message(), HasSubstr("unknown field"));
  st = DecodeFeatureSet(J(R"({"source": {"type": "postgres", "table": "t", "pushdown": "yes"}})"),
                        DecodeMode::kCreate, &fs);
  EXPECT_EQ(FieldOf(st), "source.pushdown");
}

TEST(CodecTest, WrongTypesAreNamed) {
  FeatureSet fs;
  Status st = DecodeFeatureSet(J(R"({"entities": "user"})"), DecodeMode::kCreate, &fs);
  EXPECT_EQ(FieldOf(st), "entities");
  EXPECT_THAT(st.message(), HasSubstr("got a string"));
  st = DecodeFeatureSet(J(R"({"entities": ["user", 3]})"), DecodeMode::kCreate, &fs);
  EXPECT_EQ(FieldOf(st), "entities[1]");
  st = DecodeFeatureSet(J(R"({"online_enabled": "yes"})"), DecodeMode::kCreate, &fs);
  EXPECT_EQ(FieldOf(st), "online_enabled");
  st = DecodeFeatureSet(J(R"({"source": {"type": "file", "paht": "x"}})"), DecodeMode::kCreate, &fs);
  EXPECT_EQ(FieldOf(st), "source.paht");
  Feature f;
  st = DecodeFeature(J(R"({"validation_rules": {"min_value": "0"}})"), DecodeMode::kCreate, &f);
  EXPECT_EQ(FieldOf(st), "validation_rules.min_value");
  st = DecodeFeature(J(R"({"validation_rules": {"maximum": 1}})"), DecodeMode::kCreate, &f);
  EXPECT_EQ(FieldOf(st), "validation_rules.maximum");
}

TEST(CodecTest, ServerAssignedFieldsAreRefusedFromClients) {
  for (const char* field : {"id", "version", "created_at", "updated_at", "deleted_at"}) {
    std::string body = std::string(R"({")") + field + R"(": "1"})";
    FeatureSet fs;
    Status st = DecodeFeatureSet(J(body), DecodeMode::kCreate, &fs);
    EXPECT_EQ(FieldOf(st), field);
    st = DecodeFeatureSet(J(body), DecodeMode::kPatch, &fs);
    EXPECT_EQ(FieldOf(st), field);
  }
}

TEST(CodecTest, PatchNullResetsOptionalFields) {
  FeatureSet fs;
  fs.ttl = "1d";
  fs.materialization_schedule = "@daily";
  fs.source = SourceDefinition{"push", "", "", "", "", ""};
  ASSERT_OK(DecodeFeatureSet(J(R"({"ttl": null, "materialization_schedule": null, "source": null})"),
                             DecodeMode::kPatch, &fs));
  EXPECT_EQ(fs.ttl, "");
  EXPECT_EQ(fs.materialization_schedule, "");
  EXPECT_FALSE(fs.source.has_value());
  Status st = DecodeFeatureSet(J(R"({"name": null})"), DecodeMode::kPatch, &fs);
  EXPECT_EQ(FieldOf(st), "name");
}

TEST(CodecTest, PythonTransformationRoundTripsAndPatches) {
  FeatureSet fs;
  ASSERT_OK(DecodeFeatureSet(J(R"({
    "name": "txn", "entities": ["user"],
    "python_transformation": {"code": "def transform(b):\n    return b\n",
                              "input": "pandas", "timeout": 5,
                              "output_columns": {"b": "float", "a": "int"}}
  })"), DecodeMode::kCreate, &fs));
  ASSERT_TRUE(fs.python_transformation.has_value());
  EXPECT_EQ(fs.python_transformation->function, "transform");  // the default
  EXPECT_EQ(fs.python_transformation->timeout, "5s");
  // Declared order is kept.
  ASSERT_EQ(fs.python_transformation->output_columns.size(), 2u);
  EXPECT_EQ(fs.python_transformation->output_columns[0].first, "b");
  FeatureSet stored;
  ASSERT_OK(DecodeFeatureSet(ToJson(fs), DecodeMode::kStored, &stored));
  ASSERT_TRUE(stored.python_transformation.has_value());
  EXPECT_EQ(json::serialize(ToJson(*stored.python_transformation)),
            json::serialize(ToJson(*fs.python_transformation)));

  // A patch changes the subfields it gives; null removes it.
  ASSERT_OK(DecodeFeatureSet(J(R"({"python_transformation": {"timeout": "1s"}})"),
                             DecodeMode::kPatch, &fs));
  EXPECT_EQ(fs.python_transformation->timeout, "1s");
  EXPECT_EQ(fs.python_transformation->input, "pandas");
  ASSERT_OK(DecodeFeatureSet(J(R"({"python_transformation": null})"), DecodeMode::kPatch, &fs));
  EXPECT_FALSE(fs.python_transformation.has_value());
  EXPECT_TRUE(ToJson(fs).at("python_transformation").is_null());

  // Strict: unknown subfields, wrong types, no code.
  FeatureSet bad;
  Status st = DecodeFeatureSet(J(R"({"python_transformation": {"code": "x", "lang": "py"}})"),
                               DecodeMode::kCreate, &bad);
  EXPECT_EQ(FieldOf(st), "python_transformation.lang");
  st = DecodeFeatureSet(J(R"({"python_transformation": {"code": "x", "output_columns": ["a"]}})"),
                        DecodeMode::kCreate, &bad);
  EXPECT_EQ(FieldOf(st), "python_transformation.output_columns");
  st = DecodeFeatureSet(J(R"({"python_transformation": {"output_columns": {"a": "int"}}})"),
                        DecodeMode::kCreate, &bad);
  EXPECT_EQ(FieldOf(st), "python_transformation.code");
}

TEST(CodecTest, TtlInSecondsBecomesADuration) {
  FeatureSet fs;
  ASSERT_OK(DecodeFeatureSet(J(R"({"ttl": 3600})"), DecodeMode::kCreate, &fs));
  EXPECT_EQ(fs.ttl, "3600s");
}

TEST(CodecTest, ParseJsonReportsSyntaxErrors) {
  EXPECT_OK(ParseJson(R"({"a": 1})").status());
  for (const char* bad : {"{", "{\"a\": }", "[1,]", "{} x", "", "nul"}) {
    auto r = ParseJson(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(ErrorCodeOf(r.status()), ErrorCode::kInvalidArgument);
      EXPECT_THAT(r.status().message(), HasSubstr("not valid JSON"));
    }
  }
  // Depth is bounded: a deeply nested body is refused, not a stack overflow.
  std::string deep(100000, '[');
  EXPECT_FALSE(ParseJson(deep).ok());
}

TEST(CodecTest, NonObjectBodiesAreRefused) {
  Entity e;
  Status st = DecodeEntity(J("[1]"), DecodeMode::kCreate, &e);
  EXPECT_THAT(st.message(), HasSubstr("must be a JSON object"));
}

MaterializationJob FullJob() {
  MaterializationJob job;
  job.id = "6f1c2a9e-0000-4000-8000-000000000001";
  job.feature_set_id = "fs-1";
  job.feature_set_name = "user_profile";
  job.feature_set_version = 3;
  job.status = JobStatus::kFailed;
  job.trigger = "schedule";
  job.incremental = true;
  job.start = 1'704'067'200'000'000;           // 2024-01-01T00:00:00Z
  job.end = 1'704'153'600'000'000;             // 2024-01-02T00:00:00Z
  job.completed_until = 1'704'110'400'000'001;  // with a fraction
  job.created_at = 1'704'153'600'123'456;
  job.started_at = 1'704'153'601'000'000;
  job.finished_at = 1'704'153'662'500'000;
  job.rows_read = 1'000'000;
  job.rows_written_offline = 999'990;
  job.rows_written_online = 500;
  job.rows_rejected = 10;
  job.bytes_read = int64_t{1} << 40;
  job.bytes_written = 123'456'789;
  job.duration_seconds = 61.5;
  job.cpu_seconds = 0.1;
  job.max_event_time_offline = 1'704'110'399'000'000;  // 2024-01-01T11:59:59Z
  // max_event_time_online unset: the run wrote nothing online.
  job.quality_report = J(R"({"age": {"max_value": {"count": 7, "samples": [151, 200.5, null]},
                                     "not_null": {"count": 3, "samples": []}}})")
                           .as_object();
  job.error = "offline store unavailable";
  return job;
}

TEST(CodecTest, JobToJsonHasTheApiFields) {
  json::object o = ToJson(FullJob());
  EXPECT_EQ(o["id"], "6f1c2a9e-0000-4000-8000-000000000001");
  EXPECT_EQ(o["feature_set"], "user_profile");
  EXPECT_EQ(o["feature_set_version"], 3);
  EXPECT_EQ(o["status"], "failed");
  EXPECT_EQ(o["trigger"], "schedule");
  EXPECT_EQ(o["incremental"], true);
  EXPECT_EQ(o["start_date"], "2024-01-01T00:00:00Z");
  EXPECT_EQ(o["end_date"], "2024-01-02T00:00:00Z");
  EXPECT_EQ(o["completed_until"], "2024-01-01T12:00:00.000001Z");
  EXPECT_EQ(o["created_at"], "2024-01-02T00:00:00.123456Z");
  EXPECT_EQ(o["finished_at"], "2024-01-02T00:01:02.500000Z");
  EXPECT_EQ(o["rows_rejected"], 10);
  EXPECT_EQ(o["duration_seconds"], 61.5);
  EXPECT_EQ(o["error"], "offline store unavailable");
  EXPECT_TRUE(o["quality_report"].is_object());
  EXPECT_EQ(o["max_event_time_offline"], "2024-01-01T11:59:59Z");
  EXPECT_TRUE(o["max_event_time_online"].is_null());
  EXPECT_EQ(o.size(), 25u);

  // Unset: null, not the epoch or an empty string.
  MaterializationJob queued;
  queued.id = "j";
  queued.feature_set_id = "fs";
  queued.duration_seconds = 2;
  json::object q = ToJson(queued);
  EXPECT_EQ(q["status"], "queued");
  EXPECT_TRUE(q["started_at"].is_null());
  EXPECT_TRUE(q["finished_at"].is_null());
  EXPECT_TRUE(q["error"].is_null());
  EXPECT_EQ(json::serialize(q["quality_report"]), "{}");
  EXPECT_EQ(json::serialize(q["duration_seconds"]), "2");  // integral: no exponent
}

TEST(CodecTest, JobRoundTripsThroughItsStoredForm) {
  MaterializationJob job = FullJob();
  std::string text = json::serialize(ToJson(job));
  MaterializationJob back;
  ASSERT_OK(DecodeJob(J(text), &back));
  EXPECT_EQ(json::serialize(ToJson(back)), text);
  EXPECT_EQ(back.status, JobStatus::kFailed);
  EXPECT_EQ(back.start, job.start);
  EXPECT_EQ(back.completed_until, job.completed_until);
  EXPECT_EQ(back.created_at, job.created_at);
  EXPECT_EQ(back.started_at, job.started_at);
  EXPECT_EQ(back.finished_at, job.finished_at);
  EXPECT_EQ(back.bytes_read, job.bytes_read);
  EXPECT_EQ(back.duration_seconds, job.duration_seconds);
  EXPECT_EQ(back.cpu_seconds, job.cpu_seconds);  // 0.1 exactly
  EXPECT_EQ(back.quality_report, job.quality_report);
  EXPECT_EQ(back.error, job.error);

  // Nulls reset the optional fields of a job decoded over another.
  MaterializationJob cleared;
  cleared.id = "j2";
  cleared.feature_set_id = "fs";
  cleared.status = JobStatus::kRunning;
  ASSERT_OK(DecodeJob(ToJson(cleared), &back));
  EXPECT_EQ(json::serialize(ToJson(back)), json::serialize(ToJson(cleared)));
  EXPECT_FALSE(back.started_at.has_value());
  EXPECT_FALSE(back.finished_at.has_value());
  EXPECT_TRUE(back.error.empty());
  EXPECT_TRUE(back.quality_report.empty());
}

TEST(CodecTest, EveryJobStatusHasAName) {
  for (JobStatus status :
       {JobStatus::kQueued, JobStatus::kRunning, JobStatus::kSucceeded, JobStatus::kFailed}) {
    ASSERT_OK_AND_ASSIGN(JobStatus parsed, ParseJobStatus(JobStatusName(status)));
    EXPECT_EQ(parsed, status);
  }
  EXPECT_EQ(JobStatusName(JobStatus::kSucceeded), "succeeded");
  auto bad = ParseJobStatus("done");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(FieldOf(bad.status()), "status");
  EXPECT_THAT(ErrorMessageOf(bad.status()), HasSubstr("'done'"));
}

TEST(CodecTest, JobDecodingIsStrict) {
  struct Case {
    const char* json;
    const char* field;
  };
  for (const Case& c : {
           Case{R"({"status": "done"})", "status"},
           Case{R"({"status": 1})", "status"},
           Case{R"({"id": null})", "id"},
           Case{R"({"feature_set_id": 7})", "feature_set_id"},
           Case{R"({"incremental": "yes"})", "incremental"},
           Case{R"({"start_date": "yesterday"})", "start_date"},
           Case{R"({"end_date": null})", "end_date"},
           Case{R"({"started_at": 5})", "started_at"},
           Case{R"({"rows_read": 1.5})", "rows_read"},
           Case{R"({"bytes_written": "10"})", "bytes_written"},
           Case{R"({"duration_seconds": "1s"})", "duration_seconds"},
           Case{R"({"quality_report": []})", "quality_report"},
           Case{R"({"error": false})", "error"},
           Case{R"({"rows": 1})", "rows"},
       }) {
    MaterializationJob job;
    Status st = DecodeJob(J(c.json), &job);
    EXPECT_FALSE(st.ok()) << c.json;
    EXPECT_EQ(ErrorCodeOf(st), ErrorCode::kInvalidArgument) << c.json;
    EXPECT_EQ(FieldOf(st), c.field) << c.json << ": " << st.ToString();
  }
  MaterializationJob job;
  EXPECT_THAT(DecodeJob(J("[]"), &job).message(), HasSubstr("must be a JSON object"));
  // An integral number of seconds is a number too.
  ASSERT_OK(DecodeJob(J(R"({"duration_seconds": 3, "cpu_seconds": 1.25})"), &job));
  EXPECT_EQ(job.duration_seconds, 3.0);
  EXPECT_EQ(job.cpu_seconds, 1.25);
}

}  // namespace
}  // namespace fstore
