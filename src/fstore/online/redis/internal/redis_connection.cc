#include "fstore/online/redis/internal/redis_connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace fstore::redis_internal {

namespace {

/// Plaintext is handed to TLS only while less than this much ciphertext
/// waits for the socket, so a large request is not encrypted all at once.
constexpr size_t kMaxPendingWire = 256 * 1024;
constexpr size_t kIoChunk = 32 * 1024;

std::string ErrnoText(int err) { return std::strerror(err); }

/// The milliseconds left before `deadline`, rounded up; <= 0 once it passed.
int RemainingMillis(Deadline deadline) {
  auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(ms);
}

/// Waits until `fd` is ready for `events` or the deadline passes.
Status WaitFd(int fd, short events, Deadline deadline, const std::string& address,
              const char* what) {
  while (true) {
    int ms = RemainingMillis(deadline);
    if (ms <= 0) return Unavailable("redis at " + address + ": timed out " + what);
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, ms);
    if (rc > 0) return Status::OK();
    if (rc < 0 && errno != EINTR) {
      return Unavailable("redis at " + address + ": poll failed " + what + ": " + ErrnoText(errno));
    }
  }
}

std::string TlsErrorText() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "TLS error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

bool IsIpAddress(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

void AppendCommand(std::string* out, std::span<const std::string_view> args) {
  constexpr size_t kInline = 8;
  const char* argv_inline[kInline];
  size_t len_inline[kInline];
  std::vector<const char*> argv_heap;
  std::vector<size_t> len_heap;
  const char** argv = argv_inline;
  size_t* lens = len_inline;
  if (args.size() > kInline) {
    argv_heap.resize(args.size());
    len_heap.resize(args.size());
    argv = argv_heap.data();
    lens = len_heap.data();
  }
  for (size_t i = 0; i < args.size(); ++i) {
    argv[i] = args[i].data();
    lens[i] = args[i].size();
  }
  char* command = nullptr;
  int n = redisFormatCommandArgv(&command, static_cast<int>(args.size()), argv, lens);
  if (n < 0 || command == nullptr) throw std::bad_alloc();  // hiredis fails only on allocation
  out->append(command, static_cast<size_t>(n));
  redisFreeCommand(command);
}

void AppendCommand(std::string* out, std::initializer_list<std::string_view> args) {
  AppendCommand(out, std::span<const std::string_view>(args.begin(), args.size()));
}

std::string_view ReplyText(const redisReply* reply) {
  if (reply == nullptr) return {};
  switch (reply->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
      return std::string_view(reply->str, reply->len);
    default:
      return {};
  }
}

RedisConnection::RedisConnection(int fd, std::string address)
    : fd_(fd), address_(std::move(address)), reader_(redisReaderCreate()) {}

RedisConnection::~RedisConnection() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // frees rbio_ and wbio_ too
  if (reader_ != nullptr) redisReaderFree(reader_);
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<RedisConnection>> RedisConnection::Connect(const std::string& host, int port,
                                                                  const RedisConnectOptions& options,
                                                                  Deadline deadline) {
  std::string address =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* addresses = nullptr;
  // getaddrinfo blocks without a deadline of its own; numeric hosts and
  // /etc/hosts names answer at once, and a server resolves its few Redis
  // names once per reconnect, not per request.
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &addresses);
  if (rc != 0) {
    return Unavailable("redis at " + address + ": cannot resolve the host: " + gai_strerror(rc));
  }
  int fd = -1;
  Status last = Unavailable("redis at " + address + ": no address to connect to");
  for (addrinfo* ai = addresses; ai != nullptr; ai = ai->ai_next) {
    int s = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (s < 0) {
      last = Unavailable("redis at " + address + ": socket: " + ErrnoText(errno));
      continue;
    }
    if (::connect(s, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last = Unavailable("redis at " + address + ": cannot connect: " + ErrnoText(errno));
        ::close(s);
        continue;
      }
      Status waited = WaitFd(s, POLLOUT, deadline, address, "connecting");
      int err = 0;
      socklen_t len = sizeof err;
      if (waited.ok() && ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (!waited.ok() || err != 0) {
        last = waited.ok() ? Unavailable("redis at " + address + ": cannot connect: " + ErrnoText(err))
                           : waited;
        ::close(s);
        continue;
      }
    }
    fd = s;
    break;
  }
  ::freeaddrinfo(addresses);
  if (fd < 0) return last;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  std::unique_ptr<RedisConnection> connection(new RedisConnection(fd, address));
  if (connection->reader_ == nullptr) throw std::bad_alloc();
  if (options.tls != nullptr) ARROW_RETURN_NOT_OK(connection->HandshakeTls(options.tls, host, deadline));

  std::string request;
  size_t commands = 0;
  if (!options.password.empty()) {
    if (options.user.empty()) {
      AppendCommand(&request, {"AUTH", options.password});
    } else {
      AppendCommand(&request, {"AUTH", options.user, options.password});
    }
    ++commands;
  }
  if (options.db != 0) {
    AppendCommand(&request, {"SELECT", std::to_string(options.db)});
    ++commands;
  }
  if (commands > 0) {
    ARROW_ASSIGN_OR_RAISE(auto replies,
                          Execute(connection.get(), std::move(request), commands, deadline));
    for (const auto& reply : replies) {
      if (reply->type == REDIS_REPLY_ERROR) {
        return Unavailable("redis at " + address + " refused the connection's setup (AUTH/SELECT): " +
                           std::string(ReplyText(reply.get())));
      }
    }
  }
  return connection;
}

Status RedisConnection::Fail(const std::string& what) {
  broken_ = true;
  return Unavailable("redis at " + address_ + ": " + what);
}

Status RedisConnection::HandshakeTls(SSL_CTX* ctx, const std::string& host, Deadline deadline) {
  ssl_ = SSL_new(ctx);
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || rbio_ == nullptr || wbio_ == nullptr) {
    if (ssl_ == nullptr) {
      BIO_free(rbio_);
      BIO_free(wbio_);
    }
    return Fail("cannot set up TLS: " + TlsErrorText());
  }
  // An empty memory BIO means "no data yet", not end of file.
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);  // the SSL object owns both BIOs now
  SSL_set_connect_state(ssl_);
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  bool ip = IsIpAddress(host);
  if (!ip) SSL_set_tlsext_host_name(ssl_, host.c_str());
  if (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                : X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
    if (ok != 1) return Fail("cannot set the TLS host name to check: " + TlsErrorText());
  }
  while (true) {
    ERR_clear_error();
    int rc = SSL_do_handshake(ssl_);
    DrainTlsOutput();
    while (wire_sent_ < wire_out_.size()) {
      ARROW_RETURN_NOT_OK(SendWire());
      if (wire_sent_ < wire_out_.size()) {
        Status waited = WaitFd(fd_, POLLOUT, deadline, address_, "in the TLS handshake");
        if (!waited.ok()) return Fail("timed out in the TLS handshake");
      }
    }
    if (rc == 1) return Status::OK();
    int err = SSL_get_error(ssl_, rc);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
      long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) {
        return Fail(std::string("TLS handshake failed: the server's certificate: ") +
                    X509_verify_cert_error_string(verify));
      }
      return Fail("TLS handshake failed: " + TlsErrorText());
    }
    if (err == SSL_ERROR_WANT_READ) {
      Status waited = WaitFd(fd_, POLLIN, deadline, address_, "in the TLS handshake");
      if (!waited.ok()) return Fail("timed out in the TLS handshake");
      char buf[kIoChunk];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return Fail("the server closed the connection in the TLS handshake");
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        return Fail("TLS handshake: " + ErrnoText(errno));
      }
      BIO_write(rbio_, buf, static_cast<int>(n));
    }
  }
}

