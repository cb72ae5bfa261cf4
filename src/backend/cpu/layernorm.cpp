// layernorm.cpp: LayerNorm over each row's C features.
// forward: out = (in - mean)·rstd·gain + bias, mean = ; rstd = 1/sqrt(var + eps) =
// backward: din = or += ; dgain += ; dbias +=
#include <cmath>

#include "backend/ops.hpp"
#include "core/parallel.hpp"

namespace strata::cpu {

template <class T>
void layernorm_forward(T* out, T* mean, T* rstd, const T* in, const T* gain, const T* bias, int N, int C, double eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const T* x = in + size_t(n) * C;  // [C]
    T* y = out + size_t(n) * C;       // [C]
    T m = 0;
    for (int c = 0; c < C; c++) m += x[c];
    m /= C;
    T v = 0;
    for (int c = 0; c < C; c++) {
      T d = x[c] - m;
      v += d * d;
    }
    v /= C;
    T s = T(1) / std::sqrt(v + T(eps));
    for (int c = 0; c < C; c++) y[c] = (x[c] - m) * s * gain[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

template <class T>
void layernorm_backward(T* din, T* dgain, T* dbias, const T* dout, const T* in, const T* gain, const T* mean,
                        const T* rstd, int N, int C, bool accumulate) {
  // din = rstd · (dxhat - mean(dxhat) - xhat·mean(dxhat·xhat)), dxhat = dout·gain
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const T* x = in + size_t(n) * C;
    const T* dy = dout + size_t(n) * C;
    T* dx = din + size_t(n) * C;
    T m = mean[n], s = rstd[n];
    T a = 0, b = 0;
    for (int c = 0; c < C; c++) {
      T xhat = (x[c] - m) * s;
      T dxhat = dy[c] * gain[c];
      a += dxhat;
      b += dxhat * xhat;
    }
    a /= C;
    b /= C;
    for (int c = 0; c < C; c++) {
      T xhat = (x[c] - m) * s;
      T v = s * (dy[c] * gain[c] - a - xhat * b);
      dx[c] = accumulate ? dx[c] + v : v;
    }
  }
  // Parameter gradients column-parallel: row order fixed, so the sum does not depend on threads.
#pragma omp parallel
  {
    Range r = thread_range(C);
    for (int n = 0; n < N; n++) {
      const T* x = in + size_t(n) * C;
      const T* dy = dout + size_t(n) * C;
      T m = mean[n], s = rstd[n];
      for (int64_t c = r.lo; c < r.hi; c++) {
        dgain[c] += dy[c] * (x[c] - m) * s;
        dbias[c] += dy[c];
      }
    }
  }
}

template void layernorm_forward<float>(float*, float*, float*, const float*, const float*, const float*, int, int,
                                       double);
template void layernorm_forward<double>(double*, double*, double*, const double*, const double*, const double*, int,
                                        int, double);
template void layernorm_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                        const float*, const float*, int, int, bool);
template void layernorm_backward<double>(double*, double*, double*, const double*, const double*, const double*,
                                         const double*, const double*, int, int, bool);

}  // namespace strata::cpu
