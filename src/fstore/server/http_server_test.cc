#include "fstore/server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <future>
#include <map>
#include <string>
#include <thread>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "fstore/server/http_error.h"
#include "fstore/testing/gtest_util.h"

namespace fstore {
namespace {

using namespace std::chrono_literals;

struct ClientResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  ///< names lower-cased
  std::string body;
};

/// A minimal blocking HTTP/1.1 client over a POSIX socket: enough to see
/// exactly what the server sends and when it closes. Every read gives up after
/// a generous 10 s so that a broken server fails the test instead of hanging it.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{.tv_sec = 10, .tv_usec = 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return connected_; }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  /// Reads one response (Content-Length framed); nullopt on close or timeout.
  std::optional<ClientResponse> Read() {
    size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return std::nullopt;
    }
    ClientResponse response;
    const std::string head = buffer_.substr(0, head_end);
    buffer_.erase(0, head_end + 4);
    size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    response.status = std::stoi(status_line.substr(status_line.find(' ') + 1, 3));
    while (line_end != std::string::npos) {
      const size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      const std::string line = head.substr(start, line_end - start);
      const size_t colon = line.find(':');
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t value_start = colon + 1;
      while (value_start < line.size() && line[value_start] == ' ') ++value_start;
      response.headers[name] = line.substr(value_start);
    }
    size_t length = 0;
    if (auto it = response.headers.find("content-length"); it != response.headers.end()) {
      length = std::stoul(it->second);
    }
    while (buffer_.size() < length) {
      if (!Fill()) return std::nullopt;
    }
    response.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return response;
  }

  /// True when the server closed the connection (EOF or reset) within the
  /// read timeout, with no further bytes.
  bool ReadsEof() {
    if (!buffer_.empty()) return false;
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  bool Fill() {
    char chunk[4096];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buffer_;
};

std::string Get(std::string_view target, std::string_view extra_headers = {}) {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: localhost\r\n" +
         std::string(extra_headers) + "\r\n";
}

std::string Post(std::string_view target, std::string_view body) {
  return "POST " + std::string(target) +
         " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

std::string ErrorCodeIn(const ClientResponse& response) {
  return std::string(
      boost::json::parse(response.body).at("error").at("code").as_string());
}

constexpr size_t kLargeBodyBytes = 8 << 20;

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.Add("GET", "/hello", [](HttpRequest&) {
      HttpResponse r;
      r.content_type = "text/plain";
      r.body = "hello";
      r.headers.emplace_back("X-Fstore-Test", "1");
      return r;
    });
    router_.Add("GET", "/echo/{name}", [](HttpRequest& request) {
      boost::json::object out;
      out["path"] = request.path;
      out["name"] = request.PathParam("name");
      out["q"] = std::string(request.Query("q").value_or("-"));
      out["header"] = std::string(request.Header("x-custom").value_or("-"));
      return JsonResponse(200, out);
    });
    router_.Add(
        "POST", "/body",
        [](HttpRequest& request) {
          return JsonResponse(200, boost::json::object{{"size", request.body.size()}});
        },
        RouteOptions{.json_body = true});
    router_.Add("GET", "/large", [](HttpRequest&) {
      // Larger than a socket's send buffer: the server writes part of it
      // directly and the rest as the client reads.
      HttpResponse r;
      r.content_type = "text/plain";
      r.body.resize(kLargeBodyBytes);
      for (size_t i = 0; i < r.body.size(); ++i) r.body[i] = static_cast<char>('a' + i % 26);
      return r;
    });
    router_.Add("GET", "/slow", [this](HttpRequest&) {
      slow_started_.set_value();
      std::this_thread::sleep_for(300ms);
      HttpResponse r;
      r.body = "{\"slow\":true}";
      return r;
    });
    options_.host = "127.0.0.1";
    options_.port = 0;
    options_.threads = 2;
  }

  void StartServer() {
    ASSERT_OK_AND_ASSIGN(server_, HttpServer::Start(options_, &router_));
    ASSERT_GT(server_->port(), 0);
  }

  Router router_;
  HttpServerOptions options_;
  std::promise<void> slow_started_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.connected());

  ASSERT_TRUE(client.Send(Get("/hello")));
  auto first = client.Read();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(first->body, "hello");
  EXPECT_EQ(first->headers["server"], "fstore");
  EXPECT_EQ(first->headers["content-type"], "text/plain");
  EXPECT_EQ(first->headers["x-fstore-test"], "1");
  EXPECT_NE(first->headers["connection"], "close");

  ASSERT_TRUE(client.Send(Get("/echo/a%20b?q=x+y%21", "X-Custom: v\r\n")));
  auto second = client.Read();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(second->headers["content-type"], "application/json");
  boost::json::value body = boost::json::parse(second->body);
  EXPECT_EQ(body.at("path"), "/echo/a b");
  EXPECT_EQ(body.at("name"), "a b");
  EXPECT_EQ(body.at("q"), "x y!");
  EXPECT_EQ(body.at("header"), "v");
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(Get("/hello") + Get("/echo/two")));
  auto first = client.Read();
  auto second = client.Read();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->body, "hello");
  EXPECT_EQ(boost::json::parse(second->body).at("name"), "two");
}

