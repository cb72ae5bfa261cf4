// adamw.cpp: AdamW with decoupled weight decay (Loshchilov & Hutter), bias-corrected moments.
// p, m, v updated in place (=); g read only. The element update is backend/adamw_math.hpp's, shared with CUDA.
#include <cmath>

#include "backend/adamw_math.hpp"
#include "backend/ops.hpp"

namespace strata::cpu {

void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const AdamWParams& hp, bool decay) {
  const AdamWScalars s{hp.lr, hp.beta1, hp.beta2, hp.eps, decay ? hp.weight_decay : 0.0f,
                       1.0f - std::pow(hp.beta1, float(hp.step)), 1.0f - std::pow(hp.beta2, float(hp.step))};
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) adamw_element(p[i], m[i], v[i], g[i], s);
}

}  // namespace strata::cpu
