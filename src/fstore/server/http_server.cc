#include "fstore/server/http_server.h"

// The only translation unit that includes Boost.Beast (compile time).

#include <algorithm>
#include <array>
#include <cstdio>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include "fstore/monitoring/metrics.h"
#include "fstore/server/http_error.h"
#include "fstore/server/internal/request_target.h"

namespace fstore {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

/// Counts a request and its latency under its route pattern (so a label
/// never holds an id from a path), "unmatched" when no route took it. A
/// method outside the standard ones is "other": clients cannot grow the
/// number of series.
void RecordRequestMetrics(std::string_view method, std::string_view route, int status,
                          Clock::time_point start) {
  static constexpr std::string_view kMethods[] = {"GET",    "POST", "PUT",    "PATCH",
                                                  "DELETE", "HEAD", "OPTIONS"};
  std::string_view method_label = "other";
  for (std::string_view m : kMethods) {
    if (m == method) method_label = m;
  }
  if (route.empty()) route = "unmatched";
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  char status_text[8];
  const int n = std::snprintf(status_text, sizeof status_text, "%d", status);
  auto& metrics = monitoring::FstoreMetrics::Get();
  metrics.http_requests->With({method_label, route, std::string_view(status_text, n)})->Inc();
  metrics.http_request_duration->With({method_label, route})->Observe(seconds);
}

/// Largest accepted request head (request line and headers), in bytes.
constexpr uint32_t kHeaderLimitBytes = 16 * 1024;
/// After an error response that closes the connection, how long unread request
/// bytes are drained so that the client sees the response rather than a reset.
constexpr auto kLingerTime = std::chrono::seconds(2);
/// How long Shutdown() waits, after closing every connection, for the
/// sessions to wind down before stopping the io_context.
constexpr auto kCloseWaitTime = std::chrono::seconds(2);

class Session;

using Executor = asio::io_context::executor_type;
using Socket = asio::basic_stream_socket<tcp, Executor>;
using Timer = asio::basic_waitable_timer<Clock, asio::wait_traits<Clock>, Executor>;

/// How often, at most, a session's timer checks its deadline: timeouts are
/// exact to within this.
constexpr auto kDeadlineCheckInterval = std::chrono::seconds(1);
/// Bytes asked of the socket per read.
constexpr size_t kReadSize = 16 * 1024;

/// What the server and its sessions share. Sessions hold it by shared_ptr, so
/// a session that outlives the server object (destroyed with the io_context)
/// still finds it.
struct ServerState {
  HttpServerOptions options;
  const Router* router = nullptr;
  std::atomic<bool> shutting_down{false};

  std::mutex mu;
  std::condition_variable changed;             ///< in_flight or sessions changed
  int in_flight = 0;                           ///< requests read but not yet answered
  uint64_t next_session_id = 0;
  std::map<uint64_t, std::weak_ptr<Session>> sessions;  ///< open connections
};

/// One connection: reads requests one after another (keep-alive), runs the
/// router, writes responses. A session lives on one io_context, run by one
/// thread, so its handlers never run concurrently and need no strand.
///
/// The hot path is kept to what a small request needs (profiled at 20,000
/// req/s, docs/benchmarks.md "Online serving"): bytes already received are
/// parsed in place (beast's parser, eager) instead of through composed read
/// operations that complete through the scheduler; the response head is
/// formatted once and written with the body in one gathered write; and
/// timeouts are one deadline per session that a timer checks at most once a
/// second, instead of a timer armed and cancelled around every read and write
/// (which was a timerfd_settime system call and two extra handlers per
/// request).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Socket&& socket, std::shared_ptr<ServerState> state, uint64_t id)
      : socket_(std::move(socket)),
        deadline_timer_(socket_.get_executor()),
        state_(std::move(state)),
        id_(id) {}

  ~Session() {
    EndRequest();
    std::lock_guard lock(state_->mu);
    state_->sessions.erase(id_);
    state_->changed.notify_all();
  }

