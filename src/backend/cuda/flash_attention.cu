// flash_attention.cu: causal multi-head attention that never stores the T×T matrix (the memory-efficient
// form of Dao et al.'s FlashAttention, in plain fp32 CUDA without tensor cores): the forward keeps only each
// query row's log-sum-exp, the backward recomputes the probabilities from it. Deterministic: every sum is
// owned by one thread and runs in a fixed order (dK/dV and dQ in two kernels instead of atomics).
// Layout as the unfused op: qkv [B,T,3C] (q | k | v, head h in columns h·hs … (h+1)·hs−1 of each part),
// out [B,T,C], lse [B,H,T]. One block per (tile of rows, batch·head), one thread per row of the tile; the
// tile's rows and the other operand's tile sit in shared memory (rows padded by one float against bank
// conflicts).
#include <cmath>

#include "backend/cuda/blas.cuh"

namespace strata::cuda {

namespace {

constexpr int kMaxTile = 32;
int tile_for(int hs) { return hs <= 64 ? kMaxTile : kMaxTile / 2; }
size_t smem_for(int tile, int hs, int arrays) { return size_t(arrays) * tile * (hs + 1) * sizeof(float); }


// Loads rows [r0, r0 + tile) of one head's slice (row stride ld, columns col … col + hs) into sh (stride hs+1),
// zeros past T.
__device__ void load_tile(float* sh, const float* base, int ld, int r0, int T, int hs, int tile) {
  for (int e = threadIdx.x; e < tile * hs; e += blockDim.x) {
    const int r = e / hs, d = e % hs;
    sh[r * (hs + 1) + d] = r0 + r < T ? base[size_t(r0 + r) * ld + d] : 0.0f;
  }
}

// The key and value tile starting at row j0 (between barriers: the previous tile is no longer read).
__device__ void load_kv(float* k, float* v, const float* base, int C, int j0, int T, int hs, int tile) {
  __syncthreads();
  load_tile(k, base + C, 3 * C, j0, T, hs, tile);
  load_tile(v, base + 2 * C, 3 * C, j0, T, hs, tile);
  __syncthreads();
}

__global__ void fwd(float* out, void* out16, float* lse, const float* qkv, int T, int C, int H, float scale) {
  extern __shared__ float sm[];
  const int hs = C / H, tile = blockDim.x, st = hs + 1;
  const int bh = blockIdx.x, b = bh / H, h = bh % H, i0 = blockIdx.y * tile, i = i0 + threadIdx.x;
  float *q = sm, *o = q + tile * st, *k = o + tile * st, *v = k + tile * st;
  const float* base = qkv + size_t(b) * T * 3 * C + h * hs;
  load_tile(q, base, 3 * C, i0, T, hs, tile);
  for (int d = 0; d < hs; d++) o[threadIdx.x * st + d] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  const int last = min(T, i0 + tile);  // keys 0 … last−1 can be seen by some row of the tile
  for (int j0 = 0; j0 < last; j0 += tile) {
    load_kv(k, v, base, C, j0, T, hs, tile);
    if (i >= T) continue;
    for (int jj = 0; jj < tile && j0 + jj <= i; jj++) {
      float s = 0.0f;
      for (int d = 0; d < hs; d++) s += q[threadIdx.x * st + d] * k[jj * st + d];
      s *= scale;
      const float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);
      l = l * corr + p;
      for (int d = 0; d < hs; d++) o[threadIdx.x * st + d] = o[threadIdx.x * st + d] * corr + p * v[jj * st + d];
      m = mn;
    }
  }
  if (i >= T) return;
  const size_t dst = (size_t(b) * T + i) * C + h * hs;
  const float inv = 1.0f / l;
  for (int d = 0; d < hs; d++) store(out, out16, dst + d, o[threadIdx.x * st + d] * inv);
  lse[size_t(bh) * T + i] = m + logf(l);
}

// D[b,h,i] = Σ_d dO·O over the head's columns of row i (dO, O read as bf16 from dout16, out16 where dout, out are
// null: buffers kept in bf16 only).
__global__ void row_dot(float* D, const float* dout, const float* out, int B, int T, int C, int H, const void* dout16,
                        const void* out16) {
  const size_t r = size_t(blockIdx.x) * blockDim.x + threadIdx.x;  // (b, h, i)
  if (r >= size_t(B) * H * T) return;
  const int hs = C / H, i = int(r % T), h = int(r / T % H), b = int(r / T / H);
  const size_t o = (size_t(b) * T + i) * C + h * hs;
  float s = 0.0f;
  for (int d = 0; d < hs; d++) s += load(dout, dout16, o + d) * load(out, out16, o + d);
  D[r] = s;
}

// One thread per key row j: dv_j = Σ_{i≥j} p_ij dO_i, dk_j = Σ_{i≥j} ds_ij q_i · scale.
__global__ void bwd_kv(float* dqkv, void* dqkv16, const float* dout, const float* lse, const float* D, const float* qkv, int T, int C,
                       int H, float scale) {
  extern __shared__ float sm[];
  const int hs = C / H, tile = blockDim.x, st = hs + 1;
  const int bh = blockIdx.x, b = bh / H, h = bh % H, j0 = blockIdx.y * tile, j = j0 + threadIdx.x;
  float *k = sm, *v = k + tile * st, *dk = v + tile * st, *dv = dk + tile * st, *q = dv + tile * st,
        *dO = q + tile * st;
  __shared__ float lse_t[kMaxTile], D_t[kMaxTile];
  const float* base = qkv + size_t(b) * T * 3 * C + h * hs;
  load_tile(k, base + C, 3 * C, j0, T, hs, tile);
  load_tile(v, base + 2 * C, 3 * C, j0, T, hs, tile);
  for (int d = 0; d < hs; d++) dk[threadIdx.x * st + d] = dv[threadIdx.x * st + d] = 0.0f;
  for (int i0 = j0; i0 < T; i0 += tile) {  // query tiles that can see some key of this tile
    __syncthreads();
    load_tile(q, base, 3 * C, i0, T, hs, tile);
    load_tile(dO, dout + size_t(b) * T * C + h * hs, C, i0, T, hs, tile);
    {
      const int i = i0 + threadIdx.x;  // blockDim.x = tile ≤ kMaxTile
      lse_t[threadIdx.x] = i < T ? lse[size_t(bh) * T + i] : 0.0f;
      D_t[threadIdx.x] = i < T ? D[size_t(bh) * T + i] : 0.0f;
    }
    __syncthreads();
    if (j >= T) continue;
    for (int ii = 0; ii < tile && i0 + ii < T; ii++) {
      if (i0 + ii < j) continue;  // causal: query i sees key j only when j ≤ i
      float s = 0.0f, dp = 0.0f;
      for (int d = 0; d < hs; d++) {
        s += q[ii * st + d] * k[threadIdx.x * st + d];
        dp += dO[ii * st + d] * v[threadIdx.x * st + d];
      }
      const float p = expf(s * scale - lse_t[ii]), ds = p * (dp - D_t[ii]) * scale;
      for (int d = 0; d < hs; d++) {
        dv[threadIdx.x * st + d] += p * dO[ii * st + d];
        dk[threadIdx.x * st + d] += ds * q[ii * st + d];
      }
    }
  }
  if (j >= T) return;
  const size_t dst = (size_t(b) * T + j) * 3 * C + h * hs;
  for (int d = 0; d < hs; d++) {
    store(dqkv, dqkv16, dst + C + d, dk[threadIdx.x * st + d]);
    store(dqkv, dqkv16, dst + 2 * C + d, dv[threadIdx.x * st + d]);
  }
}

// One thread per query row i: dq_i = Σ_{j≤i} ds_ij k_j · scale.
__global__ void bwd_q(float* dqkv, void* dqkv16, const float* dout, const float* lse, const float* D, const float* qkv, int T, int C,
                      int H, float scale) {
  extern __shared__ float sm[];
  const int hs = C / H, tile = blockDim.x, st = hs + 1;
  const int bh = blockIdx.x, b = bh / H, h = bh % H, i0 = blockIdx.y * tile, i = i0 + threadIdx.x;
  float *q = sm, *dO = q + tile * st, *dq = dO + tile * st, *k = dq + tile * st, *v = k + tile * st;
  const float* base = qkv + size_t(b) * T * 3 * C + h * hs;
  load_tile(q, base, 3 * C, i0, T, hs, tile);
  load_tile(dO, dout + size_t(b) * T * C + h * hs, C, i0, T, hs, tile);
  for (int d = 0; d < hs; d++) dq[threadIdx.x * st + d] = 0.0f;
  const float l = i < T ? lse[size_t(bh) * T + i] : 0.0f, Di = i < T ? D[size_t(bh) * T + i] : 0.0f;
  const int last = min(T, i0 + tile);
  for (int j0 = 0; j0 < last; j0 += tile) {
    load_kv(k, v, base, C, j0, T, hs, tile);
    if (i >= T) continue;
    for (int jj = 0; jj < tile && j0 + jj <= i; jj++) {
      float s = 0.0f, dp = 0.0f;
      for (int d = 0; d < hs; d++) {
        s += q[threadIdx.x * st + d] * k[jj * st + d];
        dp += dO[threadIdx.x * st + d] * v[jj * st + d];
      }
      const float p = expf(s * scale - l), ds = p * (dp - Di) * scale;
      for (int d = 0; d < hs; d++) dq[threadIdx.x * st + d] += ds * k[jj * st + d];
    }
  }
  if (i >= T) return;
  const size_t dst = (size_t(b) * T + i) * 3 * C + h * hs;
  for (int d = 0; d < hs; d++) store(dqkv, dqkv16, dst + d, dq[threadIdx.x * st + d]);
}

}  // namespace

