// matmul.cpp: dense layers through OpenBLAS. out = in·w + b ; din = dout·wᵀ ; dw += inᵀ·dout ; db += Σ dout.
#include "backend/cpu/blas.hpp"

#include "backend/ops.hpp"
#include "core/parallel.hpp"

namespace strata::cpu {

template <class T>
void matmul_forward(T* out, const T* in, const T* w, const T* b, int N, int IC, int OC) {
  T beta = 0;
  if (b) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
      for (int o = 0; o < OC; o++) out[size_t(n) * OC + o] = b[o];
    beta = 1;
  }
  gemm(CblasNoTrans, CblasNoTrans, N, OC, IC, T(1), in, IC, w, OC, beta, out, OC);
}

template <class T>
void matmul_backward_input(T* din, const T* dout, const T* w, int N, int IC, int OC, bool accumulate) {
  gemm(CblasNoTrans, CblasTrans, N, IC, OC, T(1), dout, OC, w, OC, accumulate ? T(1) : T(0), din, IC);
}

template <class T>
void matmul_backward_weight(T* dw, T* db, const T* dout, const T* in, int N, int IC, int OC) {
  gemm(CblasTrans, CblasNoTrans, IC, OC, N, T(1), in, IC, dout, OC, T(1), dw, OC);
  if (db) {
    // Column-parallel: each output column is summed over rows in row order by one thread, so the
    // result does not depend on the thread count.
#pragma omp parallel
    {
      Range r = thread_range(OC);
      for (int n = 0; n < N; n++) {
        const T* row = dout + size_t(n) * OC;
        for (int64_t o = r.lo; o < r.hi; o++) db[o] += row[o];
      }
    }
  }
}

template void matmul_forward<float>(float*, const float*, const float*, const float*, int, int, int);
template void matmul_forward<double>(double*, const double*, const double*, const double*, int, int, int);
template void matmul_backward_input<float>(float*, const float*, const float*, int, int, int, bool);
template void matmul_backward_input<double>(double*, const double*, const double*, int, int, int, bool);
template void matmul_backward_weight<float>(float*, float*, const float*, const float*, int, int, int);
template void matmul_backward_weight<double>(double*, double*, const double*, const double*, int, int, int);

}  // namespace strata::cpu
