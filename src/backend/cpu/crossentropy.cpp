// crossentropy.cpp: softmax cross-entropy over the vocabulary, one target per row.
// forward: losses[N] = ; backward: dlogits[N,V] = (softmax - onehot)·scale
#include <cmath>

#include "backend/ops.hpp"

namespace strata::cpu {

template <class T>
void crossentropy_forward(T* losses, const T* logits, const int32_t* targets, int N, int V) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const T* z = logits + size_t(n) * V;
    T mx = z[0];
    for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    T sum = 0;
    for (int v = 0; v < V; v++) sum += std::exp(z[v] - mx);
    losses[n] = std::log(sum) + mx - z[targets[n]];
  }
}

template <class T>
void crossentropy_backward(T* dlogits, const T* logits, const int32_t* targets, int N, int V, T scale) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const T* z = logits + size_t(n) * V;
    T* dz = dlogits + size_t(n) * V;
    T mx = z[0];
    for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    T sum = 0;
    for (int v = 0; v < V; v++) {
      dz[v] = std::exp(z[v] - mx);
      sum += dz[v];
    }
    const T inv = scale / sum;
    for (int v = 0; v < V; v++) dz[v] *= inv;
    dz[targets[n]] -= scale;
  }
}

template void crossentropy_forward<float>(float*, const float*, const int32_t*, int, int);
template void crossentropy_forward<double>(double*, const double*, const int32_t*, int, int);
template void crossentropy_backward<float>(float*, const float*, const int32_t*, int, int, float);
template void crossentropy_backward<double>(double*, const double*, const int32_t*, int, int, double);

}  // namespace strata::cpu
