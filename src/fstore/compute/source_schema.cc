#include "fstore/compute/source_schema.h"

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>

#include <arrow/dataset/api.h>
#include <arrow/filesystem/api.h>

#include "fstore/compute/postgres_client.h"

namespace fstore {
namespace fs = std::filesystem;
namespace ds = arrow::dataset;

namespace {

bool HasGlob(const std::string& path) {
  return path.find_first_of("*?[") != std::string::npos;
}

}  // namespace

namespace {

struct SourceFactory {
  std::shared_ptr<ds::DatasetFactory> factory;  // null: no file matches
};

Result<SourceFactory> MakeSourceFactory(const SourceDefinition& source) {
  if (source.type != "file" || source.path.empty()) return SourceFactory{};

  std::shared_ptr<ds::FileFormat> format;
  if (source.format == "csv") {
    format = std::make_shared<ds::CsvFileFormat>();
  } else {
    format = std::make_shared<ds::ParquetFileFormat>();
  }
  auto local = std::make_shared<arrow::fs::LocalFileSystem>();
  std::error_code ec;
  fs::path path = fs::absolute(source.path, ec);
  if (ec) return SourceFactory{};

  std::vector<std::string> files;
  if (HasGlob(source.path)) {
    // Arrow has no public glob: walk the fixed prefix and match with POSIX
    // fnmatch, '*' not crossing '/'.
    std::string pattern = path.string();
    fs::path root = fs::path(pattern.substr(0, pattern.find_first_of("*?["))).parent_path();
    if (!fs::is_directory(root, ec)) return SourceFactory{};
    for (auto it = fs::recursive_directory_iterator(root, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec) &&
          ::fnmatch(pattern.c_str(), it->path().c_str(), FNM_PATHNAME) == 0) {
        files.push_back(it->path().string());
      }
    }
  } else if (fs::is_directory(path, ec)) {
    arrow::fs::FileSelector selector;
    selector.base_dir = path.string();
    selector.recursive = true;
    auto infos = local->GetFileInfo(selector);
    if (!infos.ok()) return SourceFactory{};
    for (const auto& info : *infos) {
      if (!info.IsFile()) continue;
      std::string name = info.base_name();
      if (!name.empty() && (name[0] == '.' || name[0] == '_')) continue;
      files.push_back(info.path());
    }
  } else if (fs::is_regular_file(path, ec)) {
    files.push_back(path.string());
  }
  if (files.empty()) return SourceFactory{};
  std::sort(files.begin(), files.end());

  ds::FileSystemFactoryOptions options;
  auto factory = ds::FileSystemDatasetFactory::Make(local, files, format, options);
  if (!factory.ok()) {
    return Unprocessable("source.path", "cannot read '" + source.path + "' as " +
                                            (source.format.empty() ? "parquet" : source.format) +
                                            ": " + factory.status().message());
  }
  return SourceFactory{*factory};
}

std::string FormatName(const SourceDefinition& source) {
  return source.format.empty() ? "parquet" : source.format;
}

// The normalized schema of the source's first file (one listing serves both
// the inspection and the dataset made from it).
Result<std::shared_ptr<arrow::Schema>> InspectSchema(const SourceFactory& made,
                                                     const SourceDefinition& source) {
  ds::InspectOptions inspect;
  inspect.fragments = 1;
  auto schema = made.factory->Inspect(inspect);
  if (!schema.ok()) {
    return Unprocessable("source.path", "cannot read '" + source.path + "' as " +
                                            FormatName(source) + ": " + schema.status().message());
  }
  return NormalizeSourceSchema(**schema);
}

}  // namespace

Result<std::shared_ptr<arrow::Schema>> ReadSourceSchema(const SourceDefinition& source) {
  if (source.type == "postgres") {
    auto schema = ReadPostgresSchema(source);
    // An unreachable server is like a file not there yet: the definition is
    // accepted and its columns are checked at the first run.
    if (!schema.ok() && ErrorCodeOf(schema.status()) == ErrorCode::kUnavailable) {
      return nullptr;
    }
    return schema;
  }
  ARROW_ASSIGN_OR_RAISE(SourceFactory made, MakeSourceFactory(source));
  if (!made.factory) return nullptr;
  return InspectSchema(made, source);
}

Result<std::shared_ptr<ds::Dataset>> OpenSourceDataset(const SourceDefinition& source) {
  ARROW_ASSIGN_OR_RAISE(SourceFactory made, MakeSourceFactory(source));
  if (!made.factory) return nullptr;
  ARROW_ASSIGN_OR_RAISE(auto schema, InspectSchema(made, source));
  ds::FinishOptions finish;
  finish.schema = schema;  // the scan casts the files' columns to it
  auto dataset = made.factory->Finish(finish);
  if (!dataset.ok()) {
    return Unprocessable("source.path", "cannot read '" + source.path + "' as " +
                                            FormatName(source) + ": " + dataset.status().message());
  }
  return *dataset;
}

std::shared_ptr<arrow::Schema> NormalizeSourceSchema(const arrow::Schema& schema) {
  arrow::FieldVector fields;
  fields.reserve(schema.num_fields());
  for (const auto& field : schema.fields()) {
    std::shared_ptr<arrow::DataType> type = field->type();
    if (type->id() == arrow::Type::DICTIONARY) {
      type = static_cast<const arrow::DictionaryType&>(*type).value_type();
    }
    switch (type->id()) {
      case arrow::Type::LARGE_STRING:
      case arrow::Type::STRING_VIEW:
        type = arrow::utf8();
        break;
      case arrow::Type::LARGE_BINARY:
      case arrow::Type::BINARY_VIEW:
        type = arrow::binary();
        break;
      default:
        break;
    }
    fields.push_back(field->WithType(type));
  }
  return arrow::schema(std::move(fields), schema.metadata());
}

Result<std::shared_ptr<arrow::Schema>> RequireSourceSchema(const SourceDefinition& source) {
  if (source.type == "postgres") return ReadPostgresSchema(source);
  ARROW_ASSIGN_OR_RAISE(auto schema, ReadSourceSchema(source));
  if (!schema) return Unprocessable("source.path", "no file matches '" + source.path + "'");
  return schema;
}

}  // namespace fstore
