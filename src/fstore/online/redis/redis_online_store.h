#pragma once

// The Redis online store: one Redis server (redis://, rediss:// over TLS) or
// a Redis Cluster (redis+cluster://, rediss+cluster://).
//
// URIs (user and password are percent-decoded; the port defaults to 6379):
//   redis://[[user]:password@]host[:port][/db][?options]
//   rediss://...                                   (TLS)
//   redis+cluster://[[user]:password@]h1:p1,h2:p2,...[?options]
//                                                  (seed nodes; db is always 0)
// Options (query parameters):
//   timeout_ms=500          deadline of one operation: a pipeline of at most
//                           kRedisPipelineCommands commands (a Read of up to
//                           that many keys is one operation, a larger call is
//                           several), retries and redirects included
//   connect_timeout_ms=250  deadline of a connect (TCP, TLS, AUTH, SELECT)
//   reconnect_backoff_ms=200  after a failed connect to a node, calls that
//                           need it fail at once for this long instead of
//                           paying a connect timeout each
//   pool_size=8             idle connections kept per node (more are opened
//                           when more threads need one at the same time)
//   prefix=<text>           prepended to every key (several stores, or test
//                           runs, in one Redis); percent-decoded
//   tls_ca_file=<path>      rediss: the CA certificates to verify the server
//                           with (default: the system's)
//   tls_verify=1            rediss: 0 skips verifying the server's certificate
//   tls_cert_file=<path>, tls_key_file=<path>  rediss: a client certificate
// With TLS the server's certificate must name the host as written in the URI
// (a DNS name or an IP address); in a cluster, also every address that
// CLUSTER SLOTS gives for the nodes.
//
// Layout: one Redis string per (feature set, entity key):
//   key   = prefix "fs:" <feature set name> '\0' EncodeEntityKey(entity key)
//   value = 16-byte header: event_time, created_time, each 8 bytes big-endian
//           with the sign bit flipped (so bytes compare like the numbers),
//           then EncodeOnlineRecord(record) (online_record_codec.h); with a
//           cipher the sealed encoding (version 2, associated data = the
//           key): the header and times stay clear for the Lua script, the
//           feature names and values are sealed.
// '\0' ends the name (names never contain it; ':' they may), so a feature
// set's keys are exactly those matching prefix "fs:" name '\0' '*'. No hash
// tag: a feature set's keys spread over every slot and so every master.
//
// Write versions: one Redis hash, key = prefix "write-versions", field =
// feature set name, value = a counter HINCRBY'd after every Write that
// applied a record of the set and every DeleteFeatureSet of it. Servers
// sharing the store poll it (WriteVersions, one HMGET) to drop records they
// cached of a set another process wrote. One key, so one slot in a cluster.
//
// Newer-wins is decided on the server, atomically per key, by a Lua script
// (EVALSHA, EVAL on NOSCRIPT) that compares the stored header with the new
// one bytewise and writes only when the new one is not lower. Several
// records for one key in one call are resolved here first (the same rule,
// the later one on a full tie), then one script call per key, pipelined.
// Reads are MGETs (one per slot in a cluster), pipelined per node.
//
// Expiry: with OnlineWriteOptions::ttl_micros > 0 a key expires (PEXPIREAT)
// at event_time + ttl, rounded up to a millisecond, by the server's clock: a
// record written already past it is removed at once. Read applies its own
// ttl rule on top, with the caller's `now`.
//
// Durability is Redis's own (appendonly, appendfsync): Redis has no
// per-client fsync, so Sync() sends nothing; it only fails on a closed store.
// Run Redis with appendonly yes for writes to survive a Redis restart.
//
// Failures: every operation has a deadline (timeout_ms) and fails with
// Unavailable when Redis does not answer in time or cannot be reached;
// nothing blocks longer. A broken connection is dropped; the next call
// reconnects (lazily, with the backoff above). In a cluster, MOVED updates
// the slot and retries on the new owner, ASK retries once with ASKING on the
// named node, and connection errors, CLUSTERDOWN and TRYAGAIN reload the
// slot map (CLUSTER SLOTS, from any node that answers) and retry, all within
// the operation's deadline.
//
// Thread safety: every method may be called from many threads at once; each
// call checks a connection out of a node's pool and returns it after.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "fstore/online/online_store.h"
#include "fstore/security/encryption.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace fstore {

namespace redis_internal {
class RedisNode;
struct PendingCommand;
}  // namespace redis_internal

/// Commands (or keys of a Read) per pipeline: the unit a deadline applies to.
inline constexpr size_t kRedisPipelineCommands = 1000;

/// A Redis server's address.
struct RedisEndpoint {
  std::string host;
  int port = 6379;
  bool operator==(const RedisEndpoint&) const = default;
};

