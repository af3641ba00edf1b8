#include "fstore/python/python_transformation.h"

#include <atomic>
#include <thread>

#include <arrow/api.h>
#include <gtest/gtest.h>

#include "fstore/python/embedded_python.h"
#include "fstore/testing/gtest_util.h"

#if defined(__SANITIZE_ADDRESS__)
// Under ASan (FSTORE_SANITIZE): full stack unwinding at allocations, so that
// LeakSanitizer sees the interpreter's frames under the allocations made by
// libraries without frame pointers (OpenSSL's, from Python's _hashlib, which
// pandas imports) and scripts/lsan.supp's Python entries match them. The
// environment's ASAN_OPTIONS still override it.
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }
#endif

namespace fstore {
namespace {

const auto kTimestampUtc = arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");

std::shared_ptr<arrow::RecordBatch> SourceBatch(int64_t rows) {
  arrow::StringBuilder users;
  arrow::TimestampBuilder times(kTimestampUtc, arrow::default_memory_pool());
  arrow::DoubleBuilder amounts;
  for (int64_t i = 0; i < rows; ++i) {
    EXPECT_TRUE(users.Append("u" + std::to_string(i % 3)).ok());
    EXPECT_TRUE(times.Append(1'700'000'000'000'000 + i * 1'000'000).ok());
    EXPECT_TRUE(amounts.Append(static_cast<double>(i) + 0.5).ok());
  }
  auto schema = arrow::schema({arrow::field("user_id", arrow::utf8()),
                               arrow::field("ts", kTimestampUtc),
                               arrow::field("amount", arrow::float64())});
  return arrow::RecordBatch::Make(schema, rows,
                                  {users.Finish().ValueOrDie(), times.Finish().ValueOrDie(),
                                   amounts.Finish().ValueOrDie()});
}

PythonFunctionSpec Spec(std::string code, std::vector<PythonColumn> outputs) {
  PythonFunctionSpec spec;
  spec.code = std::move(code);
  spec.output_columns = std::move(outputs);
  spec.name = "test";
  return spec;
}

const char* kTripleCode =
    "import pyarrow as pa\n"
    "import pyarrow.compute as pc\n"
    "def transform(batch):\n"
    "    return pa.RecordBatch.from_arrays(\n"
    "        [pc.multiply(batch.column('amount'), 3)], names=['amount_x3'])\n";

TEST(EmbeddedPythonTest, SharesTheBinarysLibarrow) {
  ASSERT_OK_AND_ASSIGN(auto info, DescribePython());
  // pyarrow is the wheel's whose Arrow C++ libraries the binary links, and
  // only one libarrow is mapped: batches may cross without copying.
  EXPECT_EQ(info.pyarrow_dir, FSTORE_PYARROW_DIR);
  ASSERT_EQ(info.libarrow_files.size(), 1u) << info.libarrow_files.size();
  EXPECT_EQ(info.libarrow_files[0].rfind(FSTORE_PYARROW_DIR, 0), 0u) << info.libarrow_files[0];
  EXPECT_EQ(info.python_version.rfind("3.11", 0), 0u) << info.python_version;
}

TEST(PythonTransformationTest, AppliesAFunctionAndKeepsTheInputColumns) {
  ASSERT_OK_AND_ASSIGN(auto t, PythonTransformation::Make(
                                   Spec(kTripleCode, {{"amount_x3", arrow::float64()}})));
  auto input = SourceBatch(5);
  ASSERT_OK_AND_ASSIGN(auto out, t->Apply(input));
  ASSERT_EQ(out->num_rows(), 5);
  ASSERT_EQ(out->schema()->field_names(),
            (std::vector<std::string>{"user_id", "ts", "amount", "amount_x3"}));
  auto x3 = std::static_pointer_cast<arrow::DoubleArray>(out->GetColumnByName("amount_x3"));
  for (int64_t i = 0; i < 5; ++i) EXPECT_DOUBLE_EQ(x3->Value(i), (i + 0.5) * 3);
  // The carried input columns are the input's own arrays.
  EXPECT_EQ(out->GetColumnByName("user_id").get(), input->GetColumnByName("user_id").get());
}

TEST(PythonTransformationTest, BatchesCrossWithoutCopying) {
  // The function returns its input's columns: the buffers that come back are
  // the ones that went in (Arrow C data interface both ways, one libarrow).
  ASSERT_OK_AND_ASSIGN(
      auto t, PythonTransformation::Make(Spec(
                  "import pyarrow as pa\n"
                  "def transform(batch):\n"
                  "    return pa.RecordBatch.from_arrays(\n"
                  "        [batch.column('amount'), batch.column('user_id'), batch.column('ts')],\n"
                  "        names=['amount_copy', 'user_id', 'ts'])\n",
                  {{"amount_copy", arrow::float64()}})));
  auto input = SourceBatch(1000);
  ASSERT_OK_AND_ASSIGN(auto out, t->Apply(input));
  auto in_amount = input->GetColumnByName("amount")->data();
  auto out_amount = out->GetColumnByName("amount_copy")->data();
  EXPECT_EQ(out_amount->buffers[1]->data(), in_amount->buffers[1]->data());
  auto in_users = input->GetColumnByName("user_id")->data();
  auto out_users = out->GetColumnByName("user_id")->data();
  EXPECT_EQ(out_users->buffers[1]->data(), in_users->buffers[1]->data());  // offsets
  EXPECT_EQ(out_users->buffers[2]->data(), in_users->buffers[2]->data());  // characters
  EXPECT_EQ(out->GetColumnByName("ts")->data()->buffers[1]->data(),
            input->GetColumnByName("ts")->data()->buffers[1]->data());
}

TEST(PythonTransformationTest, PandasInput) {
  ASSERT_OK_AND_ASSIGN(auto info, DescribePython());
  if (!info.pandas_available) GTEST_SKIP() << "pandas is not installed in the venv";
  auto spec = Spec(
      "def transform(df):\n"
      "    df['amount_x3'] = df['amount'] * 3\n"
      "    df['big'] = df['amount'] > 2\n"
      "    return df[['user_id', 'ts', 'amount_x3', 'big']]\n",
      {{"amount_x3", arrow::float64()}, {"big", arrow::boolean()}});
  spec.input = PythonInput::kPandas;
  ASSERT_OK_AND_ASSIGN(auto t, PythonTransformation::Make(spec));
  ASSERT_OK(t->CheckOutput(SourceBatch(0)->schema()));
  ASSERT_OK_AND_ASSIGN(auto out, t->Apply(SourceBatch(4)));
  ASSERT_EQ(out->num_rows(), 4);
  auto x3 = std::static_pointer_cast<arrow::DoubleArray>(out->GetColumnByName("amount_x3"));
  auto big = std::static_pointer_cast<arrow::BooleanArray>(out->GetColumnByName("big"));
  EXPECT_DOUBLE_EQ(x3->Value(3), 3.5 * 3);
  EXPECT_FALSE(big->Value(1));
  EXPECT_TRUE(big->Value(2));
  // The timestamps come back from pandas as timestamp[us, UTC], same instants.
  EXPECT_TRUE(out->GetColumnByName("ts")->Equals(SourceBatch(4)->GetColumnByName("ts")));
}

TEST(PythonTransformationTest, SyntaxErrorNamesTheLine) {
  auto r = PythonTransformation::Make(Spec(
      "import pyarrow as pa\n"
      "def transform(batch):\n"
      "    retur batch\n",
      {{"x", arrow::int64()}}));
  ASSERT_FALSE(r.ok());
  const ErrorDetail* e = ErrorOf(r.status());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(e->field(), "python_transformation.code");
  EXPECT_NE(r.status().message().find("line 3"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("SyntaxError"), std::string::npos) << r.status().message();
  ASSERT_TRUE(e->position().has_value());
  // Line 3 starts at character 43 (1-based); the error is on that line.
  EXPECT_GE(*e->position(), 43);
  EXPECT_LE(*e->position(), 43 + 15);
}

TEST(PythonTransformationTest, MissingFunction) {
  auto r = PythonTransformation::Make(Spec("def other(batch):\n    return batch\n",
                                           {{"x", arrow::int64()}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorOf(r.status())->field(), "python_transformation.function");
  EXPECT_NE(r.status().message().find("'transform' is not defined"), std::string::npos);
  EXPECT_NE(r.status().message().find("other"), std::string::npos) << r.status().message();

  auto not_callable = PythonTransformation::Make(Spec("transform = 3\n", {{"x", arrow::int64()}}));
  ASSERT_FALSE(not_callable.ok());
  EXPECT_EQ(ErrorOf(not_callable.status())->field(), "python_transformation.function");
}

TEST(PythonTransformationTest, ModuleThatRaisesOrImportsWhatIsMissing) {
  auto r = PythonTransformation::Make(
      Spec("import no_such_module_anywhere\ndef transform(b):\n    return b\n",
           {{"x", arrow::int64()}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorOf(r.status())->field(), "python_transformation.code");
  EXPECT_NE(r.status().message().find("ModuleNotFoundError"), std::string::npos)
      << r.status().message();
}

TEST(PythonTransformationTest, WrongOutputColumns) {
  ASSERT_OK_AND_ASSIGN(
      auto missing, PythonTransformation::Make(Spec(kTripleCode, {{"amount_x4", arrow::float64()}})));
  Status st = missing->CheckOutput(SourceBatch(0)->schema());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(ErrorOf(st)->field(), "python_transformation.output_columns");
  EXPECT_NE(st.message().find("no column 'amount_x4'"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("amount_x3"), std::string::npos) << st.message();

  ASSERT_OK_AND_ASSIGN(
      auto wrong_type, PythonTransformation::Make(Spec(kTripleCode, {{"amount_x3", arrow::utf8()}})));
  st = wrong_type->CheckOutput(SourceBatch(0)->schema());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(ErrorOf(st)->field(), "python_transformation.output_columns");
  EXPECT_NE(st.message().find("declared string"), std::string::npos) << st.message();

  // A float column declared int: compatible, cast safely at run time; a
  // fractional value then fails naming the column.
  ASSERT_OK_AND_ASSIGN(
      auto as_int, PythonTransformation::Make(Spec(kTripleCode, {{"amount_x3", arrow::int64()}})));
  ASSERT_OK(as_int->CheckOutput(SourceBatch(0)->schema()));
  auto applied = as_int->Apply(SourceBatch(2));
  ASSERT_FALSE(applied.ok());
  EXPECT_NE(applied.status().message().find("amount_x3"), std::string::npos);
}

TEST(PythonTransformationTest, ExceptionCarriesTheTraceback) {
  ASSERT_OK_AND_ASSIGN(
      auto t, PythonTransformation::Make(Spec(
                  "def helper(n):\n"
                  "    if n > 2:\n"
                  "        raise ValueError('too many rows: %d' % n)\n"
                  "def transform(batch):\n"
                  "    helper(batch.num_rows)\n"
                  "    return batch\n",
                  {{"amount", arrow::float64()}})));
  ASSERT_OK(t->CheckOutput(SourceBatch(0)->schema()));
  auto r = t->Apply(SourceBatch(5));
  ASSERT_FALSE(r.ok());
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("Traceback (most recent call last)"), std::string::npos) << m;
  EXPECT_NE(m.find("ValueError: too many rows: 5"), std::string::npos) << m;
  EXPECT_NE(m.find("<python_transformation:test>\", line 3, in helper"), std::string::npos) << m;
  // The source line is shown (linecache).
  EXPECT_NE(m.find("raise ValueError('too many rows: %d' % n)"), std::string::npos) << m;
  // And the interpreter is fine afterwards.
  ASSERT_OK_AND_ASSIGN(auto ok, t->Apply(SourceBatch(2)));
  EXPECT_EQ(ok->num_rows(), 2);
}

TEST(PythonTransformationTest, RunawayFunctionIsStoppedWhileOthersWork) {
  auto spec = Spec("def transform(batch):\n    while True:\n        pass\n",
                   {{"amount", arrow::float64()}});
  spec.timeout = std::chrono::milliseconds(300);
  ASSERT_OK_AND_ASSIGN(auto runaway, PythonTransformation::Make(spec));
  ASSERT_OK_AND_ASSIGN(auto good, PythonTransformation::Make(
                                      Spec(kTripleCode, {{"amount_x3", arrow::float64()}})));
  // Another thread keeps calling Python while the runaway one spins: it gets
  // the GIL in turns, and its calls succeed.
  std::atomic<bool> done{false};
  std::atomic<int> other_calls{0};
  std::atomic<bool> other_failed{false};
  std::thread other([&] {
    while (!done.load()) {
      auto r = good->Apply(SourceBatch(10));
      if (!r.ok()) other_failed = true;
      ++other_calls;
    }
  });
  auto r = runaway->Apply(SourceBatch(3));
  // The other thread makes progress after the stop too.
  int before = other_calls.load();
  while (other_calls.load() < before + 3) std::this_thread::yield();
  done = true;
  other.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorOf(r.status())->field(), "python_transformation.timeout");
  EXPECT_NE(r.status().message().find("did not return within its timeout (300ms)"),
            std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("TransformationTimeout"), std::string::npos);
  EXPECT_FALSE(other_failed.load());
  EXPECT_GT(other_calls.load(), 0);
  // The same thread runs Python normally afterwards: no timeout left pending.
  ASSERT_OK_AND_ASSIGN(auto after, good->Apply(SourceBatch(2)));
  EXPECT_EQ(after->num_rows(), 2);
}

TEST(PythonTransformationTest, RunawayModuleCodeIsStopped) {
  auto spec = Spec("while True:\n    pass\n", {{"x", arrow::int64()}});
  spec.timeout = std::chrono::milliseconds(200);
  auto r = PythonTransformation::Make(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorOf(r.status())->field(), "python_transformation.timeout");
}

TEST(PythonTransformationTest, ConcurrentCallsFromSeveralThreads) {
  ASSERT_OK_AND_ASSIGN(auto t, PythonTransformation::Make(
                                   Spec(kTripleCode, {{"amount_x3", arrow::float64()}})));
  constexpr int kThreads = 6, kCalls = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < kThreads; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < kCalls; ++i) {
        int64_t rows = 1 + (k * kCalls + i) % 17;
        auto r = t->Apply(SourceBatch(rows));
        if (!r.ok() || (*r)->num_rows() != rows) {
          ++failures;
          continue;
        }
        auto x3 = std::static_pointer_cast<arrow::DoubleArray>((*r)->GetColumnByName("amount_x3"));
        if (x3->Value(rows - 1) != (rows - 1 + 0.5) * 3) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(PythonTransformationTest, FilteringFunctionKeepsOnlyWhatItReturns) {
  ASSERT_OK_AND_ASSIGN(
      auto t, PythonTransformation::Make(Spec(
                  "import pyarrow.compute as pc\n"
                  "def transform(batch):\n"
                  "    kept = batch.filter(pc.greater(batch.column('amount'), 1))\n"
                  "    return kept.select(['user_id', 'ts']).append_column(\n"
                  "        'double', pc.multiply(kept.column('amount'), 2))\n",
                  {{"double", arrow::float64()}})));
  ASSERT_OK_AND_ASSIGN(auto out, t->Apply(SourceBatch(4)));
  EXPECT_EQ(out->num_rows(), 3);  // amounts 1.5, 2.5, 3.5
  // 'amount' was not returned and the rows changed: it is left out.
  EXPECT_EQ(out->schema()->field_names(), (std::vector<std::string>{"user_id", "ts", "double"}));
  EXPECT_EQ(TransformedSchema(SourceBatch(0)->schema(), t->spec().output_columns)->field_names(),
            (std::vector<std::string>{"user_id", "ts", "amount", "double"}));
}

TEST(PythonTransformationTest, ResultOfTheWrongKind) {
  ASSERT_OK_AND_ASSIGN(auto t, PythonTransformation::Make(Spec(
                                   "def transform(batch):\n    return [1, 2]\n",
                                   {{"x", arrow::int64()}})));
  Status st = t->CheckOutput(SourceBatch(0)->schema());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(ErrorOf(st)->field(), "python_transformation.code");
  EXPECT_NE(st.message().find("expected a pyarrow.RecordBatch"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace fstore
