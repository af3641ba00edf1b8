#pragma once

// One connection to one Redis server, with a deadline on everything it does.
//
// Why not hiredis's own connection: Debian's hiredis is 0.14.1, which has no
// TLS, and its blocking API gives one socket timeout per read or write, not a
// deadline for a whole pipeline (a slow server that trickles bytes could hold
// a call for many timeouts). So hiredis does what it is good at, the RESP
// protocol (redisFormatCommandArgv to encode, redisReader to parse), and this
// class does the I/O: a non-blocking socket driven by poll() until a
// deadline, TLS through OpenSSL with memory BIOs (so that every byte on the
// wire still goes through our own send()/recv(), with MSG_NOSIGNAL and the
// same poll loop), and pipelining: a request of many commands is written
// while the replies are read, so neither side's buffers can fill up and stall.
//
// A connection is used by one thread at a time (the store's pool hands it
// out). After any failure (an I/O error, a timeout with replies still
// unread, a protocol error) it is broken() and must be dropped.

#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hiredis/hiredis.h>

#include "fstore/core/status.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace fstore::redis_internal {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

struct RedisReplyDeleter {
  void operator()(redisReply* reply) const {
    if (reply != nullptr) freeReplyObject(reply);
  }
};
/// A parsed reply (hiredis's redisReply), owned.
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyDeleter>;

/// Appends the RESP encoding of one command (its arguments, binary-safe) to `out`.
void AppendCommand(std::string* out, std::initializer_list<std::string_view> args);
void AppendCommand(std::string* out, std::span<const std::string_view> args);

/// The text of a reply of type string, status or error ("" for others).
std::string_view ReplyText(const redisReply* reply);

/// How to reach a server.
struct RedisConnectOptions {
  std::string user;      ///< ACL user; empty: the default user
  std::string password;  ///< AUTH when not empty
  int db = 0;            ///< SELECT when not 0 (never in cluster mode)
  /// TLS when not null (not owned; outlives the connection). The server's
  /// certificate is checked against `host` when the context verifies peers.
  SSL_CTX* tls = nullptr;
};

class RedisConnection {
 public:
  /// Connects to host:port, completes TLS and AUTH/SELECT, all before
  /// `deadline`. Unavailable on any failure (refused, timed out, refused
  /// password), with the address in the message.
  static Result<std::unique_ptr<RedisConnection>> Connect(const std::string& host, int port,
                                                          const RedisConnectOptions& options,
                                                          Deadline deadline);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  /// Starts a pipeline: `request` holds `replies` encoded commands. Any
  /// earlier pipeline must be done.
  void Start(std::string request, size_t replies);
  /// Whether every reply of the current pipeline has arrived.
  bool done() const { return replies_.size() == expected_; }
  /// Whether the connection failed and must be dropped.
  bool broken() const { return broken_; }
  /// The replies of the current pipeline so far (all of them once done()).
  std::vector<RedisReplyPtr>& replies() { return replies_; }
  /// "host:port", for messages.
  const std::string& address() const { return address_; }

  /// The poll() events this connection waits for.
  short PollEvents() const;
  /// Sends and receives whatever the socket allows without blocking, and
  /// parses the replies that are complete. An error breaks the connection.
  Status Progress();
  /// Marks the connection broken (a pipeline abandoned at its deadline).
  void Abandon() { broken_ = true; }
  int fd() const { return fd_; }

 private:
  RedisConnection(int fd, std::string address);
  Status Fail(const std::string& what);
  Status HandshakeTls(SSL_CTX* ctx, const std::string& host, Deadline deadline);
  /// Moves TLS output from the write BIO to wire_out_.
  void DrainTlsOutput();
  /// Sends from wire_out_ until it is empty or the socket would block.
  Status SendWire();
  /// Receives once; appends plaintext to the reader. Sets *would_block.
  Status ReceiveOnce(bool* would_block, bool* eof);

  int fd_ = -1;
  std::string address_;
  bool broken_ = false;
  redisReader* reader_ = nullptr;

  // TLS (null without): the SSL object reads ciphertext from rbio_ (fed from
  // recv) and writes it to wbio_ (drained into wire_out_).
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;
  BIO* wbio_ = nullptr;

  std::string out_;       ///< the current request (plaintext)
  size_t out_done_ = 0;   ///< bytes of out_ handed to the socket (or to TLS)
  std::string wire_out_;  ///< TLS only: ciphertext not yet sent
  size_t wire_sent_ = 0;
  size_t expected_ = 0;
  std::vector<RedisReplyPtr> replies_;
};

/// Drives the started pipelines of `connections` together (one poll() over
/// all their sockets) until each is done or broken, or `deadline` passes.
/// statuses[i] is OK when connections[i] got all its replies; a connection
/// still waiting at the deadline is abandoned (broken) with Unavailable.
void RunPipelines(std::span<RedisConnection* const> connections, Deadline deadline,
                  std::vector<Status>* statuses);

/// One pipeline on one connection: `request` holds `replies` commands.
Result<std::vector<RedisReplyPtr>> Execute(RedisConnection* connection, std::string request,
                                           size_t replies, Deadline deadline);

}  // namespace fstore::redis_internal
