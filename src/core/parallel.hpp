// parallel.hpp: OpenMP helpers: the static slice of [0, n) owned by the calling thread.
#pragma once
#include <omp.h>

#include <cstdint>

namespace strata {

struct Range {
  int64_t lo, hi;
};

// Inside a parallel region: this thread's contiguous slice of [0, n).
inline Range thread_range(int64_t n) {
  int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
  return {n * t / nt, n * (t + 1) / nt};
}

}  // namespace strata
