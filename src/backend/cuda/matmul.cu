// matmul.cu: the twin of cpu/matmul.cpp through cuBLAS. Row-major X[r,c] is column-major Xᵀ, so each
// row-major product is issued transposed: out = in·w becomes outᵀ = wᵀ·inᵀ on the same buffers.
// fp32: cublasSgemm in true fp32 (CUBLAS_DEFAULT_MATH, no TF32), the bias added by a kernel. bf16: both inputs
// rounded to bfloat16 (in scratch, unless the caller passes copies it holds), then cuBLASLt with fp32
// accumulation and an fp32 output, the forward's bias added in its epilogue (one pass over the output, not
// two), with a 32 MiB workspace; the algorithm cuBLASLt's heuristic picks is kept per shape and alignment, so
// one configuration always runs the same kernels (same bits). The epilogue takes only a 16-byte aligned bias:
// the heuristic is told A/B/C/D's alignment but not the bias's, and a kernel assuming it aligned faults on one
// that is not (as PyTorch found; a parameter slice of a model whose d is not a multiple of 4), so such a bias is
// added by the bias kernel. Where cuBLASLt offers no algorithm, cublasGemmEx and the bias kernel do the GEMM.
// A bf16 output (a buffer the backend keeps in bf16 only) is the epilogue's rounding of the fp32 result, the bias
// added before it in D's type (bf16, as autocast casts a linear layer's bias); the fallback rounds the product,
// then adds the fp32 bias and rounds again. The bias gradient is always the fixed-shape two-pass column sums of
// colsum.cuh (deterministic), over the fp32 output gradient or, kept in bf16 only, its bf16 values.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <map>
#include <tuple>
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

cublasLtHandle_t blas_lt() {
  struct Handle {
    cublasLtHandle_t h = nullptr;
    Handle() { STRATA_CUBLAS_CHECK(cublasLtCreate(&h)); }
    ~Handle() {
      if (h) cublasLtDestroy(h);
    }
  };
  thread_local Handle handle;
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

__global__ void to_bf16_kernel(__nv_bfloat16* out, const float* in, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(in[i]);
}

__global__ void from_bf16_kernel(float* out, const __nv_bfloat16* in, size_t n) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __bfloat162float(in[i]);
}

__global__ void add_bias(float* out, const float* b, int N, int OC) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < size_t(N) * OC) out[i] += b[i % OC];
}
__global__ void add_bias_bf16(__nv_bfloat16* out, const float* b, int N, int OC) {
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < size_t(N) * OC) out[i] = __float2bfloat16_rn(__bfloat162float(out[i]) + b[i % OC]);
}

const __nv_bfloat16* bf16_copy(int which, const float* x, size_t n, cudaStream_t s) {
  auto* out = static_cast<__nv_bfloat16*>(scratch(which, n * sizeof(__nv_bfloat16), s));
  to_bf16(out, x, n, s);
  return out;
}

// The largest power of two up to 256 that divides the address: what cuBLASLt's heuristic must be told.
uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t r = 1;
  while (r < 256 && a % (2 * r) == 0) r *= 2;
  return r;
}

constexpr size_t kLtWorkspace = size_t(32) << 20;  // cuBLASLt's workspace on Hopper; scratch slot 8
thread_local size_t lt_gemms = 0, bf16_rounded = 0;

template <class T>
struct LtObject {  // a cuBLASLt descriptor, destroyed with its owner
  T h = nullptr;
  cublasStatus_t (*destroy)(T) = nullptr;
  LtObject() = default;
  LtObject(const LtObject&) = delete;
  LtObject& operator=(const LtObject&) = delete;
  ~LtObject() {
    if (h) destroy(h);
  }
};

// One shape of bf16 GEMM as cuBLASLt runs it: descriptors and the algorithm its heuristic chose (none: ok false).
struct LtPlan {
  bool ok = false;
  LtObject<cublasLtMatmulDesc_t> desc;
  LtObject<cublasLtMatrixLayout_t> a, b, c;
  cublasLtMatmulAlgo_t algo{};
};
using LtKey = std::tuple<int, int, int, int, int, int, int, int, bool, uint32_t, uint32_t, uint32_t, bool>;

#define STRATA_LT_TRY(call)                         \
  do {                                              \
    if ((call) != CUBLAS_STATUS_SUCCESS) return plan; \
  } while (0)

