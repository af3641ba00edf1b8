#include "fstore/offline/s3_filesystem.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>
#include <string_view>

#include <arrow/filesystem/api.h>
#include <arrow/filesystem/s3fs.h>

namespace fstore {
namespace {

constexpr std::string_view kS3Scheme = "s3://";

std::mutex& S3LifetimeMutex() {
  static std::mutex mutex;
  return mutex;
}

// Starts the AWS SDK once per process (its stop at exit is arranged by
// MakeS3FileSystem).
Status EnsureS3Started() {
  std::lock_guard lock(S3LifetimeMutex());
  if (arrow::fs::IsS3Finalized()) {
    return Unavailable("S3 was shut down in this process; it cannot be used again");
  }
  if (arrow::fs::IsS3Initialized()) return Status::OK();
  arrow::fs::S3GlobalOptions global = arrow::fs::S3GlobalOptions::Defaults();
  global.log_level = arrow::fs::S3LogLevel::Fatal;
  return arrow::fs::InitializeS3(global);
}

struct Endpoint {
  std::string scheme;  // "http" | "https"
  std::string host_port;
};

Result<Endpoint> ParseEndpoint(const std::string& text) {
  Endpoint out{"https", text};
  size_t sep = text.find("://");
  if (sep != std::string::npos) {
    out.scheme = text.substr(0, sep);
    for (char& c : out.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.host_port = text.substr(sep + 3);
    if (out.scheme != "http" && out.scheme != "https") {
      return InvalidArgument("S3_ENDPOINT", "'" + text +
                                                "' is not an http:// or https:// URL (e.g. "
                                                "http://127.0.0.1:9000)");
    }
  }
  while (!out.host_port.empty() && out.host_port.back() == '/') out.host_port.pop_back();
  if (out.host_port.empty() || out.host_port.find('/') != std::string::npos) {
    return InvalidArgument("S3_ENDPOINT", "'" + text +
                                              "' must be a server address without a path, e.g. "
                                              "http://127.0.0.1:9000");
  }
  return out;
}

}  // namespace

Result<std::shared_ptr<arrow::fs::FileSystem>> MakeS3FileSystem(
    const S3ConnectionOptions& options) {
  if (options.access_key.empty() != options.secret_key.empty()) {
    return InvalidArgument(options.access_key.empty() ? "S3_ACCESS_KEY" : "S3_SECRET_KEY",
                           "set both S3_ACCESS_KEY and S3_SECRET_KEY, or neither");
  }
  ARROW_RETURN_NOT_OK(EnsureS3Started());
  arrow::fs::S3Options s3 = options.access_key.empty()
                                ? arrow::fs::S3Options::Defaults()
                                : arrow::fs::S3Options::FromAccessKey(options.access_key,
                                                                      options.secret_key);
  if (!options.endpoint.empty()) {
    ARROW_ASSIGN_OR_RAISE(Endpoint endpoint, ParseEndpoint(options.endpoint));
    s3.endpoint_override = endpoint.host_port;
    s3.scheme = endpoint.scheme;
    s3.region = options.region.empty() ? "us-east-1" : options.region;
  } else if (!options.region.empty()) {
    s3.region = options.region;
  }
  // Path-style requests (http://host/bucket/key): MinIO and moto serve
  // those without per-bucket DNS names.
  s3.force_virtual_addressing = false;
  s3.connect_timeout = options.connect_timeout_seconds;
  s3.request_timeout = options.request_timeout_seconds;
  s3.retry_strategy = arrow::fs::S3RetryStrategy::GetAwsStandardRetryStrategy(
      std::max(1, options.max_attempts));
  // The bucket is created (if allowed) by EnsureS3Bucket; never deleted.
  s3.allow_bucket_creation = options.create_bucket;
  s3.allow_bucket_deletion = false;
  ARROW_ASSIGN_OR_RAISE(auto fs, arrow::fs::S3FileSystem::Make(s3));
  // Arrow documents that a process which initialized S3 must finalize it or
  // may crash while exiting. Registered after the first filesystem exists:
  // exit handlers and static destructors run in reverse order of
  // registration, so this one runs before Arrow's own S3 statics (made with
  // the first client) are destroyed -- registered earlier, it would find
  // them gone.
  static std::once_flag at_exit;
  std::call_once(at_exit, [] { std::atexit([] { FinalizeS3(); }); });
  return std::static_pointer_cast<arrow::fs::FileSystem>(std::move(fs));
}

bool IsS3Uri(const std::string& uri) {
  if (uri.size() < kS3Scheme.size()) return false;
  for (size_t i = 0; i < kS3Scheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(uri[i])) != kS3Scheme[i]) return false;
  }
  return true;
}

Result<std::string> S3PathFromUri(const std::string& uri, const std::string& field) {
  if (!IsS3Uri(uri)) return InvalidArgument(field, "'" + uri + "' is not an s3:// URI");
  std::string path = uri.substr(kS3Scheme.size());
  if (path.find_first_of("?#") != std::string::npos || path.find('@') < path.find('/')) {
    return InvalidArgument(field, "'" + uri +
                                      "' must be s3://bucket/key, without credentials or "
                                      "options (those come from the S3_* settings)");
  }
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.empty() || path.front() == '/') {
    return InvalidArgument(field, "'" + uri + "' names no bucket (expected s3://bucket/key)");
  }
  return path;
}

Result<std::shared_ptr<arrow::fs::FileSystem>> FileSystemFromUriOrPath(
    const std::string& uri_or_path, const S3ConnectionOptions& s3, std::string* path) {
  if (IsS3Uri(uri_or_path)) {
    ARROW_ASSIGN_OR_RAISE(*path, S3PathFromUri(uri_or_path, "uri"));
    return MakeS3FileSystem(s3);
  }
  return arrow::fs::FileSystemFromUriOrPath(uri_or_path, path);
}

Status EnsureS3Bucket(arrow::fs::FileSystem& fs, const std::string& bucket, bool create,
                      const std::string& endpoint) {
  const std::string where = endpoint.empty() ? "AWS S3" : "the S3 server at " + endpoint;
  auto info = fs.GetFileInfo(bucket);
  if (!info.ok()) {
    return Unavailable("cannot reach " + where + " (checking bucket '" + bucket +
                       "'): " + info.status().message());
  }
  if (info->type() == arrow::fs::FileType::Directory) return Status::OK();
  if (!create) {
    return InvalidArgument("S3_BUCKET", "the bucket '" + bucket + "' does not exist on " + where);
  }
  Status made = fs.CreateDir(bucket, /*recursive=*/false);
  if (!made.ok()) {
    return Unavailable("the bucket '" + bucket + "' does not exist on " + where +
                       " and creating it failed: " + made.message());
  }
  return Status::OK();
}

void FinalizeS3() {
  std::lock_guard lock(S3LifetimeMutex());
  if (arrow::fs::IsS3Initialized() && !arrow::fs::IsS3Finalized()) {
    (void)arrow::fs::FinalizeS3();
  }
}

}  // namespace fstore