/// What a redis:// URI says (see the top of this file).
struct RedisOnlineStoreOptions {
  std::vector<RedisEndpoint> endpoints;  ///< the server, or the cluster's seed nodes
  bool cluster = false;
  bool tls = false;
  std::string user;
  std::string password;
  int db = 0;
  std::string prefix;
  int64_t timeout_ms = 500;
  int64_t connect_timeout_ms = 250;
  int64_t reconnect_backoff_ms = 200;
  int pool_size = 8;
  std::string tls_ca_file;
  bool tls_verify = true;
  std::string tls_cert_file;
  std::string tls_key_file;
  /// Open fails when no server answers (true), or opens anyway and connects
  /// on the first call that needs Redis (false: what the server does, so
  /// that it can start before Redis; /ready says Redis is down meanwhile).
  /// Not a URI option.
  bool require_connection = true;
  /// Encryption at rest: with a cipher, record values are sealed (see
  /// Layout). Not a URI option.
  std::shared_ptr<const Cipher> cipher;
};

/// Parses a redis://, rediss://, redis+cluster:// or rediss+cluster:// URI.
/// InvalidArgument (field "online_store") saying what is wrong.
Result<RedisOnlineStoreOptions> ParseRedisUri(const std::string& uri);

class RedisOnlineStore : public OnlineStore {
 public:
  /// Connects (and in a cluster loads the slot map). Unavailable when no
  /// server answers; InvalidArgument for bad TLS files.
  static Result<std::unique_ptr<RedisOnlineStore>> Open(const RedisOnlineStoreOptions& options);
  static Result<std::unique_ptr<RedisOnlineStore>> Open(const std::string& uri);
  ~RedisOnlineStore() override;

  /// PING to the server (every master in a cluster) with the operation
  /// deadline; Unavailable when one does not answer.
  Status CheckHealth() override;
  Status Close() override;
  using OnlineStore::Write;
  Result<WriteResult> Write(const std::string& feature_set,
                            const std::vector<std::pair<EntityKey, OnlineRecord>>& records,
                            const OnlineWriteOptions& options) override;
  Result<std::vector<std::optional<OnlineRecord>>> Read(const std::string& feature_set,
                                                        const std::vector<EntityKey>& keys,
                                                        int64_t ttl_micros,
                                                        TimestampMicros now) override;
  /// Redis's bytes decoded straight into SharedRecords.
  Result<std::vector<std::shared_ptr<const SharedRecord>>> ReadShared(
      const std::string& feature_set, const std::vector<EntityKey>& keys, int64_t ttl_micros,
      TimestampMicros now) override;
  /// SCAN MATCH over the feature set's keys (on every master in a cluster)
  /// and UNLINK in batches; each SCAN step has its own deadline.
  Status DeleteFeatureSet(const std::string& feature_set) override;
  /// Sends nothing: durability is Redis's own (see the top of this file).
  Status Sync() override;
  /// HMGET of the write-versions hash (see the top of this file).
  Result<std::optional<std::vector<int64_t>>> WriteVersions(
      const std::vector<std::string>& feature_sets) override;

  /// The Redis key of (feature set, entity key) (for tests and tools).
  std::string RedisKey(const std::string& feature_set, const EntityKey& key) const;

 private:
  explicit RedisOnlineStore(RedisOnlineStoreOptions options);
  std::string WriteVersionsKey() const;
  /// HINCRBY of the feature set's write version, after a write or delete.
  Status BumpWriteVersion(const std::string& feature_set);

  using NodePtr = std::shared_ptr<redis_internal::RedisNode>;

  Status Connect();
  /// The checks, MGETs and replies of Read and ReadShared: `take(i, bytes,
  /// redis_key)` for each key i the store holds, with its stored record.
  Status ReadStored(const std::string& feature_set, const std::vector<EntityKey>& keys,
                    const std::function<Status(size_t, std::string_view, const std::string&)>& take);
  /// The node serving `slot` (cluster), or the server; null if unknown.
  NodePtr NodeForSlot(int slot);
  /// The node at "host:port", created when new.
  NodePtr NodeAt(const std::string& host, int port);
  /// Every master (the server when not a cluster).
  std::vector<NodePtr> Masters();
  /// Reloads the cluster's slot map unless another thread did since
  /// `seen_version` was read, or (unless `force`) one was loaded less than
  /// kMinTopologyRefresh ago: a down master must not cost every request a
  /// CLUSTER SLOTS per retry.
  Status RefreshTopology(uint64_t seen_version, std::chrono::steady_clock::time_point deadline,
                         bool force = false);
  /// Runs `commands` (routed by slot or target node) until each has a reply
  /// that is not a redirect, or the deadline passes: Unavailable then.
  Status RunCommands(std::vector<redis_internal::PendingCommand>* commands,
                     std::chrono::steady_clock::time_point deadline);
  Status CheckOpen() const;
  std::chrono::steady_clock::time_point OperationDeadline() const;

  RedisOnlineStoreOptions options_;
  SSL_CTX* tls_ = nullptr;
  std::string script_sha_;

  /// Shared by every call while it runs; exclusive in Close.
  std::shared_mutex close_mutex_;
  bool closed_ = false;

  /// Guards nodes_ and slots_.
  mutable std::shared_mutex topology_mutex_;
  std::map<std::string, NodePtr> nodes_;  ///< by "host:port"
  std::vector<NodePtr> slots_;            ///< cluster: slot -> master
  NodePtr server_;                        ///< not a cluster: the one server
  std::mutex refresh_mutex_;              ///< one topology reload at a time
  std::chrono::steady_clock::time_point last_refresh_{};  ///< guarded by refresh_mutex_
  std::atomic<uint64_t> topology_version_{0};
};

}  // namespace fstore
