// stats.cpp: reductions for the per-layer statistics (built with -ffast-math so log vectorises).
// Results depend on the thread count only through float summation order inside a statistic.
#include <cmath>

#include "backend/ops.hpp"

namespace strata::cpu {

double stats_sumsq(const float* x, size_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (size_t i = 0; i < n; i++) s += double(x[i]) * x[i];
  return s;
}

double stats_maxabs(const float* x, size_t n) {
  float m = 0;
#pragma omp parallel for reduction(max : m) schedule(static)
  for (size_t i = 0; i < n; i++) m = std::fmax(m, std::fabs(x[i]));
  return m;
}

double stats_sqdiff(const float* a, const float* b, size_t n) {
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (size_t i = 0; i < n; i++) {
    const double d = double(a[i]) - b[i];
    s += d * d;
  }
  return s;
}

double attention_entropy(const float* probs, int rows, int T) {
  double ent = 0;
#pragma omp parallel for reduction(+ : ent) schedule(static)
  for (int r = 0; r < rows; r++) {
    const float* p = probs + size_t(r) * T;
    const int n = r % T + 1;  // causal: query i sees keys 0 … i
    float e = 0;
#pragma omp simd reduction(+ : e)
    for (int c = 0; c < n; c++) e -= p[c] > 0 ? p[c] * std::log(p[c]) : 0.0f;
    ent += e;
  }
  return ent;
}

}  // namespace strata::cpu
