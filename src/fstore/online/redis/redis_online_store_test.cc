// The Redis online store: the conformance suite against the shared test
// servers (scripts/test-redis.sh; skipped when their URLs are not set), and
// what it cannot say: URIs, the key slot function, the key layout and
// expiry, cluster routing and redirects, and failures, against Redis servers
// this test starts and kills itself (skipped without redis-server).

#include "fstore/online/redis/redis_online_store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include <openssl/ssl.h>

#include "fstore/core/ids.h"
#include "fstore/online/online_record_codec.h"
#include "fstore/online/online_store_conformance.h"
#include "fstore/online/redis/internal/redis_connection.h"
#include "fstore/online/redis/internal/redis_key_slot.h"
#include "fstore/testing/gtest_util.h"

extern char** environ;

namespace fstore {
namespace {

namespace fs = std::filesystem;
using redis_internal::Clock;
using redis_internal::RedisConnection;
using redis_internal::RedisReplyPtr;
using redis_internal::ReplyText;

constexpr TimestampMicros kT0 = 1'700'000'000'000'000;

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

std::string WithOption(const std::string& uri, const std::string& option) {
  return uri + (uri.find('?') == std::string::npos ? "?" : "&") + option;
}

/// A TLS context that verifies nothing, for the tests' admin connections.
SSL_CTX* InsecureTls() {
  static SSL_CTX* ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
    return c;
  }();
  return ctx;
}

/// One command on a new connection (admin commands of the tests).
Result<RedisReplyPtr> Command(const std::string& host, int port,
                              std::initializer_list<std::string_view> args, bool tls = false) {
  redis_internal::RedisConnectOptions options;
  if (tls) options.tls = InsecureTls();
  ARROW_ASSIGN_OR_RAISE(auto connection, RedisConnection::Connect(host, port, options,
                                                                  Clock::now() + std::chrono::seconds(5)));
  std::string request;
  redis_internal::AppendCommand(&request, args);
  ARROW_ASSIGN_OR_RAISE(auto replies, redis_internal::Execute(connection.get(), std::move(request), 1,
                                                              Clock::now() + std::chrono::seconds(30)));
  return std::move(replies[0]);
}

std::string CommandText(const std::string& host, int port, std::initializer_list<std::string_view> args) {
  auto reply = Command(host, port, args);
  if (!reply.ok()) return "<" + reply.status().ToString() + ">";
  return std::string(ReplyText(reply->get()));
}

/// Removes every key starting with `prefix` from each server of `uri`
/// (every seed of a cluster: the test clusters' seeds are all its masters).
void DropPrefix(const std::string& uri, const std::string& prefix) {
  auto options = ParseRedisUri(uri);
  if (!options.ok()) return;
  redis_internal::RedisConnectOptions connect;
  if (options->tls) connect.tls = InsecureTls();
  connect.db = options->db;
  for (const auto& endpoint : options->endpoints) {
    auto connection = RedisConnection::Connect(endpoint.host, endpoint.port, connect,
                                               Clock::now() + std::chrono::seconds(5));
    if (!connection.ok()) continue;
    std::string cursor = "0";
    do {
      std::string request;
      redis_internal::AppendCommand(&request, {"SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000"});
      auto replies = redis_internal::Execute(connection->get(), std::move(request), 1,
                                             Clock::now() + std::chrono::seconds(30));
      if (!replies.ok() || (*replies)[0]->type != REDIS_REPLY_ARRAY) break;
      const redisReply* reply = (*replies)[0].get();
      cursor = std::string(ReplyText(reply->element[0]));
      const redisReply* keys = reply->element[1];
      request.clear();
      for (size_t i = 0; i < keys->elements; ++i) {
        redis_internal::AppendCommand(&request, {"UNLINK", ReplyText(keys->element[i])});
      }
      if (keys->elements > 0 &&
          !redis_internal::Execute(connection->get(), std::move(request), keys->elements,
                                   Clock::now() + std::chrono::seconds(30))
               .ok()) {
        break;
      }
    } while (cursor != "0");
  }
}

/// A backend on the server(s) of the URI in `env`: each test gets a key
/// prefix of its own, so that tests can share the servers (and run at once).
OnlineStoreBackend RedisBackend(const std::string& name, const char* env,
                                std::shared_ptr<const Cipher> cipher = nullptr) {
  OnlineStoreBackend backend;
  backend.name = name;
  backend.persistent = true;  // Redis keeps the data across a close and a new open
  backend.skip_reason = [env]() -> std::string {
    if (!Env(env).empty()) return "";
    return std::string(env) + " is not set: start the test servers with "
                               "eval \"$(scripts/test-redis.sh start)\"";
  };
  backend.new_store = [env, cipher]() -> Result<OnlineStoreInstance> {
    std::string uri = Env(env);
    if (uri.empty()) {
      return Status::Invalid(std::string(env) + " is not set: run eval \"$(scripts/test-redis.sh start)\"");
    }
    std::string prefix = "test-" + NewUuid() + ":";
    OnlineStoreInstance instance;
    instance.open = [uri, prefix, cipher]() -> Result<std::unique_ptr<OnlineStore>> {
      return OnlineStoreFromUri(WithOption(uri, "prefix=" + prefix), cipher);
    };
    instance.drop = [uri, prefix] { DropPrefix(uri, prefix); };
    return instance;
  };
  return backend;
}

std::shared_ptr<const Cipher> TestCipher(char digit = '7') {
  return *Cipher::FromHex(std::string(64, digit));
}

// Always instantiated (ctest lists the tests when the binary is built, maybe
// without the servers' URLs); each test skips itself when its URL is unset.
INSTANTIATE_TEST_SUITE_P(Redis, OnlineStoreConformanceTest,
                         ::testing::Values(RedisBackend("Redis", "FSTORE_TEST_REDIS_URL"),
                                           RedisBackend("RedisCluster", "FSTORE_TEST_REDIS_CLUSTER_URL"),
                                           RedisBackend("Rediss", "FSTORE_TEST_REDISS_URL")),
                         OnlineStoreBackendName);

// Encryption at rest: the whole suite again with sealed values (the Lua
// newer-wins script reads only the clear header).
INSTANTIATE_TEST_SUITE_P(RedisEncrypted, OnlineStoreConformanceTest,
                         ::testing::Values(RedisBackend("RedisEncrypted", "FSTORE_TEST_REDIS_URL",
                                                        TestCipher()),
                                           RedisBackend("RedisClusterEncrypted",
                                                        "FSTORE_TEST_REDIS_CLUSTER_URL", TestCipher())),
                         OnlineStoreBackendName);

// With a cipher the stored value holds no feature value in clear; reading it
// without the key, with another key, or reading a clear value with a key
// fails with a message saying which, never garbage.
TEST(RedisEncryptionTest, ValuesAreSealedAndWrongOrMissingKeysFailClearly) {
  std::string uri = Env("FSTORE_TEST_REDIS_URL");
  if (uri.empty()) GTEST_SKIP() << "FSTORE_TEST_REDIS_URL is not set";
  std::string prefix = "test-" + NewUuid() + ":";
  std::string with_prefix = WithOption(uri, "prefix=" + prefix);
  OnlineRecord record{10, 20, {{"secret", std::string("PLAINTEXT-MARKER-REDIS")}}};
  EntityKey key{std::string("u1")};
  {
    ASSERT_OK_AND_ASSIGN(auto store, OnlineStoreFromUri(with_prefix, TestCipher()));
    ASSERT_OK(store->Write("fs", {{key, record}}));
    ASSERT_OK_AND_ASSIGN(auto read, store->Read("fs", {key}, 0, 0));
    ASSERT_TRUE(read[0].has_value());
    EXPECT_EQ(*read[0], record);
    // Newer-wins still works on the clear header.
    OnlineRecord older{5, 20, {{"secret", std::string("older")}}};
    ASSERT_OK_AND_ASSIGN(auto result, store->Write("fs", {{key, older}}));
    EXPECT_EQ(result, (WriteResult{0, 1}));
  }
  {
    // The raw value: the header and times, then sealed bytes; no marker.
    ASSERT_OK_AND_ASSIGN(auto options, ParseRedisUri(uri));
    std::string redis_key = prefix + "fs:fs" + std::string(1, '\0') + EncodeEntityKey(key);
    ASSERT_OK_AND_ASSIGN(auto reply, Command(options.endpoints[0].host, options.endpoints[0].port,
                                             {"GET", redis_key}));
    ASSERT_EQ(reply->type, REDIS_REPLY_STRING);
    std::string raw(reply->str, reply->len);
    EXPECT_GT(raw.size(), 16 + Cipher::kOverhead);
    EXPECT_EQ(raw.find("PLAINTEXT-MARKER"), std::string::npos);
    EXPECT_EQ(raw.find("secret"), std::string::npos);  // feature names are sealed too
  }
  {
    ASSERT_OK_AND_ASSIGN(auto plain, OnlineStoreFromUri(with_prefix));
    auto read = plain->Read("fs", {key}, 0, 0);
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(ErrorCodeOf(read.status()), ErrorCode::kInternal);
    EXPECT_NE(read.status().message().find("no encryption key is configured"), std::string::npos)
        << read.status().ToString();
    EXPECT_NE(read.status().message().find("feature set 'fs'"), std::string::npos);
  }
  {
    ASSERT_OK_AND_ASSIGN(auto other, OnlineStoreFromUri(with_prefix, TestCipher('8')));
    auto read = other->Read("fs", {key}, 0, 0);
    ASSERT_FALSE(read.ok());
    EXPECT_NE(read.status().message().find("sealed with a different encryption key"), std::string::npos)
        << read.status().ToString();
  }
  {
    ASSERT_OK_AND_ASSIGN(auto plain, OnlineStoreFromUri(with_prefix));
    ASSERT_OK(plain->Write("fs", {{{std::string("u2")}, record}}));
    ASSERT_OK_AND_ASSIGN(auto keyed, OnlineStoreFromUri(with_prefix, TestCipher()));
    auto read = keyed->Read("fs", {{std::string("u2")}}, 0, 0);
    ASSERT_FALSE(read.ok());
    EXPECT_NE(read.status().message().find("written without encryption"), std::string::npos)
        << read.status().ToString();
  }
  DropPrefix(uri, prefix);
}

// ---------------------------------------------------------------------------
// URIs and slots

TEST(RedisUriTest, Standalone) {
  ASSERT_OK_AND_ASSIGN(auto o, ParseRedisUri("redis://127.0.0.1:6380/2"));
  EXPECT_FALSE(o.cluster);
  EXPECT_FALSE(o.tls);
  ASSERT_EQ(o.endpoints.size(), 1u);
  EXPECT_EQ(o.endpoints[0], (RedisEndpoint{"127.0.0.1", 6380}));
  EXPECT_EQ(o.db, 2);
  EXPECT_EQ(o.password, "");
  EXPECT_EQ(o.timeout_ms, 500);
  EXPECT_EQ(o.connect_timeout_ms, 250);

  ASSERT_OK_AND_ASSIGN(o, ParseRedisUri("redis://:s%40cret@cache"));
  EXPECT_EQ(o.endpoints[0], (RedisEndpoint{"cache", 6379}));
  EXPECT_EQ(o.user, "");
  EXPECT_EQ(o.password, "s@cret");
  EXPECT_EQ(o.db, 0);

  ASSERT_OK_AND_ASSIGN(o, ParseRedisUri("rediss://alice:p@ss:w@[::1]:7000/0?timeout_ms=200&"
                                        "connect_timeout_ms=50&pool_size=2&prefix=a%3Ab&"
                                        "tls_verify=0&reconnect_backoff_ms=0"));
  EXPECT_TRUE(o.tls);
  EXPECT_EQ(o.user, "alice");
  EXPECT_EQ(o.password, "p@ss:w");
  EXPECT_EQ(o.endpoints[0], (RedisEndpoint{"::1", 7000}));
  EXPECT_EQ(o.timeout_ms, 200);
  EXPECT_EQ(o.connect_timeout_ms, 50);
  EXPECT_EQ(o.pool_size, 2);
  EXPECT_EQ(o.prefix, "a:b");
  EXPECT_FALSE(o.tls_verify);
  EXPECT_EQ(o.reconnect_backoff_ms, 0);
}

TEST(RedisUriTest, Cluster) {
  ASSERT_OK_AND_ASSIGN(auto o, ParseRedisUri("redis+cluster://:pw@h1:7000,h2:7001,h3"));
  EXPECT_TRUE(o.cluster);
  EXPECT_FALSE(o.tls);
  EXPECT_EQ(o.password, "pw");
  ASSERT_EQ(o.endpoints.size(), 3u);
  EXPECT_EQ(o.endpoints[1], (RedisEndpoint{"h2", 7001}));
  EXPECT_EQ(o.endpoints[2], (RedisEndpoint{"h3", 6379}));
  ASSERT_OK_AND_ASSIGN(o, ParseRedisUri("rediss+cluster://h1:7000"));
  EXPECT_TRUE(o.cluster);
  EXPECT_TRUE(o.tls);
}

TEST(RedisUriTest, Errors) {
  for (const char* uri :
       {"redis://", "redis://h:0", "redis://h:99999", "redis://h:x", "redis://h/x", "redis://h/-1",
        "redis://h1,h2", "redis+cluster://h1,", "redis+cluster://h/3", "redis://h?timeout_ms=0",
        "redis://h?unknown=1", "redis://h?tls_ca_file=/x", "redis://:%zz@h", "memcached://h",
        "redis://[::1:7000"}) {
    auto parsed = ParseRedisUri(uri);
    ASSERT_FALSE(parsed.ok()) << uri;
    EXPECT_EQ(ErrorCodeOf(parsed.status()), ErrorCode::kInvalidArgument) << uri;
  }
}

TEST(RedisKeySlotTest, MatchesTheClusterSpecification) {
  EXPECT_EQ(redis_internal::Crc16("123456789"), 0x31C3);  // the spec's check value
  EXPECT_EQ(redis_internal::KeySlot("foo"), 12182);
  EXPECT_EQ(redis_internal::KeySlot("bar"), 5061);
  EXPECT_EQ(redis_internal::KeySlot("{user1000}.following"), redis_internal::KeySlot("user1000"));
  EXPECT_EQ(redis_internal::KeySlot("{user1000}.followers"), redis_internal::KeySlot("user1000"));
  EXPECT_EQ(redis_internal::KeySlot("foo{}{bar}"), redis_internal::Crc16("foo{}{bar}") % 16384);
  EXPECT_EQ(redis_internal::KeySlot("foo{{bar}}zap"), redis_internal::KeySlot("{bar"));
  EXPECT_EQ(redis_internal::KeySlot("foo{bar}{zap}"), redis_internal::KeySlot("bar"));
  EXPECT_EQ(redis_internal::KeySlot(std::string("a\0b", 3)), redis_internal::Crc16(std::string("a\0b", 3)) % 16384);
}

// ---------------------------------------------------------------------------
// Servers of the test's own

/// A redis-server this test starts on a free port, and stops.
class RedisServerProcess {
 public:
  static std::string Binary() {
    std::string path = Env("REDIS_SERVER");
    return path.empty() ? "/usr/bin/redis-server" : path;
  }
  static bool Available() { return ::access(Binary().c_str(), X_OK) == 0; }

