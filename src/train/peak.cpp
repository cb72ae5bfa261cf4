// peak.cpp: sgemm peak measurement.
#include "train/peak.hpp"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace strata {

double measure_sgemm_gflops(int n, int reps) {
  std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n, 0.0f);
  double best = 1e30;
  for (int r = 0; r < reps + 1; r++) {  // first run warms caches and threads
    auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) best = std::min(best, dt);
  }
  return 2.0 * double(n) * n * n / best / 1e9;
}

}  // namespace strata