  void Start() {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this()] {
      beast::error_code ec;
      self->socket_.non_blocking(true, ec);  // for Write's direct attempt
      if (ec) return self->Close();
      self->BeginRequestHead();
      self->WatchDeadline();
    });
  }

  /// Closes the connection unless a request is being handled (for shutdown).
  void CloseIfIdle() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      if (!self->in_request_) self->Close();
    });
  }

  /// Closes the connection whatever it is doing (end of shutdown).
  void CloseNow() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->Close(); });
  }

 private:
  const HttpServerOptions& options() const { return state_->options; }

  void Close() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    deadline_timer_.cancel();
  }

  /// Closes the connection once the current deadline has passed. The timer
  /// fires at the deadline or a second from now, whichever comes first, and
  /// looks again: moving the deadline is only an assignment.
  void WatchDeadline() {
    if (closed_) return;
    const auto now = Clock::now();
    if (now >= deadline_) return Close();  // pending operations end with operation_aborted
    deadline_timer_.expires_at(std::min(deadline_, now + kDeadlineCheckInterval));
    deadline_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->WatchDeadline();
    });
  }

  void SetDeadline(Clock::time_point deadline) { deadline_ = deadline; }

  /// Between keep-alive requests: wait up to the idle timeout for the first
  /// byte of the next request, then give the head its own header timeout.
  void WaitForNextRequest() {
    if (closed_ || state_->shutting_down) return Close();
    SetDeadline(Clock::now() + std::chrono::seconds(options().idle_timeout_seconds));
    socket_.async_read_some(buffer_.prepare(kReadSize),
                            [self = shared_from_this()](beast::error_code ec, size_t bytes) {
                              self->buffer_.commit(bytes);
                              if (ec) return self->Close();  // client closed, timeout, shutdown
                              self->BeginRequestHead();
                            });
  }

  /// A new request: its head must arrive within the header timeout.
  void BeginRequestHead() {
    if (closed_) return;
    request_start_ = Clock::now();
    parser_.emplace();
    parser_->eager(true);  // parse the body in the same pass as the head
    parser_->header_limit(kHeaderLimitBytes);
    if (options().max_body_bytes >= 0) {
      parser_->body_limit(static_cast<uint64_t>(options().max_body_bytes));
    } else {
      parser_->body_limit(boost::none);
    }
    head_seen_ = false;
    SetDeadline(request_start_ + std::chrono::seconds(options().header_timeout_seconds));
    Parse();
  }

  /// Feeds the received bytes to the parser; reads more until the request is
  /// complete (what beast's read operations do, without their completion
  /// hops).
  void Parse() {
    while (!parser_->is_done()) {
      if (buffer_.size() == 0) return ReadMore();
      beast::error_code ec;
      const size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == http::error::need_more) return ReadMore();
      if (ec) return OnReadError(ec);
      if (!head_seen_ && parser_->is_header_done()) {
        head_seen_ = true;
        if (OnHead()) return;  // a 100 Continue is being written
      }
      if (used == 0 && !parser_->is_done()) return ReadMore();
    }
    OnRequest();
  }

  void ReadMore() {
    socket_.async_read_some(buffer_.prepare(kReadSize),
                            [self = shared_from_this()](beast::error_code ec, size_t bytes) {
                              self->OnRead(ec, bytes);
                            });
  }

  void OnRead(beast::error_code ec, size_t bytes) {
    buffer_.commit(bytes);
    if (ec == asio::error::eof && !closed_) {
      // The client half-closed: a complete request needs no more bytes, a
      // partial one is cut short, and nothing at all is a plain close.
      if (!parser_->got_some()) return Close();
      parser_->put_eof(ec);
      if (!ec) return Parse();
    }
    if (ec) return OnReadError(ec);
    Parse();
  }

  /// The head is complete. Returns true when it asked for "100-continue" and
  /// the interim response is being written (parsing resumes after it).
  bool OnHead() {
    BeginRequest();
    // The whole request (head and body) must arrive within the read timeout.
    SetDeadline(request_start_ + std::chrono::seconds(options().read_timeout_seconds));
    const auto& head = parser_->get();
    if (!beast::iequals(head[http::field::expect], "100-continue") || parser_->is_done()) {
      return false;
    }
    static constexpr std::string_view kContinue =
        "HTTP/1.1 100 Continue\r\nServer: fstore\r\n\r\n";
    asio::async_write(socket_, asio::buffer(kContinue.data(), kContinue.size()),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->Close();
                        self->Parse();
                      });
    return true;
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      return WriteErrorAndClose(ErrorResponse(MakeError(
          ErrorCode::kPayloadTooLarge, "request body exceeds the limit of " +
                                           std::to_string(options().max_body_bytes) +
                                           " bytes")));
    }
    if (ec == http::error::header_limit) {
      return WriteErrorAndClose(ErrorResponse(InvalidArgument(
          "", "request head exceeds the limit of " + std::to_string(kHeaderLimitBytes) +
                  " bytes")));
    }
    if (ec.category() == beast::error_code(http::error::end_of_stream).category() &&
        ec != http::error::end_of_stream && ec != http::error::partial_message &&
        ec != http::error::need_more && ec != http::error::need_buffer) {
      // A parse error: the bytes received are not HTTP/1.1.
      return WriteErrorAndClose(
          ErrorResponse(InvalidArgument("", "malformed HTTP request: " + ec.message())));
    }
    // Timeout, end of stream, reset, or closed by shutdown: nothing to answer.
    Close();
  }

  void OnRequest() {
    http::request<http::string_body> message = parser_->release();
    parser_.reset();

    HttpRequest request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    server_internal::SplitRequestTarget(request.target, &request.path, &request.query);
    request.headers.reserve(8);
    for (const auto& field : message) {
      std::string name(field.name_string());
      for (char& c : name) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      request.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    request.body = std::move(message.body());

    HttpResponse response = state_->router->Handle(request);
    RecordRequestMetrics(request.method, request.route, response.status, request_start_);
    const bool keep_alive =
        message.keep_alive() && !response.close_connection && !state_->shutting_down;
    Write(request.method, request.target, message.version(), std::move(response), keep_alive,
          /*linger=*/false);
  }

  void WriteErrorAndClose(HttpResponse response) {
    const bool have_head = parser_ && parser_->is_header_done();
    std::string method = have_head ? std::string(parser_->get().method_string()) : "-";
    std::string target = have_head ? std::string(parser_->get().target()) : "-";
    const unsigned version = have_head ? parser_->get().version() : 11;
    parser_.reset();
    if (!in_request_) BeginRequest();
    RecordRequestMetrics(method, "", static_cast<int>(response.status), request_start_);
    Write(method, target, version, std::move(response), /*keep_alive=*/false, /*linger=*/true);
  }

  /// Formats the head (status line, Server, Content-Type, the handler's
  /// headers, Content-Length, Connection as HTTP/1.0 or 1.1 needs it) and
  /// writes it with the body in one gathered write.
  void Write(std::string_view method, std::string_view target, unsigned version,
             HttpResponse response, bool keep_alive, bool linger) {
    const int status = response.status;
    head_.clear();
    head_ += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    char number[24];
    head_.append(number, static_cast<size_t>(std::snprintf(number, sizeof number, "%d ", status)));
    const auto reason = http::obsolete_reason(static_cast<http::status>(status));
    head_.append(reason.data(), reason.size());
    head_ += "\r\nServer: fstore\r\n";
    if (!response.content_type.empty()) {
      head_ += "Content-Type: ";
      head_ += response.content_type;
      head_ += "\r\n";
    }
    for (const auto& [name, value] : response.headers) {
      head_ += name;
      head_ += ": ";
      head_ += value;
      head_ += "\r\n";
    }
    head_ += "Content-Length: ";
    head_.append(number, static_cast<size_t>(std::snprintf(number, sizeof number, "%zu",
                                                             response.body.size())));
    head_ += "\r\n";
    if (version == 10 && keep_alive) head_ += "Connection: keep-alive\r\n";
    if (version != 10 && !keep_alive) head_ += "Connection: close\r\n";
    head_ += "\r\n";
    body_ = std::move(response.body);

    spdlog::debug("{} {} {} {}us", method, target, status,
                  std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() -
                                                                        request_start_)
                      .count());

    SetDeadline(Clock::now() + std::chrono::seconds(options().read_timeout_seconds));
    std::array<asio::const_buffer, 2> buffers{asio::buffer(head_), asio::buffer(body_)};
    // Usually the socket takes the whole response at once: written here, it
    // needs no completion handler and no extra pass through the reactor
    // (the socket is non-blocking; what it does not take is written
    // asynchronously).
    beast::error_code ec;
    const size_t total = head_.size() + body_.size();
    const size_t written = closed_ ? 0 : socket_.write_some(buffers, ec);
    if (written == total || (ec && ec != asio::error::would_block)) {
      return OnWrite(ec, keep_alive, linger, /*completed_inline=*/true);
    }
    const size_t from_head = std::min(written, head_.size());
    buffers[0] = buffers[0] + from_head;
    buffers[1] = buffers[1] + (written - from_head);
    asio::async_write(socket_, buffers,
                      [self = shared_from_this(), keep_alive, linger](beast::error_code ec,
                                                                      size_t) {
                        self->OnWrite(ec, keep_alive, linger, /*completed_inline=*/false);
                      });
  }

  void OnWrite(beast::error_code ec, bool keep_alive, bool linger, bool completed_inline) {
    EndRequest();
    if (ec) return Close();
    if (linger) return LingeringClose();
    if (!keep_alive) return Close();
    if (buffer_.size() > 0) {
      // A pipelined request is waiting. After an inline write this is still
      // the handler that read the previous one: continue from the scheduler
      // rather than recursing once per pipelined request.
      if (!completed_inline) return BeginRequestHead();
      asio::post(socket_.get_executor(), [self = shared_from_this()] { self->BeginRequestHead(); });
      return;
    }
    WaitForNextRequest();
  }

  /// Half-closes and discards what the client still sends for a while, so
  /// that it reads our error response instead of a connection reset.
  void LingeringClose() {
    beast::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return Close();
    buffer_.consume(buffer_.size());
    SetDeadline(Clock::now() + kLingerTime);
    Drain();
  }

  void Drain() {
    socket_.async_read_some(buffer_.prepare(kReadSize),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->Close();
                              self->Drain();
                            });
  }

  void BeginRequest() {
    in_request_ = true;
    std::lock_guard lock(state_->mu);
    ++state_->in_flight;
  }

  void EndRequest() {
    if (!in_request_) return;
    in_request_ = false;
    std::lock_guard lock(state_->mu);
    --state_->in_flight;
    state_->changed.notify_all();
  }

  Socket socket_;
  Timer deadline_timer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool head_seen_ = false;  ///< OnHead ran for the request being parsed
  std::string head_;        ///< the response head being written
  std::string body_;        ///< the response body being written
  std::shared_ptr<ServerState> state_;
  const uint64_t id_;
  Clock::time_point request_start_ = Clock::now();
  bool in_request_ = false;  ///< between a complete head and the written response
  bool closed_ = false;
};