  /// A TCP port nothing listens on now.
  static int FreePort() {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(s);
    return ntohs(addr.sin_port);
  }

  RedisServerProcess() : dir_(fs::temp_directory_path() / ("fstore-redis-test-" + NewUuid())) {
    fs::create_directories(dir_);
  }
  ~RedisServerProcess() {
    Kill();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  /// Starts the server (on `port`, 0: a free one) and waits until it answers.
  Status Start(int port = 0, std::vector<std::string> extra = {}) {
    if (port == 0) port = port_ != 0 ? port_ : FreePort();
    port_ = port;
    if (!extra.empty()) extra_ = std::move(extra);
    std::vector<std::string> args = {Binary(),    "--bind",      "127.0.0.1",       "--port",
                                     std::to_string(port_), "--dir", dir_.string(), "--save",
                                     "",          "--appendonly", "no",             "--logfile",
                                     (dir_ / "server.log").string()};
    args.insert(args.end(), extra_.begin(), extra_.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
      return Status::IOError("cannot start " + Binary());
    }
    for (int i = 0; i < 200; ++i) {
      if (CommandText("127.0.0.1", port_, {"PING"}) == "PONG") return Status::OK();
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return Status::IOError("redis-server on port " + std::to_string(port_) + " did not answer");
  }
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = 0;
  }
  void Signal(int sig) { ::kill(pid_, sig); }
  int port() const { return port_; }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
  pid_t pid_ = 0;
  int port_ = 0;
  std::vector<std::string> extra_;
};

/// A Redis Cluster of three masters (no replicas) the test owns.
class RedisTestCluster {
 public:
  Status Start() {
    for (int i = 0; i < 3; ++i) {
      nodes_.push_back(std::make_unique<RedisServerProcess>());
      auto& node = *nodes_.back();
      // An explicit bus port: port + 10000, the default, may be past 65535.
      bus_ports_.push_back(RedisServerProcess::FreePort());
      ARROW_RETURN_NOT_OK(node.Start(0, {"--cluster-enabled", "yes", "--cluster-config-file",
                                         (node.dir() / "nodes.conf").string(), "--cluster-port",
                                         std::to_string(bus_ports_.back()),
                                         "--cluster-node-timeout", "2000"}));
      ids_.push_back(CommandText("127.0.0.1", node.port(), {"CLUSTER", "MYID"}));
    }
    const int ranges[3][2] = {{0, 5460}, {5461, 10922}, {10923, 16383}};
    for (int i = 0; i < 3; ++i) {
      std::string reply = CommandText("127.0.0.1", port(i),
                                      {"CLUSTER", "ADDSLOTSRANGE", std::to_string(ranges[i][0]),
                                       std::to_string(ranges[i][1])});
      if (reply != "OK") return Status::IOError("ADDSLOTSRANGE: " + reply);
    }
    for (int i = 1; i < 3; ++i) {
      std::string reply = CommandText("127.0.0.1", port(0), {"CLUSTER", "MEET", "127.0.0.1",
                                                              std::to_string(port(i)),
                                                              std::to_string(bus_ports_[i])});
      if (reply != "OK") return Status::IOError("MEET: " + reply);
    }
    // Wait until every node sees the whole cluster.
    for (int attempt = 0; attempt < 400; ++attempt) {
      bool ok = true;
      for (int i = 0; i < 3 && ok; ++i) {
        auto info = Command("127.0.0.1", port(i), {"CLUSTER", "INFO"});
        ok = info.ok() && ReplyText(info->get()).find("cluster_state:ok") != std::string_view::npos;
        auto slots = Command("127.0.0.1", port(i), {"CLUSTER", "SLOTS"});
        ok = ok && slots.ok() && (*slots)->type == REDIS_REPLY_ARRAY && (*slots)->elements == 3;
      }
      if (ok) return Status::OK();
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return Status::IOError("the test cluster did not come up");
  }

  /// Adds a replica of master `master` as node 3 and waits until it is in sync.
  Status AddReplica(int master) {
    nodes_.push_back(std::make_unique<RedisServerProcess>());
    auto& node = *nodes_.back();
    bus_ports_.push_back(RedisServerProcess::FreePort());
    ARROW_RETURN_NOT_OK(node.Start(0, {"--cluster-enabled", "yes", "--cluster-config-file",
                                       (node.dir() / "nodes.conf").string(), "--cluster-port",
                                       std::to_string(bus_ports_.back()), "--cluster-node-timeout",
                                       "2000"}));
    ids_.push_back(CommandText("127.0.0.1", node.port(), {"CLUSTER", "MYID"}));
    std::string reply = CommandText("127.0.0.1", node.port(), {"CLUSTER", "MEET", "127.0.0.1",
                                                                std::to_string(port(master)),
                                                                std::to_string(bus_ports_[master])});
    if (reply != "OK") return Status::IOError("MEET: " + reply);
    for (int attempt = 0; attempt < 400; ++attempt) {
      reply = CommandText("127.0.0.1", node.port(), {"CLUSTER", "REPLICATE", id(master)});
      if (reply == "OK") break;  // once the new node knows the master
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    if (reply != "OK") return Status::IOError("REPLICATE: " + reply);
    for (int attempt = 0; attempt < 400; ++attempt) {
      if (CommandText("127.0.0.1", node.port(), {"INFO", "replication"}).find("master_link_status:up") !=
          std::string::npos) {
        return Status::OK();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return Status::IOError("the replica did not sync");
  }
  void Kill(int i) { nodes_[i]->Kill(); }

  int port(int i) const { return nodes_[i]->port(); }
  const std::string& id(int i) const { return ids_[i]; }
  /// The index of the node owning `slot` at the start.
  static int OwnerAtStart(int slot) { return slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2; }
  std::string Uri(const std::string& options = "") const {
    std::string uri = "redis+cluster://127.0.0.1:" + std::to_string(port(0)) + ",127.0.0.1:" +
                      std::to_string(port(1));
    return options.empty() ? uri : uri + "?" + options;
  }
  int64_t Keys(int i) const {
    auto reply = Command("127.0.0.1", port(i), {"DBSIZE"});
    return reply.ok() ? (*reply)->integer : -1;
  }
  /// How many errors of `kind` ("MOVED", "ASK") node i has answered with.
  int64_t ErrorCount(int i, const std::string& kind) const {
    std::string info = CommandText("127.0.0.1", port(i), {"INFO", "errorstats"});
    std::string needle = "errorstat_" + kind + ":count=";
    size_t at = info.find(needle);
    return at == std::string::npos ? 0 : std::stoll(info.substr(at + needle.size()));
  }

 private:
  std::vector<std::unique_ptr<RedisServerProcess>> nodes_;
  std::vector<std::string> ids_;
  std::vector<int> bus_ports_;
};

OnlineRecord Rec(TimestampMicros event, std::vector<std::pair<std::string, FeatureValue>> values) {
  OnlineRecord r;
  r.event_time = event;
  r.created_time = 0;
  r.values = std::move(values);
  return r;
}

#define SKIP_WITHOUT_REDIS_SERVER()                                               \
  if (!RedisServerProcess::Available()) GTEST_SKIP() << RedisServerProcess::Binary() \
                                                     << " is not installed"

TEST(RedisOnlineStoreTest, KeyLayoutHeaderAndExpiry) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisServerProcess server;
  ASSERT_OK(server.Start());
  const int port = server.port();
  ASSERT_OK_AND_ASSIGN(auto store,
                       RedisOnlineStore::Open("redis://127.0.0.1:" + std::to_string(port) + "/3?prefix=p:"));
  EntityKey key{std::string("u1"), int64_t{2}};
  OnlineRecord record{kT0, kT0 + 1, {{"x", int64_t{1}}}};
  ASSERT_OK(store->Write("fs", {{key, record}}));
  std::string redis_key = std::string("p:fs:fs\0", 8) + EncodeEntityKey(key);
  EXPECT_EQ(store->RedisKey("fs", key), redis_key);
  // Database 3 holds it; the value is the 16-byte header, then the codec's record.
  redis_internal::RedisConnectOptions db3;
  db3.db = 3;
  ASSERT_OK_AND_ASSIGN(auto connection, RedisConnection::Connect("127.0.0.1", port, db3,
                                                                 Clock::now() + std::chrono::seconds(5)));
  std::string request;
  redis_internal::AppendCommand(&request, {"GET", redis_key});
  redis_internal::AppendCommand(&request, {"PTTL", redis_key});
  ASSERT_OK_AND_ASSIGN(auto replies, redis_internal::Execute(connection.get(), request, 2,
                                                             Clock::now() + std::chrono::seconds(5)));
  std::string value(ReplyText(replies[0].get()));
  ASSERT_EQ(value.size(), 16 + EncodeOnlineRecord(record).size());
  EXPECT_EQ(value.substr(16), EncodeOnlineRecord(record));
  EXPECT_EQ(static_cast<uint8_t>(value[0]), 0x80);  // the sign bit flipped: positive times
  EXPECT_EQ(replies[1]->integer, -1);                // no ttl: no expiry

  // A ttl hint: the key expires at event_time + ttl.
  auto now = std::chrono::duration_cast<std::chrono::microseconds>(
                 std::chrono::system_clock::now().time_since_epoch()).count();
  const int64_t hour = 3600 * kMicrosPerSecond;
  ASSERT_OK_AND_ASSIGN(auto written,
                       store->Write("fs", {{key, OnlineRecord{now, 0, {}}}}, OnlineWriteOptions{hour}));
  EXPECT_EQ(written, (WriteResult{1, 0}));
  request.clear();
  redis_internal::AppendCommand(&request, {"PTTL", redis_key});
  ASSERT_OK_AND_ASSIGN(replies, redis_internal::Execute(connection.get(), request, 1,
                                                        Clock::now() + std::chrono::seconds(5)));
  EXPECT_GT(replies[0]->integer, 0);
  EXPECT_LE(replies[0]->integer, 3600 * 1000 + 1);
  // Already past its expiry when written: gone at once.
  EntityKey old_key{std::string("old")};
  ASSERT_OK_AND_ASSIGN(written, store->Write("fs", {{old_key, OnlineRecord{now - 2 * hour, 0, {}}}},
                                             OnlineWriteOptions{hour}));
  EXPECT_EQ(written, (WriteResult{1, 0}));
  ASSERT_OK_AND_ASSIGN(auto read, store->Read("fs", {old_key, key}, 0, now));
  EXPECT_FALSE(read[0].has_value());
  EXPECT_TRUE(read[1].has_value());
  ASSERT_OK(store->Close());
}

TEST(RedisOnlineStoreTest, CorruptStoredValueIsAnErrorOnReadAndReplacedByAWrite) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisServerProcess server;
  ASSERT_OK(server.Start());
  ASSERT_OK_AND_ASSIGN(auto store, RedisOnlineStore::Open("redis://127.0.0.1:" + std::to_string(server.port())));
  EntityKey key{std::string("u")};
  for (std::string garbage : {std::string("short"), std::string(16, '\x7f') + "\x01garbage"}) {
    ASSERT_EQ(CommandText("127.0.0.1", server.port(), {"SET", store->RedisKey("fs", key), garbage}), "OK");
    auto read = store->Read("fs", {key}, 0, 0);
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(ErrorCodeOf(read.status()), ErrorCode::kInternal) << read.status().ToString();
  }
  // A header that is not lower than the new record's wins even over garbage;
  // a short value is replaced.
  ASSERT_EQ(CommandText("127.0.0.1", server.port(), {"SET", store->RedisKey("fs", key), "short"}), "OK");
  OnlineRecord record{1, 1, {{"x", true}}};
  ASSERT_OK_AND_ASSIGN(auto result, store->Write("fs", {{key, record}}));
  EXPECT_EQ(result, (WriteResult{1, 0}));
  ASSERT_OK_AND_ASSIGN(auto again, store->Read("fs", {key}, 0, 0));
  ASSERT_TRUE(again[0].has_value());
  EXPECT_EQ(*again[0], record);
}

TEST(RedisOnlineStoreTest, ScriptFlushedOnTheServerFallsBackToEval) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisServerProcess server;
  ASSERT_OK(server.Start());
  ASSERT_OK_AND_ASSIGN(auto store, RedisOnlineStore::Open("redis://127.0.0.1:" + std::to_string(server.port())));
  ASSERT_OK(store->Write("fs", {{{int64_t{1}}, Rec(10, {})}}));
  ASSERT_EQ(CommandText("127.0.0.1", server.port(), {"SCRIPT", "FLUSH"}), "OK");
  ASSERT_OK_AND_ASSIGN(auto result, store->Write("fs", {{{int64_t{1}}, Rec(9, {})}, {{int64_t{2}}, Rec(9, {})}}));
  EXPECT_EQ(result, (WriteResult{1, 1}));
}

TEST(RedisOnlineStoreTest, UnavailableWhileRedisIsDownAndBackAfterARestart) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisServerProcess server;
  ASSERT_OK(server.Start());
  ASSERT_OK_AND_ASSIGN(auto store,
                       OnlineStoreFromUri("redis://127.0.0.1:" + std::to_string(server.port()) +
                                          "?timeout_ms=300&connect_timeout_ms=200"));
  EntityKey key{std::string("u")};
  ASSERT_OK(store->Write("fs", {{key, Rec(kT0, {{"v", int64_t{1}}})}}));
  ASSERT_OK(store->Read("fs", {key}, 0, kT0));
  ASSERT_OK(store->CheckHealth());

