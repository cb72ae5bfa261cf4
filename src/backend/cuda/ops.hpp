// ops.hpp: the CUDA backend's ops, twins of strata::cpu's (backend/ops.hpp) on device pointers: the same
// shapes, the same '=' / '+=' conventions, fp32 unless a Precision says otherwise. Each runs on `stream`
// (0 = the default stream) and returns before the kernel finishes. Outputs must not alias inputs (e.g.
// layernorm_backward reads dout after writing din). Buffer transfers are synchronous on the legacy default
// stream: with a non-blocking stream, synchronise it before downloading its results. tests/gpu/test_gpu_ops.cpp holds every op
// against its CPU twin. Every function throws strata::Error naming the CUDA or cuBLAS call that failed.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "backend/backend.hpp"
#include "backend/ops.hpp"

namespace strata::cuda {

using cpu::Activation;
using cpu::AdamWParams;

// ---- device.cu ----
int device_count();             // 0 where there is no usable device (no driver, no GPU)
std::string device_name(int d);  // "NVIDIA H100 80GB HBM3"
std::string device_bus_id(int d);  // "0000:1B:00.0": the physical GPU, whatever CUDA_VISIBLE_DEVICES numbers it"
std::string no_device_reason();  // why device_count() is 0, from cudaGetDeviceCount's error
void set_device(int d);
void synchronize();
// Plain device memory; RAII so tests and the trainer never leak on an exception.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes);
  Buffer(Buffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  Buffer& operator=(Buffer&& o) noexcept;
  ~Buffer();
  template <class T> T* as() const { return static_cast<T*>(p_); }
  size_t bytes() const { return n_; }
  void upload(const void* host, size_t bytes, size_t offset = 0);
  void download(void* host, size_t bytes, size_t offset = 0) const;
  void fill_bytes(int byte);  // e.g. 0xff: every float NaN (the tests' poison)
 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// ---- matmul.cu (cuBLAS and, for bf16, cuBLASLt; one handle of each per thread) ----
using strata::Precision;  // backend.hpp's: bf16 = inputs rounded to bfloat16, products accumulated in fp32
// In bf16, the trailing pointers may give bf16 copies of the fp32 operands (to_bf16 of the same values) that
// the caller already holds; null ones are rounded into scratch on the stream. fp32 ignores them.
// In bf16, out16 / din16 (where given) take the output as bf16 (the GEMM's epilogue rounds it; = only) instead of
// out / din, which may then be null: a buffer the CUDA backend keeps in bf16 only (Backend::keep_bf16). Likewise
// a null fp32 operand whose bf16 copy is given is read only as that copy.
// out[N,OC] = in[N,IC] · w[IC,OC] + b[OC]   (b may be null)
void matmul_forward(float* out, const float* in, const float* w, const float* b, int N, int IC, int OC,
                    Precision p = Precision::fp32, cudaStream_t s = 0, const void* in16 = nullptr,
                    const void* w16 = nullptr, void* out16 = nullptr);
// din[N,IC] = (or +=) dout[N,OC] · wᵀ
void matmul_backward_input(float* din, const float* dout, const float* w, int N, int IC, int OC, bool accumulate,
                           Precision p = Precision::fp32, cudaStream_t s = 0, const void* dout16 = nullptr,
                           const void* w16 = nullptr, void* din16 = nullptr);
// dw[IC,OC] += inᵀ · dout ; db[OC] += Σ_rows dout (db may be null; of the bf16 values dout16 where dout is null)
void matmul_backward_weight(float* dw, float* db, const float* dout, const float* in, int N, int IC, int OC,
                            Precision p = Precision::fp32, cudaStream_t s = 0, const void* dout16 = nullptr,
                            const void* in16 = nullptr);
// out[n] (bfloat16, round to nearest even) = in[n]: the GEMMs' bf16 operands.
void to_bf16(void* out, const float* in, size_t n, cudaStream_t s = 0);
// out[n] = in[n] (bfloat16, exactly widened).
void from_bf16(float* out, const void* in, size_t n, cudaStream_t s = 0);
// How many bf16 GEMMs this thread has run through cuBLASLt (the rest went to cublasGemmEx), and how many fp32
// values it has rounded to bf16 (to_bf16): tests, diagnostics.
size_t lt_gemm_count();
size_t bf16_rounded_count();

// The LayerNorm and activation ops may also write out16 (bf16, the same values to_bf16 gives from their fp32
// output, after accumulation): the bf16 GEMM operand the CUDA backend's cache would otherwise round in a pass of
// its own. null: not written.
// ---- layernorm.cu ----
void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* gain, const float* bias,
                       int N, int C, double eps, cudaStream_t s = 0, void* out16 = nullptr);
void layernorm_backward(float* din, float* dgain, float* dbias, const float* dout, const float* in, const float* gain,
                        const float* mean, const float* rstd, int N, int C, bool accumulate, cudaStream_t s = 0,
                        void* din16 = nullptr);
// din = alpha·resid + the LayerNorm input gradient, the bits of scale_copy(din, resid, alpha) followed by
// layernorm_backward(accumulate = true), in one pass.
void layernorm_backward_residual(float* din, float* dgain, float* dbias, const float* dout, const float* in,
                                 const float* gain, const float* mean, const float* rstd, int N, int C,
                                 const float* resid, float alpha, cudaStream_t s = 0, void* din16 = nullptr);

// ---- attention.cu: causal multi-head attention on a fused qkv [B,T,3C]; probs [B,H,T,T] kept ----
// With Precision::bf16 the four batched GEMMs run on TF32 tensor cores (10-bit mantissas, more than bf16's 7;
// inputs and outputs stay fp32); fp32 is exact SGEMM.
void attention_forward(float* out, float* probs, const float* qkv, int B, int Tn, int C, int H, cudaStream_t s = 0,
                       Precision p = Precision::fp32);
void attention_backward(float* dqkv, const float* dout, const float* probs, const float* qkv, int B, int Tn, int C,
                        int H, cudaStream_t s = 0,
                        Precision p = Precision::fp32);

// ---- flash_attention.cu: the same attention without the T×T matrix (memory O(T) per head): out [B,T,C] =,
// lse [B,H,T] = (each query row's log-sum-exp, kept for the backward); dqkv [B,T,3C] = from out and lse. out16
// and dqkv16 (bf16, where given) receive the bf16 copy of out / dqkv, as to_bf16 gives it. ----
void attention_fused_forward(float* out, float* lse, const float* qkv, int B, int Tn, int C, int H, cudaStream_t s = 0,
                             void* out16 = nullptr);
void attention_fused_backward(float* dqkv, const float* dout, const float* out, const float* lse, const float* qkv,
                              int B, int Tn, int C, int H, cudaStream_t s = 0, void* dqkv16 = nullptr);

// ---- flash_attention_tc.cu: the same fused attention on bf16 tensor cores (WMMA, fp32 accumulation): q, k, v,
// dO, P and dS rounded to bfloat16 for their products; softmax, lse and accumulators fp32; inputs and outputs
// fp32 in the layout above. Head sizes 16, 32, 64, 128 only (attention_tc_supported); others throw. ----
bool attention_tc_supported(int C, int H);
// qkv16 (bf16, where qkv is null): qkv kept in bf16 only, read as it is (the kernels round fp32 qkv to the same
// values as they load it, so the results are the same bits). Likewise dout16 and out16 in the backward (where dout,
// out are null), and out null in the forward: out written as bf16 only. The backward's row sums D = Σ dO·O are
// then taken over the bf16 values (as FlashAttention-2 on bf16 tensors does), not over fp32 ones.
void attention_tc_forward(float* out, float* lse, const float* qkv, int B, int Tn, int C, int H, cudaStream_t s = 0,
                          void* out16 = nullptr, const void* qkv16 = nullptr);
void attention_tc_backward(float* dqkv, const float* dout, const float* out, const float* lse, const float* qkv,
                           int B, int Tn, int C, int H, cudaStream_t s = 0, void* dqkv16 = nullptr,
                           const void* qkv16 = nullptr, const void* dout16 = nullptr, const void* out16 = nullptr);

// ---- flash_attention_mma.cu: the same bf16 tensor-core attention with scores, probabilities and accumulators in
// registers (mma.sync m16n8k16, FlashAttention-2's form): same contract, rounding points and bounds as the
// WMMA kernels above. Head sizes 16, 32, 64 (attention_mma_supported); others throw. ----
bool attention_mma_supported(int C, int H);
void attention_mma_forward(float* out, float* lse, const float* qkv, int B, int Tn, int C, int H, cudaStream_t s = 0,
                           void* out16 = nullptr, const void* qkv16 = nullptr);
void attention_mma_backward(float* dqkv, const float* dout, const float* out, const float* lse, const float* qkv,
                            int B, int Tn, int C, int H, cudaStream_t s = 0, void* dqkv16 = nullptr,
                            const void* qkv16 = nullptr, const void* dout16 = nullptr, const void* out16 = nullptr);
// d [16×8] += a [16×16] · b [16×8] on one warp's tensor cores through mma_bf16_16816 (mma.cuh), all row-major,
// a and bᵀ [8×16] bf16: a test of the fragment layout the mma kernels rely on.
void mma_tile_product(float* d, const void* a, const void* bt, cudaStream_t s = 0);

// ---- elementwise.cu ----
// Where an fp32 input pointer is null its bf16 twin (in16, dout16) is read, and where an fp32 output pointer is
// null only its bf16 copy is written: the buffers the CUDA backend keeps in bf16 only (Backend::keep_bf16).
void activation_forward(float* out, const float* in, size_t n, Activation a, cudaStream_t s = 0,
                        void* out16 = nullptr, const void* in16 = nullptr);
void activation_backward(float* din, const float* dout, const float* in, size_t n, Activation a, cudaStream_t s = 0,
                         void* din16 = nullptr, const void* dout16 = nullptr, const void* in16 = nullptr);
void residual_forward(float* out, const float* x, float alpha, const float* g, size_t n, cudaStream_t s = 0);
void scale_copy(float* out, const float* in, float alpha, size_t n, bool accumulate, cudaStream_t s = 0);
void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int Tn, int C,
                       cudaStream_t s = 0);
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int Tn, int C,
                        cudaStream_t s = 0);
