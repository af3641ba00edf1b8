// The PostgreSQL registry against a real server: the conformance suite
// (registry_conformance.h), and what it cannot say: several servers sharing
// one database (change sequence, concurrent migrations and commits), the
// connection pool, and surviving a server that goes away and comes back.
//
// The server is the one FSTORE_TEST_POSTGRES_URL names (scripts/run-tests.sh
// starts one: eval "$(scripts/test-postgres.sh start)"); without it every test
// here is skipped. Each test gets a database of its own, created from that
// URL's login (which needs CREATEDB) and dropped afterwards.

#include "fstore/registry/postgres/postgres_registry.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "fstore/core/ids.h"
#include "fstore/registry/postgres/migrations.h"
#include "fstore/registry/registry_conformance.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

constexpr TimestampMicros kT0 = 1'700'000'000'000'000;
constexpr const char* kNoServer =
    "FSTORE_TEST_POSTGRES_URL is not set: no PostgreSQL server to test against "
    "(eval \"$(scripts/test-postgres.sh start)\", or run scripts/run-tests.sh)";

std::optional<std::string> TestUrl() {
  const char* url = std::getenv("FSTORE_TEST_POSTGRES_URL");
  if (url == nullptr || *url == '\0') return std::nullopt;
  return std::string(url);
}

// ---------------------------------------------------------------------------
// URLs: postgresql://user[:password]@host[:port]/db[?params]

struct UrlParts {
  std::string prefix;     // "postgresql://user@"
  std::string host_port;  // "127.0.0.1:55432"
  std::string database;
  std::string query;  // "?sslmode=disable" or empty
};

UrlParts SplitUrl(const std::string& url) {
  UrlParts parts;
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t path = url.find('/', start);
  size_t query = url.find('?', start);
  size_t authority_end = std::min(path, query);
  std::string authority = url.substr(
      start, authority_end == std::string::npos ? std::string::npos : authority_end - start);
  size_t at = authority.rfind('@');
  parts.prefix =
      url.substr(0, start) + (at == std::string::npos ? "" : authority.substr(0, at + 1));
  parts.host_port = at == std::string::npos ? authority : authority.substr(at + 1);
  if (path != std::string::npos && path < query) {
    parts.database =
        url.substr(path + 1, query == std::string::npos ? std::string::npos : query - path - 1);
  }
  if (query != std::string::npos) parts.query = url.substr(query);
  return parts;
}

std::string JoinUrl(const UrlParts& parts) {
  return parts.prefix + parts.host_port + "/" + parts.database + parts.query;
}

std::string WithDatabase(const std::string& url, const std::string& database) {
  UrlParts parts = SplitUrl(url);
  parts.database = database;
  return JoinUrl(parts);
}

// ---------------------------------------------------------------------------
// A raw libpq connection, for what the tests do behind the registry's back.

using RawConnection = std::unique_ptr<PGconn, decltype(&PQfinish)>;

RawConnection ConnectRaw(const std::string& url) {
  return RawConnection(PQconnectdb(url.c_str()), &PQfinish);
}

/// Runs `sql`; the first column of the first row ("" if none), or an error.
Result<std::string> RawQuery(const std::string& url, const std::string& sql) {
  RawConnection conn = ConnectRaw(url);
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return Unavailable("connecting to " + url + ": " + PQerrorMessage(conn.get()));
  }
  PGresult* res = PQexec(conn.get(), sql.c_str());
  ExecStatusType status = PQresultStatus(res);
  std::string out;
  if (status == PGRES_TUPLES_OK && PQntuples(res) > 0) out = PQgetvalue(res, 0, 0);
  std::string error = PQresultErrorMessage(res);
  PQclear(res);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    return Internal(sql + ": " + error);
  }
  return out;
}

/// A new, empty database on the test server; its name.
Result<std::string> CreateScratchDatabase(const std::string& url) {
  std::string uuid = NewUuid();
  uuid.erase(std::remove(uuid.begin(), uuid.end(), '-'), uuid.end());
  std::string name = "fstore_reg_" + uuid;
  // A generated identifier (CREATE DATABASE takes no parameters).
  ARROW_RETURN_NOT_OK(RawQuery(url, "CREATE DATABASE " + name).status());
  return name;
}

