// backend.cu: the CUDA backend: device memory on one device and the strata::cuda ops on one non-blocking
// stream it owns, GEMMs in the Precision it was made with. Attention is the fused kernel pair (out and the
// log-sum-exp [B,H,T], no T×T matrix; in bf16 mode on tensor cores where the head size is 16, 32, 64 or 128), so keeps_attention_probs() is false and attention_entropy recomputes
// the probabilities one batch row at a time into scratch the backend owns. Reductions run on the stream into
// a small device double scratch and are downloaded (the host waits for the stream there). Transfers from and
// to the host wait for the stream, so host buffers may be pageable and reused as soon as the call returns.
// Every op runs on the device current on the calling thread: make_cuda_backend sets it.
#include <algorithm>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/blas.cuh"
#include "backend/cuda/common.cuh"
#include "backend/cuda/ops.hpp"
#include "backend/cuda/runtime.hpp"

namespace strata {

namespace {

// The backend's stream, destroyed after its work finishes (errors ignored: destructors do not throw).
struct Stream {
  cudaStream_t s = nullptr;
  Stream() { STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    if (s) {
      if (std::uncaught_exceptions() == 0) cudaStreamSynchronize(s);
      cudaStreamDestroy(s);  // with work pending, its resources go when that work ends
    }
  }
};

class CudaBackend final : public Backend {
 public:
  // The device is set before the stream (a member after name_) is created on it.
  CudaBackend(int device, Precision precision, bool fused_attention)
      : precision_(precision), fused_(fused_attention), name_(select(device)) {}
  // The stream's scratch (GEMM, attention, and the backend's own slots 5–7) is freed in stream order after its
  // last use; ~Stream then waits for the stream, except while an error unwinds (a peer gone, work queued behind
  // a transfer that never comes: the process is about to end).
  ~CudaBackend() override { cuda::scratch_release(stream_.s); }

  std::string name() const override { return name_; }
  bool host_memory() const override { return false; }
  bool keeps_attention_probs() const override { return !fused_; }
  void* stream() const override { return stream_.s; }