// Dynamic shared memory beyond the default 48 KiB is opt-in per kernel; beyond the device's opt-in maximum
// (227 KiB on H100, 163 KiB on A100: head sizes of several hundred) the op is refused by name.
void allow_dynamic_smem(const void* kernel, size_t bytes, const char* op, int hs) {
  int dev = 0, optin = 0;
  STRATA_CUDA_CHECK(cudaGetDevice(&dev));
  STRATA_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (bytes + 1024 > size_t(optin))
    fail(op, ": head size ", hs, " needs ", bytes, " bytes of shared memory per block, the device allows ", optin);
  STRATA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

float* attention_row_dot(const float* dout, const float* out, int B, int Tn, int C, int H, cudaStream_t s,
                         const void* dout16, const void* out16) {
  auto* D = static_cast<float*>(scratch(4, size_t(B) * H * Tn * sizeof(float), s));  // slot 4: in stream order
  row_dot<<<blocks_for(size_t(B) * H * Tn, 256), 256, 0, s>>>(D, dout, out, B, Tn, C, H, dout16, out16);
  STRATA_CUDA_LAUNCHED();
  return D;
}

void attention_fused_forward(float* out, float* lse, const float* qkv, int B, int Tn, int C, int H, cudaStream_t s,
                             void* out16) {
  if (B <= 0 || Tn <= 0) return;
  const int hs = C / H, tile = tile_for(hs);
  const size_t smem = smem_for(tile, hs, 4);
  allow_dynamic_smem(reinterpret_cast<const void*>(fwd), smem, "attention_fused", hs);
  fwd<<<dim3(B * H, blocks_for(size_t(Tn), tile)), tile, smem, s>>>(out, out16, lse, qkv, Tn, C, H, 1.0f / std::sqrt(float(hs)));
  STRATA_CUDA_LAUNCHED();
}

void attention_fused_backward(float* dqkv, const float* dout, const float* out, const float* lse, const float* qkv,
                              int B, int Tn, int C, int H, cudaStream_t s, void* dqkv16) {
  if (B <= 0 || Tn <= 0) return;
  const int hs = C / H, tile = tile_for(hs);
  const float scale = 1.0f / std::sqrt(float(hs));
  const float* D = attention_row_dot(dout, out, B, Tn, C, H, s);
  const size_t smem_kv = smem_for(tile, hs, 6), smem_q = smem_for(tile, hs, 5);
  allow_dynamic_smem(reinterpret_cast<const void*>(bwd_kv), smem_kv, "attention_fused", hs);
  allow_dynamic_smem(reinterpret_cast<const void*>(bwd_q), smem_q, "attention_fused", hs);
  const dim3 grid(B * H, blocks_for(size_t(Tn), tile));  // x: up to 2³¹−1 heads; y: up to 65535 tiles
  bwd_kv<<<grid, tile, smem_kv, s>>>(dqkv, dqkv16, dout, lse, D, qkv, Tn, C, H, scale);
  STRATA_CUDA_LAUNCHED();
  bwd_q<<<grid, tile, smem_q, s>>>(dqkv, dqkv16, dout, lse, D, qkv, Tn, C, H, scale);
  STRATA_CUDA_LAUNCHED();
}

}  // namespace strata::cuda