void DropScratchDatabase(const std::string& url, const std::string& name) {
  auto dropped = RawQuery(url, "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
  EXPECT_TRUE(dropped.ok()) << dropped.status().ToString();
}

// ---------------------------------------------------------------------------
// The conformance suite

Result<RegistryStore> NewPostgresStore() {
  std::optional<std::string> url = TestUrl();
  if (!url) {
    // Skipped: gtest runs no test body once SetUp has recorded a skip. The
    // fixture's SetUp still opens and migrates a registry, so it gets an
    // in-memory SQLite one, which nothing uses.
    [] { GTEST_SKIP() << kNoServer; }();
    return RegistryStore{
        .open = [] { return RegistryFromUri("sqlite::memory:"); }, .drop = {}, .run_sql = {}};
  }
  ARROW_ASSIGN_OR_RAISE(std::string name, CreateScratchDatabase(*url));
  std::string database_url = WithDatabase(*url, name);
  return RegistryStore{
      .open = [database_url] { return RegistryFromUri(database_url); },
      .drop = [url = *url, name] { DropScratchDatabase(url, name); },
      .run_sql = [database_url](const std::string& sql) {
        return RawQuery(database_url, sql).status();
      }};
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Postgres, RegistryConformanceTest,
                         ::testing::Values(RegistryBackend{.name = "Database",
                                                           .new_store = NewPostgresStore}),
                         RegistryBackendName);

namespace {

// ---------------------------------------------------------------------------
// A TCP forwarder to the server that a test can cut and restore: PostgreSQL
// becoming unreachable and coming back, without disturbing the server other
// tests use at the same time.

class CuttableProxy {
 public:
  CuttableProxy(std::string target_host, int target_port)
      : target_host_(std::move(target_host)), target_port_(target_port) {}
  ~CuttableProxy() { Cut(); }

  /// Listens on 127.0.0.1 (the same port each time) and forwards.
  void Start() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    ASSERT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener_, 64), 0);
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    accept_thread_ = std::thread([this, fd = listener_] { AcceptLoop(fd); });
  }

  /// Closes the listener and every forwarded connection: new connections are
  /// refused, open ones end.
  void Cut() {
    if (listener_ >= 0) {
      ::shutdown(listener_, SHUT_RDWR);
      accept_thread_.join();
      ::close(listener_);
      listener_ = -1;
    }
    std::vector<std::thread> pumps;
    {
      std::lock_guard lock(mu_);
      for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
      pumps.swap(pumps_);
    }
    for (auto& t : pumps) t.join();
  }

  /// Stops forwarding without closing anything: a server that hangs. Until
  /// Thaw().
  void Freeze() { frozen_ = true; }
  void Thaw() { frozen_ = false; }

  int port() const { return port_; }

 private:
  void AcceptLoop(int listener) {
    while (true) {
      int client = ::accept(listener, nullptr, nullptr);
      if (client < 0) return;  // shut down
      int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(target_port_));
      ::inet_pton(AF_INET, target_host_.c_str(), &addr.sin_addr);
      if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(upstream);
        ::close(client);
        continue;
      }
      std::lock_guard lock(mu_);
      open_fds_.insert(client);
      open_fds_.insert(upstream);
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
  }

  void Pump(int a, int b) {
    pollfd fds[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    char buffer[16384];
    bool open = true;
    while (open) {
      int ready = ::poll(fds, 2, 20);
      if (ready < 0) break;
      if (ready == 0 || frozen_) {
        if (frozen_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        continue;
      }
      for (int i = 0; i < 2 && open; ++i) {
        if (fds[i].revents == 0) continue;
        ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
        if (n <= 0) {
          open = false;
          break;
        }
        for (ssize_t sent = 0; sent < n;) {
          ssize_t w =
              ::send(fds[1 - i].fd, buffer + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
          if (w <= 0) {
            open = false;
            break;
          }
          sent += w;
        }
      }
    }
    std::lock_guard lock(mu_);
    open_fds_.erase(a);
    open_fds_.erase(b);
    ::close(a);
    ::close(b);
  }

  const std::string target_host_;
  const int target_port_;
  int port_ = 0;
  int listener_ = -1;
  std::atomic<bool> frozen_{false};
  std::thread accept_thread_;
  std::mutex mu_;
  std::set<int> open_fds_;          // guarded by mu_
  std::vector<std::thread> pumps_;  // guarded by mu_
};

// ---------------------------------------------------------------------------

FeatureSet NewFeatureSet(const std::string& name) {
  FeatureSet fs;
  fs.id = NewUuid();
  fs.name = name;
  fs.entities = {"user"};
  fs.created_at = kT0;
  fs.updated_at = kT0;
  return fs;
}

RegistryWrite CreateWrite(const FeatureSet& fs) {
  RegistryWrite write;
  write.feature_sets.push_back({fs, 0});
  return write;
}

/// Read-modify-write of one feature set until it lands, retrying Conflicts
/// the way the service does.
Status AddTagUntilLanded(Registry* registry, const std::string& id, const std::string& tag) {
  for (int attempt = 0; attempt < 1'000; ++attempt) {
    ARROW_ASSIGN_OR_RAISE(auto current, registry->FindFeatureSet(id, false));
    if (!current) return NotFound("feature set " + id);
    FeatureSet next = *current;
    next.version += 1;
    next.tags.push_back(tag);
    RegistryWrite write;
    write.feature_sets.push_back({next, current->version});
    Status status = registry->Commit(write);
    if (status.ok() || ErrorCodeOf(status) != ErrorCode::kConflict) return status;
  }
  return Internal("still conflicting after 1000 attempts");
}

class PostgresRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::optional<std::string> url = TestUrl();
    if (!url) GTEST_SKIP() << kNoServer;
    server_url_ = *url;
    ASSERT_OK_AND_ASSIGN(url_, NewDatabase());
  }
  void TearDown() override {
    for (const auto& name : databases_) DropScratchDatabase(server_url_, name);
  }

  /// Another scratch database, dropped after the test; its URL.
  Result<std::string> NewDatabase() {
    ARROW_ASSIGN_OR_RAISE(std::string name, CreateScratchDatabase(server_url_));
    databases_.push_back(name);
    return WithDatabase(server_url_, name);
  }

  Result<std::unique_ptr<PostgresRegistry>> Open(PostgresRegistryOptions options = {}) {
    return PostgresRegistry::Open(url_, options);
  }

  /// The first column of the first row of `sql` on this test's database.
  std::string Query(const std::string& sql) {
    auto out = RawQuery(url_, sql);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out.ok() ? *out : "";
  }

  /// Ends every other session on this test's database, as a server restart
  /// or an administrator would; how many.
  std::string TerminateSessions() {
    return Query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  }

  /// Sessions the registry has open on this test's database now.
  int RegistrySessions() {
    return std::stoi(
        Query("SELECT count(*) FROM pg_stat_activity "
              "WHERE datname = current_database() "
              "AND application_name = 'fstore-registry'"));
  }

  /// RegistrySessions() once it is `expected`: the server ends a closed
  /// session's backend asynchronously. Waits up to 10 s, then returns the
  /// count it has.
  int RegistrySessionsOnceThey(int expected) {
    int count = RegistrySessions();
    for (int i = 0; i < 200 && count != expected; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      count = RegistrySessions();
    }
    return count;
  }

  /// A proxy to the test server, or null (with a skip) when the URL does not
  /// name an IPv4 address; `proxy_url` is this test's database through it.
  std::unique_ptr<CuttableProxy> StartProxy(std::string* proxy_url) {
    UrlParts server = SplitUrl(url_);
    size_t colon = server.host_port.rfind(':');
    std::string host = server.host_port.substr(0, colon);
    int port = colon == std::string::npos ? 5432 : std::stoi(server.host_port.substr(colon + 1));
    in_addr ignored;
    if (::inet_pton(AF_INET, host.c_str(), &ignored) != 1) {
      [&] { GTEST_SKIP() << "the proxy needs an IPv4 address in the test URL, got " << host; }();
      return nullptr;
    }
    auto proxy = std::make_unique<CuttableProxy>(host, port);
    proxy->Start();
    server.host_port = "127.0.0.1:" + std::to_string(proxy->port());
    *proxy_url = JoinUrl(server);
    return proxy;
  }

  std::string server_url_;
  std::string url_;
  std::vector<std::string> databases_;
};

