#include "fstore/online/redis/redis_online_store.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <numeric>
#include <thread>
#include <unordered_map>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include "fstore/core/text.h"
#include "fstore/online/online_record_codec.h"
#include "fstore/online/shared_record.h"
#include "fstore/online/redis/internal/redis_connection.h"
#include "fstore/online/redis/internal/redis_key_slot.h"

namespace fstore {

namespace redis_internal {

/// One Redis server: its address and its pool of idle connections.
class RedisNode {
 public:
  RedisNode(std::string host_in, int port_in)
      : host(std::move(host_in)),
        port(port_in),
        address((host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                std::to_string(port)) {}

  const std::string host;
  const int port;
  const std::string address;

  std::mutex mutex;
  std::vector<std::unique_ptr<RedisConnection>> idle;  ///< guarded by mutex
  Clock::time_point backoff_until{};                   ///< guarded by mutex
  Status backoff_error;                                ///< guarded by mutex
};

/// One command on its way: routed by `slot` (cluster) or to `target`.
struct PendingCommand {
  std::string request;  ///< the RESP encoding of one command
  int slot = -1;        ///< the key's hash slot; -1: no key (the server, or `target`)
  std::shared_ptr<RedisNode> target;  ///< a fixed node: SCAN, PING, an ASK redirect
  bool asking = false;                ///< precede with ASKING (after an ASK redirect)
  RedisReplyPtr reply;                ///< the final reply (possibly an error reply)
};

}  // namespace redis_internal

using redis_internal::AppendCommand;
using redis_internal::Clock;
using redis_internal::Deadline;
using redis_internal::PendingCommand;
using redis_internal::RedisConnection;
using redis_internal::RedisNode;
using redis_internal::RedisReplyPtr;
using redis_internal::ReplyText;

namespace {

/// Attempts of one RunCommands (redirects, reconnects, reloads of the slot
/// map); the deadline usually ends them first.
constexpr int kMaxAttempts = 8;
constexpr size_t kHeaderBytes = 16;
constexpr int64_t kScanCount = 1000;
constexpr auto kMinTopologyRefresh = std::chrono::milliseconds(100);

// Writes `new` (ARGV[1]: 16-byte header + record) to KEYS[1] unless the
// stored header is greater. The header is (event_time, created_time) as
// big-endian bytes with the sign bit flipped, so the bytewise comparison is
// the lexicographic comparison of the numbers (string.byte, not Lua's `<` on
// strings, which depends on the server's locale). A stored value shorter
// than a header is not ours or corrupt: it is replaced. ARGV[2], when not
// empty, is the expiry (Unix milliseconds).
constexpr std::string_view kWriteScript = R"lua(
local old = redis.call('GET', KEYS[1])
if old and #old >= 16 then
  local new = ARGV[1]
  for i = 1, 16 do
    local a, b = string.byte(new, i), string.byte(old, i)
    if a ~= b then
      if a < b then return 0 end
      break
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
return 1
)lua";

Status Closed() { return Unavailable("the online store is closed"); }

Status CheckFeatureSetName(const std::string& feature_set) {
  if (feature_set.empty()) return InvalidArgument("feature_set", "the feature set name is empty");
  if (feature_set.find('\0') != std::string::npos) {
    return InvalidArgument("feature_set", "the feature set name contains a NUL character");
  }
  return Status::OK();
}

Status UriError(const std::string& message) { return InvalidArgument("online_store", message); }

Result<std::string> PercentDecode(std::string_view text, const char* what) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (i + 2 >= text.size()) {
      return UriError(std::string("redis URI: a truncated %-escape in the ") + what);
    }
    int hi = hex(text[i + 1]);
    int lo = hex(text[i + 2]);
    if (hi < 0 || lo < 0) return UriError(std::string("redis URI: a bad %-escape in the ") + what);
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

Result<int64_t> ParseInt(std::string_view text, int64_t min, int64_t max, const std::string& what) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || value < min ||
      value > max) {
    return UriError("redis URI: " + what + " must be an integer from " + std::to_string(min) +
                    " to " + std::to_string(max) + ", not '" + std::string(text) + "'");
  }
  return value;
}

Result<RedisEndpoint> ParseHostPort(std::string_view text) {
  RedisEndpoint endpoint;
  std::string_view port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return UriError("redis URI: unclosed '[' in host '" + std::string(text) + "'");
    }
    endpoint.host = std::string(text.substr(1, close - 1));
    std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return UriError("redis URI: bad host '" + std::string(text) + "'");
      port = after.substr(1);
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon != std::string_view::npos) {
      endpoint.host = std::string(text.substr(0, colon));
      port = text.substr(colon + 1);
    } else {
      endpoint.host = std::string(text);
    }
  }
  if (endpoint.host.empty()) return UriError("redis URI: a host is empty in '" + std::string(text) + "'");
  if (!port.empty() || text.back() == ':') {
    ARROW_ASSIGN_OR_RAISE(int64_t p, ParseInt(port, 1, 65535, "the port of '" + std::string(text) + "'"));
    endpoint.port = static_cast<int>(p);
  }
  return endpoint;
}

void AppendTimeBytes(TimestampMicros t, std::string* out) {
  uint64_t u = static_cast<uint64_t>(t) ^ (uint64_t{1} << 63);
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(u >> (56 - 8 * i)));
}

/// Whether a record with times `a` may replace one with times `b`.
inline bool NotOlder(const OnlineRecord& a, const OnlineRecord& b) {
  return std::tie(a.event_time, a.created_time) >= std::tie(b.event_time, b.created_time);
}

/// Escapes the glob characters of SCAN MATCH.
std::string GlobEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 4);
  for (char c : text) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::string Sha1Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest, &size, EVP_sha1(), nullptr);
  return HexEncode(std::string_view(reinterpret_cast<const char*>(digest), size));
}

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

