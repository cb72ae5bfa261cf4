// flash_attention_tc.cu: the fused causal attention of flash_attention.cu on bf16 tensor cores (WMMA
// 16×16×16 tiles, fp32 accumulation): the form the bf16 precision trains with. q, k, v and dO are rounded to
// bfloat16 as they are loaded into shared memory, the probabilities (forward) and dS (backward) before their
// products; scores, the softmax, the log-sum-exp and every accumulator stay fp32, as do the inputs and outputs
// in global memory. Same layout and the same contract as the fp32 kernels: qkv [B,T,3C], out [B,T,C],
// lse [B,H,T] (=), dqkv [B,T,3C] (=); no T×T matrix; deterministic (every sum has one owner and a fixed order;
// dK/dV and dQ in separate kernels instead of atomics).
//
// Tiles: 64 query rows × 64 keys per step, 4 warps per block, each warp owning 16 rows (forward, dQ) or 16
// keys (dK/dV). The forward keeps its running output in shared memory (its rows are rescaled by the online
// softmax's correction, which needs the row of each element; WMMA's register layout is unspecified), the
// backward keeps dK, dV and dQ in accumulator fragments. Head sizes 16, 32, 64 and 128 (a template parameter,
// so the fragment arrays stay in registers); others use the fp32 kernels (attention_tc_supported).
#include <cuda_bf16.h>
#include <mma.h>

#include <cmath>

#include "backend/cuda/blas.cuh"

