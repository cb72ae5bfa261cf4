// backend.hpp: where a model computes. A Backend owns memory (host memory for the CPU, device memory for a
// GPU) and runs every op of the model and the optimizer on pointers into it, with the contracts of the CPU ops
// (backend/ops.hpp: '=' outputs overwritten, '+=' accumulated). The model, the optimizer and the trainer call
// only this interface; the CPU backend forwards to strata::cpu (bit for bit what the model did before the
// interface existed), the CUDA backend (backend/cuda/backend.cu) to strata::cuda on one stream.
// Reductions return their value on the host (the CUDA backend waits for its stream there).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/ops.hpp"

namespace strata {

// One kind of backend op over a profiled span (Backend::profile): its calls, the device time they took, and the
// floating-point operations and least memory traffic their arguments imply (for TFLOP/s and GB/s).
struct OpTime {
  std::string op;
  long calls = 0;
  double ms = 0, flop = 0, bytes = 0;
};

// One tensor of a flat buffer for Backend::adamw_update_segments: elements [offset, offset + size), weight decay
// where decay.
struct AdamWSegment {
  size_t offset, size;
  bool decay;
};

enum class Precision { fp32, bf16 };  // bf16: GEMM inputs rounded to bfloat16, products accumulated in fp32
Precision precision_from_name(const std::string& name);  // "fp32" | "bf16"

// What a GPU backend is made with: the train.* keys that choose its kernels (make_cuda_backend).
struct GpuOptions {
  Precision precision = Precision::fp32;  // train.precision
  bool fused_attention = true;            // train.attention != "unfused"
  bool mma_attention = false;  // train.attention_kernel = "mma": bf16 tensor-core attention on mma.sync (else WMMA)
  bool bf16_activations = true;  // train.bf16_activations: keep_bf16 honoured in bf16
  bool operand_cache = true;     // bf16 GEMM operands kept while unchanged (the same bits; STRATA_CUDA_OPERAND_CACHE=0)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda:0 NVIDIA H100 80GB HBM3"
  virtual bool host_memory() const = 0;  // its pointers are host memory (MPI may use them directly)
  // Attention keeps the probabilities [B,H,T,T] (CPU) or only each query's log-sum-exp [B,H,T] (fused, GPU).
  virtual bool keeps_attention_probs() const = 0;
  // Which kernel runs attention over C channels in H heads, for the run's log: "unfused (probabilities kept)",
  // "fused, fp32 CUDA cores", "fused, bf16 tensor cores (WMMA)", "fused, bf16 tensor cores (mma.sync)".
  virtual std::string attention_kernel(int C, int H) const { (void)C, (void)H; return "unfused (probabilities kept)"; }
  virtual void* stream() const { return nullptr; }  // cudaStream_t of the CUDA backend

  // ---- memory ----
  virtual void* alloc(size_t bytes) = 0;  // zero-filled
  virtual void release(void* p) noexcept = 0;
  virtual void upload(void* dst, const void* host_src, size_t bytes) = 0;    // host → backend, done on return
  virtual void download(void* host_dst, const void* src, size_t bytes) = 0;  // backend → host, done on return
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;           // within the backend
  virtual void zero(void* p, size_t bytes) = 0;
  virtual void synchronize() = 0;
  // Memory at p is written other than through this backend's ops (an NCCL receive, posted or done): a backend
  // that keeps copies derived from its memory (the CUDA backend's bf16 GEMM operands) drops those of the range.
  virtual void written(const void* p, size_t bytes) { (void)p, (void)bytes; }