/// A reply that is an error: Unavailable when Redis is temporarily unable
/// (out of memory, loading, read-only replica, busy script), else Internal.
Status ErrorReply(std::string_view text, const std::string& context) {
  std::string message = "redis: " + context + ": " + std::string(text);
  for (std::string_view transient : {"OOM", "LOADING", "READONLY", "MASTERDOWN", "BUSY", "CLUSTERDOWN",
                                     "TRYAGAIN", "MOVED", "ASK", "NOAUTH"}) {
    if (StartsWith(text, transient)) return Unavailable(message);
  }
  return Internal(message);
}

}  // namespace

// ---------------------------------------------------------------------------
// URIs

Result<RedisOnlineStoreOptions> ParseRedisUri(const std::string& uri) {
  RedisOnlineStoreOptions options;
  size_t sep = uri.find("://");
  if (sep == std::string::npos) return UriError("redis URI: no scheme in '" + uri + "'");
  std::string scheme = uri.substr(0, sep);
  if (scheme == "redis") {
  } else if (scheme == "rediss") {
    options.tls = true;
  } else if (scheme == "redis+cluster") {
    options.cluster = true;
  } else if (scheme == "rediss+cluster") {
    options.cluster = true;
    options.tls = true;
  } else {
    return UriError("redis URI: unknown scheme '" + scheme +
                    "': expected redis, rediss, redis+cluster or rediss+cluster");
  }
  std::string_view rest = std::string_view(uri).substr(sep + 3);
  std::string_view query;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  // The user info ends at the last '@' (a password may hold '@').
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    if (size_t colon = userinfo.find(':'); colon != std::string_view::npos) {
      ARROW_ASSIGN_OR_RAISE(options.user, PercentDecode(userinfo.substr(0, colon), "user"));
      ARROW_ASSIGN_OR_RAISE(options.password, PercentDecode(userinfo.substr(colon + 1), "password"));
    } else {
      ARROW_ASSIGN_OR_RAISE(options.password, PercentDecode(userinfo, "password"));
    }
  }
  std::string_view path;
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) {
    path = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (rest.empty()) return UriError("redis URI: no host in '" + uri + "'");
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view one = rest.substr(0, comma);
    ARROW_ASSIGN_OR_RAISE(RedisEndpoint endpoint, ParseHostPort(one));
    options.endpoints.push_back(std::move(endpoint));
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
    if (rest.empty()) return UriError("redis URI: a trailing ',' in the hosts of '" + uri + "'");
  }
  if (!options.cluster && options.endpoints.size() > 1) {
    return UriError("redis URI: several hosts need redis+cluster://, not " + scheme + "://");
  }
  if (!path.empty()) {
    ARROW_ASSIGN_OR_RAISE(int64_t db, ParseInt(path, 0, 1'000'000, "the database number"));
    if (options.cluster && db != 0) return UriError("redis URI: Redis Cluster has only database 0");
    options.db = static_cast<int>(db);
  }
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    size_t eq = param.find('=');
    std::string name(param.substr(0, eq));
    ARROW_ASSIGN_OR_RAISE(std::string value,
                          PercentDecode(eq == std::string_view::npos ? "" : param.substr(eq + 1),
                                        name.c_str()));
    if (name == "timeout_ms") {
      ARROW_ASSIGN_OR_RAISE(options.timeout_ms, ParseInt(value, 1, 3'600'000, name));
    } else if (name == "connect_timeout_ms") {
      ARROW_ASSIGN_OR_RAISE(options.connect_timeout_ms, ParseInt(value, 1, 3'600'000, name));
    } else if (name == "reconnect_backoff_ms") {
      ARROW_ASSIGN_OR_RAISE(options.reconnect_backoff_ms, ParseInt(value, 0, 3'600'000, name));
    } else if (name == "pool_size") {
      ARROW_ASSIGN_OR_RAISE(int64_t size, ParseInt(value, 0, 1024, name));
      options.pool_size = static_cast<int>(size);
    } else if (name == "prefix") {
      options.prefix = value;
    } else if (name == "tls_ca_file") {
      options.tls_ca_file = value;
    } else if (name == "tls_verify") {
      ARROW_ASSIGN_OR_RAISE(int64_t verify, ParseInt(value, 0, 1, name));
      options.tls_verify = verify == 1;
    } else if (name == "tls_cert_file") {
      options.tls_cert_file = value;
    } else if (name == "tls_key_file") {
      options.tls_key_file = value;
    } else {
      return UriError("redis URI: unknown option '" + name +
                      "' (known: timeout_ms, connect_timeout_ms, reconnect_backoff_ms, pool_size, "
                      "prefix, tls_ca_file, tls_verify, tls_cert_file, tls_key_file)");
    }
  }
  if (!options.tls && (!options.tls_ca_file.empty() || !options.tls_cert_file.empty())) {
    return UriError("redis URI: TLS options need rediss:// or rediss+cluster://");
  }
  return options;
}

// ---------------------------------------------------------------------------
// Opening and closing

RedisOnlineStore::RedisOnlineStore(RedisOnlineStoreOptions options)
    : options_(std::move(options)), script_sha_(Sha1Hex(kWriteScript)) {}

RedisOnlineStore::~RedisOnlineStore() {
  (void)Close();
  if (tls_ != nullptr) SSL_CTX_free(tls_);
}

Result<std::unique_ptr<RedisOnlineStore>> RedisOnlineStore::Open(const std::string& uri) {
  ARROW_ASSIGN_OR_RAISE(auto options, ParseRedisUri(uri));
  return Open(options);
}

