// Proves the build links the Arrow C++ libraries of the pinned pyarrow wheel:
// writes and reads a Parquet file, and runs a compute function.

#include <filesystem>

#include <arrow/api.h>
#include <arrow/compute/api.h>
#include <arrow/io/api.h>
#include <parquet/arrow/reader.h>
#include <parquet/arrow/writer.h>

#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

TEST(ArrowLinkTest, ParquetRoundTripAndCompute) {
  ASSERT_OK(arrow::compute::Initialize());

  arrow::Int64Builder ids;
  arrow::DoubleBuilder values;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_OK(ids.Append(i));
    ASSERT_OK(values.Append(i * 0.5));
  }
  ASSERT_OK_AND_ASSIGN(auto id_array, ids.Finish());
  ASSERT_OK_AND_ASSIGN(auto value_array, values.Finish());
  auto schema = arrow::schema({arrow::field("id", arrow::int64()),
                               arrow::field("value", arrow::float64())});
  auto table = arrow::Table::Make(schema, {id_array, value_array});

  auto path = std::filesystem::temp_directory_path() /
              ("fstore_arrow_link_" + std::to_string(::getpid()) + ".parquet");
  {
    ASSERT_OK_AND_ASSIGN(auto out, arrow::io::FileOutputStream::Open(path.string()));
    ASSERT_OK(parquet::arrow::WriteTable(*table, arrow::default_memory_pool(), out, 128));
    ASSERT_OK(out->Close());
  }
  ASSERT_OK_AND_ASSIGN(auto in, arrow::io::ReadableFile::Open(path.string()));
  ASSERT_OK_AND_ASSIGN(auto reader, parquet::arrow::OpenFile(in, arrow::default_memory_pool()));
  EXPECT_EQ(reader->num_row_groups(), 8);
  std::shared_ptr<arrow::Table> read_back;
  ASSERT_OK_AND_ASSIGN(read_back, reader->ReadTable());
  std::filesystem::remove(path);
  ASSERT_TRUE(read_back->Equals(*table));

  ASSERT_OK_AND_ASSIGN(auto sum, arrow::compute::Sum(read_back->GetColumnByName("value")));
  EXPECT_DOUBLE_EQ(sum.scalar_as<arrow::DoubleScalar>().value, 0.5 * 999 * 1000 / 2);
}

}  // namespace
}  // namespace fstore
