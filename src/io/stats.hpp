// stats.hpp: the per-layer statistics file: /step, /loss, /grad_norm, /lr [N] and /blocks/<name> [N, L], chunked
// and extendable, flushed at every append so a kill -9 keeps every row written before it.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace strata {

// The per-block statistics, in the order of a row's columns.
const std::vector<std::string>& stats_names();

class StatsWriter {
 public:
  // Opens PATH (creating it), checks it has L blocks, and drops rows whose step is beyond keep_until (so a
  // resumed run never logs a step twice).
  StatsWriter(const std::string& path, int L, int64_t keep_until);
  ~StatsWriter();
  StatsWriter(const StatsWriter&) = delete;
  StatsWriter& operator=(const StatsWriter&) = delete;
  // values[s·L + l]: statistic s (stats_names order) of block l.
  void append(int64_t step, double loss, double grad_norm, double lr, const std::vector<float>& values);
  int64_t rows() const { return rows_; }

 private:
  void extend(hid_t d, int64_t rows);
  std::string path_;
  int L_;
  hid_t file_ = -1;
  int64_t rows_ = 0;
};

}  // namespace strata