Result<std::unique_ptr<RedisOnlineStore>> RedisOnlineStore::Open(
    const RedisOnlineStoreOptions& options) {
  if (options.endpoints.empty()) return UriError("redis: no server to connect to");
  std::unique_ptr<RedisOnlineStore> store(new RedisOnlineStore(options));
  if (options.tls) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) return Internal("redis: cannot create a TLS context");
    store->tls_ = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (options.tls_verify) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
      int ok = options.tls_ca_file.empty()
                   ? SSL_CTX_set_default_verify_paths(ctx)
                   : SSL_CTX_load_verify_locations(ctx, options.tls_ca_file.c_str(), nullptr);
      if (ok != 1) {
        ERR_clear_error();
        return UriError("redis: cannot load the TLS CA certificates" +
                        (options.tls_ca_file.empty() ? std::string()
                                                     : " from '" + options.tls_ca_file + "'"));
      }
    } else {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    if (!options.tls_cert_file.empty() || !options.tls_key_file.empty()) {
      std::string key = options.tls_key_file.empty() ? options.tls_cert_file : options.tls_key_file;
      if (SSL_CTX_use_certificate_chain_file(ctx, options.tls_cert_file.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
        ERR_clear_error();
        return UriError("redis: cannot load the TLS client certificate '" + options.tls_cert_file +
                        "' or its key '" + key + "'");
      }
    }
  }
  Status connected = store->Connect();
  if (!connected.ok()) {
    if (options.require_connection || ErrorCodeOf(connected) != ErrorCode::kUnavailable) {
      return connected;
    }
    spdlog::warn("the Redis online store is not reachable yet ({}); connecting on first use",
                 connected.message());
  }
  return store;
}

Status RedisOnlineStore::Connect() {
  Deadline deadline = Clock::now() + std::chrono::milliseconds(options_.connect_timeout_ms) +
                      std::chrono::milliseconds(options_.timeout_ms);
  if (options_.cluster) {
    slots_.assign(redis_internal::kClusterSlots, nullptr);
    for (const auto& endpoint : options_.endpoints) (void)NodeAt(endpoint.host, endpoint.port);
    return RefreshTopology(topology_version_.load(), deadline, /*force=*/true);
  }
  server_ = NodeAt(options_.endpoints[0].host, options_.endpoints[0].port);
  std::vector<PendingCommand> ping(1);
  AppendCommand(&ping[0].request, {"PING"});
  ARROW_RETURN_NOT_OK(RunCommands(&ping, deadline));
  if (ping[0].reply->type == REDIS_REPLY_ERROR) {
    return ErrorReply(ReplyText(ping[0].reply.get()), "PING at open");
  }
  return Status::OK();
}

Status RedisOnlineStore::Close() {
  std::unique_lock lock(close_mutex_);
  if (closed_) return Status::OK();
  closed_ = true;
  std::unique_lock topology(topology_mutex_);
  slots_.clear();
  nodes_.clear();  // the nodes' pools close their connections
  server_.reset();
  return Status::OK();
}

Status RedisOnlineStore::CheckOpen() const { return closed_ ? Closed() : Status::OK(); }

Deadline RedisOnlineStore::OperationDeadline() const {
  return Clock::now() + std::chrono::milliseconds(options_.timeout_ms);
}

std::string RedisOnlineStore::RedisKey(const std::string& feature_set, const EntityKey& key) const {
  std::string out;
  out.reserve(options_.prefix.size() + 4 + feature_set.size() + key.size() * 12);
  out.append(options_.prefix);
  out.append("fs:");
  out.append(feature_set);
  out.push_back('\0');
  for (const auto& part : key) {
    if (const int64_t* i = std::get_if<int64_t>(&part)) {
      AppendEntityKeyPart(*i, &out);
    } else {
      AppendEntityKeyPart(std::string_view(std::get<std::string>(part)), &out);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Nodes, connections, the slot map

RedisOnlineStore::NodePtr RedisOnlineStore::NodeAt(const std::string& host, int port) {
  std::string address = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                        std::to_string(port);
  {
    std::shared_lock lock(topology_mutex_);
    auto it = nodes_.find(address);
    if (it != nodes_.end()) return it->second;
  }
  std::unique_lock lock(topology_mutex_);
  auto [it, inserted] = nodes_.try_emplace(address, nullptr);
  if (inserted) it->second = std::make_shared<RedisNode>(host, port);
  return it->second;
}

RedisOnlineStore::NodePtr RedisOnlineStore::NodeForSlot(int slot) {
  std::shared_lock lock(topology_mutex_);
  if (!options_.cluster) return server_;
  if (slot < 0 || static_cast<size_t>(slot) >= slots_.size()) return nullptr;
  return slots_[slot];
}

std::vector<RedisOnlineStore::NodePtr> RedisOnlineStore::Masters() {
  std::shared_lock lock(topology_mutex_);
  if (!options_.cluster) return server_ ? std::vector<NodePtr>{server_} : std::vector<NodePtr>{};
  std::vector<NodePtr> masters;
  for (const auto& node : slots_) {
    if (node && std::find(masters.begin(), masters.end(), node) == masters.end()) {
      masters.push_back(node);
    }
  }
  return masters;
}

namespace {

/// A connection to `node`: an idle one from its pool, else a new one (unless
/// a connect failed less than the backoff ago: then the same error at once).
Result<std::unique_ptr<RedisConnection>> Acquire(RedisNode* node, const RedisOnlineStoreOptions& options,
                                                 SSL_CTX* tls, Deadline deadline, bool* reused) {
  {
    std::lock_guard lock(node->mutex);
    if (!node->idle.empty()) {
      auto connection = std::move(node->idle.back());
      node->idle.pop_back();
      *reused = true;
      return connection;
    }
    if (Clock::now() < node->backoff_until) {
      return Unavailable(ErrorMessageOf(node->backoff_error) + " (not retried for " +
                         std::to_string(options.reconnect_backoff_ms) + " ms)");
    }
  }
  *reused = false;
  redis_internal::RedisConnectOptions connect;
  connect.user = options.user;
  connect.password = options.password;
  connect.db = options.cluster ? 0 : options.db;
  connect.tls = tls;
  Deadline connect_deadline =
      std::min(deadline, Clock::now() + std::chrono::milliseconds(options.connect_timeout_ms));
  auto connection = RedisConnection::Connect(node->host, node->port, connect, connect_deadline);
  if (!connection.ok()) {
    std::lock_guard lock(node->mutex);
    node->backoff_until = Clock::now() + std::chrono::milliseconds(options.reconnect_backoff_ms);
    node->backoff_error = connection.status();
  }
  return connection;
}

/// Returns a healthy connection to its node's pool (or closes it).
void Release(RedisNode* node, std::unique_ptr<RedisConnection> connection, int pool_size) {
  if (!connection || connection->broken() || !connection->done()) return;
  std::lock_guard lock(node->mutex);
  if (static_cast<int>(node->idle.size()) < pool_size) node->idle.push_back(std::move(connection));
}

/// Closes the idle connections of a node (after one of them turned out
/// dead: the server restarted or failed over, and the others are too).
void DropIdle(RedisNode* node) {
  std::vector<std::unique_ptr<RedisConnection>> dropped;
  std::lock_guard lock(node->mutex);
  dropped.swap(node->idle);
}

/// Parses "MOVED 3999 127.0.0.1:6381" / "ASK ..." into slot, host, port;
/// an empty host means the host of the node that answered.
bool ParseRedirect(std::string_view text, const std::string& from_host, int* slot,
                   std::string* host, int* port) {
  size_t a = text.find(' ');
  if (a == std::string_view::npos) return false;
  size_t b = text.find(' ', a + 1);
  if (b == std::string_view::npos) return false;
  std::string_view slot_text = text.substr(a + 1, b - a - 1);
  std::string_view address = text.substr(b + 1);
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return false;
  auto [p1, e1] = std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), *slot);
  std::string_view port_text = address.substr(colon + 1);
  auto [p2, e2] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), *port);
  if (e1 != std::errc() || e2 != std::errc()) return false;
  if (*slot < 0 || *slot >= redis_internal::kClusterSlots) return false;
  std::string_view h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  *host = h.empty() ? from_host : std::string(h);
  return true;
}

}  // namespace