void RedisConnection::DrainTlsOutput() {
  char buf[kIoChunk];
  while (BIO_ctrl_pending(wbio_) > 0) {
    int n = BIO_read(wbio_, buf, sizeof buf);
    if (n <= 0) break;
    wire_out_.append(buf, static_cast<size_t>(n));
  }
}

Status RedisConnection::SendWire() {
  std::string& buffer = ssl_ != nullptr ? wire_out_ : out_;
  size_t& sent = ssl_ != nullptr ? wire_sent_ : out_done_;
  while (sent < buffer.size()) {
    ssize_t n = ::send(fd_, buffer.data() + sent, buffer.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return Fail("send: " + ErrnoText(errno));
  }
  if (ssl_ != nullptr && wire_sent_ == wire_out_.size()) {
    wire_out_.clear();
    wire_sent_ = 0;
  }
  return Status::OK();
}

Status RedisConnection::ReceiveOnce(bool* would_block, bool* eof) {
  char buf[kIoChunk];
  ssize_t n;
  do {
    n = ::recv(fd_, buf, sizeof buf, 0);
  } while (n < 0 && errno == EINTR);
  if (n == 0) {
    *eof = true;
    return Status::OK();
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *would_block = true;
      return Status::OK();
    }
    return Fail("recv: " + ErrnoText(errno));
  }
  if (ssl_ == nullptr) {
    if (redisReaderFeed(reader_, buf, static_cast<size_t>(n)) != REDIS_OK) {
      return Fail("cannot buffer a reply");
    }
    return Status::OK();
  }
  BIO_write(rbio_, buf, static_cast<int>(n));
  char plain[kIoChunk];
  while (true) {
    ERR_clear_error();
    int got = SSL_read(ssl_, plain, sizeof plain);
    if (got > 0) {
      if (redisReaderFeed(reader_, plain, static_cast<size_t>(got)) != REDIS_OK) {
        return Fail("cannot buffer a reply");
      }
      continue;
    }
    int err = SSL_get_error(ssl_, got);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      *eof = true;
      break;
    }
    if (err == SSL_ERROR_WANT_WRITE) break;  // output is drained below
    return Fail("TLS read: " + TlsErrorText());
  }
  // Reading may make TLS answer (a key update): send it with the requests.
  DrainTlsOutput();
  return Status::OK();
}

