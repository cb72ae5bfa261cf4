// crossentropy.cu: softmax cross-entropy over the vocabulary, the twin of cpu/crossentropy.cpp: one block
// per row, the max and the sum of exponentials reduced in shared memory in a fixed order (deterministic).
#include "backend/cuda/common.cuh"
#include "backend/cuda/ops.hpp"

namespace strata::cuda {

namespace {

constexpr int kThreads = 256;

// Block-wide reduction of one value per thread (sum or max); every thread gets the result.
template <bool kMax>
__device__ float block_reduce(float v, float* shared) {
  v = kMax ? warp_max(v) : warp_sum(v);
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < int(blockDim.x / kWarp) ? shared[lane] : (kMax ? -INFINITY : 0.0f);
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // shared may be reused by the caller's next reduction
  return v;
}

// (max, Σ exp(z − max)) of row z[V].
__device__ void row_softmax_stats(const float* z, int V, float* mx, float* sum, float* shared) {
  float m = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, z[v]);
  m = block_reduce<true>(m, shared);
  float s = 0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(z[v] - m);
  *mx = m;
  *sum = block_reduce<false>(s, shared);
}

__global__ void ce_fwd(float* losses, const float* logits, const int32_t* targets, int V) {
  __shared__ float shared[kWarp];
  const float* z = logits + size_t(blockIdx.x) * V;
  float mx, sum;
  row_softmax_stats(z, V, &mx, &sum, shared);
  if (threadIdx.x == 0) losses[blockIdx.x] = logf(sum) + mx - z[targets[blockIdx.x]];
}

__global__ void ce_bwd(float* dlogits, void* dlogits16, const float* logits, const int32_t* targets, int V, float scale) {
  __shared__ float shared[kWarp];
  const float* z = logits + size_t(blockIdx.x) * V;
  const size_t row = size_t(blockIdx.x) * V;
  float mx, sum;
  row_softmax_stats(z, V, &mx, &sum, shared);
  const float inv = scale / sum;
  const int t = targets[blockIdx.x];
  for (int v = threadIdx.x; v < V; v += blockDim.x)
    store(dlogits, dlogits16, row + v, expf(z[v] - mx) * inv - (v == t ? scale : 0.0f));
}

}  // namespace

void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V, cudaStream_t s) {
  if (N <= 0) return;
  ce_fwd<<<N, kThreads, 0, s>>>(losses, logits, targets, V);
  STRATA_CUDA_LAUNCHED();
}

void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, int N, int V, float scale,
                           cudaStream_t s, void* dlogits16) {
  if (N <= 0) return;
  ce_bwd<<<N, kThreads, 0, s>>>(dlogits, dlogits16, logits, targets, V, scale);
  STRATA_CUDA_LAUNCHED();
}

}  // namespace strata::cuda