Status RedisOnlineStore::RefreshTopology(uint64_t seen_version, Deadline deadline, bool force) {
  std::unique_lock refresh(refresh_mutex_, std::defer_lock);
  // Wait for a reload in progress at most until the deadline.
  while (!refresh.try_lock()) {
    if (Clock::now() >= deadline) return Unavailable("redis cluster: timed out reloading the slot map");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (topology_version_.load() != seen_version) return Status::OK();  // reloaded meanwhile
  if (!force && Clock::now() - last_refresh_ < kMinTopologyRefresh) return Status::OK();

  // Ask the known masters first, then every other known node, then the seeds.
  std::vector<NodePtr> candidates = Masters();
  {
    std::shared_lock lock(topology_mutex_);
    for (const auto& [address, node] : nodes_) {
      if (std::find(candidates.begin(), candidates.end(), node) == candidates.end()) {
        candidates.push_back(node);
      }
    }
  }
  Status last = Unavailable("redis cluster: no node to load the slot map from");
  for (const auto& node : candidates) {
    if (Clock::now() >= deadline) break;
    bool reused = false;
    auto connection = Acquire(node.get(), options_, tls_, deadline, &reused);
    if (!connection.ok()) {
      last = connection.status();
      continue;
    }
    std::string request;
    AppendCommand(&request, {"CLUSTER", "SLOTS"});
    auto replies = redis_internal::Execute(connection->get(), std::move(request), 1, deadline);
    if (!replies.ok()) {
      last = replies.status();
      if (reused) DropIdle(node.get());
      continue;
    }
    const redisReply* reply = (*replies)[0].get();
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
      last = Unavailable("redis cluster: " + node->address + " answered CLUSTER SLOTS with " +
                         (reply->type == REDIS_REPLY_ERROR ? std::string(ReplyText(reply))
                                                           : std::string("no slots")));
      Release(node.get(), std::move(*connection), options_.pool_size);
      continue;
    }
    std::vector<NodePtr> slots(redis_internal::kClusterSlots);
    bool ok = true;
    for (size_t i = 0; i < reply->elements && ok; ++i) {
      const redisReply* range = reply->element[i];
      if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
          range->element[0]->type != REDIS_REPLY_INTEGER ||
          range->element[1]->type != REDIS_REPLY_INTEGER ||
          range->element[2]->type != REDIS_REPLY_ARRAY || range->element[2]->elements < 2 ||
          range->element[2]->element[0]->type != REDIS_REPLY_STRING ||
          range->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
        ok = false;
        break;
      }
      long long first = range->element[0]->integer;
      long long end = range->element[1]->integer;
      std::string host(ReplyText(range->element[2]->element[0]));
      int port = static_cast<int>(range->element[2]->element[1]->integer);
      if (host == "?") continue;  // the node's address is unknown: leave its slots unmapped
      if (host.empty()) host = node->host;
      NodePtr master = NodeAt(host, port);
      for (long long s = std::max(0LL, first);
           s <= std::min<long long>(end, redis_internal::kClusterSlots - 1); ++s) {
        slots[s] = master;
      }
    }
    Release(node.get(), std::move(*connection), options_.pool_size);
    if (!ok) {
      last = Internal("redis cluster: " + node->address + " sent a CLUSTER SLOTS reply of an unknown shape");
      continue;
    }
    {
      std::unique_lock lock(topology_mutex_);
      slots_ = std::move(slots);
    }
    last_refresh_ = Clock::now();
    topology_version_.fetch_add(1);
    return Status::OK();
  }
  return Unavailable("redis cluster: cannot load the slot map: " + ErrorMessageOf(last));
}

