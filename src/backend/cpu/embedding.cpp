// embedding.cpp: token + position embedding. forward: out[B,T,C] = ; backward: dwte[V,C] +=, dwpe[T,C] +=
// The backward is column-parallel with rows in order, so sums do not depend on the thread count.
#include "backend/ops.hpp"
#include "core/parallel.hpp"

namespace strata::cpu {

template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int B, int Tn, int C) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < B * Tn; r++) {
    const T* e = wte + size_t(tokens[r]) * C;
    const T* p = wpe + size_t(r % Tn) * C;
    T* o = out + size_t(r) * C;
    for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
  }
}

template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int B, int Tn, int C) {
#pragma omp parallel
  {
    Range cr = thread_range(C);
    for (int r = 0; r < B * Tn; r++) {
      const T* d = dout + size_t(r) * C;
      T* e = dwte + size_t(tokens[r]) * C;
      T* p = dwpe + size_t(r % Tn) * C;
      for (int64_t c = cr.lo; c < cr.hi; c++) {
        e[c] += d[c];
        p[c] += d[c];
      }
    }
  }
}

template void embedding_forward<float>(float*, const int32_t*, const float*, const float*, int, int, int);
template void embedding_forward<double>(double*, const int32_t*, const double*, const double*, int, int, int);
template void embedding_backward<float>(float*, float*, const float*, const int32_t*, int, int, int);
template void embedding_backward<double>(double*, double*, const double*, const int32_t*, int, int, int);

}  // namespace strata::cpu
