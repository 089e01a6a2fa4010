// The smallest useful agent for benchmarks: answers every HTTP request on
// 127.0.0.1:$PALM_PORT_HTTP with "200 ok" (one connection at a time, blocking).
// A few hundred KiB of RSS, so a thousand of them fit on a small machine.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

int main() {
  const char* port = std::getenv("PALM_PORT_HTTP");
  if (port == nullptr) return 2;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(port)));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
    return 1;
  }
  static const char kReply[] =
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
  char buf[2048];
  while (true) {
    int c = ::accept(fd, nullptr, nullptr);
    if (c < 0) continue;
    (void)::read(c, buf, sizeof buf);  // a probe's request fits in one read
    (void)::write(c, kReply, sizeof kReply - 1);
    ::close(c);
  }
}
