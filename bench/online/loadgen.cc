// Open-loop HTTP/1.1 load generator for the online serving benchmark.
//
// Sends POST requests at a fixed rate over K keep-alive connections to
// host:port for a fixed duration, with bodies taken round-robin from a file
// (one body per line). Request i is scheduled at start + i / rate whatever
// happened to the earlier ones; when every connection is busy it waits in a
// client-side queue. Latency runs from the scheduled send time to the last
// byte of the response, so a slow server is charged for the requests it kept
// waiting (coordinated omission corrected, as wrk2 does). One connection
// carries one request at a time (no pipelining). Each connection's receive
// buffer is 4 MB (--rcvbuf; 0 for the kernel's default), so that a large
// response is not held up by the client's TCP window (see Options::rcvbuf).
//
// Prints one JSON line: latency percentiles in microseconds, achieved rate
// (responses completed within the run's duration / duration), errors.
//
//   loadgen --port 8002 --rate 20000 --duration 10 --connections 32
//           --bodies bodies.txt [--path /api/v1/serving/online] [--host 127.0.0.1]
//
// Single-threaded: the server under test needs the other core.

#include <sys/prctl.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string path = "/api/v1/serving/online";
  double rate = 1000;       ///< requests per second
  double duration = 10;     ///< seconds of scheduled sends
  int connections = 32;
  std::string bodies_file;
  double drain = 5;         ///< seconds to wait for outstanding responses after the run
  /// SO_RCVBUF of each connection (0: the kernel's default). With Linux's
  /// default (a 64 KB initial window on loopback) a response of 100 KB or
  /// more waits for a window update, which came 8-10 ms late for about one
  /// request in ten at 50 req/s (100x50, ~109 KB): a client's setting, not
  /// the server's time, so the default is a window that holds a response.
  int rcvbuf = 4 << 20;
};

/// One run's counters; latencies in nanoseconds from the scheduled send time.
struct Stats {
  std::vector<int64_t> latencies_ns;
  uint64_t scheduled = 0;
  uint64_t completed_in_window = 0;  ///< 200s completed before start + duration
  uint64_t non200 = 0;
  uint64_t io_errors = 0;            ///< requests lost to a broken connection
  uint64_t reconnects = 0;
  uint64_t bytes_in = 0;
  int64_t max_timer_lag_ns = 0;      ///< how late the generator woke for a due request
};

class LoadGenerator;

/// A keep-alive connection carrying one request at a time.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, LoadGenerator* gen) : socket_(io), gen_(gen) {}
  void Connect(const tcp::endpoint& ep);
  void Send(const std::string* request, Clock::time_point scheduled);
  bool idle() const { return connected_ && !busy_; }
  void Close() {
    beast::error_code ec;
    socket_.close(ec);
  }

 private:
  void OnResponse(beast::error_code ec);
  void Fail();

  tcp::socket socket_;
  LoadGenerator* gen_;
  tcp::endpoint endpoint_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::string_body>> parser_;
  Clock::time_point scheduled_;
  bool connected_ = false;
  bool busy_ = false;
  uint64_t generation_ = 0;  ///< bumped per socket; late handlers of a closed socket are ignored
};

class LoadGenerator {
 public:
  LoadGenerator(Options opts, std::vector<std::string> requests)
      : opts_(std::move(opts)), requests_(std::move(requests)), timer_(io_) {}

  int Run() {
    tcp::endpoint ep(asio::ip::make_address(opts_.host), static_cast<uint16_t>(opts_.port));
    for (int i = 0; i < opts_.connections; ++i) {
      conns_.push_back(std::make_shared<Connection>(io_, this));
      conns_.back()->Connect(ep);
    }
    // Connect before the clock starts.
    while (connected_ < opts_.connections && failed_connects_ == 0) io_.run_one();
    if (failed_connects_ > 0) {
      std::fprintf(stderr, "loadgen: cannot connect to %s:%d\n", opts_.host.c_str(), opts_.port);
      return 2;
    }
    total_ = static_cast<uint64_t>(opts_.rate * opts_.duration);
    interval_ns_ = 1e9 / opts_.rate;
    start_ = Clock::now();
    end_ = start_ + std::chrono::nanoseconds(static_cast<int64_t>(opts_.duration * 1e9));
    stats_.latencies_ns.reserve(total_);
    io_.restart();  // run_one() stopped the context when the connects left it without work
    Tick();
    io_.run();
    Report();
    return 0;
  }

