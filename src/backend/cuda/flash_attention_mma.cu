// flash_attention_mma.cu: the bf16 tensor-core attention of flash_attention_tc.cu with the scores, the
// probabilities and every accumulator in registers (mma.sync m16n8k16, mma.cuh), as FlashAttention-2 keeps
// them: the WMMA kernels pass S, P, dP, dS and the forward's running output through shared memory (WMMA's
// register layout is unspecified, so a per-row softmax cannot be applied to its fragments); these do the
// softmax on the accumulators, turn them into the next product's A fragments without leaving registers, and
// read from shared memory only the K/V (forward, dQ) or Q/dO (dK/dV) tiles that the products stream.
// Same contract, rounding points and tiling as flash_attention_tc.cu: q, k, v, dO rounded to bf16 as they are
// loaded, P and dS before their products, softmax, lse and accumulators fp32; 64 query rows (keys) per block,
// 16 per warp, 64 keys (queries) per step; deterministic (dK/dV and dQ in separate kernels, fixed orders). Head
// sizes 16, 32 and 64 (attention_mma_supported); the backend uses these where train.attention_kernel = "mma".
#include <cmath>

#include "backend/cuda/blas.cuh"
#include "backend/cuda/mma.cuh"

namespace strata::cuda {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kRowsM = 64;   // query rows (keys, in the dK/dV kernel) per block: 16 per warp
constexpr int kStepM = 64;   // keys (queries) per step
constexpr int kWarpsM = kRowsM / 16;
constexpr int kThreadsM = kWarpsM * kWarp;
constexpr int kLdT = kStepM + 8;  // transposed bf16 tiles [HS][kStepM]: padded rows, 4-byte aligned pairs

template <int HS>
__host__ __device__ constexpr int ld_rows() {
  return HS + 8;  // bf16 [rows][HS] tiles: padded rows (bank spread), 4-byte aligned pairs
}

// Rows r0 … r0 + 63 × columns 0 … HS−1 of a row-major matrix (fp32 or bf16, row stride ldg) as bf16, zero past row T:
// into rows[r][d] (ld_rows) where given and into cols[d][r] (kLdT) where given. One global read per element,
// consecutive threads on consecutive columns.
template <int HS>
__device__ void load_tile_bf16(bf16* rows, bf16* cols, Bf16Src base, size_t ldg, int r0, int T) {
  for (int e = threadIdx.x; e < kRowsM * HS; e += blockDim.x) {
    const int r = e / HS, d = e % HS;
    const bf16 v = r0 + r < T ? base[size_t(r0 + r) * ldg + d] : __float2bfloat16_rn(0.0f);
    if (rows) rows[r * ld_rows<HS>() + d] = v;
    if (cols) cols[d * kLdT + r] = v;
  }
}

// The A fragments of a warp's 16 rows (row0 …) of a [rows][HS] tile: a[ks] covers columns 16ks … 16ks + 15.
template <int HS>
__device__ void a_fragments(uint32_t (&a)[HS / 16][4], const bf16* tile, int row0) {
  const int g = (threadIdx.x % kWarp) / 4, t = threadIdx.x % 4;
  constexpr int ld = ld_rows<HS>();
#pragma unroll
  for (int ks = 0; ks < HS / 16; ks++) {
    const bf16* p = tile + (row0 + g) * ld + 16 * ks + 2 * t;
    a[ks][0] = ld_pair(p), a[ks][1] = ld_pair(p + 8 * ld), a[ks][2] = ld_pair(p + 8), a[ks][3] = ld_pair(p + 8 * ld + 8);
  }
}

// acc[n] (n: 8 columns each) = A · Bᵀ, A the warp's fragments (16 × HS), B the 64 rows of a [rows][HS] tile (a
// score tile: B's rows are the keys or queries); column blocks with need(n) false are left zero.
template <int HS, class Need>
__device__ void scores_mma(float (&acc)[kStepM / 8][4], const uint32_t (&a)[HS / 16][4], const bf16* B, Need need) {
  const int g = (threadIdx.x % kWarp) / 4, t = threadIdx.x % 4;
  constexpr int ld = ld_rows<HS>();
#pragma unroll
  for (int n = 0; n < kStepM / 8; n++) {
    acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    if (!need(n)) continue;
#pragma unroll
    for (int ks = 0; ks < HS / 16; ks++) {
      const bf16* p = B + (8 * n + g) * ld + 16 * ks + 2 * t;
      mma_bf16_16816(acc[n], a[ks], ld_pair(p), ld_pair(p + 8));
    }
  }
}

// out[nd] += P · X over the step's 16-column blocks kk with need(kk): P the warp's 16 × 64 fp32 tile in
// accumulator layout (rounded to bf16 here: the C layout of two 8-column blocks is the A layout of one 16-wide
// k slice), X given transposed, Xt [HS][kStepM] (kLdT).
template <int HS, class Need>
__device__ void accumulate_mma(float (&out)[HS / 8][4], const float (&P)[kStepM / 8][4], const bf16* Xt, Need need) {
  const int g = (threadIdx.x % kWarp) / 4, t = threadIdx.x % 4;
#pragma unroll
  for (int kk = 0; kk < kStepM / 16; kk++) {
    if (!need(kk)) continue;
    const uint32_t a[4] = {pack_bf16(P[2 * kk][0], P[2 * kk][1]), pack_bf16(P[2 * kk][2], P[2 * kk][3]),
                           pack_bf16(P[2 * kk + 1][0], P[2 * kk + 1][1]), pack_bf16(P[2 * kk + 1][2], P[2 * kk + 1][3])};
#pragma unroll
    for (int nd = 0; nd < HS / 8; nd++) {
      const bf16* p = Xt + (8 * nd + g) * kLdT + 16 * kk + 2 * t;
      mma_bf16_16816(out[nd], a, ld_pair(p), ld_pair(p + 8));
    }
  }
}

// Writes a warp's [16][HS] accumulators (rows r_a = row0 + g and r_a + 8, those < T) to dst + off + row·ld,
// and their bf16 copy to dst16 where given.
template <int HS>
__device__ void store_acc(float* dst, void* dst16, size_t off, size_t ld, int row0, int T, const float (&acc)[HS / 8][4],
                          float mul_a = 1.0f, float mul_b = 1.0f) {
  const int g = (threadIdx.x % kWarp) / 4, t = threadIdx.x % 4, ra = row0 + g, rb = ra + 8;
#pragma unroll
  for (int nd = 0; nd < HS / 8; nd++) {
    const int c = 8 * nd + 2 * t;
    if (ra < T) {
      store(dst, dst16, off + size_t(ra) * ld + c, acc[nd][0] * mul_a);
      store(dst, dst16, off + size_t(ra) * ld + c + 1, acc[nd][1] * mul_a);
    }
    if (rb < T) {
      store(dst, dst16, off + size_t(rb) * ld + c, acc[nd][2] * mul_b);
      store(dst, dst16, off + size_t(rb) * ld + c + 1, acc[nd][3] * mul_b);
    }
  }
}

__device__ inline float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ inline float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// ---- forward ----

template <int HS>
__host__ __device__ constexpr size_t fwd_smem_mma() {
  return size_t(2 * kRowsM * ld_rows<HS>() + HS * kLdT) * sizeof(bf16);
}

// Block: 64 query rows of head (b, h); warp w rows i0 + 16w …; lane rows r_a = … + g and r_b = r_a + 8, its
// columns 2t, 2t + 1 of every 8-column block.
template <int HS>
__global__ void __launch_bounds__(kThreadsM) fwd_mma(float* out, void* out16, float* lse, Bf16Src qkv, int T,
                                                     int C, int H, float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  bf16* Q = reinterpret_cast<bf16*>(smem_raw);
  bf16* K = Q + kRowsM * ld_rows<HS>();
  bf16* Vt = K + kStepM * ld_rows<HS>();
  const int w = threadIdx.x / kWarp, g = (threadIdx.x % kWarp) / 4, t = threadIdx.x % 4;
  const int bh = blockIdx.x, b = bh / H, h = bh % H;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kRowsM;  // the longest (last) row tiles first
  const int wr0 = i0 + 16 * w, ra = wr0 + g, rb = ra + 8;
  const Bf16Src base = qkv + size_t(b) * T * 3 * C + h * HS;

  load_tile_bf16<HS>(Q, nullptr, base, 3 * C, i0, T);
  __syncthreads();
  uint32_t qa[HS / 16][4];
  a_fragments<HS>(qa, Q, 16 * w);
  float o[HS / 8][4] = {};
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
  const int last = min(T, i0 + kRowsM);  // keys 0 … last−1 can be seen by some row of the block
  for (int j0 = 0; j0 < last; j0 += kStepM) {
    __syncthreads();  // the previous step's K and Vt are no longer read
    load_tile_bf16<HS>(K, nullptr, base + C, 3 * C, j0, T);
    load_tile_bf16<HS>(nullptr, Vt, base + 2 * C, 3 * C, j0, T);
    __syncthreads();
    // 8-key blocks (16-key slices) the warp's rows can see: first key ≤ the warp's last row.
    auto visible8 = [&](int n) { return j0 + 8 * n <= wr0 + 15; };
    auto visible16 = [&](int kk) { return j0 + 16 * kk <= wr0 + 15; };
    float s[kStepM / 8][4];
    scores_mma<HS>(s, qa, K, visible8);
    float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
    for (int n = 0; n < kStepM / 8; n++)
#pragma unroll
      for (int c = 0; c < 2; c++) {
        const int j = j0 + 8 * n + 2 * t + c;
        s[n][c] = j <= ra && j < T ? s[n][c] * scale : -INFINITY;
        s[n][2 + c] = j <= rb && j < T ? s[n][2 + c] * scale : -INFINITY;
        mx_a = fmaxf(mx_a, s[n][c]), mx_b = fmaxf(mx_b, s[n][2 + c]);
      }
    const float mn_a = fmaxf(m_a, quad_max(mx_a)), mn_b = fmaxf(m_b, quad_max(mx_b));
    // A row past T sees no key here: its maximum may stay −∞ (nothing is written for it).
    const float base_a = mn_a == -INFINITY ? 0.0f : mn_a, base_b = mn_b == -INFINITY ? 0.0f : mn_b;
    float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
    for (int n = 0; n < kStepM / 8; n++)
#pragma unroll
      for (int c = 0; c < 2; c++) {
        s[n][c] = expf(s[n][c] - base_a), sum_a += s[n][c];  // exp(−∞) = 0 where masked
        s[n][2 + c] = expf(s[n][2 + c] - base_b), sum_b += s[n][2 + c];
      }
    const float corr_a = expf(m_a - base_a), corr_b = expf(m_b - base_b);  // 0 the first time (m = −∞)
    l_a = l_a * corr_a + quad_sum(sum_a), l_b = l_b * corr_b + quad_sum(sum_b);
    m_a = mn_a, m_b = mn_b;
#pragma unroll
    for (int nd = 0; nd < HS / 8; nd++) o[nd][0] *= corr_a, o[nd][1] *= corr_a, o[nd][2] *= corr_b, o[nd][3] *= corr_b;
    accumulate_mma<HS>(o, s, Vt, visible16);  // O += P·V
  }
  store_acc<HS>(out, out16, size_t(b) * T * C + h * HS, C, wr0, T, o, 1.0f / l_a, 1.0f / l_b);
  if (t == 0) {
    if (ra < T) lse[size_t(bh) * T + ra] = m_a + logf(l_a);
    if (rb < T) lse[size_t(bh) * T + rb] = m_b + logf(l_b);
  }
}

// ---- backward ----

template <int HS>
__host__ __device__ constexpr size_t bwd_kv_smem_mma() {
  return size_t(4 * kRowsM * ld_rows<HS>() + 2 * HS * kLdT) * sizeof(bf16) + 2 * kStepM * sizeof(float);
}
template <int HS>
__host__ __device__ constexpr size_t bwd_q_smem_mma() {
  return size_t(4 * kRowsM * ld_rows<HS>() + HS * kLdT) * sizeof(bf16);
}

// One block per 64 keys; warp w owns keys j0 + 16w … +15 (its rows: r_a = … + g, r_b = r_a + 8):
// Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ in registers, dV += Pᵀ·dO, dK += dSᵀ·Q · scale over the query tiles that see them.
template <int HS>
__global__ void __launch_bounds__(kThreadsM) bwd_kv_mma(float* dqkv, void* dqkv16, Bf16Src dout, const float* lse,
                                                        const float* D, Bf16Src qkv, int T, int C, int H,
                                                        float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr int ld = ld_rows<HS>();
  bf16* K = reinterpret_cast<bf16*>(smem_raw);
  bf16 *V = K + kRowsM * ld, *Q = V + kRowsM * ld, *dO = Q + kStepM * ld, *Qt = dO + kStepM * ld, *dOt = Qt + HS * kLdT;
  float* lse_s = reinterpret_cast<float*>(dOt + HS * kLdT);
  float* D_s = lse_s + kStepM;
  const int w = threadIdx.x / kWarp, g = (threadIdx.x % kWarp) / 4, t = threadIdx.x % 4;
  const int bh = blockIdx.x, b = bh / H, h = bh % H, j0 = blockIdx.y * kRowsM, wj0 = j0 + 16 * w;
  const int ja = wj0 + g, jb = ja + 8;
  const Bf16Src base = qkv + size_t(b) * T * 3 * C + h * HS;
  const Bf16Src dbase = dout + size_t(b) * T * C + h * HS;

  load_tile_bf16<HS>(K, nullptr, base + C, 3 * C, j0, T);
  load_tile_bf16<HS>(V, nullptr, base + 2 * C, 3 * C, j0, T);
  __syncthreads();
  uint32_t ka[HS / 16][4], va[HS / 16][4];
  a_fragments<HS>(ka, K, 16 * w);
  a_fragments<HS>(va, V, 16 * w);
  float dk[HS / 8][4] = {}, dv[HS / 8][4] = {};
  for (int i0 = j0; i0 < T; i0 += kStepM) {  // query tiles holding a row i ≥ j0
    __syncthreads();  // the previous tile's Q, dO, lse and D are no longer read
    load_tile_bf16<HS>(Q, Qt, base, 3 * C, i0, T);
    load_tile_bf16<HS>(dO, dOt, dbase, C, i0, T);
    for (int r = threadIdx.x; r < kStepM; r += blockDim.x) {
      lse_s[r] = i0 + r < T ? lse[size_t(bh) * T + i0 + r] : 0.0f;
      D_s[r] = i0 + r < T ? D[size_t(bh) * T + i0 + r] : 0.0f;
    }
    __syncthreads();
    // 8-query blocks (16-query slices) that see some key of the warp: last query ≥ the warp's first key.
    auto seen8 = [&](int n) { return i0 + 8 * n + 7 >= wj0; };
    auto seen16 = [&](int kk) { return i0 + 16 * kk + 15 >= wj0; };
    float st[kStepM / 8][4], dpt[kStepM / 8][4];
    scores_mma<HS>(st, ka, Q, seen8);   // Sᵀ: rows keys, columns queries
    scores_mma<HS>(dpt, va, dO, seen8);  // dPᵀ
#pragma unroll
    for (int n = 0; n < kStepM / 8; n++)
#pragma unroll
      for (int c = 0; c < 2; c++) {
        const int q = 8 * n + 2 * t + c, i = i0 + q;
        const float l = lse_s[q], Di = D_s[q];
        const float pa = i < T && ja <= i ? expf(st[n][c] * scale - l) : 0.0f;
        const float pb = i < T && jb <= i ? expf(st[n][2 + c] * scale - l) : 0.0f;
        st[n][c] = pa, st[n][2 + c] = pb;                      // Pᵀ
        dpt[n][c] = pa * (dpt[n][c] - Di) * scale;              // dSᵀ
        dpt[n][2 + c] = pb * (dpt[n][2 + c] - Di) * scale;
      }
    accumulate_mma<HS>(dv, st, dOt, seen16);   // dV += Pᵀ·dO
    accumulate_mma<HS>(dk, dpt, Qt, seen16);   // dK += dSᵀ·Q
  }
  const size_t off = size_t(b) * T * 3 * C + h * HS;
  store_acc<HS>(dqkv, dqkv16, off + C, 3 * C, wj0, T, dk);
  store_acc<HS>(dqkv, dqkv16, off + 2 * C, 3 * C, wj0, T, dv);
}

// One block per 64 query rows; warp w owns rows i0 + 16w … +15: S = Q·Kᵀ, dP = dO·Vᵀ in registers,
// dQ += dS·K · scale over the keys j ≤ i.
template <int HS>
__global__ void __launch_bounds__(kThreadsM) bwd_q_mma(float* dqkv, void* dqkv16, Bf16Src dout, const float* lse,
                                                       const float* D, Bf16Src qkv, int T, int C, int H,
                                                       float scale) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  constexpr int ld = ld_rows<HS>();
  bf16* Q = reinterpret_cast<bf16*>(smem_raw);
  bf16 *dO = Q + kRowsM * ld, *K = dO + kRowsM * ld, *V = K + kStepM * ld, *Kt = V + kStepM * ld;
  const int w = threadIdx.x / kWarp, g = (threadIdx.x % kWarp) / 4, t = threadIdx.x % 4;
  const int bh = blockIdx.x, b = bh / H, h = bh % H;
  const int i0 = (gridDim.y - 1 - blockIdx.y) * kRowsM, wr0 = i0 + 16 * w, ra = wr0 + g, rb = ra + 8;
  const Bf16Src base = qkv + size_t(b) * T * 3 * C + h * HS;

