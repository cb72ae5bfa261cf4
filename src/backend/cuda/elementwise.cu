// elementwise.cu: activations, residual adds, scaled copies, embeddings and AdamW: the twins of
// cpu/activation.cpp, residual.cpp, embedding.cpp and adamw.cpp, and the gradient fold / unfold of the CPU
// backend (cpu/backend.cpp), one thread per element.
// The embedding backward sums each column over the rows in row order (one thread per column), so it is
// deterministic without atomics; a faster sort-by-token version is future work.
#include <cmath>

#include "backend/adamw_math.hpp"
#include "backend/cuda/common.cuh"
#include "backend/cuda/ops.hpp"

namespace strata::cuda {

namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;
constexpr int kThreads = 256;

__global__ void act_fwd(float* out, void* out16, const float* in, const void* in16, size_t n, Activation a) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = load(in, in16, i), y = 0;
  switch (a) {
    case Activation::gelu_tanh: y = 0.5f * x * (1.0f + tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x))); break;
    case Activation::gelu: y = 0.5f * x * (1.0f + erff(x * kInvSqrt2)); break;
    case Activation::relu: y = x > 0.0f ? x : 0.0f; break;
  }
  store(out, out16, i, y);
}

__global__ void act_bwd(float* din, void* din16, const float* dout, const void* dout16, const float* in,
                        const void* in16, size_t n, Activation a) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = load(in, in16, i), g = 0;
  switch (a) {
    case Activation::gelu_tanh: {
      float th = tanhf(kSqrt2OverPi * (x + 0.044715f * x * x * x));
      g = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * kSqrt2OverPi * (1.0f + 3.0f * 0.044715f * x * x);
      break;
    }
    case Activation::gelu: g = 0.5f * (1.0f + erff(x * kInvSqrt2)) + x * kInvSqrt2Pi * expf(-0.5f * x * x); break;
    case Activation::relu: g = x > 0.0f ? 1.0f : 0.0f; break;
  }
  const float dy = load(dout, dout16, i);
  store(din, din16, i, a == Activation::relu ? (x > 0.0f ? dy : 0.0f) : dy * g);
}

__global__ void residual_k(float* out, const float* x, float alpha, const float* g, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = alpha * x[i] + g[i];
}

__global__ void scale_copy_k(float* out, const float* in, float alpha, size_t n, bool accumulate) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = accumulate ? out[i] + alpha * in[i] : alpha * in[i];
}

__global__ void embed_fwd(float* out, const int32_t* tokens, const float* wte, const float* wpe, int rows, int Tn,
                          int C) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= size_t(rows) * C) return;
  int r = int(i / C), c = int(i % C);
  out[i] = wte[size_t(tokens[r]) * C + c] + wpe[size_t(r % Tn) * C + c];
}

__global__ void embed_bwd(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int rows, int Tn, int C) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  for (int r = 0; r < rows; r++) {  // row order, as the CPU twin: deterministic
    float d = dout[size_t(r) * C + c];
    dwte[size_t(tokens[r]) * C + c] += d;
    dwpe[size_t(r % Tn) * C + c] += d;
  }
}

__global__ void adamw_segments_k(float* p, float* m, float* v, const float* g, const AdamWSegment* seg,
                                 const size_t* start, int count, size_t total, AdamWScalars sc) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  int lo = 0, hi = count - 1;  // the last segment starting at or before i
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (start[mid] <= i) lo = mid; else hi = mid - 1;
  }
  const size_t j = seg[lo].offset + (i - start[lo]);
  if (!seg[lo].decay) sc.weight_decay = 0.0f;
  adamw_element(p[j], m[j], v[j], g[j], sc);
}

__global__ void adamw_k(float* p, float* m, float* v, const float* g, size_t n, AdamWScalars sc) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) adamw_element(p[i], m[i], v[i], g[i], sc);
}

__global__ void fold_k(double* acc, float* g, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  acc[i] += double(g[i]);
  g[i] = 0.0f;
}