void RedisConnection::Start(std::string request, size_t replies) {
  out_ = std::move(request);
  out_done_ = 0;
  expected_ = replies;
  replies_.clear();
  replies_.reserve(replies);
}

short RedisConnection::PollEvents() const {
  short events = POLLIN;
  bool pending = out_done_ < out_.size() || (ssl_ != nullptr && wire_sent_ < wire_out_.size());
  if (pending) events |= POLLOUT;
  return events;
}

Status RedisConnection::Progress() {
  if (broken_) return Unavailable("redis at " + address_ + ": the connection is broken");
  if (ssl_ != nullptr) {
    while (out_done_ < out_.size() && wire_out_.size() - wire_sent_ < kMaxPendingWire) {
      ERR_clear_error();
      size_t chunk = std::min(out_.size() - out_done_, kIoChunk);
      int n = SSL_write(ssl_, out_.data() + out_done_, static_cast<int>(chunk));
      if (n <= 0) {
        int err = SSL_get_error(ssl_, n);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) break;
        return Fail("TLS write: " + TlsErrorText());
      }
      out_done_ += static_cast<size_t>(n);
      DrainTlsOutput();
    }
  }
  ARROW_RETURN_NOT_OK(SendWire());
  while (!done()) {
    void* reply = nullptr;
    if (redisReaderGetReply(reader_, &reply) != REDIS_OK) {
      return Fail(std::string("protocol error: ") + reader_->errstr);
    }
    if (reply != nullptr) {
      replies_.emplace_back(static_cast<redisReply*>(reply));
      continue;
    }
    bool would_block = false;
    bool eof = false;
    ARROW_RETURN_NOT_OK(ReceiveOnce(&would_block, &eof));
    if (ssl_ != nullptr) ARROW_RETURN_NOT_OK(SendWire());
    if (eof) {
      // Replies already buffered still count; then the connection is gone.
      while (!done()) {
        void* last = nullptr;
        if (redisReaderGetReply(reader_, &last) != REDIS_OK || last == nullptr) break;
        replies_.emplace_back(static_cast<redisReply*>(last));
      }
      broken_ = true;
      if (!done()) return Fail("the server closed the connection");
      break;
    }
    if (would_block) break;
  }
  return Status::OK();
}

void RunPipelines(std::span<RedisConnection* const> connections, Deadline deadline,
                  std::vector<Status>* statuses) {
  const size_t n = connections.size();
  statuses->assign(n, Status::OK());
  for (size_t i = 0; i < n; ++i) (*statuses)[i] = connections[i]->Progress();
  std::vector<pollfd> fds;
  std::vector<size_t> index;
  while (true) {
    fds.clear();
    index.clear();
    for (size_t i = 0; i < n; ++i) {
      if ((*statuses)[i].ok() && !connections[i]->done()) {
        fds.push_back(pollfd{connections[i]->fd(), connections[i]->PollEvents(), 0});
        index.push_back(i);
      }
    }
    if (fds.empty()) return;
    int ms = RemainingMillis(deadline);
    if (ms <= 0) {
      for (size_t i : index) {
        connections[i]->Abandon();
        (*statuses)[i] = Unavailable("redis at " + connections[i]->address() +
                                     ": no complete answer before the deadline");
      }
      return;
    }
    int rc = ::poll(fds.data(), fds.size(), ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      for (size_t i : index) {
        connections[i]->Abandon();
        (*statuses)[i] = Unavailable("poll failed: " + ErrnoText(errno));
      }
      return;
    }
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      size_t i = index[k];
      (*statuses)[i] = connections[i]->Progress();
      if ((*statuses)[i].ok() && !connections[i]->done() && (fds[k].revents & POLLNVAL)) {
        connections[i]->Abandon();
        (*statuses)[i] = Unavailable("redis at " + connections[i]->address() + ": invalid socket");
      }
    }
  }
}

Result<std::vector<RedisReplyPtr>> Execute(RedisConnection* connection, std::string request,
                                           size_t replies, Deadline deadline) {
  connection->Start(std::move(request), replies);
  std::vector<Status> statuses;
  RedisConnection* one[] = {connection};
  RunPipelines(one, deadline, &statuses);
  ARROW_RETURN_NOT_OK(statuses[0]);
  return std::move(connection->replies());
}

}  // namespace fstore::redis_internal