  load_tile_bf16<HS>(Q, nullptr, base, 3 * C, i0, T);
  load_tile_bf16<HS>(dO, nullptr, dout + size_t(b) * T * C + h * HS, C, i0, T);
  __syncthreads();
  uint32_t qa[HS / 16][4], doa[HS / 16][4];
  a_fragments<HS>(qa, Q, 16 * w);
  a_fragments<HS>(doa, dO, 16 * w);
  const float l_a = ra < T ? lse[size_t(bh) * T + ra] : 0.0f, l_b = rb < T ? lse[size_t(bh) * T + rb] : 0.0f;
  const float D_a = ra < T ? D[size_t(bh) * T + ra] : 0.0f, D_b = rb < T ? D[size_t(bh) * T + rb] : 0.0f;
  float dq[HS / 8][4] = {};
  const int last = min(T, i0 + kRowsM);
  for (int j0 = 0; j0 < last; j0 += kStepM) {
    __syncthreads();
    load_tile_bf16<HS>(K, Kt, base + C, 3 * C, j0, T);
    load_tile_bf16<HS>(V, nullptr, base + 2 * C, 3 * C, j0, T);
    __syncthreads();
    auto visible8 = [&](int n) { return j0 + 8 * n <= wr0 + 15; };
    auto visible16 = [&](int kk) { return j0 + 16 * kk <= wr0 + 15; };
    float s[kStepM / 8][4], dp[kStepM / 8][4];
    scores_mma<HS>(s, qa, K, visible8);
    scores_mma<HS>(dp, doa, V, visible8);
#pragma unroll
    for (int n = 0; n < kStepM / 8; n++)
#pragma unroll
      for (int c = 0; c < 2; c++) {
        const int j = j0 + 8 * n + 2 * t + c;
        const float pa = ra < T && j <= ra ? expf(s[n][c] * scale - l_a) : 0.0f;
        const float pb = rb < T && j <= rb ? expf(s[n][2 + c] * scale - l_b) : 0.0f;
        s[n][c] = pa * (dp[n][c] - D_a) * scale;  // dS
        s[n][2 + c] = pb * (dp[n][2 + c] - D_b) * scale;
      }
    accumulate_mma<HS>(dq, s, Kt, visible16);  // dQ += dS·K
  }
  store_acc<HS>(dqkv, dqkv16, size_t(b) * T * 3 * C + h * HS, 3 * C, wr0, T, dq);
}

