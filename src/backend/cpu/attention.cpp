// attention.cpp: causal multi-head self-attention from a fused qkv buffer.
// forward: out[B,T,C] =, probs[B,H,T,T] = (upper triangle left 0)
// backward: dqkv[B,T,3C] =
// Parallel over (batch, head) pairs; each pair writes disjoint memory, so results do not depend on threads.
#include <cmath>
#include <vector>

#include "backend/ops.hpp"

namespace strata::cpu {

template <class T>
void attention_forward(T* out, T* probs, const T* qkv, int B, int Tn, int C, int H) {
  const int hs = C / H;
  const size_t C3 = size_t(3) * C;
  const T scale = T(1) / std::sqrt(T(hs));
#pragma omp parallel
  {
    std::vector<T> kt(size_t(hs) * Tn);  // [hs, T] keys of one head, transposed
#pragma omp for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < H; h++) {
        const T* base = qkv + size_t(b) * Tn * C3;
        for (int j = 0; j < Tn; j++) {
          const T* k = base + j * C3 + C + h * hs;
          for (int c = 0; c < hs; c++) kt[size_t(c) * Tn + j] = k[c];
        }
        T* P = probs + (size_t(b) * H + h) * Tn * Tn;  // [T, T]
        for (int i = 0; i < Tn; i++) {
          const T* q = base + i * C3 + h * hs;
          T* p = P + size_t(i) * Tn;
          for (int j = 0; j <= i; j++) p[j] = 0;
          for (int c = 0; c < hs; c++) {
            const T qc = q[c] * scale;
            const T* kr = kt.data() + size_t(c) * Tn;
#pragma omp simd
            for (int j = 0; j <= i; j++) p[j] += qc * kr[j];
          }
          T mx = p[0];
          for (int j = 1; j <= i; j++) mx = p[j] > mx ? p[j] : mx;
          T sum = 0;
          for (int j = 0; j <= i; j++) {
            p[j] = std::exp(p[j] - mx);
            sum += p[j];
          }
          const T inv = T(1) / sum;
          for (int j = 0; j <= i; j++) p[j] *= inv;
          for (int j = i + 1; j < Tn; j++) p[j] = 0;
          T* o = out + (size_t(b) * Tn + i) * C + h * hs;  // [hs]
          for (int c = 0; c < hs; c++) o[c] = 0;
          for (int j = 0; j <= i; j++) {
            const T pj = p[j];
            const T* v = base + j * C3 + 2 * C + h * hs;
#pragma omp simd
            for (int c = 0; c < hs; c++) o[c] += pj * v[c];
          }
        }
      }
    }
  }
}

template <class T>
void attention_backward(T* dqkv, const T* dout, const T* probs, const T* qkv, int B, int Tn, int C, int H) {
  const int hs = C / H;
  const size_t C3 = size_t(3) * C;
  const T scale = T(1) / std::sqrt(T(hs));
#pragma omp parallel
  {
    std::vector<T> vt(size_t(hs) * Tn);  // [hs, T] values of one head, transposed
    std::vector<T> ds(Tn);               // [T] gradient of one score row
#pragma omp for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
      for (int h = 0; h < H; h++) {
        const T* base = qkv + size_t(b) * Tn * C3;
        T* dbase = dqkv + size_t(b) * Tn * C3;
        for (int j = 0; j < Tn; j++) {
          const T* v = base + j * C3 + 2 * C + h * hs;
          for (int c = 0; c < hs; c++) vt[size_t(c) * Tn + j] = v[c];
          T* dq = dbase + j * C3 + h * hs;
          for (int c = 0; c < hs; c++) dq[c] = dq[C + c] = dq[2 * C + c] = 0;
        }
        const T* P = probs + (size_t(b) * H + h) * Tn * Tn;
        for (int i = 0; i < Tn; i++) {
          const T* p = P + size_t(i) * Tn;
          const T* dy = dout + (size_t(b) * Tn + i) * C + h * hs;  // [hs]
          // dp_ij = dy · v_j ; dv_j += p_ij dy
          for (int j = 0; j <= i; j++) ds[j] = 0;
          for (int c = 0; c < hs; c++) {
            const T dyc = dy[c];
            const T* vr = vt.data() + size_t(c) * Tn;
#pragma omp simd
            for (int j = 0; j <= i; j++) ds[j] += dyc * vr[j];
          }
          for (int j = 0; j <= i; j++) {
            T* dv = dbase + j * C3 + 2 * C + h * hs;
            const T pj = p[j];
#pragma omp simd
            for (int c = 0; c < hs; c++) dv[c] += pj * dy[c];
          }
          // softmax backward: ds_ij = p_ij (dp_ij - Σ_k p_ik dp_ik), then the 1/sqrt(hs) scale
          T dot = 0;
          for (int j = 0; j <= i; j++) dot += p[j] * ds[j];
          for (int j = 0; j <= i; j++) ds[j] = p[j] * (ds[j] - dot) * scale;
          const T* q = base + i * C3 + h * hs;
          T* dq = dbase + i * C3 + h * hs;
          for (int j = 0; j <= i; j++) {
            const T dsj = ds[j];
            const T* k = base + j * C3 + C + h * hs;
            T* dk = dbase + j * C3 + C + h * hs;
#pragma omp simd
            for (int c = 0; c < hs; c++) {
              dq[c] += dsj * k[c];
              dk[c] += dsj * q[c];
            }
          }
        }
      }
    }
  }
}

template void attention_forward<float>(float*, float*, const float*, int, int, int, int);
template void attention_forward<double>(double*, double*, const double*, int, int, int, int);
template void attention_backward<float>(float*, const float*, const float*, const float*, int, int, int, int);
template void attention_backward<double>(double*, const double*, const double*, const double*, int, int, int, int);

}  // namespace strata::cpu
