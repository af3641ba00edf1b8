#pragma once

// A bounded pool of libpq connections to one PostgreSQL database, for
// PostgresRegistry. libpq connections are not shared between threads: the
// pool hands each one to one caller at a time (a Lease) and takes it back when
// the lease ends. A connection that broke (the server restarted, a backend was
// terminated) is closed instead of returned, and so are the idle ones opened
// before it, which most likely broke with it; the next checkout opens a fresh
// one. Nothing here retries: PostgresRegistry decides what to retry.
//
// Thread safety: every method may be called from any thread.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fstore/core/status.h"

struct pg_conn;

namespace fstore {

struct PostgresPoolOptions {
  /// At most this many connections are open at once; more callers wait.
  size_t max_connections = 8;
  /// libpq's connect_timeout, unless the URL sets one (whole seconds, >= 2).
  int connect_timeout_seconds = 4;
  /// Every statement's statement_timeout (a stuck lock or server ends in an
  /// error instead of a hang).
  std::chrono::milliseconds statement_timeout{15'000};
};

class PostgresConnectionPool {
 public:
  using Clock = std::chrono::steady_clock;

  /// Checks `url` (a postgresql:// or postgres:// URI, or a libpq key=value
  /// string) and opens one connection, so that a wrong host, port, user or
  /// database is an error now. InvalidArgument (field "DATABASE_URL") for a
  /// malformed URL; Unavailable when the connection fails. Messages never hold
  /// the password.
  static Result<std::unique_ptr<PostgresConnectionPool>> Open(const std::string& url,
                                                              PostgresPoolOptions options = {});

  ~PostgresConnectionPool();
  PostgresConnectionPool(const PostgresConnectionPool&) = delete;
  PostgresConnectionPool& operator=(const PostgresConnectionPool&) = delete;

  /// One connection, owned by one caller until the lease ends.
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();  ///< gives the connection back (rolled back if a transaction is open)

    pg_conn* get() const { return conn_; }
    /// Whether the connection served an earlier lease: it may have gone stale
    /// since (the server restarted while it sat idle).
    bool reused() const { return reused_; }
    /// The connection failed: close it (and the idle ones) instead of
    /// returning it.
    void MarkBroken() { broken_ = true; }

   private:
    friend class PostgresConnectionPool;
    Lease(PostgresConnectionPool* pool, pg_conn* conn, bool reused)
        : pool_(pool), conn_(conn), reused_(reused) {}

    PostgresConnectionPool* pool_;
    pg_conn* conn_;
    bool reused_;
    bool broken_ = false;
  };

  /// An idle connection, else a new one while fewer than max_connections are
  /// open, else waits for one until `deadline`. Unavailable when the pool is
  /// closed, when opening a connection fails, or at the deadline.
  Result<Lease> Checkout(Clock::time_point deadline);

  /// Closes the idle connections now and the leased ones when they come back;
  /// later checkouts fail. Idempotent.
  void Close();
  bool closed() const;

  /// The database, for messages: "postgresql://user@host:port/db" (no password).
  const std::string& description() const { return description_; }
  /// Connections open now, idle or leased.
  size_t open_connections() const;

 private:
  PostgresConnectionPool(std::string url, std::string description, PostgresPoolOptions options)
      : url_(std::move(url)), description_(std::move(description)), options_(options) {}

  /// Opens and sets up a new connection (no lock held).
  Result<pg_conn*> Connect();
  /// Takes back a lease's connection.
  void Return(pg_conn* conn, bool broken);

  const std::string url_;
  const std::string description_;
  const PostgresPoolOptions options_;

  mutable std::mutex mu_;
  std::condition_variable available_;
  std::vector<pg_conn*> idle_;  // guarded by mu_
  size_t open_ = 0;             // guarded by mu_: idle + leased + being opened
  bool closed_ = false;         // guarded by mu_
};

/// `text` with the password of `url` (if it has one) replaced by "***": for
/// libpq's messages about a URL, which may quote it.
std::string RedactPassword(std::string text, const std::string& url);

}  // namespace fstore