Status RedisOnlineStore::RunCommands(std::vector<PendingCommand>* commands, Deadline deadline) {
  static const std::string kAsking = [] {
    std::string s;
    AppendCommand(&s, {"ASKING"});
    return s;
  }();
  struct Group {
    NodePtr node;
    std::vector<size_t> commands;
    std::unique_ptr<RedisConnection> connection;
    bool reused = false;
    Status status;
  };
  std::vector<size_t> pending(commands->size());
  std::iota(pending.begin(), pending.end(), size_t{0});
  Status last_error;
  for (int attempt = 0; !pending.empty(); ++attempt) {
    if (attempt >= kMaxAttempts || Clock::now() >= deadline) {
      std::string why = attempt >= kMaxAttempts ? "gave up after " + std::to_string(attempt) + " attempts"
                                                : "the deadline passed";
      return Unavailable("redis: " + why +
                         (last_error.ok() ? std::string() : ": " + ErrorMessageOf(last_error)));
    }
    const uint64_t version = topology_version_.load();
    std::vector<Group> groups;
    std::unordered_map<RedisNode*, size_t> group_of;
    std::vector<size_t> next;
    bool refresh = false;
    bool unrouted = false;
    bool pause = false;
    for (size_t i : pending) {
      PendingCommand& command = (*commands)[i];
      NodePtr node = command.target ? command.target : NodeForSlot(command.slot);
      if (!node) {
        if (!options_.cluster) return Closed();  // the server was dropped by Close
        refresh = unrouted = true;
        last_error = Unavailable("redis cluster: no node serves slot " + std::to_string(command.slot));
        next.push_back(i);
        continue;
      }
      auto [it, inserted] = group_of.try_emplace(node.get(), groups.size());
      if (inserted) groups.push_back(Group{node, {}, nullptr, false, Status::OK()});
      groups[it->second].commands.push_back(i);
    }
    std::vector<RedisConnection*> live;
    std::vector<size_t> live_group;
    for (size_t g = 0; g < groups.size(); ++g) {
      Group& group = groups[g];
      auto connection = Acquire(group.node.get(), options_, tls_, deadline, &group.reused);
      if (!connection.ok()) {
        group.status = connection.status();
        continue;
      }
      group.connection = std::move(connection).ValueUnsafe();
      std::string request;
      size_t replies = 0;
      for (size_t i : group.commands) {
        const PendingCommand& command = (*commands)[i];
        if (command.asking) {
          request += kAsking;
          ++replies;
        }
        request += command.request;
        ++replies;
      }
      group.connection->Start(std::move(request), replies);
      live.push_back(group.connection.get());
      live_group.push_back(g);
    }
    std::vector<Status> statuses;
    redis_internal::RunPipelines(live, deadline, &statuses);
    for (size_t k = 0; k < live.size(); ++k) groups[live_group[k]].status = statuses[k];

    for (Group& group : groups) {
      if (!group.status.ok()) {
        last_error = group.status;
        // A pooled connection that failed most likely died with its server
        // (a restart, a failover): so did the node's other idle ones.
        if (group.reused) DropIdle(group.node.get());
        next.insert(next.end(), group.commands.begin(), group.commands.end());
        refresh = true;
        continue;
      }
      auto& replies = group.connection->replies();
      size_t r = 0;
      for (size_t i : group.commands) {
        PendingCommand& command = (*commands)[i];
        if (command.asking) ++r;  // ASKING's +OK
        RedisReplyPtr reply = std::move(replies[r++]);
        if (reply->type == REDIS_REPLY_ERROR && options_.cluster) {
          std::string_view text = ReplyText(reply.get());
          bool moved = StartsWith(text, "MOVED ");
          if (moved || StartsWith(text, "ASK ")) {
            int slot = 0, port = 0;
            std::string host;
            if (!ParseRedirect(text, group.node->host, &slot, &host, &port)) {
              return Internal("redis cluster: a redirect of an unknown shape: " + std::string(text));
            }
            NodePtr to = NodeAt(host, port);
            if (moved) {
              {
                std::unique_lock lock(topology_mutex_);
                if (static_cast<size_t>(slot) < slots_.size()) slots_[slot] = to;
              }
              command.target = command.slot >= 0 ? nullptr : to;
              command.asking = false;
            } else {
              command.target = to;
              command.asking = true;
            }
            last_error = Unavailable("redis cluster: still redirected: " + std::string(text));
            next.push_back(i);
            continue;
          }
          if (StartsWith(text, "CLUSTERDOWN") || StartsWith(text, "TRYAGAIN")) {
            last_error = Unavailable("redis cluster: " + std::string(text));
            if (command.slot >= 0) command.target = nullptr;
            command.asking = false;
            refresh = refresh || StartsWith(text, "CLUSTERDOWN");
            pause = true;
            next.push_back(i);
            continue;
          }
        }
        command.reply = std::move(reply);
      }
      Release(group.node.get(), std::move(group.connection), options_.pool_size);
    }
    pending = std::move(next);
    if (pending.empty()) break;
    if (options_.cluster && refresh) {
      Status reloaded = RefreshTopology(version, deadline, unrouted);
      if (!reloaded.ok()) last_error = reloaded;
    }
    if (pause) {
      // A slot in migration (TRYAGAIN) or a failover in progress
      // (CLUSTERDOWN): give the cluster a moment, within the deadline.
      auto wait = std::min<Clock::duration>(std::chrono::milliseconds(20), deadline - Clock::now());
      if (wait > Clock::duration::zero()) std::this_thread::sleep_for(wait);
    }
  }
  return Status::OK();
}

// ---------------------------------------------------------------------------
// The OnlineStore methods

