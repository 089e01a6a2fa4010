// Asynchronous probe executors on a boost::asio::io_context: no thread and no process per
// probe (exec probes are run by runtime::RunExecProbe and adapted here). Each call starts the
// probe and returns at once; `done` runs on the loop exactly once, never inside the call.
// A target that hangs costs one socket and one timer until its timeout; it never delays
// other probes.
//
// `host` is an IP literal or "localhost" (no DNS: probes target the instance's own ports).
// `latency` is measured with std::chrono::steady_clock (a measurement, not a decision).
// Thread-safety: call on the io_context's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"

namespace palm::health {

struct ProbeResult {
  bool ok = false;
  std::string message;  // "HTTP 200", "HTTP 503", "connect: Connection refused", "timeout after 1s"
  absl::Duration latency;
};

using ProbeCallback = std::function<void(ProbeResult)>;

// GET `path` with a Host header; 2xx and 3xx are success (redirects are not followed). Only
// the status line and headers are read (at most 16 KiB). `timeout` covers connect, write and
// read together.
void ProbeHttp(boost::asio::io_context& io, const std::string& host, uint16_t port,
               const std::string& path, absl::Duration timeout, ProbeCallback done);

// Success when a TCP connection is accepted within `timeout`; the connection is then closed.
void ProbeTcp(boost::asio::io_context& io, const std::string& host, uint16_t port,
              absl::Duration timeout, ProbeCallback done);

// runtime::RunExecProbe with its result as a ProbeResult (exit 0 = success).
void ProbeExec(boost::asio::io_context& io, std::vector<std::string> argv,
               std::map<std::string, std::string> env, std::string workdir,
               absl::Duration timeout, ProbeCallback done);

}  // namespace palm::health