TEST(PostgresMigrationsTest, AreNumberedInOrderLikeSqlites) {
  auto migrations = PostgresMigrations();
  ASSERT_FALSE(migrations.empty());
  for (size_t i = 0; i < migrations.size(); ++i) {
    EXPECT_EQ(migrations[i].version, static_cast<int>(i) + 1);
    EXPECT_FALSE(migrations[i].sql.empty());
  }
}

TEST_F(PostgresRegistryTest, RecordsEachMigrationOnce) {
  ASSERT_OK_AND_ASSIGN(auto registry, Open());
  ASSERT_OK_AND_ASSIGN(int version, registry->Migrate());
  ASSERT_OK(registry->Migrate());
  EXPECT_EQ(version, PostgresMigrations().back().version);
  EXPECT_EQ(Query("SELECT count(*) FROM schema_migrations"),
            std::to_string(PostgresMigrations().size()));
  EXPECT_EQ(Query("SELECT bool_and(applied_at <= now()) FROM schema_migrations"), "t");
  EXPECT_EQ(Query("SELECT change_seq FROM registry_state"), "0");
  ASSERT_OK(registry->Close());
}

TEST_F(PostgresRegistryTest, ANewerSchemaIsRefused) {
  ASSERT_OK_AND_ASSIGN(auto registry, Open());
  ASSERT_OK(registry->Migrate());
  Query("INSERT INTO schema_migrations (version) VALUES (999)");
  auto migrated = registry->Migrate();
  ASSERT_FALSE(migrated.ok());
  EXPECT_EQ(ErrorCodeOf(migrated.status()), ErrorCode::kInternal);
  EXPECT_NE(ErrorMessageOf(migrated.status()).find("999"), std::string::npos)
      << migrated.status().ToString();
}