  // ---- memory ----
  void* alloc(size_t bytes) override {
    if (bytes == 0) return nullptr;
    // Stream-ordered (cudaMallocAsync / cudaFreeAsync): neither waits for the whole device, which could wait
    // for an NCCL receive posted ahead while its peer waits for this rank (cudaMalloc/cudaFree may).
    void* p = nullptr;
    cudaError_t e = cudaMallocAsync(&p, bytes, s());
    STRATA_CHECK(e == cudaSuccess, "cuda backend (", name_, "): cudaMallocAsync of ", bytes,
                 " bytes: ", cudaGetErrorString(e));
    e = cudaMemsetAsync(p, 0, bytes, s());
    if (e == cudaSuccess) e = cudaStreamSynchronize(s());
    if (e != cudaSuccess) {
      cudaFreeAsync(p, s());
      fail("cuda backend: cudaMemsetAsync/cudaStreamSynchronize zeroing ", bytes, " bytes: ",
           cudaGetErrorString(e));
    }
    return p;
  }
  void release(void* p) noexcept override {
    if (p) cudaFreeAsync(p, s());  // after the work queued on the stream so far; errors ignored here
  }
  void upload(void* dst, const void* host_src, size_t bytes) override {
    if (!bytes) return;
    STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, s()));
    STRATA_CUDA_CHECK(cudaStreamSynchronize(s()));
  }
  void download(void* host_dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    STRATA_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, s()));
    STRATA_CUDA_CHECK(cudaStreamSynchronize(s()));
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    if (!bytes || dst == src) return;
    STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s()));
  }
  void zero(void* p, size_t bytes) override {
    if (!bytes) return;
    STRATA_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, s()));
  }
  void synchronize() override { STRATA_CUDA_CHECK(cudaStreamSynchronize(s())); }

  // ---- model ops ----
  void matmul_forward(float* out, const float* in, const float* w, const float* b, int N, int IC, int OC) override {
    cuda::matmul_forward(out, in, w, b, N, IC, OC, precision_, s());
  }
  void matmul_backward_input(float* din, const float* dout, const float* w, int N, int IC, int OC,
                             bool accumulate) override {
    cuda::matmul_backward_input(din, dout, w, N, IC, OC, accumulate, precision_, s());
  }
  void matmul_backward_weight(float* dw, float* db, const float* dout, const float* in, int N, int IC,
                              int OC) override {
    cuda::matmul_backward_weight(dw, db, dout, in, N, IC, OC, precision_, s());
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* gain, const float* bias,
                         int N, int C, double eps) override {
    cuda::layernorm_forward(out, mean, rstd, in, gain, bias, N, C, eps, s());
  }
  void layernorm_backward(float* din, float* dgain, float* dbias, const float* dout, const float* in,
                          const float* gain, const float* mean, const float* rstd, int N, int C,
                          bool accumulate) override {
    cuda::layernorm_backward(din, dgain, dbias, dout, in, gain, mean, rstd, N, C, accumulate, s());
  }
  void attention_forward(float* out, float* probs, float* lse, const float* qkv, int B, int T, int C, int H) override {
    if (!fused_) {  // cuBLAS batched GEMMs (TF32 in bf16 mode), probabilities kept
      STRATA_CHECK(probs || B <= 0 || T <= 0, "cuda backend: unfused attention_forward needs probs [B,H,T,T]");
      return cuda::attention_forward(out, probs, qkv, B, T, C, H, s(), precision_);
    }
    STRATA_CHECK(lse || B <= 0 || T <= 0, "cuda backend: attention_forward needs lse [B,H,T] (fused attention)");
    if (tensor_cores(C, H)) return cuda::attention_tc_forward(out, lse, qkv, B, T, C, H, s());
    cuda::attention_fused_forward(out, lse, qkv, B, T, C, H, s());
  }
  void attention_backward(float* dqkv, const float* dout, const float* out, const float* probs, const float* lse,
                          const float* qkv, int B, int T, int C, int H) override {
    if (!fused_) {
      STRATA_CHECK(probs || B <= 0 || T <= 0, "cuda backend: unfused attention_backward needs the forward's probs");
      return cuda::attention_backward(dqkv, dout, probs, qkv, B, T, C, H, s(), precision_);
    }
    STRATA_CHECK(lse || B <= 0 || T <= 0, "cuda backend: attention_backward needs the forward's lse");
    if (tensor_cores(C, H)) return cuda::attention_tc_backward(dqkv, dout, out, lse, qkv, B, T, C, H, s());
    cuda::attention_fused_backward(dqkv, dout, out, lse, qkv, B, T, C, H, s());
  }
  void activation_forward(float* out, const float* in, size_t n, cpu::Activation a) override {
    cuda::activation_forward(out, in, n, a, s());
  }
  void activation_backward(float* din, const float* dout, const float* in, size_t n, cpu::Activation a) override {
    cuda::activation_backward(din, dout, in, n, a, s());
  }
  void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V) override {
    cuda::crossentropy_forward(losses, logits, targets, N, V, s());
  }
  void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, int N, int V,
                             float scale) override {
    cuda::crossentropy_backward(dlogits, logits, targets, N, V, scale, s());
  }
  void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                         int C) override {
    cuda::embedding_forward(out, tokens, wte, wpe, B, T, C, s());
  }
  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                          int C) override {
    cuda::embedding_backward(dwte, dwpe, dout, tokens, B, T, C, s());
  }
  void residual_forward(float* out, const float* x, float alpha, const float* g, size_t n) override {
    cuda::residual_forward(out, x, alpha, g, n, s());
  }
  void scale_copy(float* out, const float* in, float alpha, size_t n, bool accumulate) override {
    cuda::scale_copy(out, in, alpha, n, accumulate, s());
  }

  // ---- gradients and optimizer ----
  void fold(double* acc, float* g, size_t n) override { cuda::fold(acc, g, n, s()); }
  void unfold(float* g, const double* acc, size_t n) override { cuda::unfold(g, acc, n, s()); }
  void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const cpu::AdamWParams& hp,
                    bool decay) override {
    cuda::adamw_update(p, m, v, g, n, hp, decay, s());
  }

  // ---- reductions, on the host ----
  double sum(const float* x, size_t n) override {
    cuda::sum(slots(1), x, n, s());
    return fetch();
  }
  double sum_squares(const float* x, size_t n) override {
    cuda::sum_squares(slots(1), x, n, s());
    return fetch();
  }
  double stats_sumsq(const float* x, size_t n) override {  // cpu::stats_sumsq is cpu::sum_squares' twin too
    return sum_squares(x, n);
  }
  double stats_maxabs(const float* x, size_t n) override {
    cuda::stats_maxabs(slots(1), x, n, s());
    return fetch();
  }
  double stats_sqdiff(const float* a, const float* b, size_t n) override {
    cuda::stats_sqdiff(slots(1), a, b, n, s());
    return fetch();
  }
  // probs is null here (the forward kept only lse): each batch row's probabilities [H,T,T] are recomputed
  // from qkv into scratch by the unfused forward, their entropy reduced into slot b, and the B slots summed
  // on the host in order. Given probs (e.g. from cuda::attention_forward), they are used directly.
  double attention_entropy(const float* probs, const float* qkv, int B, int T, int C, int H) override {
    if (B <= 0 || T <= 0 || H <= 0) return 0.0;
    if (probs) {
      cuda::attention_entropy(slots(1), probs, B * H * T, T, s());
      return fetch();
    }
    double* ent = slots(size_t(B));
    auto* out = static_cast<float*>(cuda::scratch(6, size_t(T) * C * sizeof(float), s()));
    auto* p = static_cast<float*>(cuda::scratch(7, size_t(H) * T * T * sizeof(float), s()));
    for (int b = 0; b < B; b++) {
      cuda::attention_forward(out, p, qkv + size_t(b) * T * 3 * C, 1, T, C, H, s());
      cuda::attention_entropy(ent + b, p, H * T, T, s());
    }
    std::vector<double> host(size_t(B), 0.0);
    download(host.data(), ent, host.size() * sizeof(double));
    double total = 0;
    for (double e : host) total += e;
    return total;
  }
  bool all_finite(const float* x, size_t n) override {
    cuda::count_nonfinite(slots(1), x, n, s());
    return fetch() == 0.0;
  }

 private:
  static std::string select(int device) {
    cuda::set_device(device);
    int pools = 0;
    cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device);
    STRATA_CHECK(pools, "cuda backend: device ", device, " (", cuda::device_name(device),
                 ") has no stream-ordered memory pools (cudaDevAttrMemoryPoolsSupported = 0; CUDA 11.2+ "
                 "driver and a device that supports them are needed)");
    return str("cuda:", device, " ", cuda::device_name(device));
  }
  cudaStream_t s() const { return stream_.s; }
  // Fused attention in bf16 mode runs on tensor cores where the head size allows (16, 32, 64, 128).
  bool tensor_cores(int C, int H) const {
    return precision_ == Precision::bf16 && cuda::attention_tc_supported(C, H);
  }
  // The reductions' device doubles: scratch slot 5 of the stream (blas.cuh), at least n of them.
  double* slots(size_t n) {
    return static_cast<double*>(cuda::scratch(5, std::max<size_t>(n, 16) * sizeof(double), s()));
  }
  double fetch() {  // slot 0, after the stream's work
    double v = 0;
    download(&v, slots(1), sizeof v);
    return v;
  }

  Precision precision_;
  bool fused_;
  std::string name_;
  Stream stream_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device, Precision precision, bool fused_attention) {
  return std::make_unique<CudaBackend>(device, precision, fused_attention);
}

}  // namespace strata
