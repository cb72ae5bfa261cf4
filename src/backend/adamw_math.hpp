// adamw_math.hpp: one AdamW element update, shared by the CPU op (cpu/adamw.cpp) and its CUDA twin
// (cuda/elementwise.cu) so both apply the same formula: decoupled weight decay (Loshchilov & Hutter) on the
// weight before the update, bias-corrected moments.
#pragma once
#include <math.h>

#if defined(__CUDACC__)
#define STRATA_HOST_DEVICE __host__ __device__
#else
#define STRATA_HOST_DEVICE
#endif

namespace strata {

struct AdamWScalars {
  float lr, beta1, beta2, eps, weight_decay;  // weight_decay 0 where the tensor takes none
  float c1, c2;                               // bias corrections 1 − β₁ᵗ, 1 − β₂ᵗ
};

STRATA_HOST_DEVICE inline void adamw_element(float& p, float& m, float& v, float g, const AdamWScalars& s) {
  const float mi = s.beta1 * m + (1.0f - s.beta1) * g;
  const float vi = s.beta2 * v + (1.0f - s.beta2) * g * g;
  m = mi;
  v = vi;
  const float mhat = mi / s.c1, vhat = vi / s.c2;
  p -= s.lr * (mhat / (sqrtf(vhat) + s.eps) + s.weight_decay * p);
}

}  // namespace strata