  /// A connection finished a request: record it and hand it the next queued one.
  void Done(Connection* c, Clock::time_point scheduled, int status, size_t bytes) {
    auto now = Clock::now();
    --outstanding_;
    if (status == 200) {
      stats_.latencies_ns.push_back((now - scheduled).count());
      if (now <= end_) ++stats_.completed_in_window;
      stats_.bytes_in += bytes;
    } else {
      ++stats_.non200;
    }
    Dispatch(c);
    MaybeFinish();
  }
  void Lost() {
    --outstanding_;
    ++stats_.io_errors;
    MaybeFinish();
  }
  void Connected(Connection* c, bool ok) {
    if (!ok) {
      ++failed_connects_;
      if (started()) reconnect_pending_ = true;
      return;
    }
    ++connected_;
    if (started()) Dispatch(c);
  }
  void Reconnecting() { ++stats_.reconnects; }
  bool started() const { return start_ != Clock::time_point{}; }
  bool finished() const { return finished_; }
  const Options& options() const { return opts_; }

 private:
  Clock::time_point Due(uint64_t i) const {
    return start_ + std::chrono::nanoseconds(static_cast<int64_t>(i * interval_ns_));
  }

  // Queues every request that is due and sleeps until the next one is.
  void Tick() {
    auto now = Clock::now();
    while (next_ < total_ && Due(next_) <= now) {
      stats_.max_timer_lag_ns = std::max<int64_t>(stats_.max_timer_lag_ns, (now - Due(next_)).count());
      queue_.push_back(Due(next_));
      ++next_;
      ++outstanding_;
    }
    stats_.scheduled = next_;
    for (auto& c : conns_) {
      if (queue_.empty()) break;
      if (c->idle()) Dispatch(c.get());
    }
    if (next_ < total_) {
      timer_.expires_at(Due(next_));
      timer_.async_wait([this](beast::error_code ec) {
        if (!ec) Tick();
      });
    } else {
      // Everything scheduled: wait for the stragglers at most `drain` seconds.
      timer_.expires_at(end_ + std::chrono::nanoseconds(static_cast<int64_t>(opts_.drain * 1e9)));
      timer_.async_wait([this](beast::error_code ec) {
        if (!ec) Finish();
      });
      MaybeFinish();
    }
  }

  void Dispatch(Connection* c) {
    if (queue_.empty() || !c->idle()) return;
    auto scheduled = queue_.front();
    queue_.pop_front();
    c->Send(&requests_[sent_++ % requests_.size()], scheduled);
  }

  void MaybeFinish() {
    if (next_ >= total_ && outstanding_ == 0) Finish();
  }

  void Finish() {
    if (finished_) return;
    finished_ = true;
    timer_.cancel();
    for (auto& c : conns_) c->Close();
    io_.stop();
  }

  /// This process's user + system CPU time so far: whether the generator kept a core busy.
  static double CpuSeconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }

  static double Percentile(const std::vector<int64_t>& sorted, double p) {
    if (sorted.empty()) return 0;
    size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
    return static_cast<double>(sorted[std::min(i, sorted.size() - 1)]) / 1000.0;
  }

  void Report() {
    auto& l = stats_.latencies_ns;
    std::sort(l.begin(), l.end());
    double mean = 0;
    for (auto v : l) mean += static_cast<double>(v);
    mean = l.empty() ? 0 : mean / static_cast<double>(l.size()) / 1000.0;
    uint64_t unfinished = outstanding_;
    std::printf(
        "{\"target_rate\": %.0f, \"duration_s\": %.3f, \"connections\": %d, "
        "\"scheduled\": %llu, \"completed\": %zu, \"achieved_rate\": %.1f, "
        "\"errors\": %llu, \"non200\": %llu, \"io_errors\": %llu, \"unfinished\": %llu, "
        "\"reconnects\": %llu, "
        "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
        "\"max_us\": %.1f, \"mean_us\": %.1f, \"mean_response_bytes\": %.0f, "
        "\"max_timer_lag_us\": %.1f, \"loadgen_cpu_s\": %.3f}\n",
        opts_.rate, opts_.duration, opts_.connections,
        static_cast<unsigned long long>(stats_.scheduled), l.size(),
        static_cast<double>(stats_.completed_in_window) / opts_.duration,
        static_cast<unsigned long long>(stats_.non200 + stats_.io_errors + unfinished),
        static_cast<unsigned long long>(stats_.non200),
        static_cast<unsigned long long>(stats_.io_errors),
        static_cast<unsigned long long>(unfinished),
        static_cast<unsigned long long>(stats_.reconnects), Percentile(l, 50), Percentile(l, 90),
        Percentile(l, 99), Percentile(l, 99.9), l.empty() ? 0.0 : l.back() / 1000.0, mean,
        l.empty() ? 0.0 : static_cast<double>(stats_.bytes_in) / static_cast<double>(l.size()),
        static_cast<double>(stats_.max_timer_lag_ns) / 1000.0, CpuSeconds());
    std::fflush(stdout);
  }

  Options opts_;
  std::vector<std::string> requests_;
  asio::io_context io_{1};
  asio::steady_timer timer_;
  std::vector<std::shared_ptr<Connection>> conns_;
  std::deque<Clock::time_point> queue_;  ///< scheduled times waiting for a connection
  Stats stats_;
  Clock::time_point start_{}, end_{};
  double interval_ns_ = 0;
  uint64_t total_ = 0, next_ = 0, sent_ = 0, outstanding_ = 0;
  int connected_ = 0, failed_connects_ = 0;
  bool reconnect_pending_ = false;
  bool finished_ = false;
};