TEST_F(PostgresRegistryTest, ServersMigratingAtOnceAllEndAtTheSameVersion) {
  constexpr int kServers = 4;
  for (int round = 0; round < 3; ++round) {
    ASSERT_OK_AND_ASSIGN(std::string url, NewDatabase());
    std::vector<std::unique_ptr<PostgresRegistry>> servers;
    for (int i = 0; i < kServers; ++i) {
      ASSERT_OK_AND_ASSIGN(auto server, PostgresRegistry::Open(url));
      servers.push_back(std::move(server));
    }
    std::vector<Result<int>> results(kServers, Result<int>(0));
    std::vector<std::thread> threads;
    for (int i = 0; i < kServers; ++i) {
      threads.emplace_back([&, i] { results[i] = servers[i]->Migrate(); });
    }
    for (auto& thread : threads) thread.join();
    for (int i = 0; i < kServers; ++i) {
      ASSERT_OK(results[i].status());
      EXPECT_EQ(*results[i], PostgresMigrations().back().version);
      ASSERT_OK_AND_ASSIGN(int version, servers[i]->SchemaVersion());
      EXPECT_EQ(version, PostgresMigrations().back().version);
    }
    ASSERT_OK_AND_ASSIGN(std::string count,
                         RawQuery(url, "SELECT count(*) FROM schema_migrations"));
    EXPECT_EQ(count, std::to_string(PostgresMigrations().size()));
    ASSERT_OK_AND_ASSIGN(int64_t seq, servers[0]->ChangeSequence());
    EXPECT_EQ(seq, 0);
  }
}

TEST_F(PostgresRegistryTest, TwoServersSeeEachOthersCommitsThroughTheChangeSequence) {
  ASSERT_OK_AND_ASSIGN(auto a, Open());
  ASSERT_OK_AND_ASSIGN(auto b, Open());
  ASSERT_OK(a->Migrate());
  ASSERT_OK(b->Migrate());
  ASSERT_OK_AND_ASSIGN(int64_t b_before, b->ChangeSequence());

  FeatureSet fs = NewFeatureSet("user_profile");
  ASSERT_OK(a->Commit(CreateWrite(fs)));
  ASSERT_OK_AND_ASSIGN(int64_t b_after, b->ChangeSequence());
  EXPECT_GT(b_after, b_before);
  ASSERT_OK_AND_ASSIGN(auto seen, b->FindFeatureSet("user_profile", false));
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->id, fs.id);

  // And back: b's new version is a's current one.
  FeatureSet v2 = *seen;
  v2.version = 2;
  v2.description = "from b";
  RegistryWrite update;
  update.feature_sets.push_back({v2, 1});
  ASSERT_OK(b->Commit(update));
  ASSERT_OK_AND_ASSIGN(int64_t a_now, a->ChangeSequence());
  EXPECT_GT(a_now, b_after);
  ASSERT_OK_AND_ASSIGN(auto current, a->FindFeatureSet(fs.id, false));
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(current->version, 2);
  EXPECT_EQ(current->description, "from b");

  // A write a planned against an older sequence is refused: b changed things.
  RegistryWrite planned = CreateWrite(NewFeatureSet("other"));
  planned.expected_change_sequence = b_after;
  Status stale = a->Commit(planned);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(ErrorCodeOf(stale), ErrorCode::kConflict) << stale.ToString();
}

