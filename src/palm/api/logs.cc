#include "palm/api/logs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "boost/asio/steady_timer.hpp"
#include "palm/api/errors.h"
#include "palm/api/request.h"
#include "palm/base/error.h"

namespace palm::api {
namespace {

constexpr off_t kMaxTailBytes = 4 << 20;
constexpr size_t kMaxTailLines = 100000;

// Reads [from, to) of fd into out.
bool ReadRange(int fd, off_t from, off_t to, std::string* out) {
  out->resize(static_cast<size_t>(to - from));
  size_t done = 0;
  while (done < out->size()) {
    ssize_t n = ::pread(fd, out->data() + done, out->size() - done, from + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  out->resize(done);
  return true;
}

// Streams appended bytes of a file to an exchange until the peer leaves. It follows the
// file it opened, not the path: when the log is rotated by rename (the log service), it
// reads the renamed file to its end, then moves on to the new file at the path, so nothing
// written around a rotation is lost or read from the wrong offset. A file that shrinks was
// copy-truncated (an agent writing its log directly): it is read again from the start.
class Follower : public std::enable_shared_from_this<Follower> {
 public:
  Follower(boost::asio::io_context& io, std::string path, off_t offset,
           std::shared_ptr<http::Exchange> ex)
      : timer_(io), path_(std::move(path)), offset_(offset), ex_(std::move(ex)) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) offset_ = 0;  // not there yet: read it from the start when it appears
  }
  ~Follower() {
    if (fd_ >= 0) ::close(fd_);
  }

  void Start() {
    // Freed as soon as the peer is gone, not at the next poll.
    ex_->OnClose([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->timer_.cancel();
    });
    Schedule();
  }

 private:
  void Schedule() {
    timer_.expires_after(std::chrono::milliseconds(200));
    timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (ec) return;
      self->Poll();
    });
  }

  void Poll() {
    if (ex_->Closed()) return;
    if (fd_ < 0) fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ >= 0 && ReadNew() && PathHoldsAnotherFile()) {
      ::close(fd_);
      fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
      offset_ = 0;
      if (fd_ >= 0) ReadNew();
    }
    Schedule();
  }

  // Sends what was appended to the followed file since the last read (at most
  // kMaxTailBytes a poll); true when it has been read to its end.
  bool ReadNew() {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) return false;
    if (st.st_size < offset_) offset_ = 0;  // copy-truncated
    if (st.st_size > offset_) {
      off_t to = std::min<off_t>(st.st_size, offset_ + kMaxTailBytes);
      std::string chunk;
      ReadRange(fd_, offset_, to, &chunk);
      offset_ += static_cast<off_t>(chunk.size());
      if (!chunk.empty()) ex_->Write(std::move(chunk));
    }
    return offset_ >= st.st_size;
  }

  // True when the path now names another file than the one followed (rotated by rename).
  bool PathHoldsAnotherFile() const {
    struct stat held {}, now {};
    if (::fstat(fd_, &held) != 0) return true;
    if (::stat(path_.c_str(), &now) != 0) return false;  // not recreated yet: keep reading
    return held.st_ino != now.st_ino || held.st_dev != now.st_dev;
  }

  boost::asio::steady_timer timer_;
  std::string path_;
  off_t offset_;
  int fd_ = -1;
  std::shared_ptr<http::Exchange> ex_;
};

}  // namespace

absl::StatusOr<std::string> TailLines(const std::string& path, size_t n) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::string();
    return Error(absl::StatusCode::kUnavailable, "LOG_UNREADABLE",
                 absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  struct stat st {};
  ::fstat(fd, &st);
  off_t from = st.st_size > kMaxTailBytes ? st.st_size - kMaxTailBytes : 0;
  std::string data;
  ReadRange(fd, from, st.st_size, &data);
  ::close(fd);
  // Walk back over n line ends (a final newline does not start a new line).
  size_t end = data.size();
  if (end > 0 && data[end - 1] == '\n') --end;
  size_t pos = end, lines = 0;
  while (pos > 0) {
    if (data[pos - 1] == '\n' && ++lines == n) break;
    --pos;
  }
  return data.substr(pos);
}

const QuerySpec& LogsQuery() {
  static const QuerySpec* spec = new QuerySpec{
      IntParam("tail", 0, kMaxTailLines, "a number of lines"), FlagParam("follow")};
  return *spec;
}

absl::StatusOr<http::Response> ServeLogs(boost::asio::io_context& io, const std::string& path,
                                         const http::Request& req,
                                         const std::shared_ptr<http::Exchange>& ex) {
  PALM_ASSIGN_OR_RETURN(int64_t tail, QueryInt(req, "tail", 0, kMaxTailLines, 100,
                                                "a number of lines"));
  size_t n = static_cast<size_t>(tail);
  std::string text;
  if (n > 0) {
    PALM_ASSIGN_OR_RETURN(text, TailLines(path, n));
  }
  if (!QueryFlag(req, "follow")) {
    http::Response r;
    r.content_type = "text/plain; charset=utf-8";
    r.body = std::move(text);
    return r;
  }
  struct stat st {};
  off_t offset = ::stat(path.c_str(), &st) == 0 ? st.st_size : 0;
  ex->BeginStream(200, "text/plain; charset=utf-8");
  if (!text.empty()) ex->Write(std::move(text));
  std::make_shared<Follower>(io, path, offset, ex)->Start();
  return AlreadyAnswered();
}

}  // namespace palm::api
