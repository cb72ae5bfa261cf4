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

double gpu_bf16_peak_gflops(const std::string& name) {
  struct Known {
    const char* part;
    double gflops;
  };
  static const Known known[] = {{"H100 PCIe", 756e3}, {"H100 NVL", 835e3}, {"H100", 989e3}, {"H200", 989e3},
                                {"H800", 989e3},      {"B200", 2250e3},    {"A100", 312e3}, {"A800", 312e3},
                                {"L40S", 362e3},      {"A10", 125e3}};
  for (const Known& k : known)
    if (name.find(k.part) != std::string::npos) return k.gflops;
  return 0;
}

}  // namespace strata
