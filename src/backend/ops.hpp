// ops.hpp: the op interface of the CPU backend. Every op has a forward and a hand-written backward,
// templated on the scalar (float for training, double for finite-difference tests).
// Convention: '=' outputs are overwritten, '+=' outputs accumulate (parameter gradients always accumulate).
// Shapes: N rows (tokens, N = B·T), C = d_model, OC/IC output/input columns, H heads, V vocab.
#pragma once
#include <cstddef>
#include <cstdint>

namespace strata::cpu {

enum class Activation { gelu_tanh, gelu, relu };
Activation activation_from_name(const char* name);

// ---- matmul.cpp (cblas_sgemm / cblas_dgemm) ----
// out[N,OC] = in[N,IC] · w[IC,OC] + b[OC]   (b may be null)
template <class T> void matmul_forward(T* out, const T* in, const T* w, const T* b, int N, int IC, int OC);
// din[N,IC] = (or +=, accumulate) dout[N,OC] · wᵀ
template <class T> void matmul_backward_input(T* din, const T* dout, const T* w, int N, int IC, int OC, bool accumulate);
// dw[IC,OC] += inᵀ · dout ; db[OC] += Σ_rows dout   (db may be null)
template <class T> void matmul_backward_weight(T* dw, T* db, const T* dout, const T* in, int N, int IC, int OC);

// ---- layernorm.cpp ----
// out[N,C] = (in - mean)·rstd·gain + bias ; mean[N] =, rstd[N] =
template <class T> void layernorm_forward(T* out, T* mean, T* rstd, const T* in, const T* gain, const T* bias, int N,
                                          int C, double eps);
// din[N,C] = or += ; dgain[C] += ; dbias[C] +=
template <class T> void layernorm_backward(T* din, T* dgain, T* dbias, const T* dout, const T* in, const T* gain,
                                           const T* mean, const T* rstd, int N, int C, bool accumulate);

// ---- attention.cpp: causal multi-head self-attention on a fused qkv ----
// qkv[B,T,3C] (q | k | v, head h in columns h·C/H … (h+1)·C/H−1 of each part) → out[B,T,C] =, probs[B,H,T,T] =
template <class T> void attention_forward(T* out, T* probs, const T* qkv, int B, int Tn, int C, int H);
// dqkv[B,T,3C] =
template <class T> void attention_backward(T* dqkv, const T* dout, const T* probs, const T* qkv, int B, int Tn, int C,
                                           int H);

// ---- activation.cpp ----
template <class T> void activation_forward(T* out, const T* in, size_t n, Activation a);                // out =
template <class T> void activation_backward(T* din, const T* dout, const T* in, size_t n, Activation a); // din =

// ---- crossentropy.cpp ----
// losses[N] = -log softmax(logits[N,V])[target]
template <class T> void crossentropy_forward(T* losses, const T* logits, const int32_t* targets, int N, int V);
// dlogits[N,V] = (softmax(logits) - onehot(target)) · scale
template <class T> void crossentropy_backward(T* dlogits, const T* logits, const int32_t* targets, int N, int V,
                                              T scale);

// ---- embedding.cpp ----
// out[B,T,C] = wte[tokens] + wpe[t]
template <class T> void embedding_forward(T* out, const int32_t* tokens, const T* wte, const T* wpe, int B, int Tn,
                                          int C);
// dwte[V,C] += ; dwpe[T,C] +=
template <class T> void embedding_backward(T* dwte, T* dwpe, const T* dout, const int32_t* tokens, int B, int Tn,
                                           int C);

// ---- residual.cpp ----
template <class T> void residual_forward(T* out, const T* x, T alpha, const T* g, size_t n);  // out = α·x + g
template <class T> void scale_copy(T* out, const T* in, T alpha, size_t n, bool accumulate);  // out = (+=) α·in

// ---- reduce.cpp: deterministic reductions (fixed chunking, independent of thread count) ----
double sum_squares(const float* x, size_t n);

// ---- stats.cpp: reductions for the per-layer statistics ----
double stats_sumsq(const float* x, size_t n);                       // Σ x²
double stats_maxabs(const float* x, size_t n);                      // max |x|
double stats_sqdiff(const float* a, const float* b, size_t n);      // Σ (a − b)²
// Σ over rows of −Σ_j p log p, probs [rows, T] of causal attention (row r is query r mod T).
double attention_entropy(const float* probs, int rows, int T);

// ---- adamw.cpp ----
struct AdamWParams {
  float lr, beta1, beta2, eps, weight_decay;
  int step;  // 1-based, for bias correction
};
// p, m, v updated in place from g; weight decay applied when decay is true.
void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const AdamWParams& hp, bool decay);

}  // namespace strata::cpu
