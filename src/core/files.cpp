// files.cpp: see files.hpp.
#include "core/files.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace strata {

void fsync_path(const std::string& p, bool dir) {
  int fd = ::open(p.c_str(), dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) fail(p, ": cannot open for fsync: ", std::strerror(errno));
  int r = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (r != 0) fail(p, ": fsync failed: ", std::strerror(e));
}

namespace {
// write(2) of all of [p, p + n), or the errno of the call that failed.
int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    if (w == 0) return EIO;
    p += w, n -= size_t(w);
  }
  return 0;
}
}  // namespace

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(tmp, ": cannot create file: ", std::strerror(errno));
  int e = write_all(fd, text.data(), text.size());
  if (e == 0 && ::fsync(fd) != 0) e = errno;
  if (::close(fd) != 0 && e == 0) e = errno;
  if (e == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) e = errno;
  if (e != 0) {
    ::unlink(tmp.c_str());
    fail(path, ": writing failed: ", std::strerror(e), " (the file is as it was)");
  }
}

int64_t free_bytes(const std::string& path) {
  struct statvfs s {};
  if (::statvfs(path.c_str(), &s) != 0) return -1;
  return int64_t(s.f_bavail) * int64_t(s.f_frsize);
}

RecordLog::~RecordLog() {
  if (fd_ >= 0) ::close(fd_);
}

void RecordLog::open(const std::string& path, const std::string& what) {
  if (fd_ >= 0) ::close(fd_);
  path_ = path, what_ = what;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(path, ": cannot open ", what, ": ", std::strerror(errno));
}

void RecordLog::commit() {
  const std::string rec = buf_.str();
  buf_.str("");
  if (fd_ < 0 || rec.empty()) return;
  const off_t before = ::lseek(fd_, 0, SEEK_END);
  const int e = write_all(fd_, rec.data(), rec.size());
  if (e == 0) return;
  // Cut the partial record off again; should that fail too, a resumed run drops it (metrics_truncate).
  [[maybe_unused]] const int cut = before >= 0 ? ::ftruncate(fd_, before) : 0;
  fail(path_, ": writing the record ", rec.substr(0, std::min<size_t>(rec.find(','), 24)), "...} to ", what_,
       " failed: ", std::strerror(e), " (the file holds every record before it)");
}

}  // namespace strata