// AdamW over segments of one flat buffer in one launch: segments / start are device arrays (segment k's
// elements are flat indices start[k] … start[k+1]−1 of the `total` updated, start ascending).
void adamw_update_segments(float* p, float* m, float* v, const float* g, const AdamWSegment* segments,
                           const size_t* start, int count, size_t total, const AdamWParams& hp, cudaStream_t s = 0);
void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const AdamWParams& hp, bool decay,
                  cudaStream_t s = 0);
// Gradient accumulation in double across micro-batches: acc[n] += g, then g = 0 (fold); g[n] = float(acc),
// rounded to nearest (unfold). Twins of the CPU backend's fold / unfold.
void fold(double* acc, float* g, size_t n, cudaStream_t s = 0);
void unfold(float* g, const double* acc, size_t n, cudaStream_t s = 0);

// ---- crossentropy.cu ----
void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V, cudaStream_t s = 0);
// dlogits16 (bf16, where given): the copy of dlogits that to_bf16 gives (the head's backward GEMMs read it).
void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, int N, int V, float scale,
                           cudaStream_t s = 0, void* dlogits16 = nullptr);

// ---- reduce.cu: deterministic reductions into a device double (*out =), for the gradient norm and the
// per-layer statistics; twins of cpu::sum_squares (= stats_sumsq), stats_maxabs, stats_sqdiff, attention_entropy,
// and of the CPU backend's sum (the loss) and all_finite (count_nonfinite == 0)
void sum_squares(double* out, const float* x, size_t n, cudaStream_t s = 0);                 // Σ x²
void stats_maxabs(double* out, const float* x, size_t n, cudaStream_t s = 0,
                  const void* x16 = nullptr);  // max |x| (x null: of the bf16 values x16)
void stats_sqdiff(double* out, const float* a, const float* b, size_t n, cudaStream_t s = 0);  // Σ (a − b)²
void attention_entropy(double* out, const float* probs, int rows, int T, cudaStream_t s = 0);
void sum(double* out, const float* x, size_t n, cudaStream_t s = 0);              // Σ x (in double)
void count_nonfinite(double* out, const float* x, size_t n, cudaStream_t s = 0);  // #{i : x[i] NaN or ±Inf}, exact

}  // namespace strata::cuda