TEST_F(HttpServerTest, ManyPipelinedRequestsInOneSendAreAllAnsweredInOrder) {
  StartServer();
  RawClient client(server_->port());
  std::string requests;
  for (int i = 0; i < 500; ++i) requests += Get("/echo/n" + std::to_string(i));
  ASSERT_TRUE(client.Send(requests));
  for (int i = 0; i < 500; ++i) {
    auto response = client.Read();
    ASSERT_TRUE(response) << "response " << i;
    ASSERT_EQ(response->status, 200);
    ASSERT_EQ(boost::json::parse(response->body).at("name").as_string(), "n" + std::to_string(i));
  }
}

TEST_F(HttpServerTest, ARequestArrivingInPiecesIsAssembled) {
  StartServer();
  RawClient client(server_->port());
  const std::string request = Post("/body", "{\"a\": [1, 2, 3], \"b\": \"some text\"}");
  // The head in two pieces, then the body in two.
  const size_t cuts[] = {10, request.find("\r\n\r\n") + 4, request.size() - 5, request.size()};
  size_t from = 0;
  for (size_t cut : cuts) {
    ASSERT_TRUE(client.Send(request.substr(from, cut - from)));
    from = cut;
    std::this_thread::sleep_for(50ms);
  }
  auto response = client.Read();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(boost::json::parse(response->body).at("size").as_int64(), 34);
  // The connection still serves the next request.
  ASSERT_TRUE(client.Send(Get("/hello")));
  auto next = client.Read();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "hello");
}

TEST_F(HttpServerTest, AResponseLargerThanTheSocketBufferReachesASlowReaderWhole) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(Get("/large") + Get("/hello")));
  std::this_thread::sleep_for(200ms);  // the server's direct write fills the buffers first
  auto large = client.Read();
  ASSERT_TRUE(large);
  EXPECT_EQ(large->status, 200);
  ASSERT_EQ(large->body.size(), kLargeBodyBytes);
  bool intact = true;
  for (size_t i = 0; i < large->body.size() && intact; ++i) {
    intact = large->body[i] == static_cast<char>('a' + i % 26);
  }
  EXPECT_TRUE(intact);
  // The pipelined request behind it is answered after it, on the same connection.
  auto hello = client.Read();
  ASSERT_TRUE(hello);
  EXPECT_EQ(hello->body, "hello");
}

TEST_F(HttpServerTest, PostBodyReachesTheHandler) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(Post("/body", "{\"a\": 1}")));
  auto response = client.Read();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(boost::json::parse(response->body).at("size").as_int64(), 8);
}