TEST_F(PostgresRegistryTest, ConcurrentCommitsFromTwoServersOnOneFeatureSetAllLand) {
  constexpr int kUpdatesPerServer = 15;
  ASSERT_OK_AND_ASSIGN(auto a, Open());
  ASSERT_OK_AND_ASSIGN(auto b, Open());
  ASSERT_OK(a->Migrate());
  FeatureSet fs = NewFeatureSet("hot");
  ASSERT_OK(a->Commit(CreateWrite(fs)));

  std::vector<Status> results(2);
  std::vector<std::thread> threads;
  for (int server = 0; server < 2; ++server) {
    threads.emplace_back([&, server] {
      Registry* registry = server == 0 ? a.get() : b.get();
      for (int i = 0; i < kUpdatesPerServer && results[server].ok(); ++i) {
        results[server] =
            AddTagUntilLanded(registry, fs.id, std::to_string(server) + "." + std::to_string(i));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_OK(results[0]);
  ASSERT_OK(results[1]);

  ASSERT_OK_AND_ASSIGN(auto final_fs, b->FindFeatureSet(fs.id, false));
  ASSERT_TRUE(final_fs.has_value());
  EXPECT_EQ(final_fs->version, 1 + 2 * kUpdatesPerServer);
  std::set<std::string> tags(final_fs->tags.begin(), final_fs->tags.end());
  EXPECT_EQ(tags.size(), static_cast<size_t>(2 * kUpdatesPerServer));
  ASSERT_OK_AND_ASSIGN(auto history, a->FeatureSetHistory(fs.id));
  ASSERT_EQ(history.size(), static_cast<size_t>(1 + 2 * kUpdatesPerServer));
  for (size_t i = 0; i < history.size(); ++i) EXPECT_EQ(history[i].version, int64_t(i) + 1);
}

TEST_F(PostgresRegistryTest, BadConnectionSettingsFailAtOpenWithAClearMessage) {
  UrlParts server = SplitUrl(url_);
  UrlParts unknown_role = server;
  unknown_role.prefix = "postgresql://no_such_role_x:s3cret@";
  UrlParts unknown_database = server;
  unknown_database.database = "no_such_database_x";
  UrlParts closed_port = server;
  closed_port.host_port = "127.0.0.1:1";
  struct Case {
    std::string url;
    std::string says;
  };
  for (const Case& c : {Case{JoinUrl(unknown_role), "no_such_role_x"},
                        Case{JoinUrl(unknown_database), "no_such_database_x"},
                        Case{JoinUrl(closed_port), "127.0.0.1"}}) {
    auto registry = PostgresRegistry::Open(c.url);
    ASSERT_FALSE(registry.ok()) << c.url;
    EXPECT_EQ(ErrorCodeOf(registry.status()), ErrorCode::kUnavailable)
        << registry.status().ToString();
    std::string message = ErrorMessageOf(registry.status());
    EXPECT_NE(message.find("cannot connect to the registry database"), std::string::npos)
        << message;
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
    EXPECT_EQ(message.find("s3cret"), std::string::npos) << "leaks the password: " << message;
  }

  auto malformed = PostgresRegistry::Open("postgresql://u:s3cret@host/db?no_such_option=1");
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(ErrorCodeOf(malformed.status()), ErrorCode::kInvalidArgument)
      << malformed.status().ToString();
  EXPECT_EQ(ErrorMessageOf(malformed.status()).find("s3cret"), std::string::npos);
}

TEST_F(PostgresRegistryTest, SurvivesTerminatedSessions) {
  ASSERT_OK_AND_ASSIGN(auto registry, Open());
  ASSERT_OK(registry->Migrate());
  // Several pooled connections, all idle when their sessions end.
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 20; ++j) EXPECT_OK(registry->ChangeSequence());
    });
  }
  for (auto& thread : threads) thread.join();

  EXPECT_NE(TerminateSessions(), "0");
  ASSERT_OK(registry->Ping());
  EXPECT_NE(TerminateSessions(), "0");
  ASSERT_OK_AND_ASSIGN(int64_t seq, registry->ChangeSequence());
  EXPECT_EQ(seq, 0);
  EXPECT_NE(TerminateSessions(), "0");
  ASSERT_OK(registry->Commit(CreateWrite(NewFeatureSet("after_restart"))));
  EXPECT_NE(TerminateSessions(), "0");
  MaterializationJob job;
  job.id = NewUuid();
  job.feature_set_id = "fs-1";
  ASSERT_OK(registry->CommitJobAndWatermark(job, kT0));
  ASSERT_OK_AND_ASSIGN(auto watermark, registry->Watermark("fs-1"));
  EXPECT_EQ(watermark, std::optional<TimestampMicros>(kT0));
}

