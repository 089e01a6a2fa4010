#include "palm/controller/port_allocator.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"

namespace palm::controller {

absl::StatusOr<int> KernelPortAllocator::Allocate() {
  for (int attempt = 0; attempt < 64; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      return Error(absl::StatusCode::kResourceExhausted, "INSUFFICIENT_CAPACITY",
                   absl::StrCat("cannot allocate a port: socket: ", std::strerror(errno)));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    if (rc == 0) rc = ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    int err = errno;
    ::close(fd);
    if (rc != 0) {
      return Error(absl::StatusCode::kResourceExhausted, "INSUFFICIENT_CAPACITY",
                   absl::StrCat("cannot allocate a port: ", std::strerror(err)));
    }
    int port = ntohs(addr.sin_port);
    if (reserved_.insert(port).second) return port;
  }
  return Error(absl::StatusCode::kResourceExhausted, "INSUFFICIENT_CAPACITY",
               "cannot allocate a port: every port the kernel offered is already reserved",
               "widen net.ipv4.ip_local_port_range or run fewer instances with ports");
}

}  // namespace palm::controller