TEST_F(HttpServerTest, ExpectContinueGets100ThenTheResponse) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(
      "POST /body HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: 2\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = client.Read();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(client.Send("{}"));
  auto response = client.Read();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST_F(HttpServerTest, BodyOverTheLimitIs413AndCloses) {
  options_.max_body_bytes = 1024;
  StartServer();
  RawClient client(server_->port());
  // Large enough that the server must drain it to let us read the answer.
  ASSERT_TRUE(client.Send(Post("/body", std::string(256 * 1024, 'x'))));
  auto response = client.Read();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(response->headers["connection"], "close");
  EXPECT_EQ(ErrorCodeIn(*response), "payload_too_large");
  EXPECT_NE(response->body.find("1024"), std::string::npos);
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, ChunkedBodyOverTheLimitIs413) {
  options_.max_body_bytes = 1024;
  StartServer();
  RawClient client(server_->port());
  const std::string chunk(800, 'x');
  ASSERT_TRUE(client.Send(
      "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "320\r\n" + chunk + "\r\n320\r\n" + chunk + "\r\n0\r\n\r\n"));
  auto response = client.Read();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 413);
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, BodyAtTheLimitIsAccepted) {
  options_.max_body_bytes = 1024;
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(Post("/body", std::string(1024, ' '))));
  auto response = client.Read();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
}

TEST_F(HttpServerTest, MalformedRequestIs400AndCloses) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /hello HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n"));
  auto response = client.Read();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400);
  EXPECT_EQ(ErrorCodeIn(*response), "invalid_argument");
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, HeaderTimeoutClosesAHalfSentRequest) {
  options_.header_timeout_seconds = 1;
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /hello HTTP/1.1\r\nHost: x\r\n"));  // no blank line
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(client.ReadsEof());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 9s);  // closed by the server
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosed) {
  options_.idle_timeout_seconds = 1;
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(Get("/hello")));
  ASSERT_TRUE(client.Read());
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, Http10WithoutKeepAliveCloses) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send("GET /hello HTTP/1.0\r\n\r\n"));
  auto response = client.Read();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, UnknownRouteIs404Json) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(Get("/nope")));
  auto response = client.Read();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(response->headers["content-type"], "application/json");
  EXPECT_EQ(ErrorCodeIn(*response), "not_found");
  EXPECT_NE(response->body.find("/nope"), std::string::npos);
}

TEST_F(HttpServerTest, WrongMethodIs405WithAllowHeader) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(Post("/hello", "{}")));
  auto response = client.Read();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 405);
  EXPECT_EQ(response->headers["allow"], "GET");
}

TEST_F(HttpServerTest, ShutdownLetsAnInFlightRequestFinish) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(Get("/slow")));
  ASSERT_EQ(slow_started_.get_future().wait_for(10s), std::future_status::ready);

  const auto start = std::chrono::steady_clock::now();
  std::thread stopper([this] { server_->Shutdown(10); });
  auto response = client.Read();
  stopper.join();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "{\"slow\":true}");
  EXPECT_EQ(response->headers["connection"], "close");
  EXPECT_TRUE(client.ReadsEof());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 9s);  // did not wait out the grace

  RawClient late(server_->port());
  EXPECT_FALSE(late.connected());
  server_->Shutdown();  // idempotent
}

TEST_F(HttpServerTest, ShutdownClosesIdleConnectionsPromptly) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(Get("/hello")));
  ASSERT_TRUE(client.Read());
  const auto start = std::chrono::steady_clock::now();
  server_->Shutdown(10);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 9s);
  EXPECT_TRUE(client.ReadsEof());
}

TEST_F(HttpServerTest, WaitForSignalReturnsAfterShutdown) {
  StartServer();
  std::thread waiter([this] { server_->WaitForSignal(); });
  server_->Shutdown(1);
  waiter.join();  // hangs (and the test times out) if Shutdown did not release it
}

TEST_F(HttpServerTest, BindingATakenPortFails) {
  StartServer();
  HttpServerOptions taken = options_;
  taken.port = server_->port();
  auto second = HttpServer::Start(taken, &router_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(ErrorCodeOf(second.status()), ErrorCode::kUnavailable);
}

TEST_F(HttpServerTest, DestructorShutsDown) {
  StartServer();
  RawClient client(server_->port());
  ASSERT_TRUE(client.Send(Get("/hello")));
  ASSERT_TRUE(client.Read());
  server_.reset();
  EXPECT_TRUE(client.ReadsEof());
}

}  // namespace
}  // namespace fstore