  // ---- model ops (shapes and contracts as in backend/ops.hpp) ----
  virtual void matmul_forward(float* out, const float* in, const float* w, const float* b, int N, int IC, int OC) = 0;
  virtual void matmul_backward_input(float* din, const float* dout, const float* w, int N, int IC, int OC,
                                     bool accumulate) = 0;
  virtual void matmul_backward_weight(float* dw, float* db, const float* dout, const float* in, int N, int IC,
                                      int OC) = 0;
  virtual void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* gain,
                                 const float* bias, int N, int C, double eps) = 0;
  virtual void layernorm_backward(float* din, float* dgain, float* dbias, const float* dout, const float* in,
                                  const float* gain, const float* mean, const float* rstd, int N, int C,
                                  bool accumulate) = 0;
  // out [B,T,C] =; probs [B,H,T,T] = where keeps_attention_probs(), else lse [B,H,T] =.
  virtual void attention_forward(float* out, float* probs, float* lse, const float* qkv, int B, int T, int C,
                                 int H) = 0;
  // dqkv [B,T,3C] = from the forward's out and probs (or lse).
  virtual void attention_backward(float* dqkv, const float* dout, const float* out, const float* probs,
                                  const float* lse, const float* qkv, int B, int T, int C, int H) = 0;
  virtual void activation_forward(float* out, const float* in, size_t n, cpu::Activation a) = 0;
  virtual void activation_backward(float* din, const float* dout, const float* in, size_t n, cpu::Activation a) = 0;
  virtual void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V) = 0;
  virtual void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, int N, int V,
                                     float scale) = 0;
  virtual void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                                 int C) = 0;
  virtual void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                                  int C) = 0;
  // din = alpha·resid, then layernorm_backward(din, ..., accumulate = true): a sub-layer's input gradient, its
  // residual path's share and its LN_in's. A GPU backend does both in one pass (din written once, not three times).
  virtual void layernorm_backward_residual(float* din, float* dgain, float* dbias, const float* dout, const float* in,
                                           const float* gain, const float* mean, const float* rstd, int N, int C,
                                           const float* resid, float alpha) {
    scale_copy(din, resid, alpha, size_t(N) * C, false);
    layernorm_backward(din, dgain, dbias, dout, in, gain, mean, rstd, N, C, true);
  }
  virtual void residual_forward(float* out, const float* x, float alpha, const float* g, size_t n) = 0;
  virtual void scale_copy(float* out, const float* in, float alpha, size_t n, bool accumulate) = 0;

  // ---- gradients and optimizer ----
  virtual void fold(double* acc, float* g, size_t n) = 0;          // acc += g; g = 0
  virtual void unfold(float* g, const double* acc, size_t n) = 0;  // g = float(acc)
  virtual void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const cpu::AdamWParams& hp,
                            bool decay) = 0;
  // adamw_update of every segment of p, m, v, g (each element's update is the same as there): the CPU's loops
  // over them; a GPU backend runs one kernel for all (hundreds of small tensors would be hundreds of launches).
  virtual void adamw_update_segments(float* p, float* m, float* v, const float* g,
                                     const std::vector<AdamWSegment>& segments, const cpu::AdamWParams& hp) {
    for (const AdamWSegment& s : segments)
      adamw_update(p + s.offset, m + s.offset, v + s.offset, g + s.offset, s.size, hp, s.decay);
  }

  // ---- reductions, on the host ----
  virtual double sum(const float* x, size_t n) = 0;          // Σ x (the loss of a micro-batch)
  virtual double sum_squares(const float* x, size_t n) = 0;  // Σ x², chunked as cpu::sum_squares (gradient norm)
  virtual double stats_sumsq(const float* x, size_t n) = 0;
  virtual double stats_maxabs(const float* x, size_t n) = 0;
  virtual double stats_sqdiff(const float* a, const float* b, size_t n) = 0;
  // Σ over (batch, head, query) of the attention entropy: from probs, or recomputed from qkv where the
  // forward kept only the log-sum-exp.
  virtual double attention_entropy(const float* probs, const float* qkv, int B, int T, int C, int H) = 0;
  virtual bool all_finite(const float* x, size_t n) = 0;

  // ---- deferred statistics: the same values, added on the host at the next stats_flush() ----
  // *dst += value / divisor (maxabs: *dst = max(*dst, value)), applied in call order at stats_flush(), so the
  // host sums are the ones the immediate calls give, bit for bit. A GPU backend reduces into device slots and
  // downloads them all at once: one wait per flush instead of one per statistic. dst must stay valid until then.
  // These defaults apply at once (the CPU's).
  virtual void stats_sumsq_to(double* dst, const float* x, size_t n, double divisor = 1.0) {
    *dst += stats_sumsq(x, n) / divisor;
  }
  virtual void stats_maxabs_to(double* dst, const float* x, size_t n) {
    const double v = stats_maxabs(x, n);
    if (v > *dst) *dst = v;
  }
  virtual void stats_sqdiff_to(double* dst, const float* a, const float* b, size_t n) {
    *dst += stats_sqdiff(a, b, n);
  }
  virtual void attention_entropy_to(double* dst, const float* probs, const float* qkv, int B, int T, int C, int H) {
    *dst += attention_entropy(probs, qkv, B, T, C, H);
  }
  virtual void stats_flush() {}

  // [p, p + n) (inside one alloc() block) holds activations that only GEMMs (as bf16 operands), the activation
  // functions, their backward and max-abs statistics read, and only GEMMs and the activations write: a backend
  // computing in bf16 may keep them in bf16 alone (the CUDA backend: the feed-forward hidden activations and
  // their gradients, half the bytes moved; PyTorch's autocast keeps them so too). Any other op given such memory
  // fails there. The CPU's default: nothing changes.
  virtual void keep_bf16(const float* p, size_t n) { (void)p, (void)n; }
  // Whether keep_bf16 takes effect: then such a buffer of n values needs room for n bf16 values only, (n + 1) / 2
  // floats, and the backend stores them there (the CUDA backend in bf16 with train.bf16_activations).
  virtual bool keeps_bf16() const { return false; }
  // Whether attention's qkv and its gradient [N, 3C] of H heads, and its output and that output's gradient [N, C],
  // may be kept so too (the attention then reads qkv, dout and out as bf16 and writes out and dqkv as bf16: the
  // CUDA backend's tensor-core attention).
  virtual bool keeps_attention_bf16(int C, int H) const { (void)C, (void)H; return false; }

  // Device memory the backend holds beside the buffers it was asked to alloc(): the CUDA backend's bf16 GEMM
  // operand copies (its scratch not counted).
  virtual size_t extra_bytes() const { return 0; }
  // The most bytes alloc() held at once since the backend was made (0 where the backend does not count: the CPU's,
  // whose memory is the process's RSS).
  virtual size_t peak_alloc_bytes() const { return 0; }

  // ---- device-side op timing (log.gpu_profile) ----
  // (Re)starts timing every op from now; false where the backend cannot (the CPU's).
  virtual bool start_profile() { return false; }
  // Since start_profile(): one entry per op kind, always the same kinds in the same order, then "(span)": the
  // device time from the first timed op's start to the last one's end (ops' sum / span = how busy the device
  // was). Waits for the device.
  virtual std::vector<OpTime> profile() { return {}; }
};