class BeastHttpServer final : public HttpServer {
 public:
  BeastHttpServer(const HttpServerOptions& options, const Router* router, int threads)
      : iocs_(MakeContexts(threads)),
        ioc_(*iocs_[0]),
        acceptor_(asio::make_strand(ioc_)),
        accept_retry_(acceptor_.get_executor()),
        state_(std::make_shared<ServerState>()),
        thread_count_(threads) {
    for (auto& ioc : iocs_) work_.push_back(asio::make_work_guard(*ioc));
    state_->options = options;
    state_->router = router;
  }

  ~BeastHttpServer() override { Shutdown(); }

  Status Listen() {
    const HttpServerOptions& options = state_->options;
    beast::error_code ec;
    tcp::endpoint endpoint;
    const auto address = asio::ip::make_address(options.host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(address, static_cast<unsigned short>(options.port));
    } else {
      tcp::resolver resolver(ioc_);
      auto results = resolver.resolve(options.host, std::to_string(options.port),
                                      tcp::resolver::passive, ec);
      if (ec || results.empty()) {
        return Unavailable("cannot resolve host '" + options.host + "': " + ec.message());
      }
      endpoint = results.begin()->endpoint();
    }
    const std::string where = options.host + ":" + std::to_string(options.port);
    if (acceptor_.open(endpoint.protocol(), ec)) {
      return Unavailable("cannot open a socket for " + where + ": " + ec.message());
    }
    if (acceptor_.set_option(asio::socket_base::reuse_address(true), ec)) {
      return Unavailable("cannot set SO_REUSEADDR on " + where + ": " + ec.message());
    }
    if (acceptor_.bind(endpoint, ec)) {
      return Unavailable("cannot bind " + where + ": " + ec.message());
    }
    if (acceptor_.listen(asio::socket_base::max_listen_connections, ec)) {
      return Unavailable("cannot listen on " + where + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    return Status::OK();
  }

  void Run() {
    Accept();
    threads_.reserve(thread_count_);
    for (int i = 0; i < thread_count_; ++i) {
      threads_.emplace_back([ioc = iocs_[i].get()] { ioc->run(); });
    }
  }

  int port() const override { return port_; }

  void Shutdown(int grace_seconds = 10) override {
    {
      std::lock_guard lock(shutdown_mu_);
      if (shut_down_) return;
      shut_down_ = true;
    }
    signal_ioc_.stop();  // releases a WaitForSignal() caller
    state_->shutting_down = true;
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ec;
      accept_retry_.cancel();
      acceptor_.close(ec);
    });
    // Idle connections have nothing to finish; busy ones answer with
    // "Connection: close" and close themselves.
    ForEachSession([](Session& s) { s.CloseIfIdle(); });

    const auto deadline = Clock::now() + std::chrono::seconds(std::max(grace_seconds, 0));
    {
      std::unique_lock lock(state_->mu);
      state_->changed.wait_until(lock, deadline, [&] { return state_->in_flight == 0; });
    }
    ForEachSession([](Session& s) { s.CloseNow(); });
    {
      std::unique_lock lock(state_->mu);
      state_->changed.wait_for(lock, kCloseWaitTime, [&] { return state_->sessions.empty(); });
    }
    work_.clear();
    for (auto& ioc : iocs_) ioc->stop();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  void WaitForSignal() override {
    asio::signal_set signals(signal_ioc_, SIGINT, SIGTERM);
    signals.async_wait([](const beast::error_code& ec, int signal_number) {
      if (!ec) spdlog::info("received signal {}, shutting down", signal_number);
    });
    signal_ioc_.run();
    Shutdown();
  }

 private:
  // One io_context per thread, each run by that thread alone: a connection
  // lives on one thread (assigned round-robin), so a request is read,
  // handled and answered without handing work between threads (with one
  // shared io_context, completions hopped threads: most of a small request's
  // CPU time went to waking threads).
  static std::vector<std::unique_ptr<asio::io_context>> MakeContexts(int threads) {
    std::vector<std::unique_ptr<asio::io_context>> out;
    for (int i = 0; i < std::max(threads, 1); ++i) {
      out.push_back(std::make_unique<asio::io_context>(1));
    }
    return out;
  }

  void Accept() {
    asio::io_context& target = *iocs_[next_context_++ % iocs_.size()];
    acceptor_.async_accept(target.get_executor(), [this](beast::error_code ec, Socket socket) {
      OnAccept(ec, std::move(socket));
    });
  }

  void OnAccept(beast::error_code ec, Socket socket) {
    if (state_->shutting_down || !acceptor_.is_open()) return;
    if (ec) {
      // Usually out of file descriptors: back off briefly instead of spinning.
      spdlog::warn("HTTP accept failed: {}", ec.message());
      accept_retry_.expires_after(std::chrono::milliseconds(50));
      accept_retry_.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && !state_->shutting_down) Accept();
      });
      return;
    }
    beast::error_code opt_ec;
    socket.set_option(tcp::no_delay(true), opt_ec);
    std::shared_ptr<Session> session;
    {
      std::lock_guard lock(state_->mu);
      const uint64_t id = state_->next_session_id++;
      session = std::make_shared<Session>(std::move(socket), state_, id);
      state_->sessions.emplace(id, session);
    }
    session->Start();
    Accept();
  }

  template <typename F>
  void ForEachSession(F f) {
    std::vector<std::shared_ptr<Session>> live;
    {
      std::lock_guard lock(state_->mu);
      for (auto& [id, weak] : state_->sessions) {
        if (auto s = weak.lock()) live.push_back(std::move(s));
      }
    }
    for (auto& s : live) f(*s);
  }

  std::vector<std::unique_ptr<asio::io_context>> iocs_;
  asio::io_context& ioc_;  ///< iocs_[0]: the acceptor's
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  size_t next_context_ = 0;  ///< used on the acceptor's strand only
  tcp::acceptor acceptor_;          ///< used only on its strand once running
  asio::steady_timer accept_retry_;
  asio::io_context signal_ioc_;
  std::shared_ptr<ServerState> state_;
  const int thread_count_;
  int port_ = 0;
  std::vector<std::thread> threads_;
  std::mutex shutdown_mu_;
  bool shut_down_ = false;
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                      const Router* router) {
  if (router == nullptr) return InvalidArgument("router", "HttpServer needs a router");
  int threads = options.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto server = std::make_unique<BeastHttpServer>(options, router, threads);
  ARROW_RETURN_NOT_OK(server->Listen());
  server->Run();
  spdlog::info("HTTP server listening on {}:{} ({} threads)", options.host, server->port(),
               threads);
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace fstore