// The plan for D = op(A)·op(B) (+ beta·C) (+ bias, 16-byte aligned) in bf16 × bf16 → fp32, or → bf16 where out16;
// the bias has D's type (cublasLt.h: CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE). Built once per key and thread (the
// thread's device: one device per thread, as for blas()).
LtPlan& lt_plan(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc,
                const void* bias, uint32_t align_a, uint32_t align_b, uint32_t align_c, bool out16) {
  thread_local std::map<LtKey, LtPlan> plans;
  const LtKey key{ta, tb, m, n, k, lda, ldb, ldc, bias != nullptr, align_a, align_b, align_c, out16};
  auto found = plans.find(key);
  if (found != plans.end()) return found->second;
  LtPlan& plan = plans[key];
  plan.desc.destroy = cublasLtMatmulDescDestroy;
  plan.a.destroy = plan.b.destroy = plan.c.destroy = cublasLtMatrixLayoutDestroy;
  STRATA_LT_TRY(cublasLtMatmulDescCreate(&plan.desc.h, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const int32_t opa = ta, opb = tb;
  STRATA_LT_TRY(cublasLtMatmulDescSetAttribute(plan.desc.h, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
  STRATA_LT_TRY(cublasLtMatmulDescSetAttribute(plan.desc.h, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
  if (bias) {
    const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    STRATA_LT_TRY(cublasLtMatmulDescSetAttribute(plan.desc.h, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
    // A 16-byte aligned bias (the callers' rule); cublasLtMatmul sets the pointer of each call.
    STRATA_LT_TRY(cublasLtMatmulDescSetAttribute(plan.desc.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  }
  STRATA_LT_TRY(cublasLtMatrixLayoutCreate(&plan.a.h, CUDA_R_16BF, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda));
  STRATA_LT_TRY(cublasLtMatrixLayoutCreate(&plan.b.h, CUDA_R_16BF, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb));
  STRATA_LT_TRY(cublasLtMatrixLayoutCreate(&plan.c.h, out16 ? CUDA_R_16BF : CUDA_R_32F, m, n, ldc));
  LtObject<cublasLtMatmulPreference_t> pref;
  pref.destroy = cublasLtMatmulPreferenceDestroy;
  STRATA_LT_TRY(cublasLtMatmulPreferenceCreate(&pref.h));
  const uint64_t ws = kLtWorkspace;
  STRATA_LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref.h, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c}};
  for (auto& [attr, v] : aligns) STRATA_LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref.h, attr, &v, sizeof v));
  cublasLtMatmulHeuristicResult_t result{};
  int found_algos = 0;
  STRATA_LT_TRY(cublasLtMatmulAlgoGetHeuristic(blas_lt(), plan.desc.h, plan.a.h, plan.b.h, plan.c.h, plan.c.h,
                                               pref.h, 1, &result, &found_algos));
  if (found_algos < 1 || result.state != CUBLAS_STATUS_SUCCESS) return plan;
  plan.algo = result.algo;
  plan.ok = true;
  return plan;
}
#undef STRATA_LT_TRY

// C[m,n] (column-major) = alpha·op(A)·op(B) + beta·C (+ bias[m] broadcast over the columns), A and B fp32
// buffers, in fp32 or through bf16 (a16 / b16: the caller's bf16 copies of A / B, or null). With C16 (bf16 only,
// beta 0) the result goes there as bf16 instead of to C.
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float* A, int lda, size_t a_elems,
          const float* B, int ldb, size_t b_elems, float beta, float* C, int ldc, const float* bias, Precision p,
          cudaStream_t s, const void* a16 = nullptr, const void* b16 = nullptr, void* C16 = nullptr) {
  const float alpha = 1.0f;
  STRATA_CHECK(!C16 || (p == Precision::bf16 && beta == 0.0f), "gemm: a bf16 output is bf16 precision, = only");
  void* out = C16 ? C16 : static_cast<void*>(C);
  auto bias_kernel = [&] {
    if (!bias) return;
    if (C16)
      add_bias_bf16<<<blocks_for(size_t(m) * n, kThreads), kThreads, 0, s>>>(static_cast<__nv_bfloat16*>(C16), bias,
                                                                              n, m);
    else
      add_bias<<<blocks_for(size_t(m) * n, kThreads), kThreads, 0, s>>>(C, bias, n, m);
    STRATA_CUDA_LAUNCHED();
  };
  if (p == Precision::fp32) {
    STRATA_CUBLAS_CHECK(cublasSgemm(blas(s), ta, tb, m, n, k, &alpha, A, lda, B, ldb, &beta, C, ldc));
    return bias_kernel();
  }
  if (!a16) a16 = bf16_copy(0, A, a_elems, s);
  if (!b16) b16 = bf16_copy(1, B, b_elems, s);
  // The epilogue's bias has D's type: with a bf16 output, the bias rounded to bf16 (scratch slot 9; as autocast
  // casts a linear layer's bias), 16-byte aligned as scratch always is.
  const void* epilogue_bias = C16 && bias ? bf16_copy(9, bias, size_t(m), s)
                              : bias && alignment(bias) >= 16 ? static_cast<const void*>(bias)
                                                               : nullptr;
  LtPlan& plan = lt_plan(ta, tb, m, n, k, lda, ldb, ldc, epilogue_bias, alignment(a16), alignment(b16), alignment(out),
                         C16 != nullptr);
  if (plan.ok) {
    if (epilogue_bias)
      STRATA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc.h, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                         &epilogue_bias, sizeof epilogue_bias));
    void* ws = scratch(8, kLtWorkspace, s);
    STRATA_CUBLAS_CHECK(cublasLtMatmul(blas_lt(), plan.desc.h, &alpha, a16, plan.a.h, b16, plan.b.h, &beta, out,
                                       plan.c.h, out, plan.c.h, &plan.algo, ws, kLtWorkspace, s));
    lt_gemms++;
    if (!epilogue_bias) bias_kernel();
    return;
  }
  STRATA_CUBLAS_CHECK(cublasGemmEx(blas(s), ta, tb, m, n, k, &alpha, a16, CUDA_R_16BF, lda, b16, CUDA_R_16BF, ldb,
                                   &beta, out, C16 ? CUDA_R_16BF : CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
  bias_kernel();
}

}  // namespace

size_t lt_gemm_count() { return lt_gemms; }
size_t bf16_rounded_count() { return bf16_rounded; }

void to_bf16(void* out, const float* in, size_t n, cudaStream_t s) {
  if (!n) return;
  bf16_rounded += n;
  to_bf16_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(static_cast<__nv_bfloat16*>(out), in, n);
  STRATA_CUDA_LAUNCHED();
}

void from_bf16(float* out, const void* in, size_t n, cudaStream_t s) {
  if (!n) return;
  from_bf16_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(out, static_cast<const __nv_bfloat16*>(in), n);
  STRATA_CUDA_LAUNCHED();
}

void matmul_forward(float* out, const float* in, const float* w, const float* b, int N, int IC, int OC, Precision p,
                    cudaStream_t s, const void* in16, const void* w16, void* out16) {
  if (N <= 0) return;
  // outᵀ[OC,N] = wᵀ[OC,IC] · inᵀ[IC,N] + b
  gemm(CUBLAS_OP_N, CUBLAS_OP_N, OC, N, IC, w, OC, size_t(IC) * OC, in, IC, size_t(N) * IC, 0.0f, out, OC, b, p, s,
       w16, in16, out16);
}

void matmul_backward_input(float* din, const float* dout, const float* w, int N, int IC, int OC, bool accumulate,
                           Precision p, cudaStream_t s, const void* dout16, const void* w16, void* din16) {
  if (N <= 0) return;
  // dinᵀ[IC,N] = w[IC,OC] · doutᵀ[OC,N]
  gemm(CUBLAS_OP_T, CUBLAS_OP_N, IC, N, OC, w, OC, size_t(IC) * OC, dout, OC, size_t(N) * OC,
       accumulate ? 1.0f : 0.0f, din, IC, nullptr, p, s, w16, dout16, din16);
}

void matmul_backward_weight(float* dw, float* db, const float* dout, const float* in, int N, int IC, int OC,
                            Precision p, cudaStream_t s, const void* dout16, const void* in16) {
  if (N <= 0) return;
  // dwᵀ[OC,IC] += doutᵀ[OC,N] · in[N,IC]
  gemm(CUBLAS_OP_N, CUBLAS_OP_T, OC, IC, N, dout, OC, size_t(N) * OC, in, IC, size_t(N) * IC, 1.0f, dw, OC, nullptr,
       p, s, dout16, in16);
  if (db) {
    column_sums(db, nullptr, N, OC, [=] __device__(int n, int c) {
      return make_float2(load(dout, dout16, size_t(n) * OC + c), 0.0f);
    }, s);
  }
}

}  // namespace strata::cuda
