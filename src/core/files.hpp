// files.hpp: the checks on input paths made before anything reads them (a stat, which never blocks), and the
// writes that must say when they fail: a whole text file replaced atomically, an append-only record log; the free
// space of a disk.
#pragma once
#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>

#include "core/error.hpp"

namespace strata {

// Throws a one-line error unless `path` names a regular file (links followed): a directory would read as nothing,
// a FIFO or a device would block the reader, a socket would fail later with a less clear message. `what` names the
// input for the message, e.g. "token shard (key data.train)".
inline void require_regular_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || st.type() == std::filesystem::file_type::not_found) fail(path, ": cannot open ", what, ": no such file");
  using ft = std::filesystem::file_type;
  const char* kind = st.type() == ft::directory ? "a directory"
                     : st.type() == ft::fifo    ? "a FIFO (named pipe)"
                     : st.type() == ft::socket  ? "a socket"
                     : st.type() == ft::block || st.type() == ft::character ? "a device"
                     : st.type() == ft::regular ? nullptr
                                                : "not a regular file";
  if (kind) fail(path, ": ", what, " is ", kind, ", not a regular file");
}

// fsync of a file, or of a directory (what makes a rename in it durable). Throws naming the path and errno.
void fsync_path(const std::string& path, bool dir);

// Replaces `path` by `text`: written to path.tmp, fsynced, renamed over path. On any failure path.tmp is removed,
// path is as it was, and the error names the file and the system's reason (e.g. "No space left on device").
void write_text_atomic(const std::string& path, const std::string& text);

// Free bytes for an unprivileged writer on the file system holding `path`, or -1.
int64_t free_bytes(const std::string& path);

// An append-only log of whole records (metrics.jsonl, runs.jsonl): each commit() writes what << gathered as one write(2) at
// the end of the file. A record the disk cannot take is cut off again (the file keeps only whole records) and
// commit throws naming the file, the record's first characters and the reason; nothing is lost silently.
class RecordLog {
 public:
  RecordLog() { buf_.precision(9); }
  RecordLog(const RecordLog&) = delete;
  RecordLog& operator=(const RecordLog&) = delete;
  ~RecordLog();
  // Creates it if missing, appends; `what` names it in errors, e.g. "the metrics file (key log.metrics)".
  void open(const std::string& path, const std::string& what);
  bool is_open() const { return fd_ >= 0; }
  template <class T>
  RecordLog& operator<<(const T& v) {
    buf_ << v;
    return *this;
  }
  void commit();

 private:
  int fd_ = -1;
  std::string path_, what_;
  std::ostringstream buf_;
};

}  // namespace strata
