// attention.cu: causal multi-head attention on a fused qkv buffer, the twin of cpu/attention.cpp: per batch
// row, cuBLAS strided-batched GEMMs over the heads on strided views of qkv (lda = 3C, heads hs columns
// apart), a warp per query row for the masked softmax and its backward. probs [B,H,T,T] is kept, as on the
// CPU (flash_attention.cu is the fused version that never stores it). In bf16 mode the GEMMs use TF32.
#include <cmath>

#include "backend/cuda/blas.cuh"

namespace strata::cuda {

namespace {

constexpr int kRowsPerBlock = 8;

// Row i of each [T,T] matrix: p = softmax(p[0..i]), p[j>i] = 0. rows = B·H·T.
__global__ void causal_softmax(float* P, int rows, int Tn) {
  const int r = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (r >= rows) return;
  const int i = r % Tn;
  float* p = P + size_t(r) * Tn;
  float mx = -INFINITY;
  for (int j = lane; j <= i; j += kWarp) mx = fmaxf(mx, p[j]);
  mx = warp_max(mx);
  float sum = 0;
  for (int j = lane; j <= i; j += kWarp) sum += expf(p[j] - mx);
  const float inv = 1.0f / warp_sum(sum);
  for (int j = lane; j < Tn; j += kWarp) p[j] = j <= i ? expf(p[j] - mx) * inv : 0.0f;
}

// dS = P ⊙ (dP − Σ_j P·dP) · scale on row i, 0 above the diagonal; dP is overwritten with dS.
__global__ void causal_softmax_backward(float* dP, const float* P, int rows, int Tn, float scale) {
  const int r = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (r >= rows) return;
  const int i = r % Tn;
  const float* p = P + size_t(r) * Tn;
  float* d = dP + size_t(r) * Tn;
  float dot = 0;
  for (int j = lane; j <= i; j += kWarp) dot += p[j] * d[j];
  dot = warp_sum(dot);
  for (int j = lane; j < Tn; j += kWarp) d[j] = j <= i ? p[j] * (d[j] - dot) * scale : 0.0f;
}

// fp32: SGEMM; bf16: the same products on TF32 tensor cores (fp32 in and out, fp32 accumulation).
void batched(cublasHandle_t h, Precision p, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
             float alpha, const float* A, int lda, long long sa, const float* B, int ldb, long long sb, float* C,
             int ldc, long long sc, int batch) {
  const float beta = 0.0f;
  if (p == Precision::fp32) {
    STRATA_CUBLAS_CHECK(cublasSgemmStridedBatched(h, ta, tb, m, n, k, &alpha, A, lda, sa, B, ldb, sb, &beta, C, ldc,
                                                  sc, batch));
    return;
  }
  STRATA_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F,
                                                 ldb, sb, &beta, C, CUDA_R_32F, ldc, sc, batch,
                                                 CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void attention_forward(float* out, float* probs, const float* qkv, int B, int Tn, int C, int H, cudaStream_t s,
                       Precision prec) {
  if (B <= 0) return;
  const int hs = C / H, ld = 3 * C;
  const long long TT = (long long)Tn * Tn;
  const float scale = 1.0f / std::sqrt(float(hs));
  cublasHandle_t h = blas(s);
  for (int b = 0; b < B; b++) {
    const float* q = qkv + size_t(b) * Tn * ld;
    const float* k = q + C;
    float* P = probs + size_t(b) * H * TT;
    // S[T,T] = q·kᵀ·scale  (column-major: Sᵀ = k·qᵀ)
    batched(h, prec, CUBLAS_OP_T, CUBLAS_OP_N, Tn, Tn, hs, scale, k, ld, hs, q, ld, hs, P, Tn, TT, H);
  }
  const int rows = B * H * Tn;
  causal_softmax<<<blocks_for(size_t(rows), kRowsPerBlock), kRowsPerBlock * kWarp, 0, s>>>(probs, rows, Tn);
  STRATA_CUDA_LAUNCHED();
  for (int b = 0; b < B; b++) {
    const float* v = qkv + size_t(b) * Tn * ld + 2 * C;
    // O[T,hs] = P·v  (column-major: Oᵀ = vᵀ·Pᵀ), written into out's columns of head h (ld C)
    batched(h, prec, CUBLAS_OP_N, CUBLAS_OP_N, hs, Tn, Tn, 1.0f, v, ld, hs, probs + size_t(b) * H * TT, Tn, TT,
            out + size_t(b) * Tn * C, C, hs, H);
  }
}

void attention_backward(float* dqkv, const float* dout, const float* probs, const float* qkv, int B, int Tn, int C,
                        int H, cudaStream_t s,
                        Precision prec) {
  if (B <= 0) return;
  const int hs = C / H, ld = 3 * C;
  const long long TT = (long long)Tn * Tn;
  const float scale = 1.0f / std::sqrt(float(hs));
  cublasHandle_t h = blas(s);
  float* dP = static_cast<float*>(scratch(2, size_t(B) * H * TT * sizeof(float), s));
  for (int b = 0; b < B; b++) {
    const float* v = qkv + size_t(b) * Tn * ld + 2 * C;
    const float* dO = dout + size_t(b) * Tn * C;
    const float* P = probs + size_t(b) * H * TT;
    float* dv = dqkv + size_t(b) * Tn * ld + 2 * C;
    // dP[T,T] = dO·vᵀ  (column-major: dPᵀ = v·dOᵀ)
    batched(h, prec, CUBLAS_OP_T, CUBLAS_OP_N, Tn, Tn, hs, 1.0f, v, ld, hs, dO, C, hs, dP + size_t(b) * H * TT, Tn, TT,
            H);
    // dv[T,hs] = Pᵀ·dO  (column-major: dvᵀ = dOᵀ·P)
    batched(h, prec, CUBLAS_OP_N, CUBLAS_OP_T, hs, Tn, Tn, 1.0f, dO, C, hs, P, Tn, TT, dv, ld, hs, H);
  }
  const int rows = B * H * Tn;
  causal_softmax_backward<<<blocks_for(size_t(rows), kRowsPerBlock), kRowsPerBlock * kWarp, 0, s>>>(dP, probs, rows,
                                                                                                   Tn, scale);
  STRATA_CUDA_LAUNCHED();
  for (int b = 0; b < B; b++) {
    const float* q = qkv + size_t(b) * Tn * ld;
    const float* k = q + C;
    const float* dS = dP + size_t(b) * H * TT;
    float* dq = dqkv + size_t(b) * Tn * ld;
    float* dk = dq + C;
    // dq[T,hs] = dS·k  (column-major: dqᵀ = kᵀ·dSᵀ)
    batched(h, prec, CUBLAS_OP_N, CUBLAS_OP_N, hs, Tn, Tn, 1.0f, k, ld, hs, dS, Tn, TT, dq, ld, hs, H);
    // dk[T,hs] = dSᵀ·q  (column-major: dkᵀ = qᵀ·dS)
    batched(h, prec, CUBLAS_OP_N, CUBLAS_OP_T, hs, Tn, Tn, 1.0f, q, ld, hs, dS, Tn, TT, dk, ld, hs, H);
  }
}

}  // namespace strata::cuda
