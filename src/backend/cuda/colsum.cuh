// colsum.cuh: deterministic column sums over the rows of an [N, C] operand, for parameter gradients (bias,
// LayerNorm gain and bias). Two passes with a fixed shape, so the result never depends on scheduling:
//   1. blocks of 32 columns × 8 row-lanes over chunks of kChunk rows; lane y sums rows y, y+8, … of the
//      chunk in order, the 8 lanes are added in order: partial[chunk, c];
//   2. one thread per column adds the chunks' partials in order and accumulates into out[c] (+=).
// The value summed for (row n, column c) comes from a functor `f(n, c) -> float2` (two sums at once: gain and
// bias of a LayerNorm; a bias uses .x only).
#pragma once
#include "backend/cuda/blas.cuh"

namespace strata::cuda {

constexpr int kColTile = 32, kRowLanes = 8, kChunk = 256;

template <class F>
__global__ void colsum_partial(float2* partial, int N, int C, F f) {
  __shared__ float2 s[kRowLanes][kColTile];
  const int c = blockIdx.x * kColTile + threadIdx.x, chunk = blockIdx.y;
  float2 acc = make_float2(0.0f, 0.0f);
  if (c < C) {
    const int end = min(N, (chunk + 1) * kChunk);
    for (int n = chunk * kChunk + threadIdx.y; n < end; n += kRowLanes) {
      float2 v = f(n, c);
      acc.x += v.x;
      acc.y += v.y;
    }
  }
  s[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float2 t = s[0][threadIdx.x];
    for (int y = 1; y < kRowLanes; y++) t.x += s[y][threadIdx.x].x, t.y += s[y][threadIdx.x].y;
    partial[size_t(chunk) * C + c] = t;
  }
}

static __global__ void colsum_final(float* out_x, float* out_y, const float2* partial, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float2 t = make_float2(0.0f, 0.0f);
  for (int k = 0; k < chunks; k++) t.x += partial[size_t(k) * C + c].x, t.y += partial[size_t(k) * C + c].y;
  if (out_x) out_x[c] += t.x;
  if (out_y) out_y[c] += t.y;
}

// out_x[c] += Σ_n f(n, c).x, out_y[c] += Σ_n f(n, c).y (either may be null); scratch slot 2 of stream s.
template <class F>
void column_sums(float* out_x, float* out_y, int N, int C, F f, cudaStream_t s) {
  const int chunks = (N + kChunk - 1) / kChunk;
  auto* partial = static_cast<float2*>(scratch(2, size_t(chunks) * C * sizeof(float2), s));
  colsum_partial<<<dim3(blocks_for(size_t(C), kColTile), chunks), dim3(kColTile, kRowLanes), 0, s>>>(partial, N, C, f);
  STRATA_CUDA_LAUNCHED();
  colsum_final<<<blocks_for(size_t(C), 128), 128, 0, s>>>(out_x, out_y, partial, chunks, C);
  STRATA_CUDA_LAUNCHED();
}

}  // namespace strata::cuda
