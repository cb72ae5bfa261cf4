// reduce.cpp: deterministic reductions: fixed 4096-element chunks summed in parallel in double,
// then the chunk sums added in order, so the result is the same for any thread count.
#include <vector>

#include "backend/ops.hpp"

namespace strata::cpu {

double sum_squares(const float* x, size_t n) {
  constexpr size_t kChunk = 4096;
  const size_t nchunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(nchunks);
#pragma omp parallel for schedule(static)
  for (size_t k = 0; k < nchunks; k++) {
    size_t lo = k * kChunk, hi = lo + kChunk < n ? lo + kChunk : n;
    double s = 0;
    for (size_t i = lo; i < hi; i++) s += double(x[i]) * double(x[i]);
    part[k] = s;
  }
  double s = 0;
  for (double p : part) s += p;
  return s;
}

}  // namespace strata::cpu