TEST_F(PostgresRegistryTest, UnreachableServerIsUnavailableThenRecoveredWithoutRestart) {
  std::string proxy_url;
  auto proxy = StartProxy(&proxy_url);
  if (proxy == nullptr || HasFatalFailure()) return;
  PostgresRegistryOptions options;
  options.retry_budget = std::chrono::milliseconds(300);  // give up sooner than in production
  ASSERT_OK_AND_ASSIGN(auto registry, PostgresRegistry::Open(proxy_url, options));
  ASSERT_OK(registry->Migrate());
  ASSERT_OK(registry->Commit(CreateWrite(NewFeatureSet("before"))));

  proxy->Cut();
  for (int i = 0; i < 2; ++i) {  // pooled connections gone, then new ones refused
    auto seq = registry->ChangeSequence();
    ASSERT_FALSE(seq.ok());
    EXPECT_EQ(ErrorCodeOf(seq.status()), ErrorCode::kUnavailable) << seq.status().ToString();
    EXPECT_NE(ErrorMessageOf(seq.status()).find("gave up after"), std::string::npos)
        << seq.status().ToString();
  }
  Status ping = registry->Ping();
  EXPECT_EQ(ErrorCodeOf(ping), ErrorCode::kUnavailable) << ping.ToString();
  Status commit = registry->Commit(CreateWrite(NewFeatureSet("while_down")));
  EXPECT_EQ(ErrorCodeOf(commit), ErrorCode::kUnavailable) << commit.ToString();

  ASSERT_NO_FATAL_FAILURE(proxy->Start());
  ASSERT_OK(registry->Ping());
  ASSERT_OK(registry->Commit(CreateWrite(NewFeatureSet("after"))));
  ASSERT_OK_AND_ASSIGN(auto sets, registry->ListFeatureSets(false));
  ASSERT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets[0].name, "after");
  EXPECT_EQ(sets[1].name, "before");
}

TEST_F(PostgresRegistryTest, AnOutageShorterThanTheRetryBudgetIsRetriedThrough) {
  std::string proxy_url;
  auto proxy = StartProxy(&proxy_url);
  if (proxy == nullptr || HasFatalFailure()) return;
  PostgresRegistryOptions options;
  options.retry_budget = std::chrono::seconds(60);  // far longer than the outage
  ASSERT_OK_AND_ASSIGN(auto registry, PostgresRegistry::Open(proxy_url, options));
  ASSERT_OK(registry->Migrate());

  proxy->Cut();
  std::thread restore([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    proxy->Start();
  });
  Status commit = registry->Commit(CreateWrite(NewFeatureSet("during_outage")));
  restore.join();
  ASSERT_OK(commit);
  ASSERT_OK_AND_ASSIGN(auto found, registry->FindFeatureSet("during_outage", false));
  EXPECT_TRUE(found.has_value());
}

TEST_F(PostgresRegistryTest, AHungServerFailsPingWithinItsTimeout) {
  std::string proxy_url;
  auto proxy = StartProxy(&proxy_url);
  if (proxy == nullptr || HasFatalFailure()) return;
  PostgresRegistryOptions options;
  options.ping_timeout = std::chrono::milliseconds(200);
  ASSERT_OK_AND_ASSIGN(auto registry, PostgresRegistry::Open(proxy_url, options));
  ASSERT_OK(registry->Ping());

  proxy->Freeze();  // the pooled connection's SELECT 1 gets no answer
  Status ping = registry->Ping();
  ASSERT_FALSE(ping.ok());
  EXPECT_EQ(ErrorCodeOf(ping), ErrorCode::kUnavailable) << ping.ToString();
  EXPECT_NE(ErrorMessageOf(ping).find("no answer within 200 ms"), std::string::npos)
      << ping.ToString();

  proxy->Thaw();  // the hung connection was dropped; a new one answers
  ASSERT_OK(registry->Ping());
}

// A real restart of the test server, only when the environment says how
// (it would disturb the other tests sharing the server), e.g.:
//   FSTORE_TEST_POSTGRES_RESTART='runuser -u postgres --
//     /usr/lib/postgresql/15/bin/pg_ctl -D /tmp/fstore-test-pg-55432 -w -m fast restart'
// (one line; as root, as scripts/test-postgres.sh runs the server).
TEST_F(PostgresRegistryTest, SurvivesAServerRestart) {
  const char* restart = std::getenv("FSTORE_TEST_POSTGRES_RESTART");
  if (restart == nullptr || *restart == '\0') {
    GTEST_SKIP() << "FSTORE_TEST_POSTGRES_RESTART (a command restarting the test server) is "
                    "not set; SurvivesTerminatedSessions covers the same ground";
  }
  ASSERT_OK_AND_ASSIGN(auto registry, Open());
  ASSERT_OK(registry->Migrate());
  ASSERT_OK(registry->Commit(CreateWrite(NewFeatureSet("before"))));
  ASSERT_EQ(std::system(restart), 0) << restart;
  ASSERT_OK(registry->Ping());
  ASSERT_OK_AND_ASSIGN(int64_t seq, registry->ChangeSequence());
  EXPECT_EQ(seq, 1);
  ASSERT_OK(registry->Commit(CreateWrite(NewFeatureSet("after"))));
}