template <int HS>
void forward_mma(float* out, void* out16, float* lse, Bf16Src qkv, int B, int Tn, int C, int H, cudaStream_t s) {
  constexpr size_t smem = fwd_smem_mma<HS>();
  allow_dynamic_smem(reinterpret_cast<const void*>(fwd_mma<HS>), smem, "attention_mma_forward", HS);
  fwd_mma<HS><<<dim3(B * H, blocks_for(size_t(Tn), kRowsM)), kThreadsM, smem, s>>>(out, out16, lse, qkv, Tn, C, H,
                                                                                   1.0f / std::sqrt(float(HS)));
  STRATA_CUDA_LAUNCHED();
}

template <int HS>
void backward_mma(float* dqkv, void* dqkv16, Bf16Src dout, Bf16Src out, const float* lse, Bf16Src qkv, int B, int Tn,
                  int C, int H, cudaStream_t s) {
  const float scale = 1.0f / std::sqrt(float(HS));
  const float* D = attention_row_dot(dout.f, out.f, B, Tn, C, H, s, dout.h, out.h);
  constexpr size_t smem_kv = bwd_kv_smem_mma<HS>(), smem_q = bwd_q_smem_mma<HS>();
  allow_dynamic_smem(reinterpret_cast<const void*>(bwd_kv_mma<HS>), smem_kv, "attention_mma_backward", HS);
  allow_dynamic_smem(reinterpret_cast<const void*>(bwd_q_mma<HS>), smem_q, "attention_mma_backward", HS);
  const dim3 grid(B * H, blocks_for(size_t(Tn), kRowsM));
  bwd_kv_mma<HS><<<grid, kThreadsM, smem_kv, s>>>(dqkv, dqkv16, dout, lse, D, qkv, Tn, C, H, scale);
  STRATA_CUDA_LAUNCHED();
  bwd_q_mma<HS><<<grid, kThreadsM, smem_q, s>>>(dqkv, dqkv16, dout, lse, D, qkv, Tn, C, H, scale);
  STRATA_CUDA_LAUNCHED();
}

