#include "palm/api/request.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "boost/asio/io_context.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "palm/api/errors.h"
#include "palm/api/events.h"
#include "palm/api/heartbeat.h"
#include "palm/api/logs.h"
#include "palm/base/error.h"
#include "palm/http/client.h"
#include "palm/http/wire.h"
#include "palm/store/store.h"

namespace palm::api {
namespace {

using ::testing::HasSubstr;
using model::Json;

http::Request Post(std::string body, std::string content_type = "application/json") {
  http::Request r;
  r.method = "POST";
  r.target = r.path = "/v1/deployments";
  r.body = std::move(body);
  if (!content_type.empty()) r.headers.emplace_back("content-type", std::move(content_type));
  return r;
}

http::Request Get(std::string target) {
  http::Request r;
  r.method = "GET";
  r.target = target;
  http::SplitTarget(target, &r.path, &r.query);
  return r;
}

// What a client would see for `s`: "415 UNSUPPORTED_MEDIA_TYPE: message".
std::string Answer(const absl::Status& s) {
  if (s.ok()) return "OK";
  return absl::StrCat(HttpStatusFor(s), " ", ErrorCode(s), ": ", s.message());
}

std::string BodyAnswer(const http::Request& req) {
  absl::StatusOr<Json> j = ParseBody(req);
  return j.ok() ? "OK " + j->dump() : Answer(j.status());
}

std::string Nested(int depth) {
  return "{\"config\": {\"a\": " + std::string(depth, '[') + std::string(depth, ']') + "}}";
}

TEST(ParseBodyTest, DeepNestingIsRefusedWithTheDepthWithoutRecursion) {
  EXPECT_THAT(BodyAnswer(Post(Nested(100'000))),
              HasSubstr("400 MALFORMED_JSON: request body is not valid JSON: nesting deeper than 64 levels at "
                        "config.a[0]"));
  // 64 levels counting the body's own object are fine, 65 are not.
  EXPECT_THAT(BodyAnswer(Post(Nested(62))), HasSubstr("OK"));
  EXPECT_THAT(BodyAnswer(Post(Nested(63))), HasSubstr("nesting deeper than 64 levels"));
  EXPECT_THAT(BodyAnswer(Post(std::string(900'000, '['))), HasSubstr("400 MALFORMED_JSON"));
}

TEST(ParseBodyTest, NumbersThatDoNotFitADoubleNameTheField) {
  EXPECT_EQ(BodyAnswer(Post(R"({"config": {"a": 1e400}})")),
            "400 MALFORMED_JSON: request body is not valid JSON: line 1, column 18: config.a: the number 1e400 "
            "is out of range (JSON numbers here must fit a 64-bit float, at most about "
            "1.8e308)");
  EXPECT_THAT(BodyAnswer(Post("{\n\"input\": [1, -1e999]}")),
              HasSubstr("line 2, column 14: input[1]: the number -1e999 is out of range"));
  EXPECT_THAT(BodyAnswer(Post("1e400")), HasSubstr("the top level: the number 1e400"));
  // Big integers become doubles, tiny ones zero: both are representable.
  EXPECT_EQ(BodyAnswer(Post("[123456789012345678901234567890, 1e-400]")),
            "OK [1.2345678901234568e+29,0.0]");
}

TEST(ParseBodyTest, DuplicateKeysAndSyntaxErrors) {
  EXPECT_EQ(BodyAnswer(Post(R"({"name": "a", "replicas": 1, "name": "b"})")),
            "400 MALFORMED_JSON: request body is not valid JSON: duplicate key \"name\" in the top level");
  EXPECT_THAT(BodyAnswer(Post(R"({"config": {"k": 1, "k": 2}})")),
              HasSubstr("duplicate key \"k\" in config"));
  EXPECT_THAT(BodyAnswer(Post(R"({"config": {"a": tru}})")),
              HasSubstr("400 MALFORMED_JSON: request body is not valid JSON: line 1, column 21: syntax error"));
  EXPECT_THAT(BodyAnswer(Post(R"({"config": {"a": tru}})")), HasSubstr("(in config.a)"));
  EXPECT_THAT(BodyAnswer(Post("{} {}")), HasSubstr("line 1, column 4"));
  EXPECT_THAT(BodyAnswer(Post("{\"a\": \"\xff\"}")), HasSubstr("400 MALFORMED_JSON"));
  EXPECT_EQ(BodyAnswer(Post(" \n")), "400 MALFORMED_JSON: request body is empty");
}

TEST(ParseBodyTest, ContentTypeIsTheJsonMediaTypeExactly) {
  for (const char* ok : {"", "application/json", "Application/JSON", " application/json ",
                         "application/json; charset=utf-8", "application/json;charset=\"UTF-8\"",
                         "application/json; foo=bar"}) {
    EXPECT_EQ(BodyAnswer(Post("{}", ok)), "OK {}") << ok;
  }
  for (const char* bad : {"application/jsonx", "application/json-patch+json", "text/json",
                          "application/x-www-form-urlencoded", "application/json; charset=latin1",
                          "applicationjson", "json"}) {
    EXPECT_THAT(BodyAnswer(Post("{}", bad)), HasSubstr("415 UNSUPPORTED_MEDIA_TYPE")) << bad;
  }
}

absl::Status Reject(std::string_view name, std::string_view value) {
  if (value == "bad") return InvalidArgument(absl::StrCat(std::string(name), ": is bad"));
  return absl::OkStatus();
}

TEST(ValidateQueryTest, RefusesUnknownRepeatedAndMalformedParameters) {
  const QuerySpec spec = Concat(ListParams(100, Reject),
                                {NameParam("deployment"), FlagParam("follow"),
                                 IntParam("wait_s", 0, 60, "seconds")});
  auto check = [&](const std::string& target) { return Answer(ValidateQuery(Get(target), spec)); };
  EXPECT_EQ(check("/v1/x"), "OK");
  EXPECT_EQ(check("/v1/x?limit=5&after=c&order=desc&deployment=web&follow=1&wait_s=0"
                  "&tenant=acme"),
            "OK");
  EXPECT_EQ(check("/v1/x?limit=-1"),
            "400 INVALID_ARGUMENT: limit: must be a number from 1 to 100, got \"-1\"");
  EXPECT_EQ(check("/v1/x?limit=101"),
            "400 INVALID_ARGUMENT: limit: must be a number from 1 to 100, got \"101\"");
  EXPECT_EQ(check("/v1/x?limit="),
            "400 INVALID_ARGUMENT: limit: must be a number from 1 to 100, got \"\"");
  EXPECT_EQ(check("/v1/x?limit=5x"),
            "400 INVALID_ARGUMENT: limit: must be a number from 1 to 100, got \"5x\"");
  EXPECT_EQ(check("/v1/x?wait_s=99999999999999999999"),
            "400 INVALID_ARGUMENT: wait_s: must be seconds from 0 to 60, got "
            "\"99999999999999999999\"");
  EXPECT_EQ(check("/v1/x?order=sideways"),
            "400 INVALID_ARGUMENT: order: must be asc or desc, got \"sideways\"");
  EXPECT_EQ(check("/v1/x?after=bad"), "400 INVALID_ARGUMENT: after: is bad");
  EXPECT_EQ(check("/v1/x?after="), "400 INVALID_ARGUMENT: after: is empty");
  EXPECT_EQ(check("/v1/x?follow=yes"),
            "400 INVALID_ARGUMENT: follow: must be 1, 0, true or false, got \"yes\"");
  EXPECT_THAT(check("/v1/x?tenant=../../x"), HasSubstr("400 INVALID_ARGUMENT: tenant"));
  EXPECT_THAT(check("/v1/x?deployment=Web"), HasSubstr("400 INVALID_ARGUMENT: deployment"));
  EXPECT_EQ(check("/v1/x?sort=name"),
            "400 INVALID_ARGUMENT: unknown query parameter \"sort\" for GET /v1/x");
  EXPECT_EQ(ErrorHint(ValidateQuery(Get("/v1/x?sort=name"), spec)),
            "this endpoint accepts: limit, after, order, deployment, follow, wait_s, tenant");
  EXPECT_EQ(check("/v1/x?limit=1&limit=2"),
            "400 INVALID_ARGUMENT: query parameter \"limit\" is given twice");
  EXPECT_EQ(check("/v1/x?tenant=a&tenant=a"),
            "400 INVALID_ARGUMENT: query parameter \"tenant\" is given twice");
  // A long bad value is quoted cut short, as valid UTF-8.
  EXPECT_THAT(check("/v1/x?order=" + std::string(1000, 'z') + "%ff"),
              HasSubstr("got \"" + std::string(64, 'z') + "...\""));
  // Outside /v1 (the plain endpoints) not even tenant is accepted.
  EXPECT_EQ(Answer(ValidateQuery(Get("/healthz?tenant=a"), {})),
            "400 INVALID_ARGUMENT: unknown query parameter \"tenant\" for GET /healthz");
}

std::vector<Json> Items(int n) {
  std::vector<Json> items;
  for (int i = 0; i < n; ++i) items.push_back({{"name", absl::StrCat("d", i)}});
  return items;
}

std::string PageOf(const std::string& target, int n = 5) {
  absl::StatusOr<Json> p = Page(Items(n), Get(target), "name");
  return p.ok() ? p->dump() : Answer(p.status());
}

TEST(PageTest, PagesByCursorAndRefusesACursorThatNamesNothing) {
  EXPECT_EQ(PageOf("/v1/x?limit=2"),
            R"({"items":[{"name":"d0"},{"name":"d1"}],"next":"d1"})");
  EXPECT_EQ(PageOf("/v1/x?limit=2&after=d1"),
            R"({"items":[{"name":"d2"},{"name":"d3"}],"next":"d3"})");
  EXPECT_EQ(PageOf("/v1/x?limit=2&after=d3"), R"({"items":[{"name":"d4"}],"next":null})");
  EXPECT_EQ(PageOf("/v1/x?after=d4"), R"({"items":[],"next":null})");
  EXPECT_EQ(PageOf("/v1/x?order=desc&limit=2&after=d3"),
            R"({"items":[{"name":"d2"},{"name":"d1"}],"next":"d1"})");
  // Not page one again: the object is gone (or never was), so there is no place to resume.
  EXPECT_THAT(PageOf("/v1/x?after=zzz"),
              HasSubstr("410 CURSOR_EXPIRED: after: \"zzz\" is not in this list"));
  EXPECT_THAT(PageOf("/v1/x?after=d1", 0), HasSubstr("410 CURSOR_EXPIRED"));
}

// ---- streams: a peer that went away is noticed and its connection freed ----

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("palm-api-test-", ::getpid(), "-", ++counter_);
    std::filesystem::create_directories(dir_);
    auto store = store::OpenSqliteStore((dir_ / "palm.db").string());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    ASSERT_TRUE(log_.Load(*store_).ok());
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Serves GET /v1/events (with `keepalive`) and GET /logs on a loopback port.
  void Serve(absl::Duration keepalive) {
    server_ = std::make_unique<http::Server>(
        io_, http::ServerOptions{},
        [this, keepalive](http::Request req, std::shared_ptr<http::Exchange> ex) {
          absl::StatusOr<http::Response> r =
              req.path == "/logs"
                  ? ServeLogs(io_, (dir_ / "agent.log").string(), req, ex)
                  : ServeEvents(io_, log_, *store_, "default", req, ex, keepalive);
          if (!r.ok()) return ex->Respond(ErrorResponse(r.status()));
          if (r->status != 0) ex->Respond(std::move(*r));
        });
    ASSERT_TRUE(server_->Listen("127.0.0.1:0").ok());
  }

  // Opens a connection, asks for `target` followed by more than the 64 KiB the server
  // buffers while it streams (so it stops reading and cannot see the FIN), reads the
  // response head, then closes: a client that went away without the server reading it.
  void StreamAndVanish(const std::string& target) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server_->port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::string req = absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: x\r\n\r\n");
    req += std::string(200 * 1024, 'x');
    std::thread writer([fd, req] {
      size_t off = 0;
      while (off < req.size()) {
        ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
    });
    char buf[4096];
    std::string got;
    while (got.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    EXPECT_THAT(got, HasSubstr("200 OK"));
    ::shutdown(fd, SHUT_RDWR);
    writer.join();
    ::close(fd);
  }

  // Runs the loop until the server has no connection left or `timeout` passes.
  bool ConnectionsDrain(absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      io_.run_for(std::chrono::milliseconds(10));
      io_.restart();
      if (server_->connections() == 0) return true;
    }
    return false;
  }

  void RunInBackground(std::function<void()> client) {
    std::thread t(std::move(client));
    while (!done_) {
      io_.run_for(std::chrono::milliseconds(5));
      io_.restart();
    }
    t.join();
  }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
  boost::asio::io_context io_;
  std::unique_ptr<store::Store> store_;
  events::EventLog log_;
  std::unique_ptr<http::Server> server_;
  std::atomic<bool> done_{false};
};

TEST_F(StreamTest, EventsKeepaliveFreesAClientThatWentAway) {
  Serve(absl::Milliseconds(50));
  RunInBackground([&] {
    StreamAndVanish("/v1/events?follow=1");
    done_ = true;
  });
  EXPECT_TRUE(ConnectionsDrain(absl::Seconds(10))) << server_->connections();
}

TEST_F(StreamTest, WithoutKeepaliveSuchAClientWouldStay) {
  // The control: the same client, a keepalive longer than the test, stays connected.
  Serve(absl::Hours(1));
  RunInBackground([&] {
    StreamAndVanish("/v1/events?follow=1");
    done_ = true;
  });
  EXPECT_FALSE(ConnectionsDrain(absl::Milliseconds(500)));
}

TEST_F(StreamTest, LogsFollowerIsFreedWhenTheClientCloses) {
  Serve(absl::Seconds(15));
  std::thread client([&] {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server_->port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    std::string req = "GET /logs?follow=1&tail=0 HTTP/1.1\r\nHost: x\r\n\r\n";
    ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    char buf[512];
    ::recv(fd, buf, sizeof(buf), 0);
    ::close(fd);
    done_ = true;
  });
  while (!done_) {
    io_.run_for(std::chrono::milliseconds(5));
    io_.restart();
  }
  client.join();
  EXPECT_TRUE(ConnectionsDrain(absl::Seconds(10)));
}

TEST(HeartbeatTest, WhatAHeartbeatCarriesIsBounded) {
  EXPECT_TRUE(HeartbeatFromJson({{"status", "degraded"}, {"reason", std::string(1024, 'r')}}).ok());
  absl::StatusOr<controller::HeartbeatIn> long_reason =
      HeartbeatFromJson({{"reason", std::string(1025, 'r')}});
  ASSERT_FALSE(long_reason.ok());
  EXPECT_THAT(long_reason.status().message(), HasSubstr("heartbeat.reason: 1025 bytes"));
  Json many = Json::object();
  for (int i = 0; i < 257; ++i) many[absl::StrCat("m", i)] = i;
  EXPECT_THAT(HeartbeatFromJson({{"metrics", many}}).status().message(),
              HasSubstr("257 metrics is over the limit of 256"));
  EXPECT_FALSE(HeartbeatFromJson({{"metrics", {{std::string(129, 'n'), 1}}}}).ok());
  EXPECT_FALSE(HeartbeatFromJson({{"metrics", {{"", 1}}}}).ok());
  EXPECT_TRUE(HeartbeatFromJson({{"metrics", {{std::string(128, 'n'), 1}}}}).ok());
}

// The log service rotates by rename: what was appended to the old file just before the
// rename must reach the follower, and the new file must be read from its start (the
// follower used to reopen the path and read the new file from the old offset).
TEST_F(StreamTest, LogsFollowerReadsTheRenamedFileToItsEndThenTheNewOne) {
  const std::string log = (dir_ / "agent.log").string();
  { std::ofstream(log) << "first\n"; }
  Serve(absl::Seconds(15));
  std::string got;
  absl::Status st;
  RunInBackground([&] {
    http::Client client(absl::StrCat("http://127.0.0.1:", server_->port()), "",
                        absl::Seconds(5));
    bool rotated = false;
    st = client.Stream("/logs?follow=1&tail=1", [&](std::string_view piece) {
      got.append(piece);
      if (!rotated && got == "first\n") {
        // Within one poll period: an append, the rotation, and the new file's first line.
        rotated = true;
        std::ofstream(log, std::ios::app) << "just before the rotation\n";
        std::filesystem::rename(log, log + ".1");
        std::ofstream(log) << "new\n";
      }
      return got.find("new\n") == std::string::npos;
    });
    done_ = true;
  });
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(got, "first\njust before the rotation\nnew\n");
}

}  // namespace
}  // namespace palm::api
