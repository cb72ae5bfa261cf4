// matmul.cu: the twin of cpu/matmul.cpp through cuBLAS. Row-major X[r,c] is column-major Xᵀ, so each
// row-major product is issued transposed: out = in·w becomes outᵀ = wᵀ·inᵀ on the same buffers.
// fp32: cublasSgemm in true fp32 (CUBLAS_DEFAULT_MATH, no TF32). bf16: both inputs rounded to bfloat16
// in scratch, cublasGemmEx with fp32 accumulation and an fp32 output. Bias and its gradient by kernels
// (the bias gradient by the fixed-shape two-pass column sums of colsum.cuh: deterministic).
#include <cuda_bf16.h>

#include <map>
#include <utility>

#include "backend/cuda/colsum.cuh"

namespace strata::cuda {

cublasHandle_t blas(cudaStream_t s) {
  struct Handle {
    cublasHandle_t h = nullptr;
    Handle() {
      STRATA_CUBLAS_CHECK(cublasCreate(&h));
      STRATA_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    }
    ~Handle() {
      if (h) cublasDestroy(h);
    }
  };
  thread_local Handle handle;
  STRATA_CUBLAS_CHECK(cublasSetStream(handle.h, s));
  return handle.h;
}

namespace {
struct Block {
  void* p = nullptr;
  size_t bytes = 0;
};
// Per (stream, slot) of this thread; scratch_release drops a stream's blocks before the stream goes, so a
// later stream that gets the same handle starts fresh.
std::map<std::pair<cudaStream_t, int>, Block>& scratch_blocks() {
  thread_local std::map<std::pair<cudaStream_t, int>, Block> bufs;
  return bufs;
}
}  // namespace

void scratch_release(cudaStream_t s) {
  auto& bufs = scratch_blocks();
  for (auto it = bufs.begin(); it != bufs.end();) {
    if (it->first.first == s) {
      if (it->second.p) cudaFreeAsync(it->second.p, s);  // after the stream's work; errors ignored
      it = bufs.erase(it);
    } else {
      ++it;
    }
  }
}

void* scratch(int which, size_t bytes, cudaStream_t s) {
  // Per stream (no cross-stream reuse), grown in stream order: cudaFreeAsync frees the old buffer after the
  // work queued on it, and neither call waits for the whole device (cudaFree could wait for an NCCL receive
  // posted ahead, whose peer may be waiting for this rank). Kept until scratch_release(s).
  Block& b = scratch_blocks()[{s, which}];
  if (b.bytes < bytes) {
    if (b.p) STRATA_CUDA_CHECK(cudaFreeAsync(b.p, s));
    b.p = nullptr, b.bytes = 0;
    STRATA_CUDA_CHECK(cudaMallocAsync(&b.p, bytes, s));
    b.bytes = bytes;
  }
  return b.p;
}

namespace {

constexpr int kThreads = 256;

__global__ void to_bf16(__nv_bfloat16* out, const float* in, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

__global__ void add_bias(float* out, const float* b, int N, int OC) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < size_t(N) * OC) out[i] += b[i % OC];
}

const __nv_bfloat16* bf16_copy(int which, const float* x, size_t n, cudaStream_t s) {
  auto* out = static_cast<__nv_bfloat16*>(scratch(which, n * sizeof(__nv_bfloat16), s));
  to_bf16<<<blocks_for(n, kThreads), kThreads, 0, s>>>(out, x, n);
  STRATA_CUDA_LAUNCHED();
  return out;
}

// C[m,n] (column-major) = alpha·op(A)·op(B) + beta·C, A and B fp32 buffers, in fp32 or through bf16.
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float* A, int lda, size_t a_elems,
          const float* B, int ldb, size_t b_elems, float beta, float* C, int ldc, Precision p, cudaStream_t s) {
  const float alpha = 1.0f;
  cublasHandle_t h = blas(s);
  if (p == Precision::fp32) {
    STRATA_CUBLAS_CHECK(cublasSgemm(h, ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc));
    return;
  }
  const __nv_bfloat16* a16 = bf16_copy(0, A, a_elems, s);
  const __nv_bfloat16* b16 = bf16_copy(1, B, b_elems, s);
  STRATA_CUBLAS_CHECK(cublasGemmEx(h, ta, tb, m, n, k, &alpha, a16, CUDA_R_16BF, lda, b16, CUDA_R_16BF, ldb, &beta, C,
                                   CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void matmul_forward(float* out, const float* in, const float* w, const float* b, int N, int IC, int OC, Precision p,
                    cudaStream_t s) {
  if (N <= 0) return;
  // outᵀ[OC,N] = wᵀ[OC,IC] · inᵀ[IC,N]
  gemm(CUBLAS_OP_N, CUBLAS_OP_N, OC, N, IC, w, OC, size_t(IC) * OC, in, IC, size_t(N) * IC, 0.0f, out, OC, p, s);
  if (b) {
    add_bias<<<blocks_for(size_t(N) * OC, kThreads), kThreads, 0, s>>>(out, b, N, OC);
    STRATA_CUDA_LAUNCHED();
  }
}

void matmul_backward_input(float* din, const float* dout, const float* w, int N, int IC, int OC, bool accumulate,
                           Precision p, cudaStream_t s) {
  if (N <= 0) return;
  // dinᵀ[IC,N] = w[IC,OC] · doutᵀ[OC,N]
  gemm(CUBLAS_OP_T, CUBLAS_OP_N, IC, N, OC, w, OC, size_t(IC) * OC, dout, OC, size_t(N) * OC,
       accumulate ? 1.0f : 0.0f, din, IC, p, s);
}

void matmul_backward_weight(float* dw, float* db, const float* dout, const float* in, int N, int IC, int OC,
                            Precision p, cudaStream_t s) {
  if (N <= 0) return;
  // dwᵀ[OC,IC] += doutᵀ[OC,N] · in[N,IC]
  gemm(CUBLAS_OP_N, CUBLAS_OP_T, OC, IC, N, dout, OC, size_t(N) * OC, in, IC, size_t(N) * IC, 1.0f, dw, OC, p, s);
  if (db) {
    column_sums(db, nullptr, N, OC, [=] __device__(int n, int c) { return make_float2(dout[size_t(n) * OC + c], 0.0f); },
                s);
  }
}

}  // namespace strata::cuda
