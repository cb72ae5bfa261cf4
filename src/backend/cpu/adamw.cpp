// adamw.cpp: AdamW with decoupled weight decay (Loshchilov & Hutter), bias-corrected moments.
// p, m, v updated in place (=); g read only.
#include <cmath>

#include "backend/ops.hpp"

namespace strata::cpu {

void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const AdamWParams& hp, bool decay) {
  const float b1 = hp.beta1, b2 = hp.beta2;
  const float c1 = 1.0f - std::pow(b1, float(hp.step)), c2 = 1.0f - std::pow(b2, float(hp.step));
  const float wd = decay ? hp.weight_decay : 0.0f;
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    float gi = g[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float mhat = mi / c1, vhat = vi / c2;
    p[i] -= hp.lr * (mhat / (std::sqrt(vhat) + hp.eps) + wd * p[i]);
  }
}

}  // namespace strata::cpu