Status RedisOnlineStore::CheckHealth() {
  std::shared_lock lock(close_mutex_);
  ARROW_RETURN_NOT_OK(CheckOpen());
  Deadline deadline = OperationDeadline();
  for (int round = 0; round < 2; ++round) {
    uint64_t version = topology_version_.load();
    std::vector<NodePtr> masters = Masters();
    Status status = masters.empty() ? Unavailable("redis cluster: no slot map") : Status::OK();
    if (status.ok()) {
      std::vector<PendingCommand> pings(masters.size());
      for (size_t i = 0; i < masters.size(); ++i) {
        AppendCommand(&pings[i].request, {"PING"});
        pings[i].target = masters[i];
      }
      status = RunCommands(&pings, deadline);
      for (size_t i = 0; status.ok() && i < pings.size(); ++i) {
        if (pings[i].reply->type == REDIS_REPLY_ERROR) {
          status = ErrorReply(ReplyText(pings[i].reply.get()), "PING " + masters[i]->address);
        }
      }
    }
    if (status.ok() || !options_.cluster || round == 1) {
      if (status.ok()) return status;
      return Unavailable("the Redis online store is not healthy: " + ErrorMessageOf(status));
    }
    // A master did not answer: a failover may have moved its slots.
    (void)RefreshTopology(version, deadline);
  }
  return Status::OK();
}

Result<WriteResult> RedisOnlineStore::Write(
    const std::string& feature_set, const std::vector<std::pair<EntityKey, OnlineRecord>>& records,
    const OnlineWriteOptions& options) {
  ARROW_RETURN_NOT_OK(CheckFeatureSetName(feature_set));
  WriteResult result;
  const size_t n = records.size();
  for (const auto& [key, record] : records) {
    if (key.empty()) return InvalidArgument("entity_key", "an entity key needs at least one part");
  }
  std::shared_lock lock(close_mutex_);
  ARROW_RETURN_NOT_OK(CheckOpen());
  if (n == 0) return result;

  std::vector<std::string> keys(n);
  for (size_t i = 0; i < n; ++i) keys[i] = RedisKey(feature_set, records[i].first);
  // One winner per key: the newest, the later in the call on a full tie.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
  std::vector<size_t> winners;
  winners.reserve(n);
  for (size_t i : order) {
    if (!winners.empty() && keys[winners.back()] == keys[i]) {
      if (NotOlder(records[i].second, records[winners.back()].second)) winners.back() = i;
    } else {
      winners.push_back(i);
    }
  }
  result.ignored = static_cast<int64_t>(n - winners.size());

  for (size_t start = 0; start < winners.size(); start += kRedisPipelineCommands) {
    const size_t count = std::min(kRedisPipelineCommands, winners.size() - start);
    std::vector<std::string> values(count);
    std::vector<std::string> expiries(count);
    std::vector<PendingCommand> commands(count);
    for (size_t j = 0; j < count; ++j) {
      size_t i = winners[start + j];
      const OnlineRecord& record = records[i].second;
      values[j].reserve(kHeaderBytes + 16 + record.values.size() * 16);
      AppendTimeBytes(record.event_time, &values[j]);
      AppendTimeBytes(record.created_time, &values[j]);
      // The Redis key is the associated data: a sealed value is bound to its key.
      ARROW_RETURN_NOT_OK(
          AppendOnlineRecord(record, options_.cipher.get(), keys[i], &values[j]));
      TimestampMicros expires = 0;
      if (options.ttl_micros > 0 &&
          !__builtin_add_overflow(record.event_time, options.ttl_micros, &expires)) {
        // Rounded up: Redis keeps a key through its expiry millisecond, and
        // Read serves a record at exactly event_time + ttl.
        int64_t ms = expires / 1000 + (expires % 1000 > 0 ? 1 : 0);
        expiries[j] = std::to_string(std::max<int64_t>(ms, 1));
      }
      AppendCommand(&commands[j].request,
                    {"EVALSHA", script_sha_, "1", keys[i], values[j], expiries[j]});
      if (options_.cluster) commands[j].slot = redis_internal::KeySlot(keys[i]);
    }
    ARROW_RETURN_NOT_OK(RunCommands(&commands, OperationDeadline()));
    // The script is not cached on a server that restarted or was just added
    // (or after SCRIPT FLUSH): send it whole (EVAL caches it for next time).
    std::vector<PendingCommand> retry;
    std::vector<size_t> retry_of;
    for (size_t j = 0; j < count; ++j) {
      const redisReply* reply = commands[j].reply.get();
      if (reply->type == REDIS_REPLY_ERROR && StartsWith(ReplyText(reply), "NOSCRIPT")) {
        size_t i = winners[start + j];
        PendingCommand command;
        AppendCommand(&command.request, {"EVAL", kWriteScript, "1", keys[i], values[j], expiries[j]});
        command.slot = commands[j].slot;
        retry.push_back(std::move(command));
        retry_of.push_back(j);
      }
    }
    if (!retry.empty()) {
      ARROW_RETURN_NOT_OK(RunCommands(&retry, OperationDeadline()));
      for (size_t k = 0; k < retry.size(); ++k) commands[retry_of[k]].reply = std::move(retry[k].reply);
    }
    for (size_t j = 0; j < count; ++j) {
      const redisReply* reply = commands[j].reply.get();
      if (reply->type == REDIS_REPLY_INTEGER) {
        if (reply->integer == 1) {
          ++result.applied;
        } else {
          ++result.ignored;
        }
      } else if (reply->type == REDIS_REPLY_ERROR) {
        return ErrorReply(ReplyText(reply), "writing feature set '" + feature_set + "'");
      } else {
        return Internal("redis: an unexpected reply to the write script (type " +
                        std::to_string(reply->type) + ")");
      }
    }
  }
  // After the records: a process that sees the new version reads them.
  if (result.applied > 0) ARROW_RETURN_NOT_OK(BumpWriteVersion(feature_set));
  return result;
}

