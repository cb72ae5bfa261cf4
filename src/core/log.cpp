// log.cpp: rank-tagged logging.
#include "core/log.hpp"

#include <cstdio>

namespace strata {

namespace {
int g_rank = -1;  // -1: single process, no tag
}

void log_set_rank(int rank) { g_rank = rank; }
int log_rank() { return g_rank < 0 ? 0 : g_rank; }

void log_info(const std::string& line) {
  if (g_rank >= 0)
    std::printf("[rank %d] %s\n", g_rank, line.c_str());
  else
    std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void log_error(const std::string& line) {
  if (g_rank >= 0)
    std::fprintf(stderr, "strata: error (rank %d): %s\n", g_rank, line.c_str());
  else
    std::fprintf(stderr, "strata: error: %s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace strata
