#pragma once

// Test support for the S3 tests (offline and service): the test server's
// settings from the environment (scripts/test-s3.sh start prints them), a
// unique bucket name per test, and a TCP proxy in front of the server that a
// test can cut to make S3 go down in the middle of a write. Header-only;
// tests only.
//
//   FSTORE_TEST_S3_ENDPOINT    http://127.0.0.1:59000 (unset: the tests skip)
//   FSTORE_TEST_S3_ACCESS_KEY  testing
//   FSTORE_TEST_S3_SECRET_KEY  testing
//   FSTORE_TEST_S3_REGION      us-east-1

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fstore/offline/s3_filesystem.h"

namespace fstore {

/// The test server's connection settings, or nullopt when
/// FSTORE_TEST_S3_ENDPOINT is unset. Short timeouts: a test never waits long
/// for a server that is down.
inline std::optional<S3ConnectionOptions> S3TestOptions() {
  const char* endpoint = std::getenv("FSTORE_TEST_S3_ENDPOINT");
  if (endpoint == nullptr || *endpoint == '\0') return std::nullopt;
  auto env = [](const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return std::string(v != nullptr && *v != '\0' ? v : fallback);
  };
  S3ConnectionOptions options;
  options.endpoint = endpoint;
  options.access_key = env("FSTORE_TEST_S3_ACCESS_KEY", "testing");
  options.secret_key = env("FSTORE_TEST_S3_SECRET_KEY", "testing");
  options.region = env("FSTORE_TEST_S3_REGION", "us-east-1");
  options.connect_timeout_seconds = 2;
  options.request_timeout_seconds = 10;
  options.max_attempts = 2;
  return options;
}

/// A bucket name no other test (or test process) uses: "fstore-<tag>-<pid>-<n>".
inline std::string UniqueTestBucket(const std::string& tag) {
  static std::atomic<int> counter{0};
  return "fstore-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

/// Forwards TCP connections from 127.0.0.1:<port()> to a target address, until
/// Cut(): then the port refuses connections and the open ones are reset, as
/// when a server goes down. Resume() listens again on the same port.
class TcpProxy {
 public:
  /// Proxies to `endpoint` ("http://host:port"; host an IPv4 address).
  static std::unique_ptr<TcpProxy> Start(const std::string& endpoint) {
    std::string rest = endpoint.substr(endpoint.find("://") + 3);
    while (!rest.empty() && rest.back() == '/') rest.pop_back();
    const size_t colon = rest.rfind(':');
    auto proxy = std::unique_ptr<TcpProxy>(new TcpProxy());
    proxy->target_host_ = rest.substr(0, colon);
    proxy->target_port_ = colon == std::string::npos ? 80 : std::stoi(rest.substr(colon + 1));
    if (!proxy->Listen(0)) return nullptr;
    return proxy;
  }

  ~TcpProxy() { Cut(); }

  int port() const { return port_; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }

  /// Takes the "server" down: no new connections, open ones closed.
  void Cut() {
    stopping_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard lock(mu_);
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : pumps_) t.join();
    pumps_.clear();
    std::lock_guard lock(mu_);
    for (int fd : fds_) ::close(fd);
    fds_.clear();
  }

  /// Brings it back on the same port.
  bool Resume() {
    Cut();
    return Listen(port_);
  }

 private:
  TcpProxy() = default;

  bool Listen(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd, 64) != 0) {
      ::close(fd);
      return false;
    }
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    stopping_ = false;
    acceptor_ = std::thread([this, fd] { AcceptLoop(fd); });
    return true;
  }

  void AcceptLoop(int listener) {
    while (!stopping_) {
      pollfd p{listener, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int client = ::accept(listener, nullptr, nullptr);
      if (client < 0) continue;
      int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(target_port_));
      ::inet_pton(AF_INET, target_host_.c_str(), &addr.sin_addr);
      if (upstream < 0 ||
          ::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(client);
        if (upstream >= 0) ::close(upstream);
        continue;
      }
      {
        std::lock_guard lock(mu_);
        fds_.push_back(client);
        fds_.push_back(upstream);
      }
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
    ::close(listener);
  }

  // Copies bytes both ways until either side closes or the proxy is cut.
  void Pump(int a, int b) {
    char buf[64 * 1024];
    pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    while (!stopping_) {
      if (::poll(p, 2, 20) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        ssize_t n = ::read(p[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          ::shutdown(a, SHUT_RDWR);
          ::shutdown(b, SHUT_RDWR);
          return;
        }
        const int to = i == 0 ? b : a;
        for (ssize_t off = 0; off < n;) {
          ssize_t w = ::send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
          if (w <= 0) return;
          off += w;
        }
      }
    }
  }

  std::string target_host_;
  int target_port_ = 0;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  std::vector<std::thread> pumps_;  // touched by the acceptor, then by Cut after it joined
  std::mutex mu_;
  std::vector<int> fds_;
};

}  // namespace fstore