// The process's CPU backend (stateless; OpenMP threads as set by set_threads).
Backend& cpu_backend();
// The same ops with host_memory() = false: models on it keep device-style buffers apart from their host
// vectors (tests: STRATA_TEST_SEPARATE_MEMORY=1 trains on it, which must give the same bits).
Backend& cpu_separate_memory_backend();

// n elements of T in a backend's memory, zero-filled; RAII. On the CPU backend data() is a host pointer.
template <class T>
class Array {
 public:
  Array() = default;
  Array(Backend& be, size_t n) : be_(&be), n_(n), p_(n ? static_cast<T*>(be.alloc(n * sizeof(T))) : nullptr) {}
  Array(Array&& o) noexcept : be_(o.be_), n_(std::exchange(o.n_, 0)), p_(std::exchange(o.p_, nullptr)) {}
  Array& operator=(Array&& o) noexcept {
    if (this != &o) {
      reset();
      be_ = o.be_, n_ = std::exchange(o.n_, 0), p_ = std::exchange(o.p_, nullptr);
    }
    return *this;
  }
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;
  ~Array() { reset(); }
  // At least n elements; a growing call reallocates (contents zero, not kept).
  void reserve(Backend& be, size_t n) {
    if (p_ && n <= n_ && be_ == &be) return;
    *this = Array(be, n);
  }
  T* data() const { return p_; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }

 private:
  void reset() {
    if (p_) be_->release(p_);
    p_ = nullptr, n_ = 0;
  }
  Backend* be_ = nullptr;
  size_t n_ = 0;
  T* p_ = nullptr;
};

}  // namespace strata
