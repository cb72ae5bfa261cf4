// test_util.hpp: helpers shared by the test suites: temporary directories, synthetic shards, running a command.
#pragma once
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "data/shard.hpp"

namespace strata::test {

// A fresh directory under the build tree's tmp/, removed first if it exists.
inline std::string fresh_dir(const std::string& name) {
  std::string d = std::string(STRATA_TEST_TMP) + "/" + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// Writes DIR/train.bin and DIR/val.bin of n byte tokens of a repetitive, learnable text.
inline void write_text_shards(const std::string& dir, size_t n = 20000) {
  const std::string words[] = {"in ", "the ", "beginning ", "was ", "light ", "and ", "darkness ", "upon ", "deep. "};
  std::mt19937 g(42);
  std::vector<uint16_t> tok;
  while (tok.size() < n)
    for (char c : words[g() % 9]) tok.push_back(uint8_t(c));
  tok.resize(n);
  shard_write(dir + "/train.bin", tok.data(), n * 9 / 10);
  shard_write(dir + "/val.bin", tok.data() + n * 9 / 10, n - n * 9 / 10);
}

// mpiexec for the MPI tests: Open MPI as root, oversubscribed on 2 cores, in a container (../shared/ARCHITECTURE.md).
inline std::string mpirun(const std::string& mpiexec) {
  return "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none "
         "OMPI_MCA_mpi_yield_when_idle=1 " + mpiexec + " --oversubscribe --bind-to none";
}

struct RunResult {
  int code;
  std::string out;  // stdout and stderr together
};

inline RunResult run(const std::string& cmd) {
  RunResult r{0, ""};
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

inline std::string read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace strata::test