  server.Kill();
  auto read = store->Read("fs", {key}, 0, kT0);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(ErrorCodeOf(read.status()), ErrorCode::kUnavailable) << read.status().ToString();
  auto write = store->Write("fs", {{key, Rec(kT0 + 1, {})}});
  ASSERT_FALSE(write.ok());
  EXPECT_EQ(ErrorCodeOf(write.status()), ErrorCode::kUnavailable) << write.status().ToString();
  EXPECT_EQ(ErrorCodeOf(store->CheckHealth()), ErrorCode::kUnavailable);
  EXPECT_EQ(ErrorCodeOf(store->DeleteFeatureSet("fs")), ErrorCode::kUnavailable);

  // Back on the same port: the same store reconnects by itself (after the
  // reconnect backoff, hence the retries).
  ASSERT_OK(server.Start(server.port()));
  Status health;
  for (int i = 0; i < 200; ++i) {
    health = store->CheckHealth();
    if (health.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_OK(health);
  ASSERT_OK_AND_ASSIGN(auto written, store->Write("fs", {{key, Rec(kT0 + 2, {{"v", int64_t{2}}})}}));
  EXPECT_EQ(written, (WriteResult{1, 0}));
  ASSERT_OK_AND_ASSIGN(read, store->Read("fs", {key}, 0, kT0));
  ASSERT_TRUE((*read)[0].has_value());
  EXPECT_EQ(*(*read)[0], Rec(kT0 + 2, {{"v", int64_t{2}}}));
  ASSERT_OK(store->Close());
}

TEST(RedisOnlineStoreTest, AServerThatStopsAnsweringIsUnavailableNotAHang) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisServerProcess server;
  ASSERT_OK(server.Start());
  ASSERT_OK_AND_ASSIGN(auto store,
                       OnlineStoreFromUri("redis://127.0.0.1:" + std::to_string(server.port()) +
                                          "?timeout_ms=200&connect_timeout_ms=100"));
  EntityKey key{std::string("u")};
  ASSERT_OK(store->Write("fs", {{key, Rec(kT0, {})}}));
  server.Signal(SIGSTOP);  // accepts connections (the kernel does) but never answers
  auto read = store->Read("fs", {key}, 0, kT0);
  auto write = store->Write("fs", {{key, Rec(kT0 + 1, {})}});
  Status health = store->CheckHealth();
  server.Signal(SIGCONT);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(ErrorCodeOf(read.status()), ErrorCode::kUnavailable) << read.status().ToString();
  ASSERT_FALSE(write.ok());
  EXPECT_EQ(ErrorCodeOf(write.status()), ErrorCode::kUnavailable);
  EXPECT_EQ(ErrorCodeOf(health), ErrorCode::kUnavailable);
  // Answering again: the abandoned connections were dropped, new ones work.
  Status again;
  for (int i = 0; i < 100; ++i) {
    again = store->Read("fs", {key}, 0, kT0).status();
    if (again.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_OK(again);
}

TEST(RedisOnlineStoreTest, ConcurrentReadersShareThePool) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisServerProcess server;
  ASSERT_OK(server.Start());
  ASSERT_OK_AND_ASSIGN(auto store,
                       OnlineStoreFromUri("redis://127.0.0.1:" + std::to_string(server.port()) + "?pool_size=2"));
  std::vector<std::pair<EntityKey, OnlineRecord>> records;
  for (int64_t i = 0; i < 50; ++i) records.emplace_back(EntityKey{i}, Rec(kT0, {{"i", i}}));
  ASSERT_OK(store->Write("fs", records));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 100; ++round) {
        int64_t i = (t * 7 + round) % 50;
        auto read = store->Read("fs", {EntityKey{i}, EntityKey{int64_t{1000}}}, 0, kT0);
        if (!read.ok() || !(*read)[0] || (*read)[1] ||
            (*read)[0]->values[0].second != FeatureValue(i)) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  // At most pool_size idle connections stay open (plus none in use).
  auto clients = CommandText("127.0.0.1", server.port(), {"CLIENT", "LIST"});
  EXPECT_LE(std::count(clients.begin(), clients.end(), '\n'), 2 + 1);  // + this connection
}

// ---------------------------------------------------------------------------
// Cluster

TEST(RedisClusterTest, KeysSpreadOverEveryMasterAndReadBack) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisTestCluster cluster;
  ASSERT_OK(cluster.Start());
  ASSERT_OK_AND_ASSIGN(auto store, RedisOnlineStore::Open(cluster.Uri()));
  std::vector<std::pair<EntityKey, OnlineRecord>> records;
  std::vector<EntityKey> keys;
  std::set<int> owners;
  for (int64_t i = 0; i < 3000; ++i) {
    records.emplace_back(EntityKey{std::string("user"), i}, Rec(kT0 + i, {{"i", i}}));
    keys.push_back(records.back().first);
    owners.insert(RedisTestCluster::OwnerAtStart(redis_internal::KeySlot(store->RedisKey("fs", keys.back()))));
  }
  EXPECT_EQ(owners.size(), 3u);
  ASSERT_OK_AND_ASSIGN(auto written, store->Write("fs", records));
  EXPECT_EQ(written, (WriteResult{3000, 0}));
  int64_t total = 0;
  for (int n = 0; n < 3; ++n) {
    EXPECT_GT(cluster.Keys(n), 500) << "node " << n;  // about a third each
    total += cluster.Keys(n);
  }
  EXPECT_EQ(total, 3000 + 1);  // and the write-versions hash
  ASSERT_OK_AND_ASSIGN(auto read, store->Read("fs", keys, 0, kT0));
  for (int64_t i = 0; i < 3000; ++i) {
    ASSERT_TRUE(read[i].has_value()) << i;
    EXPECT_EQ(*read[i], records[i].second);
  }
  ASSERT_OK(store->CheckHealth());
  ASSERT_OK_AND_ASSIGN(auto versions, store->WriteVersions({"fs"}));
  EXPECT_EQ(versions, (std::vector<int64_t>{1}));  // one call: one count
  ASSERT_OK(store->DeleteFeatureSet("fs"));
  ASSERT_OK_AND_ASSIGN(versions, store->WriteVersions({"fs"}));
  EXPECT_EQ(versions, (std::vector<int64_t>{2}));
  // Only the write-versions hash is left, on the node of its slot.
  total = 0;
  for (int n = 0; n < 3; ++n) total += cluster.Keys(n);
  EXPECT_EQ(total, 1);
  // No node was asked for a slot it does not serve.
  for (int n = 0; n < 3; ++n) EXPECT_EQ(cluster.ErrorCount(n, "MOVED"), 0);
}

/// Moves `slot` (with its keys) from node `from` to node `to`; with
/// `finish` false leaves it half-way: keys moved, the slot still migrating.
void MigrateSlot(RedisTestCluster& cluster, int slot, int from, int to, bool finish,
                 bool move_keys = true) {
  std::string s = std::to_string(slot);
  ASSERT_EQ(CommandText("127.0.0.1", cluster.port(to), {"CLUSTER", "SETSLOT", s, "IMPORTING", cluster.id(from)}), "OK");
  ASSERT_EQ(CommandText("127.0.0.1", cluster.port(from), {"CLUSTER", "SETSLOT", s, "MIGRATING", cluster.id(to)}), "OK");
  if (move_keys) {
    while (true) {
      ASSERT_OK_AND_ASSIGN(auto keys, Command("127.0.0.1", cluster.port(from),
                                              {"CLUSTER", "GETKEYSINSLOT", s, "100"}));
      if (keys->elements == 0) break;
      for (size_t k = 0; k < keys->elements; ++k) {
        std::string reply = CommandText("127.0.0.1", cluster.port(from),
                                        {"MIGRATE", "127.0.0.1", std::to_string(cluster.port(to)),
                                         ReplyText(keys->element[k]), "0", "5000"});
        ASSERT_EQ(reply, "OK");
      }
    }
  }
  if (!finish) return;
  // The order Redis documents for ending a migration: the destination first
  // (it stops importing and owns the slot), then the source, then the rest --
  // otherwise the source can send MOVED to a destination that still
  // redirects back while it is importing.
  const int other = 3 - from - to;
  for (int n : {to, from, other}) {
    ASSERT_EQ(CommandText("127.0.0.1", cluster.port(n), {"CLUSTER", "SETSLOT", s, "NODE", cluster.id(to)}), "OK");
  }
}

TEST(RedisClusterTest, MovedSlotIsFollowedAndRemembered) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisTestCluster cluster;
  ASSERT_OK(cluster.Start());
  ASSERT_OK_AND_ASSIGN(auto store, RedisOnlineStore::Open(cluster.Uri()));
  EntityKey key{std::string("moving")};
  const int slot = redis_internal::KeySlot(store->RedisKey("fs", key));
  const int from = RedisTestCluster::OwnerAtStart(slot);
  const int to = (from + 1) % 3;
  ASSERT_OK(store->Write("fs", {{key, Rec(kT0, {{"v", int64_t{1}}})}}));
  // The store's slot map is stale from here on.
  MigrateSlot(cluster, slot, from, to, /*finish=*/true);
  const int64_t moved_before = cluster.ErrorCount(from, "MOVED");
  ASSERT_OK_AND_ASSIGN(auto read, store->Read("fs", {key}, 0, kT0));
  ASSERT_TRUE(read[0].has_value());
  EXPECT_EQ(*read[0], Rec(kT0, {{"v", int64_t{1}}}));
  EXPECT_EQ(cluster.ErrorCount(from, "MOVED"), moved_before + 1);  // redirected once
  // Remembered: the write goes straight to the new owner.
  ASSERT_OK_AND_ASSIGN(auto written, store->Write("fs", {{key, Rec(kT0 + 1, {{"v", int64_t{2}}})}}));
  EXPECT_EQ(written, (WriteResult{1, 0}));
  EXPECT_EQ(cluster.ErrorCount(from, "MOVED"), moved_before + 1);
  ASSERT_OK_AND_ASSIGN(auto exists, Command("127.0.0.1", cluster.port(to), {"EXISTS", store->RedisKey("fs", key)}));
  EXPECT_EQ(exists->integer, 1);
  ASSERT_OK_AND_ASSIGN(read, store->Read("fs", {key}, 0, kT0));
  EXPECT_EQ(*read[0], Rec(kT0 + 1, {{"v", int64_t{2}}}));
}

TEST(RedisClusterTest, AskDuringAMigrationIsFollowedOnce) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisTestCluster cluster;
  ASSERT_OK(cluster.Start());
  ASSERT_OK_AND_ASSIGN(auto store, RedisOnlineStore::Open(cluster.Uri()));
  EntityKey key{std::string("asked")};
  const int slot = redis_internal::KeySlot(store->RedisKey("fs", key));
  const int from = RedisTestCluster::OwnerAtStart(slot);
  const int to = (from + 2) % 3;
  ASSERT_OK(store->Write("fs", {{key, Rec(kT0, {{"v", int64_t{1}}})}}));
  MigrateSlot(cluster, slot, from, to, /*finish=*/false);  // the key moved, the slot not yet
  const int64_t ask_before = cluster.ErrorCount(from, "ASK");
  ASSERT_OK_AND_ASSIGN(auto read, store->Read("fs", {key}, 0, kT0));
  ASSERT_TRUE(read[0].has_value());
  EXPECT_EQ(*read[0], Rec(kT0, {{"v", int64_t{1}}}));
  EXPECT_EQ(cluster.ErrorCount(from, "ASK"), ask_before + 1);
  // A write during the migration lands on the importing node too (newer-wins there).
  ASSERT_OK_AND_ASSIGN(auto older, store->Write("fs", {{key, Rec(kT0 - 1, {})}}));
  EXPECT_EQ(older, (WriteResult{0, 1}));
  ASSERT_OK_AND_ASSIGN(auto newer, store->Write("fs", {{key, Rec(kT0 + 1, {{"v", int64_t{2}}})}}));
  EXPECT_EQ(newer, (WriteResult{1, 0}));
  // ASK is not remembered: the slot still belongs to `from` until the end.
  EXPECT_GE(cluster.ErrorCount(from, "ASK"), ask_before + 3);
  for (int n = 0; n < 3; ++n) {
    ASSERT_EQ(CommandText("127.0.0.1", cluster.port(n),
                          {"CLUSTER", "SETSLOT", std::to_string(slot), "NODE", cluster.id(to)}), "OK");
  }
  ASSERT_OK_AND_ASSIGN(read, store->Read("fs", {key}, 0, kT0));
  EXPECT_EQ(*read[0], Rec(kT0 + 1, {{"v", int64_t{2}}}));
}

TEST(RedisClusterTest, AStaleSeedListStillFindsTheCluster) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisTestCluster cluster;
  ASSERT_OK(cluster.Start());
  // One seed that is down, one that answers: the slot map comes from the latter,
  // and names the third node too.
  ASSERT_OK_AND_ASSIGN(auto store,
                       RedisOnlineStore::Open("redis+cluster://127.0.0.1:1,127.0.0.1:" +
                                              std::to_string(cluster.port(2))));
  std::vector<std::pair<EntityKey, OnlineRecord>> records;
  for (int64_t i = 0; i < 100; ++i) records.emplace_back(EntityKey{i}, Rec(kT0, {}));
  ASSERT_OK_AND_ASSIGN(auto written, store->Write("fs", records));
  EXPECT_EQ(written, (WriteResult{100, 0}));
  for (int n = 0; n < 3; ++n) EXPECT_GT(cluster.Keys(n), 0) << n;
}