// d (16×8, row-major, fp32) += a (16×16, row-major) · b (16×8, given as bᵀ: 8×16 row-major), one warp.
__global__ void mma_tile(float* d, const bf16* a, const bf16* bt) {
  const int lane = threadIdx.x % kWarp, g = lane / 4, t = lane % 4;
  const uint32_t fa[4] = {ld_pair(a + g * 16 + 2 * t), ld_pair(a + (g + 8) * 16 + 2 * t), ld_pair(a + g * 16 + 8 + 2 * t),
                          ld_pair(a + (g + 8) * 16 + 8 + 2 * t)};
  float acc[4] = {d[g * 8 + 2 * t], d[g * 8 + 2 * t + 1], d[(g + 8) * 8 + 2 * t], d[(g + 8) * 8 + 2 * t + 1]};
  mma_bf16_16816(acc, fa, ld_pair(bt + g * 16 + 2 * t), ld_pair(bt + g * 16 + 8 + 2 * t));
  d[g * 8 + 2 * t] = acc[0], d[g * 8 + 2 * t + 1] = acc[1];
  d[(g + 8) * 8 + 2 * t] = acc[2], d[(g + 8) * 8 + 2 * t + 1] = acc[3];
}

}  // namespace

bool attention_mma_supported(int C, int H) {
  if (H <= 0 || C % H) return false;
  const int hs = C / H;
  return hs == 16 || hs == 32 || hs == 64;
}

