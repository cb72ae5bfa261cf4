// loader.hpp: deterministic training windows. Sequence j of a run starts at a position drawn from
// (seed, j) alone, so the data cursor (the next j) is the whole loader state and resume is exact.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace strata {

class Loader {
 public:
  Loader(std::vector<uint16_t> tokens, int T, uint64_t seed, const std::string& source);
  // Fills x[n,T] and y[n,T] (y shifted by one) with training sequences first … first+n−1.
  void fill(uint64_t first, int n, int32_t* x, int32_t* y) const;
  // Contiguous evaluation sequence j: tokens[j·T … j·T+T−1], targets shifted by one.
  void eval_sequence(uint64_t j, int32_t* x, int32_t* y) const;
  uint64_t eval_sequences() const;  // how many contiguous sequences fit
  size_t size() const { return tokens_.size(); }

 private:
  std::vector<uint16_t> tokens_;
  int T_;
  uint64_t seed_;
};

}  // namespace strata
