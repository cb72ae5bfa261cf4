// residual.cpp: residual adds and scaled copies. residual_forward: out = α·x + g ; scale_copy: out = (+=) α·in
#include "backend/ops.hpp"

namespace strata::cpu {

template <class T>
void residual_forward(T* out, const T* x, T alpha, const T* g, size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) out[i] = alpha * x[i] + g[i];
}

template <class T>
void scale_copy(T* out, const T* in, T alpha, size_t n, bool accumulate) {
  if (accumulate) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] += alpha * in[i];
  } else {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = alpha * in[i];
  }
}

template void residual_forward<float>(float*, const float*, float, const float*, size_t);
template void residual_forward<double>(double*, const double*, double, const double*, size_t);
template void scale_copy<float>(float*, const float*, float, size_t, bool);
template void scale_copy<double>(double*, const double*, double, size_t, bool);

}  // namespace strata::cpu