std::string RedisOnlineStore::WriteVersionsKey() const { return options_.prefix + "write-versions"; }

Status RedisOnlineStore::BumpWriteVersion(const std::string& feature_set) {
  const std::string key = WriteVersionsKey();
  std::vector<PendingCommand> bump(1);
  AppendCommand(&bump[0].request, {"HINCRBY", key, feature_set, "1"});
  if (options_.cluster) bump[0].slot = redis_internal::KeySlot(key);
  ARROW_RETURN_NOT_OK(RunCommands(&bump, OperationDeadline()));
  if (bump[0].reply->type != REDIS_REPLY_INTEGER) {
    return bump[0].reply->type == REDIS_REPLY_ERROR
               ? ErrorReply(ReplyText(bump[0].reply.get()),
                            "counting a write of feature set '" + feature_set + "'")
               : Internal("redis: an unexpected reply to HINCRBY");
  }
  return Status::OK();
}

Result<std::optional<std::vector<int64_t>>> RedisOnlineStore::WriteVersions(
    const std::vector<std::string>& feature_sets) {
  for (const auto& name : feature_sets) ARROW_RETURN_NOT_OK(CheckFeatureSetName(name));
  std::shared_lock lock(close_mutex_);
  ARROW_RETURN_NOT_OK(CheckOpen());
  std::vector<int64_t> out;
  if (feature_sets.empty()) return std::optional<std::vector<int64_t>>(std::move(out));
  // One HMGET of every set: one key, one command, one round trip.
  const std::string key = WriteVersionsKey();
  std::vector<std::string_view> args = {"HMGET", key};
  args.insert(args.end(), feature_sets.begin(), feature_sets.end());
  std::vector<PendingCommand> get(1);
  AppendCommand(&get[0].request, std::span<const std::string_view>(args));
  if (options_.cluster) get[0].slot = redis_internal::KeySlot(key);
  ARROW_RETURN_NOT_OK(RunCommands(&get, OperationDeadline()));
  const redisReply* reply = get[0].reply.get();
  if (reply->type == REDIS_REPLY_ERROR) {
    return ErrorReply(ReplyText(reply), "reading the feature sets' write versions");
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != feature_sets.size()) {
    return Internal("redis: an HMGET reply of an unexpected shape");
  }
  out.reserve(feature_sets.size());
  for (size_t k = 0; k < feature_sets.size(); ++k) {
    const redisReply* e = reply->element[k];
    int64_t version = 0;
    if (e->type == REDIS_REPLY_STRING) {
      std::string_view text = ReplyText(e);
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), version);
      if (ec != std::errc() || end != text.data() + text.size()) {
        return Internal("redis: the write version of feature set '" + feature_sets[k] +
                        "' is not a number");
      }
    } else if (e->type != REDIS_REPLY_NIL) {
      return Internal("redis: an HMGET reply of an unexpected shape");
    }
    out.push_back(version);
  }
  return std::optional<std::vector<int64_t>>(std::move(out));
}

Status RedisOnlineStore::ReadStored(
    const std::string& feature_set, const std::vector<EntityKey>& keys,
    const std::function<Status(size_t, std::string_view, const std::string&)>& take) {
  ARROW_RETURN_NOT_OK(CheckFeatureSetName(feature_set));
  const size_t n = keys.size();
  for (const auto& key : keys) {
    if (key.empty()) return InvalidArgument("entity_key", "an entity key needs at least one part");
  }
  std::shared_lock lock(close_mutex_);
  ARROW_RETURN_NOT_OK(CheckOpen());
  if (n == 0) return Status::OK();

  std::vector<std::string> redis_keys(n);
  for (size_t i = 0; i < n; ++i) redis_keys[i] = RedisKey(feature_set, keys[i]);

  for (size_t start = 0; start < n; start += kRedisPipelineCommands) {
    const size_t count = std::min(kRedisPipelineCommands, n - start);
    // One MGET per command; in a cluster one per slot (MGET's keys must
    // share a slot), each with the positions of its keys.
    std::vector<PendingCommand> commands;
    std::vector<std::vector<size_t>> positions;
    if (!options_.cluster) {
      positions.emplace_back(count);
      std::iota(positions[0].begin(), positions[0].end(), start);
    } else {
      std::unordered_map<int, size_t> by_slot;
      std::vector<int> slots;
      for (size_t i = start; i < start + count; ++i) {
        int slot = redis_internal::KeySlot(redis_keys[i]);
        auto [it, inserted] = by_slot.try_emplace(slot, positions.size());
        if (inserted) {
          positions.emplace_back();
          slots.push_back(slot);
        }
        positions[it->second].push_back(i);
      }
      commands.resize(positions.size());
      for (size_t c = 0; c < positions.size(); ++c) commands[c].slot = slots[c];
    }
    commands.resize(positions.size());
    std::vector<std::string_view> args;
    for (size_t c = 0; c < positions.size(); ++c) {
      args.clear();
      args.push_back("MGET");
      for (size_t i : positions[c]) args.push_back(redis_keys[i]);
      AppendCommand(&commands[c].request, std::span<const std::string_view>(args));
    }
    ARROW_RETURN_NOT_OK(RunCommands(&commands, OperationDeadline()));
    for (size_t c = 0; c < commands.size(); ++c) {
      const redisReply* reply = commands[c].reply.get();
      if (reply->type == REDIS_REPLY_ERROR) {
        return ErrorReply(ReplyText(reply), "reading feature set '" + feature_set + "'");
      }
      if (reply->type != REDIS_REPLY_ARRAY || reply->elements != positions[c].size()) {
        return Internal("redis: an MGET reply of an unexpected shape");
      }
      for (size_t k = 0; k < reply->elements; ++k) {
        const redisReply* value = reply->element[k];
        if (value->type == REDIS_REPLY_NIL) continue;
        if (value->type != REDIS_REPLY_STRING || value->len < kHeaderBytes) {
          return Internal("feature set '" + feature_set +
                          "': a stored value is not an online record (too short or not a string)");
        }
        const size_t i = positions[c][k];
        ARROW_RETURN_NOT_OK(take(
            i, std::string_view(value->str + kHeaderBytes, value->len - kHeaderBytes),
            redis_keys[i]));
      }
    }
  }
  return Status::OK();
}

