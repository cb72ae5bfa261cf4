// shard.cpp: llm.c token shard reading (with every check a user's file can fail) and atomic writing.
#include "data/shard.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/files.hpp"

namespace strata {

std::vector<uint16_t> shard_read(const std::string& path, int vocab) {
  require_regular_file(path, "token shard");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open token shard");
  int32_t header[256] = {};
  in.read(reinterpret_cast<char*>(header), sizeof header);
  STRATA_CHECK(in.gcount() == sizeof header, path, ": shard header is ", in.gcount(), " bytes, expected ",
               sizeof header);
  STRATA_CHECK(header[0] == kShardMagic, path, ": shard magic is ", header[0], ", expected ", kShardMagic);
  STRATA_CHECK(header[1] == kShardVersion, path, ": shard version is ", header[1], ", expected ", kShardVersion);
  const int64_t n = header[2];
  const auto fsize = int64_t(std::filesystem::file_size(path));
  const int64_t expect = int64_t(sizeof header) + 2 * n;
  STRATA_CHECK(n >= 0 && fsize == expect, path, ": shard header says ", n, " tokens (", expect,
               " bytes) but the file has ", fsize, " bytes");
  std::vector<uint16_t> tok(n);
  in.read(reinterpret_cast<char*>(tok.data()), 2 * n);
  STRATA_CHECK(in.gcount() == 2 * n, path, ": short read of tokens");
  for (int64_t i = 0; i < n; i++)
    STRATA_CHECK(tok[i] < vocab, path, ": token ", tok[i], " at index ", i, " is >= model.vocab = ", vocab);
  return tok;
}

void shard_write(const std::string& path, const uint16_t* tokens, size_t n) {
  STRATA_CHECK(n <= size_t(INT32_MAX), path, ": ", n, " tokens exceed the shard format's int32 count");
  int32_t header[256] = {};
  header[0] = kShardMagic;
  header[1] = kShardVersion;
  header[2] = int32_t(n);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(tmp, ": cannot create file");
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    out.write(reinterpret_cast<const char*>(tokens), std::streamsize(2 * n));
    if (!out.flush()) {
      out.close();
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      fail(path, ": writing the shard failed (", n, " tokens; is the disk full?); nothing was written");
    }
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace strata
