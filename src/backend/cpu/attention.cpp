// attention.cpp: causal multi-head self-attention from a fused qkv buffer, one (batch, head) pair at a time
// through BLAS calls on strided views (lda = 3C), parallel over the pairs. Inside the OpenMP region the
// OpenMP build of OpenBLAS runs each call on the calling thread, so pairs run concurrently.
// forward: out[B,T,C] =, probs[B,H,T,T] = (upper triangle 0)
// backward: dqkv[B,T,3C] =
// Each pair writes disjoint memory, so results do not depend on the thread count.
#include "backend/cpu/blas.hpp"

#include <cmath>
#include <vector>

#include "backend/ops.hpp"

namespace strata::cpu {

template <class T>
void attention_forward(T* out, T* probs, const T* qkv, int B, int Tn, int C, int H) {
  const int hs = C / H, ld = 3 * C;
  const T scale = T(1) / std::sqrt(T(hs));
#pragma omp parallel for schedule(static) collapse(2)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < H; h++) {
      const T* q = qkv + size_t(b) * Tn * ld + h * hs;  // [T, hs], row stride 3C
      const T* k = q + C;
      const T* v = q + 2 * C;
      T* P = probs + (size_t(b) * H + h) * Tn * Tn;  // [T, T]
      gemm(CblasNoTrans, CblasTrans, Tn, Tn, hs, scale, q, ld, k, ld, T(0), P, Tn);  // S = q·kᵀ/√hs
      for (int i = 0; i < Tn; i++) {
        T* p = P + size_t(i) * Tn;
        T mx = p[0];
        for (int j = 1; j <= i; j++) mx = p[j] > mx ? p[j] : mx;
        T sum = 0;
        for (int j = 0; j <= i; j++) {
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        const T inv = T(1) / sum;
        for (int j = 0; j <= i; j++) p[j] *= inv;
        for (int j = i + 1; j < Tn; j++) p[j] = 0;  // causal mask
      }
      T* o = out + size_t(b) * Tn * C + h * hs;  // [T, hs], row stride C
      gemm(CblasNoTrans, CblasNoTrans, Tn, hs, Tn, T(1), P, Tn, v, ld, T(0), o, C);  // O = P·v
    }
  }
}

template <class T>
void attention_backward(T* dqkv, const T* dout, const T* probs, const T* qkv, int B, int Tn, int C, int H) {
  const int hs = C / H, ld = 3 * C;
  const T scale = T(1) / std::sqrt(T(hs));
#pragma omp parallel
  {
    std::vector<T> dP(size_t(Tn) * Tn);  // [T, T] gradient of the probabilities, then of the scores
#pragma omp for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < H; h++) {
        const T* q = qkv + size_t(b) * Tn * ld + h * hs;
        const T* k = q + C;
        const T* v = q + 2 * C;
        T* dq = dqkv + size_t(b) * Tn * ld + h * hs;
        T* dk = dq + C;
        T* dv = dq + 2 * C;
        const T* P = probs + (size_t(b) * H + h) * Tn * Tn;
        const T* dO = dout + size_t(b) * Tn * C + h * hs;
        gemm(CblasNoTrans, CblasTrans, Tn, Tn, hs, T(1), dO, C, v, ld, T(0), dP.data(), Tn);  // dP = dO·vᵀ
        gemm(CblasTrans, CblasNoTrans, Tn, hs, Tn, T(1), P, Tn, dO, C, T(0), dv, ld);        // dv = Pᵀ·dO
        for (int i = 0; i < Tn; i++) {  // softmax backward: dS = P ⊙ (dP − Σ_j P·dP) / √hs
          const T* p = P + size_t(i) * Tn;
          T* d = dP.data() + size_t(i) * Tn;
          T dot = 0;
          for (int j = 0; j <= i; j++) dot += p[j] * d[j];
          for (int j = 0; j <= i; j++) d[j] = p[j] * (d[j] - dot) * scale;
          for (int j = i + 1; j < Tn; j++) d[j] = 0;
        }
        gemm(CblasNoTrans, CblasNoTrans, Tn, hs, Tn, T(1), dP.data(), Tn, k, ld, T(0), dq, ld);  // dq = dS·k
        gemm(CblasTrans, CblasNoTrans, Tn, hs, Tn, T(1), dP.data(), Tn, q, ld, T(0), dk, ld);    // dk = dSᵀ·q
      }
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, int, int, int, int);
template void attention_forward<double>(double*, double*, const double*, int, int, int, int);
template void attention_backward<float>(float*, const float*, const float*, const float*, int, int, int, int);
template void attention_backward<double>(double*, const double*, const double*, const double*, int, int, int, int);

}  // namespace strata::cpu