__global__ void unfold_k(float* g, const double* acc, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) g[i] = float(acc[i]);  // round to nearest, as the host's conversion
}

}  // namespace

void activation_forward(float* out, const float* in, size_t n, Activation a, cudaStream_t s, void* out16,
                        const void* in16) {
  if (!n) return;
  act_fwd<<<blocks_for(n, kThreads), kThreads, 0, s>>>(out, out16, in, in16, n, a);
  STRATA_CUDA_LAUNCHED();
}
void activation_backward(float* din, const float* dout, const float* in, size_t n, Activation a, cudaStream_t s,
                         void* din16, const void* dout16, const void* in16) {
  if (!n) return;
  act_bwd<<<blocks_for(n, kThreads), kThreads, 0, s>>>(din, din16, dout, dout16, in, in16, n, a);
  STRATA_CUDA_LAUNCHED();
}
void residual_forward(float* out, const float* x, float alpha, const float* g, size_t n, cudaStream_t s) {
  if (!n) return;
  residual_k<<<blocks_for(n, kThreads), kThreads, 0, s>>>(out, x, alpha, g, n);
  STRATA_CUDA_LAUNCHED();
}
void scale_copy(float* out, const float* in, float alpha, size_t n, bool accumulate, cudaStream_t s) {
  if (!n) return;
  scale_copy_k<<<blocks_for(n, kThreads), kThreads, 0, s>>>(out, in, alpha, n, accumulate);
  STRATA_CUDA_LAUNCHED();
}
void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int Tn, int C,
                       cudaStream_t s) {
  const size_t n = size_t(B) * Tn * C;
  if (!n) return;
  embed_fwd<<<blocks_for(n, kThreads), kThreads, 0, s>>>(out, tokens, wte, wpe, B * Tn, Tn, C);
  STRATA_CUDA_LAUNCHED();
}
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int Tn, int C,
                        cudaStream_t s) {
  if (!C) return;
  embed_bwd<<<blocks_for(size_t(C), 128), 128, 0, s>>>(dwte, dwpe, dout, tokens, B * Tn, Tn, C);
  STRATA_CUDA_LAUNCHED();
}
// Bias corrections on the host with std::pow, as the CPU twin computes them.
static AdamWScalars adamw_scalars(const AdamWParams& hp, bool decay) {
  return {hp.lr, hp.beta1, hp.beta2, hp.eps, decay ? hp.weight_decay : 0.0f,
          1.0f - std::pow(hp.beta1, float(hp.step)), 1.0f - std::pow(hp.beta2, float(hp.step))};
}
void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const AdamWParams& hp, bool decay,
                  cudaStream_t s) {
  if (!n) return;
  adamw_k<<<blocks_for(n, kThreads), kThreads, 0, s>>>(p, m, v, g, n, adamw_scalars(hp, decay));
  STRATA_CUDA_LAUNCHED();
}
void adamw_update_segments(float* p, float* m, float* v, const float* g, const AdamWSegment* segments,
                           const size_t* start, int count, size_t total, const AdamWParams& hp, cudaStream_t s) {
  if (!total || count <= 0) return;
  adamw_segments_k<<<blocks_for(total, kThreads), kThreads, 0, s>>>(p, m, v, g, segments, start, count, total,
                                                                    adamw_scalars(hp, true));
  STRATA_CUDA_LAUNCHED();
}

void fold(double* acc, float* g, size_t n, cudaStream_t s) {
  if (!n) return;
  fold_k<<<blocks_for(n, kThreads), kThreads, 0, s>>>(acc, g, n);
  STRATA_CUDA_LAUNCHED();
}
void unfold(float* g, const double* acc, size_t n, cudaStream_t s) {
  if (!n) return;
  unfold_k<<<blocks_for(n, kThreads), kThreads, 0, s>>>(g, acc, n);
  STRATA_CUDA_LAUNCHED();
}

}  // namespace strata::cuda
