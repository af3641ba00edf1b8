#include "fstore/registry/postgres/connection_pool.h"

#include <libpq-fe.h>

#include <string_view>
#include <utility>

namespace fstore {
namespace {

/// libpq's multi-line messages on one line, without the trailing newline.
std::string OneLine(std::string_view message) {
  std::string out;
  bool space = false;
  for (char c : message) {
    if (c == '\n' || c == '\t' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

/// "postgresql://user@host:port/db" from libpq's own reading of the URL.
std::string Describe(PQconninfoOption* options) {
  std::string user, host, port, dbname;
  for (PQconninfoOption* o = options; o != nullptr && o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string_view key = o->keyword;
    if (key == "user") user = o->val;
    if (key == "host" || (key == "hostaddr" && host.empty())) host = o->val;
    if (key == "port") port = o->val;
    if (key == "dbname") dbname = o->val;
  }
  std::string out = "postgresql://";
  if (!user.empty()) out += user + "@";
  out += host.empty() ? "localhost" : host;
  if (!port.empty()) out += ":" + port;
  return out + "/" + dbname;
}

}  // namespace

std::string RedactPassword(std::string text, const std::string& url) {
  // scheme://user:password@host...: the password ends at the last '@' of the
  // authority (a password may hold '@' only percent-encoded, but be lenient).
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return text;
  size_t start = scheme_end + 3;
  size_t authority_end = url.find_first_of("/?", start);
  std::string_view authority = std::string_view(url).substr(
      start, authority_end == std::string::npos ? std::string::npos : authority_end - start);
  size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return text;
  size_t colon = authority.substr(0, at).find(':');
  if (colon == std::string_view::npos) return text;
  std::string password(authority.substr(colon + 1, at - colon - 1));
  if (password.empty()) return text;
  for (size_t pos = text.find(password); pos != std::string::npos;
       pos = text.find(password, pos + 3)) {
    text.replace(pos, password.size(), "***");
  }
  return text;
}

Result<std::unique_ptr<PostgresConnectionPool>> PostgresConnectionPool::Open(
    const std::string& url, PostgresPoolOptions options) {
  if (options.max_connections == 0) {
    return InvalidArgument("max_connections", "a connection pool needs at least one connection");
  }
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &error);
  if (parsed == nullptr) {
    std::string message = error != nullptr ? OneLine(error) : "out of memory";
    PQfreemem(error);
    return InvalidArgument("DATABASE_URL", "the PostgreSQL registry URL is malformed: " +
                                               RedactPassword(message, url));
  }
  std::string description = Describe(parsed);
  PQconninfoFree(parsed);
  std::unique_ptr<PostgresConnectionPool> pool(
      new PostgresConnectionPool(url, std::move(description), options));
  // One connection now: a wrong address or login fails here, at start-up.
  ARROW_ASSIGN_OR_RAISE(Lease first, pool->Checkout(Clock::now()));
  return pool;
}

PostgresConnectionPool::~PostgresConnectionPool() { Close(); }

Result<pg_conn*> PostgresConnectionPool::Connect() {
  // Defaults come before dbname (the URL), so that the URL's own settings
  // override them (libpq keeps the last value of a repeated keyword).
  std::string connect_timeout = std::to_string(options_.connect_timeout_seconds);
  const char* keywords[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* values[] = {connect_timeout.c_str(), "fstore-registry", url_.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) return Unavailable("cannot connect to the registry database: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = RedactPassword(OneLine(PQerrorMessage(conn)), url_);
    PQfinish(conn);
    return Unavailable("cannot connect to the registry database " + description_ + ": " + message);
  }
  std::string timeout = std::to_string(options_.statement_timeout.count());
  const char* params[] = {timeout.c_str()};
  // The statement timeout, and no NOTICEs ("relation ... already exists,
  // skipping"), which libpq's default notice processor prints on stderr.
  PGresult* res = PQexecParams(conn,
                               "SELECT set_config('statement_timeout', $1, false), "
                               "set_config('client_min_messages', 'warning', false)",
                               1, nullptr, params, nullptr, nullptr, 0);
  bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
  std::string message = ok ? "" : OneLine(PQerrorMessage(conn));
  PQclear(res);
  if (!ok) {
    PQfinish(conn);
    return Unavailable("cannot set up a connection to the registry database " + description_ +
                       ": " + message);
  }
  return conn;
}

Result<PostgresConnectionPool::Lease> PostgresConnectionPool::Checkout(Clock::time_point deadline) {
  std::unique_lock lock(mu_);
  while (true) {
    if (closed_) return Unavailable("the registry is closed");
    if (!idle_.empty()) {
      PGconn* conn = idle_.back();
      idle_.pop_back();
      return Lease(this, conn, /*reused=*/true);
    }
    if (open_ < options_.max_connections) break;
    if (available_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= options_.max_connections && !closed_) {
      return Unavailable("all " + std::to_string(options_.max_connections) +
                         " connections to the registry database " + description_ + " stayed busy");
    }
  }
  ++open_;  // reserved while connecting, without the lock
  lock.unlock();
  Result<PGconn*> conn = Connect();
  lock.lock();
  if (!conn.ok() || closed_) {
    --open_;
    available_.notify_one();
    if (conn.ok()) {
      PQfinish(*conn);
      return Unavailable("the registry is closed");
    }
    return conn.status();
  }
  return Lease(this, *conn, /*reused=*/false);
}

void PostgresConnectionPool::Return(PGconn* conn, bool broken) {
  if (!broken) {
    switch (PQtransactionStatus(conn)) {
      case PQTRANS_IDLE:
        break;
      case PQTRANS_INTRANS:
      case PQTRANS_INERROR: {
        // A call that returned early left its transaction open.
        PGresult* res = PQexec(conn, "ROLLBACK");
        broken = PQresultStatus(res) != PGRES_COMMAND_OK;
        PQclear(res);
        break;
      }
      default:  // ACTIVE or UNKNOWN: the connection is in no state to reuse
        broken = true;
    }
    if (PQstatus(conn) != CONNECTION_OK) broken = true;
  }
  std::vector<PGconn*> to_close;
  {
    std::lock_guard lock(mu_);
    if (broken || closed_) {
      to_close.push_back(conn);
      if (broken) {
        // Opened before the failure, so most likely dead too (a restarted
        // server ends every connection): better a fresh one than a retry.
        to_close.insert(to_close.end(), idle_.begin(), idle_.end());
        idle_.clear();
      }
      open_ -= to_close.size();
    } else {
      idle_.push_back(conn);
    }
  }
  available_.notify_all();
  for (PGconn* c : to_close) PQfinish(c);
}

void PostgresConnectionPool::Close() {
  std::vector<PGconn*> to_close;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    to_close.swap(idle_);
    open_ -= to_close.size();
  }
  available_.notify_all();
  for (PGconn* c : to_close) PQfinish(c);
}

bool PostgresConnectionPool::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

size_t PostgresConnectionPool::open_connections() const {
  std::lock_guard lock(mu_);
  return open_;
}

PostgresConnectionPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_),
      conn_(std::exchange(other.conn_, nullptr)),
      reused_(other.reused_),
      broken_(other.broken_) {}

PostgresConnectionPool::Lease::~Lease() {
  if (conn_ != nullptr) pool_->Return(conn_, broken_);
}

}  // namespace fstore