TEST_F(PostgresRegistryTest, ThePoolIsBoundedAndCloseEndsEverySession) {
  PostgresPoolOptions options;
  options.max_connections = 2;
  ASSERT_OK_AND_ASSIGN(auto pool, PostgresConnectionPool::Open(url_, options));
  using Clock = PostgresConnectionPool::Clock;
  {
    ASSERT_OK_AND_ASSIGN(auto first, pool->Checkout(Clock::now()));
    ASSERT_OK_AND_ASSIGN(auto second, pool->Checkout(Clock::now()));
    EXPECT_EQ(pool->open_connections(), 2u);
    auto third = pool->Checkout(Clock::now());
    ASSERT_FALSE(third.ok());
    EXPECT_EQ(ErrorCodeOf(third.status()), ErrorCode::kUnavailable);
    EXPECT_NE(ErrorMessageOf(third.status()).find("busy"), std::string::npos);
    // A waiting caller gets the connection the moment one comes back.
    std::thread giver([lease = std::move(first)]() mutable { auto done = std::move(lease); });
    ASSERT_OK_AND_ASSIGN(auto fourth, pool->Checkout(Clock::now() + std::chrono::minutes(1)));
    giver.join();
    EXPECT_TRUE(fourth.reused());
    fourth.MarkBroken();  // closed on return, with the idle ones
  }
  EXPECT_EQ(pool->open_connections(), 1u);  // `second`, idle again
  pool->Close();
  EXPECT_EQ(pool->open_connections(), 0u);
  EXPECT_EQ(RegistrySessionsOnceThey(0), 0);
  EXPECT_EQ(ErrorCodeOf(pool->Checkout(Clock::now()).status()), ErrorCode::kUnavailable);

  ASSERT_OK_AND_ASSIGN(auto registry, Open());
  ASSERT_OK(registry->Migrate());
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 10; ++j) EXPECT_OK(registry->ListFeatureSets(true));
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(RegistrySessions(), static_cast<int>(PostgresPoolOptions{}.max_connections));
  ASSERT_OK(registry->Close());
  EXPECT_EQ(RegistrySessionsOnceThey(0), 0);
  EXPECT_EQ(ErrorCodeOf(registry->Ping()), ErrorCode::kUnavailable);
}

TEST_F(PostgresRegistryTest, ValuesTravelAsParametersNotAsSql) {
  ASSERT_OK_AND_ASSIGN(auto registry, Open());
  ASSERT_OK(registry->Migrate());
  FeatureSet fs = NewFeatureSet("x'); DROP TABLE feature_sets; --");
  fs.description = "quotes ' \" and \\ backslashes, $1 and unicode é";
  ASSERT_OK(registry->Commit(CreateWrite(fs)));
  ASSERT_OK_AND_ASSIGN(auto found, registry->FindFeatureSet(fs.name, false));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->description, fs.description);
  ASSERT_OK_AND_ASSIGN(auto none, registry->FindFeatureSet("' OR '1'='1", true));
  EXPECT_FALSE(none.has_value());
}

// A database as fstore left it at schema version 2 (before keys, audit,
// statistics and usage): migrations 1 and 2 applied by their own scripts,
// with a feature set and a job in it.
TEST_F(PostgresRegistryTest, AVersion2DatabaseMigratesUpWithItsDataIntact) {
  ASSERT_GE(PostgresMigrations().size(), 4u);
  Query("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
        "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())");
  for (int version : {1, 2}) {
    Query(std::string(PostgresMigrations()[version - 1].sql));
    Query("INSERT INTO schema_migrations (version) VALUES (" + std::to_string(version) + ")");
  }
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_OK_AND_ASSIGN(auto registry, Open());
  ASSERT_OK_AND_ASSIGN(int before, registry->SchemaVersion());
  EXPECT_EQ(before, 2);
  FeatureSet fs = NewFeatureSet("user_profile");
  ASSERT_OK(registry->Commit(CreateWrite(fs)));
  MaterializationJob job;
  job.id = NewUuid();
  job.feature_set_id = fs.id;
  job.feature_set_name = fs.name;
  job.status = JobStatus::kSucceeded;
  job.created_at = kT0;
  ASSERT_OK(registry->CommitJobAndWatermark(job, kT0));

  ASSERT_OK_AND_ASSIGN(int migrated, registry->Migrate());
  EXPECT_EQ(migrated, 4);
  ASSERT_OK_AND_ASSIGN(int after, registry->SchemaVersion());
  EXPECT_EQ(after, 4);
  EXPECT_EQ(Query("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations"),
            "1,2,3,4");
  ASSERT_OK_AND_ASSIGN(auto found, registry->FindFeatureSet("user_profile", false));
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->id, fs.id);
  ASSERT_OK_AND_ASSIGN(auto found_job, registry->FindJob(job.id));
  ASSERT_TRUE(found_job.has_value());
  ASSERT_OK_AND_ASSIGN(auto watermark, registry->Watermark(fs.id));
  EXPECT_EQ(watermark, std::optional<TimestampMicros>(kT0));
  ASSERT_OK_AND_ASSIGN(int64_t seq, registry->ChangeSequence());
  EXPECT_EQ(seq, 1);

  // And the new tables work.
  ApiKeyRecord key{.id = "key_0000000000000001", .name = "ci", .role = "admin",
                   .feature_sets = {}, .salt = "00", .hash = "ff", .created_at = kT0};
  ASSERT_OK(registry->InsertApiKey(key));
  ASSERT_OK(registry->AppendAudit(AuditEvent{.time = kT0, .key_id = key.id,
                                             .action = "key.create", .target = key.id,
                                             .outcome = "success", .status = 201}));
  ASSERT_OK(registry->PutFeatureStatistics({FeatureStatisticsRecord{
      .job_id = job.id, .feature_set_id = fs.id, .feature_set_name = fs.name,
      .feature = "age", .computed_at = kT0, .body = "{}"}}));
  ASSERT_OK(registry->AddUsage({UsageCount{.day = "2024-03-02", .key_id = key.id,
                                           .feature_set = fs.name, .requests = 1}}));
  ASSERT_OK_AND_ASSIGN(auto listing, registry->ListApiKeys());
  const auto& keys = listing.keys;
  EXPECT_EQ(keys.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto events, registry->ListAudit(AuditFilter{}));
  EXPECT_EQ(events.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto stats, registry->ListFeatureStatistics(0, fs.id));
  EXPECT_EQ(stats.size(), 1u);
  ASSERT_OK_AND_ASSIGN(auto usage, registry->ListUsage("2024-03-01"));
  ASSERT_EQ(usage.size(), 1u);
  EXPECT_EQ(usage[0].requests, 1);
  ASSERT_OK(registry->Close());
}