namespace {

/// Records older than *oldest are expired; none (nullopt) when the ttl is
/// off or now - ttl underflows.
std::optional<TimestampMicros> OldestLive(int64_t ttl_micros, TimestampMicros now) {
  TimestampMicros oldest = 0;
  if (ttl_micros > 0 && !__builtin_sub_overflow(now, ttl_micros, &oldest)) return oldest;
  return std::nullopt;
}

}  // namespace

Result<std::vector<std::optional<OnlineRecord>>> RedisOnlineStore::Read(
    const std::string& feature_set, const std::vector<EntityKey>& keys, int64_t ttl_micros,
    TimestampMicros now) {
  std::vector<std::optional<OnlineRecord>> out(keys.size());
  const auto oldest = OldestLive(ttl_micros, now);
  ARROW_RETURN_NOT_OK(ReadStored(
      feature_set, keys,
      [&](size_t i, std::string_view bytes, const std::string& redis_key) -> Status {
        auto record = DecodeOnlineRecord(bytes, options_.cipher.get(), redis_key);
        if (!record.ok()) {
          return Internal("feature set '" + feature_set + "': " + ErrorMessageOf(record.status()));
        }
        if (!oldest || record->event_time >= *oldest) out[i] = std::move(record).ValueUnsafe();
        return Status::OK();
      }));
  return out;
}

Result<std::vector<std::shared_ptr<const SharedRecord>>> RedisOnlineStore::ReadShared(
    const std::string& feature_set, const std::vector<EntityKey>& keys, int64_t ttl_micros,
    TimestampMicros now) {
  std::vector<std::shared_ptr<const SharedRecord>> out(keys.size());
  const auto oldest = OldestLive(ttl_micros, now);
  ARROW_RETURN_NOT_OK(ReadStored(
      feature_set, keys,
      [&](size_t i, std::string_view bytes, const std::string& redis_key) -> Status {
        auto record = SharedRecord::Decode(bytes, options_.cipher.get(), redis_key);
        if (!record.ok()) {
          return Internal("feature set '" + feature_set + "': " + ErrorMessageOf(record.status()));
        }
        if (!oldest || (*record)->event_time() >= *oldest) out[i] = std::move(record).ValueUnsafe();
        return Status::OK();
      }));
  return out;
}

Status RedisOnlineStore::DeleteFeatureSet(const std::string& feature_set) {
  ARROW_RETURN_NOT_OK(CheckFeatureSetName(feature_set));
  std::shared_lock lock(close_mutex_);
  ARROW_RETURN_NOT_OK(CheckOpen());
  std::string prefix = options_.prefix + "fs:" + feature_set;
  prefix.push_back('\0');
  const std::string pattern = GlobEscape(prefix) + "*";
  const std::string count = std::to_string(kScanCount);

  std::vector<NodePtr> masters = Masters();
  if (options_.cluster) {
    // The current masters: a stale map would skip the keys of a moved slot.
    ARROW_RETURN_NOT_OK(RefreshTopology(topology_version_.load(), OperationDeadline()));
    masters = Masters();
  }
  for (const NodePtr& node : masters) {
    std::string cursor = "0";
    do {
      std::vector<PendingCommand> scan(1);
      AppendCommand(&scan[0].request, {"SCAN", cursor, "MATCH", pattern, "COUNT", count});
      scan[0].target = node;
      ARROW_RETURN_NOT_OK(RunCommands(&scan, OperationDeadline()));
      const redisReply* reply = scan[0].reply.get();
      if (reply->type == REDIS_REPLY_ERROR) {
        return ErrorReply(ReplyText(reply), "SCAN on " + node->address);
      }
      if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
          reply->element[0]->type != REDIS_REPLY_STRING ||
          reply->element[1]->type != REDIS_REPLY_ARRAY) {
        return Internal("redis: a SCAN reply of an unexpected shape");
      }
      cursor = std::string(ReplyText(reply->element[0]));
      const redisReply* found = reply->element[1];
      if (found->elements == 0) continue;
      std::vector<PendingCommand> unlink;
      if (!options_.cluster) {
        std::vector<std::string_view> args = {"UNLINK"};
        for (size_t k = 0; k < found->elements; ++k) args.push_back(ReplyText(found->element[k]));
        unlink.resize(1);
        AppendCommand(&unlink[0].request, std::span<const std::string_view>(args));
      } else {
        // One key per UNLINK: keys of several slots cannot share a command.
        unlink.resize(found->elements);
        for (size_t k = 0; k < found->elements; ++k) {
          std::string_view key = ReplyText(found->element[k]);
          AppendCommand(&unlink[k].request, {"UNLINK", key});
          unlink[k].slot = redis_internal::KeySlot(key);
        }
      }
      ARROW_RETURN_NOT_OK(RunCommands(&unlink, OperationDeadline()));
      for (const auto& command : unlink) {
        if (command.reply->type == REDIS_REPLY_ERROR) {
          return ErrorReply(ReplyText(command.reply.get()), "deleting feature set '" + feature_set + "'");
        }
      }
    } while (cursor != "0");
  }
  return BumpWriteVersion(feature_set);
}

Status RedisOnlineStore::Sync() {
  std::shared_lock lock(close_mutex_);
  return CheckOpen();
}

}  // namespace fstore