TEST(RedisClusterTest, AFailoverIsFoundWithoutReopening) {
  SKIP_WITHOUT_REDIS_SERVER();
  RedisTestCluster cluster;
  ASSERT_OK(cluster.Start());
  ASSERT_OK(cluster.AddReplica(0));
  ASSERT_OK_AND_ASSIGN(auto store,
                       RedisOnlineStore::Open(cluster.Uri("timeout_ms=300&connect_timeout_ms=100")));
  // Keys on the master that fails, and on the others.
  std::vector<std::pair<EntityKey, OnlineRecord>> records;
  std::vector<EntityKey> keys;
  for (int64_t i = 0; i < 300; ++i) {
    records.emplace_back(EntityKey{i}, Rec(kT0, {{"i", i}}));
    keys.push_back(records.back().first);
  }
  ASSERT_OK(store->Write("fs", records));
  const int64_t on_master = cluster.Keys(0);
  ASSERT_GT(on_master, 0);
  for (int attempt = 0; attempt < 400 && cluster.Keys(3) != on_master; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_EQ(cluster.Keys(3), on_master);  // replicated

  cluster.Kill(0);
  auto during = store->Read("fs", keys, 0, kT0);
  ASSERT_FALSE(during.ok());
  EXPECT_EQ(ErrorCodeOf(during.status()), ErrorCode::kUnavailable) << during.status().ToString();
  // The replica takes over after the node timeout (2 s) and an election; the
  // same store finds it.
  Result<std::vector<std::optional<OnlineRecord>>> after = during;
  for (int attempt = 0; attempt < 300 && !after.ok(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = store->Read("fs", keys, 0, kT0);
  }
  ASSERT_OK(after.status());
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE((*after)[i].has_value()) << i;
    EXPECT_EQ(*(*after)[i], records[i].second);
  }
  ASSERT_OK(store->CheckHealth());
  ASSERT_OK_AND_ASSIGN(auto written, store->Write("fs", {{keys[0], Rec(kT0 + 1, {})}}));
  EXPECT_EQ(written, (WriteResult{1, 0}));
}

// ---------------------------------------------------------------------------
// TLS

TEST(RedissTest, AServerCertificateThatDoesNotVerifyIsRefused) {
  std::string uri = Env("FSTORE_TEST_REDISS_URL");
  if (uri.empty()) GTEST_SKIP() << "FSTORE_TEST_REDISS_URL is not set";
  // The same server without its CA file: the system's CAs do not know the
  // self-signed certificate.
  std::string bare = uri.substr(0, uri.find('?'));
  auto store = RedisOnlineStore::Open(bare);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(ErrorCodeOf(store.status()), ErrorCode::kUnavailable);
  EXPECT_NE(store.status().ToString().find("certificate"), std::string::npos) << store.status().ToString();
  // Without verification it connects.
  ASSERT_OK_AND_ASSIGN(auto insecure, RedisOnlineStore::Open(bare + "?tls_verify=0"));
  ASSERT_OK(insecure->CheckHealth());
}

}  // namespace
}  // namespace fstore