// Two servers on one database, each with its own pool, adding to the same
// usage rows and appending to the audit log at once: nothing is lost and no
// seq is shared.
TEST_F(PostgresRegistryTest, TwoServersAddingUsageAndAuditAtOnceLoseNothing) {
  constexpr int kThreadsPerServer = 4;
  constexpr int kRounds = 30;
  ASSERT_OK_AND_ASSIGN(auto a, Open());
  ASSERT_OK_AND_ASSIGN(auto b, Open());
  ASSERT_OK(a->Migrate());
  ASSERT_OK(b->Migrate());
  std::vector<Status> results(2 * kThreadsPerServer);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2 * kThreadsPerServer; ++t) {
    threads.emplace_back([&, t] {
      Registry* server = t % 2 == 0 ? a.get() : b.get();
      for (int i = 0; i < kRounds && results[t].ok(); ++i) {
        std::vector<UsageCount> batch = {
            UsageCount{.day = "2024-03-02", .key_id = "key_a", .feature_set = "user_profile",
                       .requests = 1, .entities = 3, .entities_found = 2},
            UsageCount{.day = "2024-03-02", .key_id = "key_a", .feature_set = "user_profile",
                       .feature = "age", .requests = 1, .entities = 3, .entities_found = 2},
        };
        if (t % 2 == 1) std::reverse(batch.begin(), batch.end());
        results[t] = server->AddUsage(batch);
        if (results[t].ok()) {
          results[t] = server->AppendAudit(AuditEvent{
              .time = kT0 + i, .key_id = "key_a", .action = "serve.online",
              .target = std::to_string(t), .outcome = "success", .status = 200});
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (const Status& result : results) ASSERT_OK(result);

  constexpr int64_t n = 2 * kThreadsPerServer * kRounds;
  for (Registry* server : {static_cast<Registry*>(a.get()), static_cast<Registry*>(b.get())}) {
    ASSERT_OK_AND_ASSIGN(auto usage, server->ListUsage("2024-03-02"));
    ASSERT_EQ(usage.size(), 2u);
    EXPECT_EQ(usage[0].feature, "");
    EXPECT_EQ(usage[1].feature, "age");
    for (const UsageCount& row : usage) {
      EXPECT_EQ(row.requests, n);
      EXPECT_EQ(row.entities, 3 * n);
      EXPECT_EQ(row.entities_found, 2 * n);
    }
    ASSERT_OK_AND_ASSIGN(auto events, server->ListAudit(AuditFilter{.limit = 10'000}));
    ASSERT_EQ(events.size(), static_cast<size_t>(n));
    std::set<int64_t> seqs;
    for (const AuditEvent& event : events) seqs.insert(event.seq);
    EXPECT_EQ(seqs.size(), events.size());
  }
  EXPECT_EQ(Query("SELECT change_seq FROM registry_state"), "0");
}

}  // namespace
}  // namespace fstore