void attention_mma_forward(float* out, float* lse, const float* qkv, int B, int Tn, int C, int H, cudaStream_t s,
                           void* out16, const void* qkv16) {
  const Bf16Src src(qkv, qkv16);
  if (B <= 0 || Tn <= 0) return;
  STRATA_CHECK(attention_mma_supported(C, H), "attention_mma_forward: head size ", C / std::max(H, 1), " (C ", C,
               ", H ", H, ") is not 16, 32 or 64");
  switch (C / H) {
    case 16: return forward_mma<16>(out, out16, lse, src, B, Tn, C, H, s);
    case 32: return forward_mma<32>(out, out16, lse, src, B, Tn, C, H, s);
    default: return forward_mma<64>(out, out16, lse, src, B, Tn, C, H, s);
  }
}

void attention_mma_backward(float* dqkv, const float* dout, const float* out, const float* lse, const float* qkv,
                            int B, int Tn, int C, int H, cudaStream_t s, void* dqkv16, const void* qkv16,
                            const void* dout16, const void* out16) {
  const Bf16Src src(qkv, qkv16), dO(dout, dout16), O(out, out16);
  if (B <= 0 || Tn <= 0) return;
  STRATA_CHECK(attention_mma_supported(C, H), "attention_mma_backward: head size ", C / std::max(H, 1), " (C ", C,
               ", H ", H, ") is not 16, 32 or 64");
  switch (C / H) {
    case 16: return backward_mma<16>(dqkv, dqkv16, dO, O, lse, src, B, Tn, C, H, s);
    case 32: return backward_mma<32>(dqkv, dqkv16, dO, O, lse, src, B, Tn, C, H, s);
    default: return backward_mma<64>(dqkv, dqkv16, dO, O, lse, src, B, Tn, C, H, s);
  }
}

void mma_tile_product(float* d, const void* a, const void* bt, cudaStream_t s) {
  mma_tile<<<1, kWarp, 0, s>>>(d, static_cast<const bf16*>(a), static_cast<const bf16*>(bt));
  STRATA_CUDA_LAUNCHED();
}

}  // namespace strata::cuda
