#pragma once

// S3 (AWS, MinIO, any S3-compatible server) as an arrow::fs::FileSystem for
// the offline store and for batch serving's s3:// inputs and outputs. All the
// S3 specifics live here: the client options built from fstore's settings,
// the bucket check at open, and the process-wide AWS SDK start and stop.
//
// Why not arrow::fs::FileSystemFromUri("s3://..."): it takes its settings from
// the URI alone (credentials in the URI end up in logs), has no timeouts or
// retry bound, and without a region in the URI it asks AWS for the bucket's
// region over the network, which an S3-compatible server may not answer.
// Local paths and other schemes still go to FileSystemFromUriOrPath.
//
// AWS SDK lifetime: the first S3 filesystem made initializes the SDK
// (arrow::fs::EnsureS3Initialized) and registers FinalizeS3() with atexit,
// so every binary that links this -- the server, the CLI, the test programs
// -- shuts the SDK down at exit. The server calls FinalizeS3() itself after
// its stores are closed. After FinalizeS3() every S3 call fails with an
// error (Arrow keeps the remaining clients safe to destroy).

#include <memory>
#include <string>

#include <arrow/filesystem/type_fwd.h>

#include "fstore/core/status.h"

namespace fstore {

/// How to reach S3: what STORAGE_BACKEND=s3 and the S3_* settings say
/// (bucket and prefix come from the s3:// URI, not from here).
struct S3ConnectionOptions {
  /// "http://host:port" or "https://host[:port]" of an S3-compatible server
  /// (MinIO, ...); a bare "host:port" means https. Empty: AWS itself.
  std::string endpoint;
  /// Region; empty means us-east-1 when `endpoint` is set, else the AWS SDK's
  /// default (AWS_REGION, ~/.aws/config).
  std::string region;
  /// Static credentials; both empty means the AWS default credential chain.
  std::string access_key;
  std::string secret_key;
  /// Seconds to establish a connection. Short, so that a down server shows
  /// up in seconds rather than minutes.
  double connect_timeout_seconds = 3;
  /// Seconds a request may go without any progress (the AWS SDK's request
  /// timeout: a stall, not a total, so large uploads are not cut). With
  /// max_attempts, a server that accepts connections but never answers fails
  /// a call after about max_attempts x this.
  double request_timeout_seconds = 10;
  /// Attempts per request, the first one included (AWS standard retry
  /// strategy: exponential backoff with jitter between them).
  int max_attempts = 3;
  /// Create the bucket at open when it does not exist; otherwise its absence
  /// is an error naming it.
  bool create_bucket = true;
};

/// An S3 filesystem with `options`: path-style addressing (what MinIO and
/// moto need), paths "bucket/key". Makes no request.
Result<std::shared_ptr<arrow::fs::FileSystem>> MakeS3FileSystem(
    const S3ConnectionOptions& options);

/// "s3://bucket/prefix" -> "bucket/prefix" (no trailing '/'). InvalidArgument
/// on `field` when `uri` is not an s3:// URI with a bucket, or carries
/// credentials or a query (those belong in S3ConnectionOptions).
Result<std::string> S3PathFromUri(const std::string& uri, const std::string& field);

/// True when `uri` starts with "s3://".
bool IsS3Uri(const std::string& uri);

/// The filesystem of `uri_or_path` and the path in it: an s3:// URI gets an S3
/// filesystem with `s3`; anything else what arrow::fs::FileSystemFromUriOrPath
/// makes of it (an absolute local path, file://...).
Result<std::shared_ptr<arrow::fs::FileSystem>> FileSystemFromUriOrPath(
    const std::string& uri_or_path, const S3ConnectionOptions& s3, std::string* path);

/// Checks that `bucket` exists on `fs` (an S3 filesystem), creating it when
/// missing and `create` is set. Unavailable naming the endpoint when S3 does
/// not answer; NotFound-like InvalidArgument when the bucket is missing and
/// may not (or cannot) be created.
Status EnsureS3Bucket(arrow::fs::FileSystem& fs, const std::string& bucket, bool create,
                      const std::string& endpoint);

/// Shuts the AWS SDK down if it was started; idempotent. Call after every S3
/// filesystem (every store opened with s3://) is gone.
void FinalizeS3();

}  // namespace fstore