void Connection::Connect(const tcp::endpoint& ep) {
  endpoint_ = ep;
  socket_.async_connect(ep, [self = shared_from_this(), g = generation_](beast::error_code ec) {
    if (self->gen_->finished() || g != self->generation_) return;
    if (ec) {
      self->gen_->Connected(self.get(), false);
      return;
    }
    self->socket_.set_option(tcp::no_delay(true));
    if (self->gen_->options().rcvbuf > 0) {
      beast::error_code ignored;
      self->socket_.set_option(asio::socket_base::receive_buffer_size(self->gen_->options().rcvbuf),
                               ignored);
    }
    self->connected_ = true;
    self->gen_->Connected(self.get(), true);
  });
}

void Connection::Send(const std::string* request, Clock::time_point scheduled) {
  busy_ = true;
  scheduled_ = scheduled;
  asio::async_write(socket_, asio::buffer(*request),
                    [self = shared_from_this(), g = generation_](beast::error_code ec, size_t) {
                      if (ec && g == self->generation_) self->Fail();
                    });
  parser_.emplace();
  parser_->body_limit(256u << 20);
  http::async_read(socket_, buffer_, *parser_,
                   [self = shared_from_this(), g = generation_](beast::error_code ec, size_t) {
                     if (g == self->generation_) self->OnResponse(ec);
                   });
}

void Connection::OnResponse(beast::error_code ec) {
  if (gen_->finished()) return;
  if (ec) {
    Fail();
    return;
  }
  auto& res = parser_->get();
  int status = res.result_int();
  size_t bytes = res.body().size();
  bool keep_alive = res.keep_alive();
  busy_ = false;
  if (!keep_alive) {
    // The server closes after this response: reopen before taking more work.
    connected_ = false;
    beast::error_code ignored;
    socket_.close(ignored);
    socket_ = tcp::socket(socket_.get_executor());
    ++generation_;
    buffer_.clear();
    gen_->Reconnecting();
    Connect(endpoint_);
  }
  gen_->Done(this, scheduled_, status, bytes);
}

void Connection::Fail() {
  bool was_busy = busy_;
  busy_ = false;
  connected_ = false;
  beast::error_code ignored;
  socket_.close(ignored);
  socket_ = tcp::socket(socket_.get_executor());
  ++generation_;
  buffer_.clear();
  if (was_busy) gen_->Lost();
  if (gen_->finished()) return;
  gen_->Reconnecting();
  Connect(endpoint_);
}

int Usage() {
  std::fprintf(stderr,
               "usage: loadgen --port N --rate R --duration S --connections K --bodies FILE "
               "[--host 127.0.0.1] [--path /api/v1/serving/online] [--drain S] [--rcvbuf BYTES]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage();
    std::string v = argv[++i];
    if (a == "--host") opts.host = v;
    else if (a == "--port") opts.port = std::atoi(v.c_str());
    else if (a == "--path") opts.path = v;
    else if (a == "--rate") opts.rate = std::atof(v.c_str());
    else if (a == "--duration") opts.duration = std::atof(v.c_str());
    else if (a == "--connections") opts.connections = std::atoi(v.c_str());
    else if (a == "--bodies") opts.bodies_file = v;
    else if (a == "--drain") opts.drain = std::atof(v.c_str());
    else if (a == "--rcvbuf") opts.rcvbuf = std::atoi(v.c_str());
    else return Usage();
  }
  if (opts.port <= 0 || opts.rate <= 0 || opts.duration <= 0 || opts.connections <= 0 ||
      opts.bodies_file.empty()) {
    return Usage();
  }
  // Wake timers on time: the default 50 us slack is a visible share of a
  // 200 us round trip.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

  std::ifstream in(opts.bodies_file);
  if (!in) {
    std::fprintf(stderr, "loadgen: cannot read %s\n", opts.bodies_file.c_str());
    return 2;
  }
  // Pre-serialize every request once; sending is then one write of a string.
  std::vector<std::string> requests;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::string req = "POST " + opts.path + " HTTP/1.1\r\nHost: " + opts.host + ":" +
                      std::to_string(opts.port) +
                      "\r\nContent-Type: application/json\r\nContent-Length: " +
                      std::to_string(line.size()) + "\r\n\r\n" + line;
    requests.push_back(std::move(req));
  }
  if (requests.empty()) {
    std::fprintf(stderr, "loadgen: no bodies in %s\n", opts.bodies_file.c_str());
    return 2;
  }
  LoadGenerator gen(std::move(opts), std::move(requests));
  return gen.Run();
}
