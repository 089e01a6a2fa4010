#include "palm/runtime/log_rotator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "palm/base/error.h"

namespace palm::runtime {
namespace {

absl::Status Errno(const std::string& what, const std::string& path, int err) {
  return Error(absl::StatusCode::kInternal, "LOG_ROTATION_FAILED",
               absl::StrCat("log rotation: ", what, " \"", path, "\": ", std::strerror(err)));
}

// Closes an fd on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Copies `in` from its current offset to EOF into `out`; returns 0 or an errno.
int CopyToEnd(int in, int out) {
  bool use_copy_file_range = true;
  char buf[64 * 1024];
  for (;;) {
    if (use_copy_file_range) {
      const ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, 1 << 30, 0);
      if (n > 0) continue;
      if (n == 0) return 0;
      if (errno == EINTR) continue;
      if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
        return errno;
      }
      use_copy_file_range = false;  // filesystem can't: plain read/write
    }
    const ssize_t n = ::read(in, buf, sizeof(buf));
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(out, buf + done, static_cast<size_t>(n - done));
      if (w < 0) {
        if (errno == EINTR) continue;
        return errno;
      }
      done += w;
    }
  }
}

}  // namespace

absl::StatusOr<bool> RotateLogIfLarger(const std::string& path, uint64_t max_bytes, int keep) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return Errno("stat", path, errno);
  }
  if (static_cast<uint64_t>(st.st_size) <= max_bytes) return false;

  Fd live(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY));
  if (live.get() < 0) return Errno("open", path, errno);

  if (keep > 0) {
    for (int i = keep - 1; i >= 1; --i) {
      const std::string from = absl::StrCat(path, ".", i);
      const std::string to = absl::StrCat(path, ".", i + 1);
      if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
        return Errno("rename", from, errno);
      }
    }
    // Copy into a temporary name first so <path>.1 is never a partial copy.
    const std::string tmp = absl::StrCat(path, ".1.tmp");
    {
      Fd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0640));
      if (out.get() < 0) return Errno("create", tmp, errno);
      if (const int err = CopyToEnd(live.get(), out.get()); err != 0) {
        ::unlink(tmp.c_str());
        return Errno("copy to", tmp, err);
      }
    }
    const std::string first = absl::StrCat(path, ".1");
    if (::rename(tmp.c_str(), first.c_str()) != 0) {
      const int err = errno;
      ::unlink(tmp.c_str());
      return Errno("rename", tmp, err);
    }
  }
  if (::ftruncate(live.get(), 0) != 0) return Errno("truncate", path, errno);
  return true;
}

}  // namespace palm::runtime
