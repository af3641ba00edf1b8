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

}  // namespace
}  // namespace fstore