namespace strata::cuda {

namespace {

using namespace nvcuda;
using bf16 = __nv_bfloat16;

constexpr int kRows = 64;  // query rows (keys, in the dK/dV kernel) per block
constexpr int kCols = 64;  // keys (queries) per step
static_assert(kRows == kCols, "load_bf16 loads kRows rows of either operand");
constexpr int kWarps = kRows / 16;
constexpr int kThreadsTc = kWarps * kWarp;
constexpr int kLdS = kCols + 4;  // fp32 score tiles: padded rows (bank conflicts), multiple of 4 (WMMA)
constexpr int kLdP = kCols + 8;  // bf16 probability tiles: multiple of 8 (WMMA)

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Shared memory carve-up: consecutive regions, each starting 128-byte aligned (WMMA needs 32).
struct Carve {
  char* p;
  template <class T>
  __device__ T* take(size_t n) {
    T* r = reinterpret_cast<T*>(p);
    p += (n * sizeof(T) + 127) / 128 * 128;
    return r;
  }
};
__host__ __device__ constexpr size_t carve_bytes(size_t n_bytes) { return (n_bytes + 127) / 128 * 128; }

template <int HS>
__host__ __device__ constexpr int ld_tile() {
  return HS + 8;  // bf16 [rows][HS] tiles: padded, a multiple of 8
}

// rows [r0, r0 + kRows) × columns [0, HS) of a row-major matrix (fp32 or bf16, row stride ld) as bf16 into sh
// (row stride ld_tile), zeros past row T. Consecutive threads read consecutive columns.
template <int HS, class T_>
__device__ void load_bf16_from(bf16* sh, const T_* base, size_t ld, int r0, int T) {
  for (int e = threadIdx.x; e < kRows * HS; e += blockDim.x) {
    const int r = e / HS, d = e % HS;
    sh[r * ld_tile<HS>() + d] = r0 + r < T ? bf16(base[size_t(r0 + r) * ld + d]) : __float2bfloat16_rn(0.0f);
  }
}
// One loop per source type, chosen once per tile (a choice per element costs registers).
template <int HS>
__device__ void load_bf16(bf16* sh, Bf16Src base, size_t ld, int r0, int T) {
  if (base.f)
    load_bf16_from<HS>(sh, base.f, ld, r0, T);
  else
    load_bf16_from<HS>(sh, base.h, ld, r0, T);
}

// S[16, kCols] (fp32, ld kLdS) = A[16 rows, HS] · B[kCols rows, HS]ᵀ for B's 16-row blocks n with need(n);
// A and B bf16 row-major tiles (ld ld_tile).
template <int HS, class Need>
__device__ void scores(float* S, const bf16* A, const bf16* B, Need need) {
  FragA a[HS / 16];
#pragma unroll
  for (int k = 0; k < HS / 16; k++) wmma::load_matrix_sync(a[k], A + k * 16, ld_tile<HS>());
#pragma unroll
  for (int n = 0; n < kCols / 16; n++) {
    if (!need(n)) continue;
    FragC acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int k = 0; k < HS / 16; k++) {
      FragBCol b;  // Bᵀ: column j of Bᵀ is row j of B
      wmma::load_matrix_sync(b, B + n * 16 * ld_tile<HS>() + k * 16, ld_tile<HS>());
      wmma::mma_sync(acc, a[k], b, acc);
    }
    wmma::store_matrix_sync(S + n * 16, acc, kLdS, wmma::mem_row_major);
  }
}

// ---- forward ----

template <int HS>
__host__ __device__ constexpr size_t fwd_smem() {
  return 3 * carve_bytes(kRows * ld_tile<HS>() * sizeof(bf16)) + carve_bytes(kWarps * 16 * kLdS * sizeof(float)) +
         carve_bytes(kWarps * 16 * kLdP * sizeof(bf16)) + carve_bytes(kWarps * 16 * (HS + 4) * sizeof(float)) +
         3 * carve_bytes(kRows * sizeof(float));
}

template <int HS>
__global__ void __launch_bounds__(kThreadsTc) fwd_tc(float* out, void* out16, float* lse, Bf16Src qkv, int T,
                                                    int C, int H, float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  Carve cv{reinterpret_cast<char*>(smem_raw)};
  constexpr int ld = ld_tile<HS>(), ldo = HS + 4;
  bf16* Q = cv.take<bf16>(kRows * ld);
  bf16* K = cv.take<bf16>(kRows * ld);
  bf16* V = cv.take<bf16>(kRows * ld);
  float* S = cv.take<float>(kWarps * 16 * kLdS);
  bf16* P = cv.take<bf16>(kWarps * 16 * kLdP);
  float* O = cv.take<float>(kWarps * 16 * ldo);
  float* m = cv.take<float>(kRows);
  float* l = cv.take<float>(kRows);
  float* corr = cv.take<float>(kRows);

  const int w = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int bh = blockIdx.x, b = bh / H, h = bh % H;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kRows;  // the longest (last) row tiles first
  const Bf16Src base = qkv + size_t(b) * T * 3 * C + h * HS;
  float *Sw = S + w * 16 * kLdS, *Ow = O + w * 16 * ldo;
  bf16* Pw = P + w * 16 * kLdP;
  const int wr0 = i0 + w * 16;  // the warp's first query row

  load_bf16<HS>(Q, base, 3 * C, i0, T);
  for (int e = lane; e < 16 * HS; e += kWarp) Ow[e / HS * ldo + e % HS] = 0.0f;
  if (lane < 16) m[w * 16 + lane] = -INFINITY, l[w * 16 + lane] = 0.0f;
  const int last = min(T, i0 + kRows);  // keys 0 … last−1 can be seen by some row of the block
  for (int j0 = 0; j0 < last; j0 += kCols) {
    __syncthreads();  // the previous step's K and V are no longer read (and, the first time, Q is written)
    load_bf16<HS>(K, base + C, 3 * C, j0, T);
    load_bf16<HS>(V, base + 2 * C, 3 * C, j0, T);
    __syncthreads();
    // 16-key blocks this warp's rows can see: key j0 + 16n ≤ the warp's last row.
    auto visible = [&](int n) { return j0 + 16 * n <= wr0 + 15; };
    scores<HS>(Sw, Q + w * 16 * ld, K, visible);
    __syncwarp();
    // Online softmax: two lanes per row, each over half the tile's keys.
    {
      const int r = lane / 2, half = lane % 2, i = wr0 + r;
      float s[kCols / 2];
      float mx = -INFINITY;
#pragma unroll
      for (int c = 0; c < kCols / 2; c++) {
        const int cc = half * (kCols / 2) + c, j = j0 + cc;
        s[c] = (j <= i && j < T) ? Sw[r * kLdS + cc] * scale : -INFINITY;
        mx = fmaxf(mx, s[c]);
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      const float m_old = m[w * 16 + r], m_new = fmaxf(m_old, mx);
      // A row past T sees no key in this step's columns beyond T: m_new may stay −∞ (nothing is written for it).
      const float base_m = m_new == -INFINITY ? 0.0f : m_new;
      float sum = 0.0f;
#pragma unroll
      for (int c = 0; c < kCols / 2; c++) {
        const float p = expf(s[c] - base_m);  // exp(−∞) = 0 where masked
        sum += p;
        Pw[r * kLdP + half * (kCols / 2) + c] = __float2bfloat16_rn(p);
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      const float cf = expf(m_old - base_m);  // 0 the first time (m_old = −∞)
      __syncwarp();  // every lane has read m[r] before it changes
      if (half == 0) {
        m[w * 16 + r] = m_new;
        l[w * 16 + r] = l[w * 16 + r] * cf + sum;
        corr[w * 16 + r] = cf;
      }
    }
    __syncwarp();
    for (int e = lane; e < 16 * HS; e += kWarp) Ow[e / HS * ldo + e % HS] *= corr[w * 16 + e / HS];
    __syncwarp();
    // O += P · V over the visible 16-key blocks.
#pragma unroll
    for (int d = 0; d < HS / 16; d++) {
      FragC acc;
      wmma::load_matrix_sync(acc, Ow + d * 16, ldo, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kCols / 16; kk++) {
        if (!visible(kk)) continue;
        FragA a;
        FragBRow bv;
        wmma::load_matrix_sync(a, Pw + kk * 16, kLdP);
        wmma::load_matrix_sync(bv, V + kk * 16 * ld + d * 16, ld);
        wmma::mma_sync(acc, a, bv, acc);
      }
      wmma::store_matrix_sync(Ow + d * 16, acc, ldo, wmma::mem_row_major);
    }
    __syncwarp();
  }
  for (int e = lane; e < 16 * HS; e += kWarp) {
    const int r = e / HS, d = e % HS, i = wr0 + r;
    if (i < T) store(out, out16, (size_t(b) * T + i) * C + h * HS + d, Ow[r * ldo + d] / l[w * 16 + r]);
  }
  if (lane < 16 && wr0 + lane < T) lse[size_t(bh) * T + wr0 + lane] = m[w * 16 + lane] + logf(l[w * 16 + lane]);
}

// ---- backward ----

template <int HS>
__host__ __device__ constexpr size_t bwd_smem() {
  return 4 * carve_bytes(kRows * ld_tile<HS>() * sizeof(bf16)) +
         2 * carve_bytes(kWarps * 16 * kLdS * sizeof(float)) + 2 * carve_bytes(kWarps * 16 * kLdP * sizeof(bf16)) +
         2 * carve_bytes(kRows * sizeof(float));
}

// The backward kernels' shared memory (bwd_smem): the block's own two tiles (K, V for dK/dV; Q, dO for dQ),
// the two tiles streamed past them, each warp's fp32 score tiles S and dP and bf16 tiles P and dS, and the
// streamed or own rows' lse and D.
template <int HS>
struct BwdSmem {
  bf16 *own0, *own1, *other0, *other1;
  float *S, *dP;
  bf16 *P, *dS;
  float *lse, *D;
  __device__ explicit BwdSmem(unsigned char* raw) {
    Carve cv{reinterpret_cast<char*>(raw)};
    constexpr int ld = ld_tile<HS>();
    own0 = cv.take<bf16>(kRows * ld), own1 = cv.take<bf16>(kRows * ld);
    other0 = cv.take<bf16>(kCols * ld), other1 = cv.take<bf16>(kCols * ld);
    S = cv.take<float>(kWarps * 16 * kLdS), dP = cv.take<float>(kWarps * 16 * kLdS);
    P = cv.take<bf16>(kWarps * 16 * kLdP), dS = cv.take<bf16>(kWarps * 16 * kLdP);
    lse = cv.take<float>(kRows), D = cv.take<float>(kRows);
  }
};

// lse and D of rows r0 … r0 + kRows − 1 of head bh (0 past T) into shared memory.
__device__ void load_row_stats(float* lse_s, float* D_s, const float* lse, const float* D, int bh, int r0, int T) {
  for (int r = threadIdx.x; r < kRows; r += blockDim.x) {
    lse_s[r] = r0 + r < T ? lse[size_t(bh) * T + r0 + r] : 0.0f;
    D_s[r] = r0 + r < T ? D[size_t(bh) * T + r0 + r] : 0.0f;
  }
}

// Writes a warp's accumulators acc[HS/16] (16 rows × HS) to rows r0… (< T) of dst + off (row stride ld), and
// their bf16 copy to dst16 + off where given, through the warp's fp32 staging tile st (16 × kLdS).
template <int HS>
__device__ void store_rows(float* dst, void* dst16, size_t off, size_t ld, int r0, int T, FragC* acc, float* st) {
  const int lane = threadIdx.x % kWarp;
#pragma unroll
  for (int d = 0; d < HS / 16; d++) {
    __syncwarp();  // the previous block's elements have been read
    wmma::store_matrix_sync(st, acc[d], kLdS, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 256; e += kWarp) {
      const int r = e / 16, c = e % 16;
      if (r0 + r < T) store(dst, dst16, off + size_t(r0 + r) * ld + d * 16 + c, st[r * kLdS + c]);
    }
  }
}

// One block per 64 keys; warp w owns keys j0 + 16w … +15: dV = Σ_i Pᵀ·dO, dK = Σ_i dSᵀ·Q · scale over the
// query tiles that can see them (i ≥ j).
template <int HS>
__global__ void __launch_bounds__(kThreadsTc) bwd_kv_tc(float* dqkv, void* dqkv16, Bf16Src dout, const float* lse,
                                                       const float* D, Bf16Src qkv, int T, int C, int H,
                                                       float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const BwdSmem<HS> sm(smem_raw);
  constexpr int ld = ld_tile<HS>();
  bf16 *K = sm.own0, *V = sm.own1, *Q = sm.other0, *dO = sm.other1;
  float *St = sm.S, *dPt = sm.dP, *lse_s = sm.lse, *D_s = sm.D;  // transposed: rows are keys
  bf16 *Pt = sm.P, *dSt = sm.dS;

  const int w = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int bh = blockIdx.x, b = bh / H, h = bh % H, j0 = blockIdx.y * kRows, wj0 = j0 + w * 16;
  const Bf16Src base = qkv + size_t(b) * T * 3 * C + h * HS;
  const Bf16Src dbase = dout + size_t(b) * T * C + h * HS;
  float *Stw = St + w * 16 * kLdS, *dPtw = dPt + w * 16 * kLdS;
  bf16 *Ptw = Pt + w * 16 * kLdP, *dStw = dSt + w * 16 * kLdP;

  load_bf16<HS>(K, base + C, 3 * C, j0, T);
  load_bf16<HS>(V, base + 2 * C, 3 * C, j0, T);
  FragC dk[HS / 16], dv[HS / 16];
#pragma unroll
  for (int d = 0; d < HS / 16; d++) wmma::fill_fragment(dk[d], 0.0f), wmma::fill_fragment(dv[d], 0.0f);
  for (int i0 = j0; i0 < T; i0 += kCols) {  // query tiles holding a row i ≥ j0
    __syncthreads();  // the previous tile's Q and dO are no longer read (the first time: K and V are written)
    load_bf16<HS>(Q, base, 3 * C, i0, T);
    load_bf16<HS>(dO, dbase, C, i0, T);
    load_row_stats(lse_s, D_s, lse, D, bh, i0, T);
    __syncthreads();
    // 16-query blocks that see some key of this warp: query i0 + 16n + 15 ≥ the warp's first key.
    auto seen = [&](int n) { return i0 + 16 * n + 15 >= wj0; };
    scores<HS>(Stw, K + w * 16 * ld, Q, seen);   // Sᵀ = K·Qᵀ
    scores<HS>(dPtw, V + w * 16 * ld, dO, seen);  // dPᵀ = V·dOᵀ
    __syncwarp();
    for (int e = lane; e < 16 * kCols; e += kWarp) {
      const int r = e / kCols, c = e % kCols, j = wj0 + r, i = i0 + c;
      float p = 0.0f, ds = 0.0f;
      if (i < T && j <= i) {
        p = expf(Stw[r * kLdS + c] * scale - lse_s[c]);
        ds = p * (dPtw[r * kLdS + c] - D_s[c]) * scale;
      }
      Ptw[r * kLdP + c] = __float2bfloat16_rn(p);
      dStw[r * kLdP + c] = __float2bfloat16_rn(ds);
    }
    __syncwarp();
#pragma unroll
    for (int kk = 0; kk < kCols / 16; kk++) {
      if (!seen(kk)) continue;
      FragA pa, sa;
      wmma::load_matrix_sync(pa, Ptw + kk * 16, kLdP);
      wmma::load_matrix_sync(sa, dStw + kk * 16, kLdP);
#pragma unroll
      for (int d = 0; d < HS / 16; d++) {
        FragBRow ob, qb;
        wmma::load_matrix_sync(ob, dO + kk * 16 * ld + d * 16, ld);
        wmma::load_matrix_sync(qb, Q + kk * 16 * ld + d * 16, ld);
        wmma::mma_sync(dv[d], pa, ob, dv[d]);
        wmma::mma_sync(dk[d], sa, qb, dk[d]);
      }
    }
  }
  const size_t dst = size_t(b) * T * 3 * C + h * HS;
  store_rows<HS>(dqkv, dqkv16, dst + C, 3 * C, wj0, T, dk, Stw);
  store_rows<HS>(dqkv, dqkv16, dst + 2 * C, 3 * C, wj0, T, dv, Stw);
}

// One block per 64 query rows; warp w owns rows i0 + 16w … +15: dQ = Σ_j dS·K · scale over keys j ≤ i.
template <int HS>
__global__ void __launch_bounds__(kThreadsTc) bwd_q_tc(float* dqkv, void* dqkv16, Bf16Src dout, const float* lse,
                                                      const float* D, Bf16Src qkv, int T, int C, int H,
                                                      float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  const BwdSmem<HS> sm(smem_raw);  // its P tile is unused here
  constexpr int ld = ld_tile<HS>();
  bf16 *Q = sm.own0, *dO = sm.own1, *K = sm.other0, *V = sm.other1, *dS = sm.dS;
  float *S = sm.S, *dP = sm.dP, *lse_s = sm.lse, *D_s = sm.D;

  const int w = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int bh = blockIdx.x, b = bh / H, h = bh % H;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kRows, wr0 = i0 + w * 16;
  const Bf16Src base = qkv + size_t(b) * T * 3 * C + h * HS;
  float *Sw = S + w * 16 * kLdS, *dPw = dP + w * 16 * kLdS;
  bf16* dSw = dS + w * 16 * kLdP;

  load_bf16<HS>(Q, base, 3 * C, i0, T);
  load_bf16<HS>(dO, dout + size_t(b) * T * C + h * HS, C, i0, T);
  load_row_stats(lse_s, D_s, lse, D, bh, i0, T);
  FragC dq[HS / 16];
#pragma unroll
  for (int d = 0; d < HS / 16; d++) wmma::fill_fragment(dq[d], 0.0f);
  const int last = min(T, i0 + kRows);
  for (int j0 = 0; j0 < last; j0 += kCols) {
    __syncthreads();
    load_bf16<HS>(K, base + C, 3 * C, j0, T);
    load_bf16<HS>(V, base + 2 * C, 3 * C, j0, T);
    __syncthreads();
    auto visible = [&](int n) { return j0 + 16 * n <= wr0 + 15; };
    scores<HS>(Sw, Q + w * 16 * ld, K, visible);    // S = Q·Kᵀ
    scores<HS>(dPw, dO + w * 16 * ld, V, visible);  // dP = dO·Vᵀ
    __syncwarp();
    for (int e = lane; e < 16 * kCols; e += kWarp) {
      const int r = e / kCols, c = e % kCols, i = wr0 + r, j = j0 + c;
      float ds = 0.0f;
      if (i < T && j <= i) {
        const float p = expf(Sw[r * kLdS + c] * scale - lse_s[w * 16 + r]);
        ds = p * (dPw[r * kLdS + c] - D_s[w * 16 + r]) * scale;
      }
      dSw[r * kLdP + c] = __float2bfloat16_rn(ds);
    }
    __syncwarp();
#pragma unroll
    for (int kk = 0; kk < kCols / 16; kk++) {
      if (!visible(kk)) continue;
      FragA sa;
      wmma::load_matrix_sync(sa, dSw + kk * 16, kLdP);
#pragma unroll
      for (int d = 0; d < HS / 16; d++) {
        FragBRow kb;
        wmma::load_matrix_sync(kb, K + kk * 16 * ld + d * 16, ld);
        wmma::mma_sync(dq[d], sa, kb, dq[d]);
      }
    }
  }
  store_rows<HS>(dqkv, dqkv16, size_t(b) * T * 3 * C + h * HS, 3 * C, wr0, T, dq, Sw);
}

template <int HS>
void forward_hs(float* out, void* out16, float* lse, Bf16Src qkv, int B, int Tn, int C, int H, cudaStream_t s) {
  constexpr size_t smem = fwd_smem<HS>() + 128;  // + alignment slack for the carve-up's base
  allow_dynamic_smem(reinterpret_cast<const void*>(fwd_tc<HS>), smem, "attention_tc_forward", HS);
  fwd_tc<HS><<<dim3(B * H, blocks_for(size_t(Tn), kRows)), kThreadsTc, smem, s>>>(out, out16, lse, qkv, Tn, C, H,
                                                                                    1.0f / std::sqrt(float(HS)));
  STRATA_CUDA_LAUNCHED();
}

template <int HS>
void backward_hs(float* dqkv, void* dqkv16, Bf16Src dout, Bf16Src out, const float* lse, Bf16Src qkv, int B, int Tn,
                 int C, int H, cudaStream_t s) {
  const float scale = 1.0f / std::sqrt(float(HS));
  const float* D = attention_row_dot(dout.f, out.f, B, Tn, C, H, s, dout.h, out.h);
  constexpr size_t smem = bwd_smem<HS>() + 128;
  allow_dynamic_smem(reinterpret_cast<const void*>(bwd_kv_tc<HS>), smem, "attention_tc_backward", HS);
  allow_dynamic_smem(reinterpret_cast<const void*>(bwd_q_tc<HS>), smem, "attention_tc_backward", HS);
  const dim3 grid(B * H, blocks_for(size_t(Tn), kRows));
  bwd_kv_tc<HS><<<grid, kThreadsTc, smem, s>>>(dqkv, dqkv16, dout, lse, D, qkv, Tn, C, H, scale);
  STRATA_CUDA_LAUNCHED();
  bwd_q_tc<HS><<<grid, kThreadsTc, smem, s>>>(dqkv, dqkv16, dout, lse, D, qkv, Tn, C, H, scale);
  STRATA_CUDA_LAUNCHED();
}

}  // namespace

bool attention_tc_supported(int C, int H) {
  if (H <= 0 || C % H) return false;
  const int hs = C / H;
  return hs == 16 || hs == 32 || hs == 64 || hs == 128;
}

void attention_tc_forward(float* out, float* lse, const float* qkv, int B, int Tn, int C, int H, cudaStream_t s,
                          void* out16, const void* qkv16) {
  const Bf16Src src(qkv, qkv16);
  if (B <= 0 || Tn <= 0) return;
  STRATA_CHECK(attention_tc_supported(C, H), "attention_tc_forward: head size ", C / std::max(H, 1),
               " (C ", C, ", H ", H, ") is not 16, 32, 64 or 128");
  switch (C / H) {
    case 16: return forward_hs<16>(out, out16, lse, src, B, Tn, C, H, s);
    case 32: return forward_hs<32>(out, out16, lse, src, B, Tn, C, H, s);
    case 64: return forward_hs<64>(out, out16, lse, src, B, Tn, C, H, s);
    default: return forward_hs<128>(out, out16, lse, src, B, Tn, C, H, s);
  }
}

void attention_tc_backward(float* dqkv, const float* dout, const float* out, const float* lse, const float* qkv,
                           int B, int Tn, int C, int H, cudaStream_t s, void* dqkv16, const void* qkv16,
                           const void* dout16, const void* out16) {
  const Bf16Src src(qkv, qkv16), dO(dout, dout16), O(out, out16);
  if (B <= 0 || Tn <= 0) return;
  STRATA_CHECK(attention_tc_supported(C, H), "attention_tc_backward: head size ", C / std::max(H, 1),
               " (C ", C, ", H ", H, ") is not 16, 32, 64 or 128");
  switch (C / H) {
    case 16: return backward_hs<16>(dqkv, dqkv16, dO, O, lse, src, B, Tn, C, H, s);
    case 32: return backward_hs<32>(dqkv, dqkv16, dO, O, lse, src, B, Tn, C, H, s);
    case 64: return backward_hs<64>(dqkv, dqkv16, dO, O, lse, src, B, Tn, C, H, s);
    default: return backward_hs<128>(dqkv, dqkv16, dO, O, lse, src, B, Tn, C, H, s);
  }
}

}  // namespace strata::cuda
