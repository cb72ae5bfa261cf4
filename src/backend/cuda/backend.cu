// backend.cu: the CUDA backend: device memory on one device and the strata::cuda ops on one non-blocking
// stream it owns, GEMMs in the Precision it was made with. Attention is the fused kernel pair (out and the
// log-sum-exp [B,H,T], no T×T matrix; in bf16 mode on tensor cores where the head size is 16, 32, 64 or 128), so keeps_attention_probs() is false and attention_entropy recomputes
// the probabilities one batch row at a time into scratch the backend owns. Reductions run on the stream into
// a small device double scratch and are downloaded (the host waits for the stream there). Transfers from and
// to the host wait for the stream, so host buffers may be pageable and reused as soon as the call returns.
// Every op runs on the device current on the calling thread: make_cuda_backend sets it.
//
// In bf16 mode the backend keeps the bf16 copy of every GEMM operand it rounds (weights, layer inputs, output
// gradients), keyed by the fp32 buffer's address, and reuses it while that buffer is unchanged: a weight is
// rounded once per optimizer step instead of twice per micro-batch, a layer input once for its forward and
// weight-gradient GEMMs, an output gradient once for its two backward GEMMs. Every op drops the copies that
// overlap what it writes (and alloc, release, upload, copy, zero, and written() for writes from outside, an NCCL
// receive); a copy is only ever to_bf16 of the current values, so results are the same bits as without it.
// Ops whose output is a GEMM operand next write its copy as they store the output (produce_copy), so only the
// weights are rounded by a separate pass.
// Costs device memory: half the bytes of each distinct operand buffer. GpuOptions::operand_cache = false
// (STRATA_CUDA_OPERAND_CACHE=0 for the trainer) turns it off.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/blas.cuh"
#include "backend/cuda/common.cuh"
#include "backend/cuda/ops.hpp"
#include "backend/cuda/profiler.hpp"
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
  CudaBackend(int device, const GpuOptions& o)
      : precision_(o.precision),
        fused_(o.fused_attention),
        mma_(o.mma_attention),
        name_(select(device)),
        memo_(o.operand_cache),
        keep_(o.precision == Precision::bf16 && o.bf16_activations) {}
  // The stream's scratch (GEMM, attention, and the backend's own slots 5–7) and the bf16 copies are freed in
  // stream order after their last use; ~Stream then waits for the stream, except while an error unwinds (a peer
  // gone, work queued behind a transfer that never comes: the process is about to end).
  ~CudaBackend() override {
    tables_.clear();  // their Arrays release into this backend while it is whole
    for (auto& [p, c] : copies_)
      if (!c.in_place) cudaFreeAsync(c.p, s());
    copies_.clear();
    if (defer_slots_) cudaFreeAsync(defer_slots_, s());
    cuda::scratch_release(stream_.s);
  }

  std::string name() const override { return name_; }
  bool host_memory() const override { return false; }
  bool keeps_attention_probs() const override { return !fused_; }
  std::string attention_kernel(int C, int H) const override {
    if (!fused_) return precision_ == Precision::bf16 ? "unfused, cuBLAS TF32 (probabilities kept)"
                                                      : "unfused, cuBLAS (probabilities kept)";
    if (mma_attention(C, H)) return "fused, bf16 tensor cores (mma.sync)";
    if (tensor_cores(C, H)) return "fused, bf16 tensor cores (WMMA)";
    return "fused, fp32 CUDA cores";
  }
  void* stream() const override { return stream_.s; }

  // ---- memory ----
  void* alloc(size_t bytes) override {
    if (bytes == 0) return nullptr;
    // Stream-ordered (cudaMallocAsync / cudaFreeAsync): neither waits for the whole device, which could wait
    // for an NCCL receive posted ahead while its peer waits for this rank (cudaMalloc/cudaFree may).
    void* p = nullptr;
    cudaError_t e = cudaMallocAsync(&p, bytes, s());
    if (e == cudaSuccess) {
      allocs_[p] = bytes, wrote_bytes(p, bytes);
      live_bytes_ += bytes, peak_bytes_ = std::max(peak_bytes_, live_bytes_);
    }
    STRATA_CHECK(e == cudaSuccess, "cuda backend (", name_, "): cudaMallocAsync of ", bytes,
                 " bytes: ", cudaGetErrorString(e));
    e = cudaMemsetAsync(p, 0, bytes, s());
    if (e == cudaSuccess) e = cudaStreamSynchronize(s());
    if (e != cudaSuccess) {
      allocs_.erase(p), live_bytes_ -= bytes;
      cudaFreeAsync(p, s());
      fail("cuda backend: cudaMemsetAsync/cudaStreamSynchronize zeroing ", bytes, " bytes: ",
           cudaGetErrorString(e));
    }
    return p;
  }
  void release(void* p) noexcept override {
    if (!p) return;
    auto a = allocs_.find(p);
    if (a != allocs_.end()) live_bytes_ -= a->second, drop(p, a->second), allocs_.erase(a);
    cudaFreeAsync(p, s());  // after the work queued on the stream so far; errors ignored here
  }
  void written(const void* p, size_t bytes) override {
    plain("an external write", {{p, bytes}});
    wrote_bytes(p, bytes);
  }
  void upload(void* dst, const void* host_src, size_t bytes) override {
    plain("upload", {{dst, bytes}});
    if (!bytes) return;
    wrote_bytes(dst, bytes);
    auto t = prof_.time(K::host_transfers, 0, double(bytes));
    STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, s()));
    STRATA_CUDA_CHECK(cudaStreamSynchronize(s()));
  }
  void download(void* host_dst, const void* src, size_t bytes) override {
    plain("download", {{src, bytes}});
    if (!bytes) return;
    auto t = prof_.time(K::host_transfers, 0, double(bytes));
    to_host(host_dst, src, bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) override {
    plain("copy", {{dst, bytes}, {src, bytes}});
    if (!bytes || dst == src) return;
    wrote_bytes(dst, bytes);
    auto t = prof_.time(K::copy_zero, 0, 2.0 * bytes);
    STRATA_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s()));
  }
  void zero(void* p, size_t bytes) override {
    plain("zero", {{p, bytes}});
    if (!bytes) return;
    wrote_bytes(p, bytes);
    auto t = prof_.time(K::copy_zero, 0, double(bytes));
    STRATA_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, s()));
  }
  void synchronize() override { STRATA_CUDA_CHECK(cudaStreamSynchronize(s())); }

  // ---- model ops ----
  // A buffer kept in bf16 only (keep_bf16) reaches the strata::cuda ops as a null fp32 pointer beside its copy.
  void matmul_forward(float* out, const float* in, const float* w, const float* b, int N, int IC, int OC) override {
    if (N <= 0) return;
    const bool ko = kept(out, size_t(N) * OC), ki = kept(in, size_t(N) * IC);
    plain("matmul_forward", {{ko ? nullptr : out, size_t(N) * OC * 4}, {ki ? nullptr : in, size_t(N) * IC * 4},
                             {w, size_t(IC) * OC * 4}, {b, b ? size_t(OC) * 4 : 0}});
    // Operands rounded before the output is marked: were out to overlap one, its fresh copy would go stale.
    const void *in16 = bf16_of(in, size_t(N) * IC), *w16 = bf16_of(w, size_t(IC) * OC);
    wrote(out, size_t(N) * OC);
    void* out16 = ko ? produce_copy(out, size_t(N) * OC) : nullptr;
    auto t = prof_.time(K::matmul_forward, 2.0 * N * IC * OC,
                        gemm_bytes(N, IC, OC, (ko ? 2.0 : 4.0) * N * OC + (b ? 4.0 * OC : 0)));
    cuda::matmul_forward(ko ? nullptr : out, ki ? nullptr : in, w, b, N, IC, OC, precision_, s(), in16, w16, out16);
    produced(out, out16);
  }
  void matmul_backward_input(float* din, const float* dout, const float* w, int N, int IC, int OC,
                             bool accumulate) override {
    if (N <= 0) return;
    const bool ko = kept(din, size_t(N) * IC), kd = kept(dout, size_t(N) * OC);
    STRATA_CHECK(!ko || !accumulate, "cuda backend: matmul_backward_input would accumulate into a buffer kept in bf16");
    plain("matmul_backward_input", {{ko ? nullptr : din, size_t(N) * IC * 4}, {kd ? nullptr : dout, size_t(N) * OC * 4},
                                    {w, size_t(IC) * OC * 4}});
    const void *dout16 = bf16_of(dout, size_t(N) * OC), *w16 = bf16_of(w, size_t(IC) * OC);
    wrote(din, size_t(N) * IC);
    void* din16 = ko ? produce_copy(din, size_t(N) * IC) : nullptr;
    auto t = prof_.time(K::matmul_backward_input, 2.0 * N * IC * OC,
                        gemm_bytes(N, OC, IC, (ko ? 2.0 : accumulate ? 8.0 : 4.0) * N * IC));
    cuda::matmul_backward_input(ko ? nullptr : din, kd ? nullptr : dout, w, N, IC, OC, accumulate, precision_, s(),
                                dout16, w16, din16);
    produced(din, din16);
  }
  void matmul_backward_weight(float* dw, float* db, const float* dout, const float* in, int N, int IC,
                              int OC) override {
    if (N <= 0) return;
    const bool kd = kept(dout, size_t(N) * OC), ki = kept(in, size_t(N) * IC);
    const void *dout16 = bf16_of(dout, size_t(N) * OC), *in16 = bf16_of(in, size_t(N) * IC);
    plain("matmul_backward_weight", {{dw, size_t(IC) * OC * 4}, {db, db ? size_t(OC) * 4 : 0},
                                     {kd ? nullptr : dout, size_t(N) * OC * 4}, {ki ? nullptr : in, size_t(N) * IC * 4}});
    wrote(dw, size_t(IC) * OC), wrote(db, size_t(OC));
    // dw read and written; the bias gradient reads dout once more (fp32, or its bf16 copy where kept)
    auto t = prof_.time(K::matmul_backward_weight, 2.0 * N * IC * OC,
                        operand_bytes() * (double(N) * OC + double(N) * IC) + 8.0 * IC * OC +
                            (db ? (kd ? 2.0 : 4.0) * N * OC : 0));
    cuda::matmul_backward_weight(dw, db, kd ? nullptr : dout, ki ? nullptr : in, N, IC, OC, precision_, s(), dout16,
                                 in16);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* gain, const float* bias,
                         int N, int C, double eps) override {
    plain("layernorm_forward", {{out, size_t(N) * C * 4}, {in, size_t(N) * C * 4}});
    wrote(out, size_t(N) * C), wrote(mean, size_t(N)), wrote(rstd, size_t(N));
    void* out16 = produce_copy(out, size_t(N) * C);
    auto t = prof_.time(K::layernorm_forward, 0, (out16 ? 10.0 : 8.0) * N * C + 8.0 * N);
    cuda::layernorm_forward(out, mean, rstd, in, gain, bias, N, C, eps, s(), out16);
    produced(out, out16);
  }
  void layernorm_backward(float* din, float* dgain, float* dbias, const float* dout, const float* in,
                          const float* gain, const float* mean, const float* rstd, int N, int C,
                          bool accumulate) override {
    plain("layernorm_backward", {{din, size_t(N) * C * 4}, {dout, size_t(N) * C * 4}, {in, size_t(N) * C * 4}});
    wrote(din, size_t(N) * C), wrote(dgain, size_t(C)), wrote(dbias, size_t(C));
    void* din16 = produce_copy(din, size_t(N) * C);
    auto t = prof_.time(K::layernorm_backward, 0, (accumulate ? 16.0 : 12.0) * N * C + (din16 ? 2.0 : 0.0) * N * C + 8.0 * N);
    cuda::layernorm_backward(din, dgain, dbias, dout, in, gain, mean, rstd, N, C, accumulate, s(), din16);
    produced(din, din16);
  }
  void layernorm_backward_residual(float* din, float* dgain, float* dbias, const float* dout, const float* in,
                                   const float* gain, const float* mean, const float* rstd, int N, int C,
                                   const float* resid, float alpha) override {
    plain("layernorm_backward", {{din, size_t(N) * C * 4}, {dout, size_t(N) * C * 4}, {in, size_t(N) * C * 4},
                                 {resid, size_t(N) * C * 4}});
    wrote(din, size_t(N) * C), wrote(dgain, size_t(C)), wrote(dbias, size_t(C));
    void* din16 = produce_copy(din, size_t(N) * C);
    auto t = prof_.time(K::layernorm_backward, 0, (din16 ? 18.0 : 16.0) * N * C + 8.0 * N);
    cuda::layernorm_backward_residual(din, dgain, dbias, dout, in, gain, mean, rstd, N, C, resid, alpha, s(), din16);
    produced(din, din16);
  }
  void attention_forward(float* out, float* probs, float* lse, const float* qkv, int B, int T, int C, int H) override {
    const size_t BT = size_t(std::max(B, 0)) * std::max(T, 0);
    const bool kq = kept(qkv, BT * 3 * C), ko = kept(out, BT * C);
    plain("attention_forward", {{ko ? nullptr : out, BT * C * 4}, {kq ? nullptr : qkv, BT * 3 * C * 4}});
    STRATA_CHECK(!(kq || ko) || (fused_ && tensor_cores(C, H)), "cuda backend: attention_forward of qkv or out kept ",
                 "in bf16 needs the tensor-core attention");
    const void* qkv16 = kq ? bf16_of(qkv, BT * 3 * C) : nullptr;
    if (kq) qkv = nullptr;
    wrote(out, BT * C), wrote(probs, BT * H * std::max(T, 0)), wrote(lse, BT * H);
    // The fused kernels write out's bf16 copy (the projection GEMM's operand) as they store out; out kept in bf16
    // only: that copy alone.
    void* out16 = fused_ ? produce_copy(out, BT * C) : nullptr;
    float* out32 = ko ? nullptr : out;
    // causal: half of QKᵀ and of PV; qkv read, out (and lse or probs) written
    auto t = prof_.time(K::attention_forward, 2.0 * BT * T * C,
                        ((kq ? 6.0 : 12.0) + (ko ? 2.0 : out16 ? 6.0 : 4.0)) * BT * C +
                            4.0 * BT * H * (probs ? std::max(T, 0) : 1));
    if (!fused_) {  // cuBLAS batched GEMMs (TF32 in bf16 mode), probabilities kept
      STRATA_CHECK(probs || B <= 0 || T <= 0, "cuda backend: unfused attention_forward needs probs [B,H,T,T]");
      return cuda::attention_forward(out, probs, qkv, B, T, C, H, s(), precision_);
    }
    STRATA_CHECK(lse || B <= 0 || T <= 0, "cuda backend: attention_forward needs lse [B,H,T] (fused attention)");
    if (mma_attention(C, H))
      cuda::attention_mma_forward(out32, lse, qkv, B, T, C, H, s(), out16, qkv16);
    else if (tensor_cores(C, H))
      cuda::attention_tc_forward(out32, lse, qkv, B, T, C, H, s(), out16, qkv16);
    else
      cuda::attention_fused_forward(out, lse, qkv, B, T, C, H, s(), out16);
    produced(out, out16);
  }
  void attention_backward(float* dqkv, const float* dout, const float* out, const float* probs, const float* lse,
                          const float* qkv, int B, int T, int C, int H) override {
    const size_t BT = size_t(std::max(B, 0)) * std::max(T, 0);
    const bool kq = kept(qkv, BT * 3 * C), kd = kept(dqkv, BT * 3 * C), kdo = kept(dout, BT * C), ko = kept(out, BT * C);
    plain("attention_backward", {{kd ? nullptr : dqkv, BT * 3 * C * 4}, {kdo ? nullptr : dout, BT * C * 4},
                                 {ko ? nullptr : out, BT * C * 4}, {kq ? nullptr : qkv, BT * 3 * C * 4}});
    STRATA_CHECK(!(kq || kd || kdo || ko) || (fused_ && tensor_cores(C, H)), "cuda backend: attention_backward of ",
                 "qkv, dqkv, dout or out kept in bf16 needs the tensor-core attention");
    const void* qkv16 = kq ? bf16_of(qkv, BT * 3 * C) : nullptr;
    const void* dout16 = kdo ? bf16_of(dout, BT * C) : nullptr;
    const void* out16 = ko ? bf16_of(out, BT * C) : nullptr;
    if (kq) qkv = nullptr;
    if (kdo) dout = nullptr;
    if (ko) out = nullptr;
    wrote(dqkv, BT * 3 * C);
    void* dqkv16 = fused_ ? produce_copy(dqkv, BT * 3 * C) : nullptr;  // the QKV GEMMs' backward operand
    float* dqkv32 = kd ? nullptr : dqkv;
    // five causal T×T×hs products (S again, dP, dV, dQ, dK); qkv, out, dout read, dqkv written
    auto t = prof_.time(K::attention_backward, 5.0 * BT * T * C,
                        ((kq ? 6.0 : 12.0) + (kdo ? 2.0 : 4.0) + (ko ? 2.0 : 4.0) + (kd ? 6.0 : dqkv16 ? 18.0 : 12.0)) *
                                BT * C +
                            4.0 * BT * H * (probs ? std::max(T, 0) : 1));
    if (!fused_) {
      STRATA_CHECK(probs || B <= 0 || T <= 0, "cuda backend: unfused attention_backward needs the forward's probs");
      return cuda::attention_backward(dqkv, dout, probs, qkv, B, T, C, H, s(), precision_);
    }
    STRATA_CHECK(lse || B <= 0 || T <= 0, "cuda backend: attention_backward needs the forward's lse");
    if (mma_attention(C, H))
      cuda::attention_mma_backward(dqkv32, dout, out, lse, qkv, B, T, C, H, s(), dqkv16, qkv16, dout16, out16);
    else if (tensor_cores(C, H))
      cuda::attention_tc_backward(dqkv32, dout, out, lse, qkv, B, T, C, H, s(), dqkv16, qkv16, dout16, out16);
    else
      cuda::attention_fused_backward(dqkv, dout, out, lse, qkv, B, T, C, H, s(), dqkv16);
    produced(dqkv, dqkv16);
  }
  void activation_forward(float* out, const float* in, size_t n, cpu::Activation a) override {
    const bool ko = kept(out, n), ki = kept(in, n);
    plain("activation_forward", {{ko ? nullptr : out, n * 4}, {ki ? nullptr : in, n * 4}});
    const void* in16 = ki ? bf16_of(in, n) : nullptr;
    wrote(out, n);
    void* out16 = produce_copy(out, n);
    auto t = prof_.time(K::activation_forward, 0, ((ki ? 2.0 : 4.0) + (ko ? 0.0 : 4.0) + (out16 ? 2.0 : 0.0)) * n);
    cuda::activation_forward(ko ? nullptr : out, ki ? nullptr : in, n, a, s(), out16, in16);
    produced(out, out16);
  }
  void activation_backward(float* din, const float* dout, const float* in, size_t n, cpu::Activation a) override {
    const bool ko = kept(din, n), kd = kept(dout, n), ki = kept(in, n);
    plain("activation_backward", {{ko ? nullptr : din, n * 4}, {kd ? nullptr : dout, n * 4}, {ki ? nullptr : in, n * 4}});
    const void *dout16 = kd ? bf16_of(dout, n) : nullptr, *in16 = ki ? bf16_of(in, n) : nullptr;
    wrote(din, n);
    void* din16 = produce_copy(din, n);
    auto t = prof_.time(K::activation_backward, 0,
                        ((kd ? 2.0 : 4.0) + (ki ? 2.0 : 4.0) + (ko ? 0.0 : 4.0) + (din16 ? 2.0 : 0.0)) * n);
    cuda::activation_backward(ko ? nullptr : din, kd ? nullptr : dout, ki ? nullptr : in, n, a, s(), din16, dout16,
                              in16);
    produced(din, din16);
  }
  void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V) override {
    plain("crossentropy_forward", {{logits, size_t(std::max(N, 0)) * std::max(V, 0) * 4}});
    wrote(losses, size_t(std::max(N, 0)));
    auto t = prof_.time(K::crossentropy_forward, 0, 4.0 * N * V);
    cuda::crossentropy_forward(losses, logits, targets, N, V, s());
  }
  void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, int N, int V,
                             float scale) override {
    plain("crossentropy_backward", {{dlogits, size_t(std::max(N, 0)) * std::max(V, 0) * 4},
                                    {logits, size_t(std::max(N, 0)) * std::max(V, 0) * 4}});
    wrote(dlogits, size_t(std::max(N, 0)) * std::max(V, 0));
    void* dlogits16 = produce_copy(dlogits, size_t(std::max(N, 0)) * std::max(V, 0));  // the head GEMMs' operand
    auto t = prof_.time(K::crossentropy_backward, 0, (dlogits16 ? 10.0 : 8.0) * N * V);
    cuda::crossentropy_backward(dlogits, logits, targets, N, V, scale, s(), dlogits16);
    produced(dlogits, dlogits16);
  }
  void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                         int C) override {
    plain("embedding_forward", {{out, size_t(std::max(B * T, 0)) * C * 4}});
    wrote(out, size_t(std::max(B, 0)) * std::max(T, 0) * C);
    auto t = prof_.time(K::embedding_forward, 0, 12.0 * B * T * C);
    cuda::embedding_forward(out, tokens, wte, wpe, B, T, C, s());
  }
  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                          int C) override {
    plain("embedding_backward", {{dout, size_t(std::max(B * T, 0)) * C * 4}});
    // dwte's extent (the vocabulary) is not an argument here: stale up to the end of its allocation.
    wrote_to_block_end(dwte);
    wrote(dwpe, size_t(std::max(T, 0)) * C);
    auto t = prof_.time(K::embedding_backward, 0, 12.0 * B * T * C);
    cuda::embedding_backward(dwte, dwpe, dout, tokens, B, T, C, s());
  }
  void residual_forward(float* out, const float* x, float alpha, const float* g, size_t n) override {
    plain("residual_forward", {{out, n * 4}, {x, n * 4}, {g, n * 4}});
    wrote(out, n);
    auto t = prof_.time(K::residual_forward, 0, 12.0 * n);
    cuda::residual_forward(out, x, alpha, g, n, s());
  }
  void scale_copy(float* out, const float* in, float alpha, size_t n, bool accumulate) override {
    plain("scale_copy", {{out, n * 4}, {in, n * 4}});
    wrote(out, n);
    auto t = prof_.time(K::scale_copy, 0, (accumulate ? 12.0 : 8.0) * n);
    cuda::scale_copy(out, in, alpha, n, accumulate, s());
  }

  // ---- gradients and optimizer ----
  void fold(double* acc, float* g, size_t n) override {
    plain("fold", {{g, n * 4}});
    wrote_bytes(acc, n * sizeof(double)), wrote(g, n);
    auto t = prof_.time(K::fold_unfold, 0, 24.0 * n);
    cuda::fold(acc, g, n, s());
  }
  void unfold(float* g, const double* acc, size_t n) override {
    plain("unfold", {{g, n * 4}});
    wrote(g, n);
    auto t = prof_.time(K::fold_unfold, 0, 12.0 * n);
    cuda::unfold(g, acc, n, s());
  }
  void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const cpu::AdamWParams& hp,
                    bool decay) override {
    plain("adamw_update", {{p, n * 4}, {m, n * 4}, {v, n * 4}, {g, n * 4}});
    wrote(p, n), wrote(m, n), wrote(v, n);
    auto t = prof_.time(K::adamw_update, 0, 28.0 * n);
    cuda::adamw_update(p, m, v, g, n, hp, decay, s());
  }

  // One launch for every tensor of the buffer; the segment table goes to the device once per distinct table.
  void adamw_update_segments(float* p, float* m, float* v, const float* g, const std::vector<AdamWSegment>& segs,
                             const cpu::AdamWParams& hp) override {
    const SegmentTable& t = segment_table(segs);
    if (!t.total) return;
    plain("adamw_update", {{p, t.extent * 4}, {m, t.extent * 4}, {v, t.extent * 4}, {g, t.extent * 4}});
    wrote(p, t.extent), wrote(m, t.extent), wrote(v, t.extent);  // the gaps between segments too: harmless
    auto tm = prof_.time(K::adamw_update, 0, 28.0 * double(t.total));
    cuda::adamw_update_segments(p, m, v, g, t.segs.data(), t.start.data(), t.count, t.total, hp, s());
  }

  // ---- reductions, on the host ----
  double sum(const float* x, size_t n) override {
    plain("sum", {{x, n * 4}});
    auto t = prof_.time(K::reductions, 0, 4.0 * n);
    cuda::sum(slots(1), x, n, s());
    return fetch();
  }
  double sum_squares(const float* x, size_t n) override {
    plain("sum_squares", {{x, n * 4}});
    auto t = prof_.time(K::reductions, 0, 4.0 * n);
    cuda::sum_squares(slots(1), x, n, s());
    return fetch();
  }
  double stats_sumsq(const float* x, size_t n) override {  // cpu::stats_sumsq is cpu::sum_squares' twin too
    return sum_squares(x, n);
  }
  double stats_maxabs(const float* x, size_t n) override {
    maxabs_into([&] { return slots(1); }, x, n);
    return fetch();
  }
  double stats_sqdiff(const float* a, const float* b, size_t n) override {
    plain("stats_sqdiff", {{a, n * 4}, {b, n * 4}});
    auto t = prof_.time(K::reductions, 0, 8.0 * n);
    cuda::stats_sqdiff(slots(1), a, b, n, s());
    return fetch();
  }
  // probs is null here (the forward kept only lse): each batch row's probabilities [H,T,T] are recomputed
  // from qkv into scratch by the unfused forward, their entropy reduced into slot b, and the B slots summed
  // on the host in order. Given probs (e.g. from cuda::attention_forward), they are used directly.
  double attention_entropy(const float* probs, const float* qkv, int B, int T, int C, int H) override {
    if (B <= 0 || T <= 0 || H <= 0) return 0.0;
    plain("attention_entropy", {{kept(qkv, size_t(B) * T * 3 * C) ? nullptr : qkv, size_t(B) * T * 3 * C * 4},
                                {probs, probs ? size_t(B) * H * T * T * 4 : 0}});
    auto t = prof_.time(K::reductions, 0, 4.0 * B * H * T * T);
    if (probs) {
      cuda::attention_entropy(slots(1), probs, B * H * T, T, s());
      return fetch();
    }
    double* ent = slots(size_t(B));
    entropy_rows(ent, qkv, B, T, C, H);
    std::vector<double> host(size_t(B), 0.0);
    to_host(host.data(), ent, host.size() * sizeof(double));
    double total = 0;
    for (double e : host) total += e;
    return total;
  }
  // ---- deferred statistics: each into its own device double, all downloaded at stats_flush() ----
  void stats_sumsq_to(double* dst, const float* x, size_t n, double divisor) override {
    plain("stats_sumsq", {{x, n * 4}});
    auto t = prof_.time(K::reductions, 0, 4.0 * n);
    cuda::sum_squares(defer(dst, Deferred::add, divisor, 1), x, n, s());
  }
  void stats_maxabs_to(double* dst, const float* x, size_t n) override {
    maxabs_into([&] { return defer(dst, Deferred::max, 1.0, 1); }, x, n);
  }
  void stats_sqdiff_to(double* dst, const float* a, const float* b, size_t n) override {
    plain("stats_sqdiff", {{a, n * 4}, {b, n * 4}});
    auto t = prof_.time(K::reductions, 0, 8.0 * n);
    cuda::stats_sqdiff(defer(dst, Deferred::add, 1.0, 1), a, b, n, s());
  }
  void attention_entropy_to(double* dst, const float* probs, const float* qkv, int B, int T, int C,
                            int H) override {
    if (B <= 0 || T <= 0 || H <= 0) return;
    plain("attention_entropy", {{kept(qkv, size_t(B) * T * 3 * C) ? nullptr : qkv, size_t(B) * T * 3 * C * 4},
                                {probs, probs ? size_t(B) * H * T * T * 4 : 0}});
    const int rows = probs ? 1 : B;
    if (rows > kDeferSlots) return Backend::attention_entropy_to(dst, probs, qkv, B, T, C, H);
    auto t = prof_.time(K::reductions, 0, 4.0 * B * H * T * T);
    double* ent = defer(dst, Deferred::add, 1.0, rows);
    if (probs) return cuda::attention_entropy(ent, probs, B * H * T, T, s());
    entropy_rows(ent, qkv, B, T, C, H);
  }
  void stats_flush() override {
    if (deferred_.empty()) return;
    std::vector<double> v(static_cast<size_t>(used_), 0.0);
    to_host(v.data(), defer_slots_, v.size() * sizeof(double));
    for (const Deferred& d : deferred_) {
      double x = 0;  // a group of rows (entropy per batch row) sums in row order first, as attention_entropy does
      for (int i = 0; i < d.count; i++) x += v[size_t(d.first + i)];
      if (d.op == Deferred::max) {
        if (x > *d.dst) *d.dst = x;
      } else {
        *d.dst += x / d.divisor;
      }
    }
    deferred_.clear();
    used_ = 0;
  }

  size_t peak_alloc_bytes() const override { return peak_bytes_; }
  size_t extra_bytes() const override {
    size_t n = 0;
    for (auto& [x, c] : copies_) n += c.in_place ? 0 : c.cap * 2;
    return n;
  }

  bool start_profile() override {
    prof_.start();
    return true;
  }
  std::vector<OpTime> profile() override { return prof_.report(); }

  bool all_finite(const float* x, size_t n) override {
    plain("all_finite", {{x, n * 4}});
    auto t = prof_.time(K::reductions, 0, 4.0 * n);
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
  // train.attention_kernel = "mma": those of head size 16, 32 or 64 on the register-resident mma.sync kernels
  // (flash_attention_mma.cu) instead of WMMA (the default, wmma, until a GPU has timed both: docs/gpu.md).
  bool mma_attention(int C, int H) const {
    return mma_ && precision_ == Precision::bf16 && cuda::attention_mma_supported(C, H);
  }
  // The reductions' device doubles: scratch slot 5 of the stream (blas.cuh), at least n of them.
  double* slots(size_t n) {
    return static_cast<double*>(cuda::scratch(5, std::max<size_t>(n, 16) * sizeof(double), s()));
  }
  double fetch() {  // slot 0, after the stream's work
    double v = 0;
    to_host(&v, slots(1), sizeof v);
    return v;
  }
  void to_host(void* host_dst, const void* src, size_t bytes) {  // download() without its profile entry
    STRATA_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, s()));
    STRATA_CUDA_CHECK(cudaStreamSynchronize(s()));
  }

  using K = cuda::OpKind;
  // *out() (a device double, taken once x has passed its checks) = max |x| over fp32 x, or over its bf16 values
  // where x is kept in bf16 only.
  template <class Out>
  void maxabs_into(Out out, const float* x, size_t n) {
    const bool k = kept(x, n);
    plain("stats_maxabs", {{k ? nullptr : x, n * 4}});
    const void* x16 = k ? bf16_of(x, n) : nullptr;
    double* dst = out();
    auto t = prof_.time(K::reductions, 0, (k ? 2.0 : 4.0) * n);
    cuda::stats_maxabs(dst, k ? nullptr : x, n, s(), x16);
  }
  // ent[b] = the attention entropy of batch row b, its probabilities recomputed from qkv into scratch 6–7.
  // qkv kept in bf16 only is widened to fp32 one batch row at a time (scratch slot 10) for the recomputation.
  void entropy_rows(double* ent, const float* qkv, int B, int T, int C, int H) {
    auto* out = static_cast<float*>(cuda::scratch(6, size_t(T) * C * sizeof(float), s()));
    auto* p = static_cast<float*>(cuda::scratch(7, size_t(H) * T * T * sizeof(float), s()));
    const size_t row = size_t(T) * 3 * C;
    const bool kq = kept(qkv, size_t(B) * row);
    const auto* q16 = kq ? static_cast<const uint16_t*>(bf16_of(qkv, size_t(B) * row)) : nullptr;
    auto* wide = kq ? static_cast<float*>(cuda::scratch(10, row * sizeof(float), s())) : nullptr;
    for (int b = 0; b < B; b++) {
      const float* q = kq ? wide : qkv + size_t(b) * row;
      if (kq) cuda::from_bf16(wide, q16 + size_t(b) * row, row, s());
      cuda::attention_forward(out, p, q, 1, T, C, H, s());
      cuda::attention_entropy(ent + b, p, H * T, T, s());
    }
  }
  struct SegmentTable {
    Array<AdamWSegment> segs;
    Array<size_t> start;
    int count = 0;
    size_t total = 0;   // elements updated
    size_t extent = 0;  // one past the last segment's end
  };
  // The device copy of a segment table (its non-empty segments and their starts), made on first use.
  const SegmentTable& segment_table(const std::vector<AdamWSegment>& segs) {
    std::vector<uint64_t> key;
    for (const AdamWSegment& s : segs)
      if (s.size) key.insert(key.end(), {uint64_t(s.offset), uint64_t(s.size), uint64_t(s.decay)});
    auto found = tables_.find(key);
    if (found != tables_.end()) return found->second;
    SegmentTable& t = tables_[key];
    std::vector<AdamWSegment> nonempty;
    std::vector<size_t> start;
    for (const AdamWSegment& s : segs)
      if (s.size)
        nonempty.push_back(s), start.push_back(t.total), t.total += s.size,
            t.extent = std::max(t.extent, s.offset + s.size);
    t.count = int(nonempty.size());
    if (!t.count) return t;
    t.segs = Array<AdamWSegment>(*this, nonempty.size());
    t.start = Array<size_t>(*this, start.size());
    upload(t.segs.data(), nonempty.data(), nonempty.size() * sizeof(AdamWSegment));
    upload(t.start.data(), start.data(), start.size() * sizeof(size_t));
    return t;
  }
  struct Deferred {
    enum Op { add, max } op;
    double* dst;
    double divisor;
    int first, count;  // its device slots
  };
  static constexpr int kDeferSlots = 4096;
  // `count` device doubles for one deferred statistic (flushing first when they are used up).
  double* defer(double* dst, Deferred::Op op, double divisor, int count) {
    if (!defer_slots_) {
      STRATA_CUDA_CHECK(cudaMallocAsync(&defer_slots_, kDeferSlots * sizeof(double), s()));
    }
    if (used_ + count > kDeferSlots) stats_flush();
    deferred_.push_back({op, dst, divisor, used_, count});
    used_ += count;
    return defer_slots_ + (used_ - count);
  }
  double operand_bytes() const { return precision_ == Precision::bf16 ? 2.0 : 4.0; }
  // A GEMM's least traffic: its [rows, inner] and [inner, cols] operands read once, plus `out` bytes of output.
  double gemm_bytes(int rows, int inner, int cols, double out) const {
    return operand_bytes() * (double(rows) * inner + double(inner) * cols) + out;
  }

  // ---- the bf16 copies of GEMM operands (see the top of this file) ----
  struct Copy {
    void* p = nullptr;  // n bf16 values (capacity cap), stream-ordered memory; in place: the kept buffer itself
    size_t n = 0, cap = 0;
    bool valid = false;
    bool in_place = false;  // a buffer kept in bf16 only (keep_bf16): p is its own address
  };
  // The bytes from the key a copy stands for: n fp32 values, or a kept buffer's own cap bf16 values.
  static size_t extent(const Copy& c) { return c.in_place ? c.cap * 2 : c.n * sizeof(float); }
  bool caching(const float* x, size_t n) const {
    return precision_ == Precision::bf16 && memo_ && x && n && allocated(x, n);
  }
  // x's entry with room for n values (not yet valid).
  Copy& entry(const float* x, size_t n) {
    Copy& c = copies_[x];
    if (c.in_place) {
      c.n = n, c.valid = false;  // kept(x, n) has checked n against its room
      return c;
    }
    if (c.cap < n) {
      if (c.p) STRATA_CUDA_CHECK(cudaFreeAsync(c.p, s()));
      c.p = nullptr, c.cap = 0;
      STRATA_CUDA_CHECK(cudaMallocAsync(&c.p, n * 2, s()));
      c.cap = n;
    }
    c.n = n, c.valid = false;
    longest_ = std::max(longest_, n * sizeof(float));
    return c;
  }
  // The bf16 copy of x[0, n), rounded now unless a valid one is kept; null where there is none to give (fp32,
  // or the cache off: matmul rounds into its scratch). A buffer kept in bf16 only has nothing to round from.
  const void* bf16_of(const float* x, size_t n) {
    if (kept(x, n)) {
      const Copy& c = copies_.at(x);
      STRATA_CHECK(c.valid && c.n == n, "cuda backend: ", n, " values kept in bf16 only (keep_bf16) are read before ",
                   "an op wrote them whole");
      return c.p;
    }
    if (!caching(x, n)) return nullptr;
    auto found = copies_.find(x);
    if (found != copies_.end() && found->second.valid && found->second.n == n) return found->second.p;
    Copy& c = entry(x, n);
    {
      auto t = prof_.time(K::round_to_bf16, 0, 6.0 * n);
      cuda::to_bf16(c.p, x, n, s());
    }
    c.valid = true;
    return c.p;
  }
  // Where an op producing out[0, n) (already marked written) also writes its bf16 copy (LayerNorm, the
  // activations, the fused attention and the cross-entropy's backward: their outputs are mostly GEMM operands
  // next): that copy's memory (a kept buffer's own), or null (no cache); after the op is queued, produced() makes
  // it valid.
  void* produce_copy(const float* out, size_t n) {
    return kept(out, n) || caching(out, n) ? entry(out, n).p : nullptr;
  }
  void produced(const float* out, const void* out16) {
    if (out16) copies_[out].valid = true;
  }
  // ---- buffers kept in bf16 only (keep_bf16): their copy is their only value ----
  bool keeps_bf16() const override { return keep_; }
  bool keeps_attention_bf16(int C, int H) const override { return keep_ && fused_ && tensor_cores(C, H); }
  // The buffer at p (room for n bf16 values, inside one alloc() block) holds its values as bf16 in place.
  void keep_bf16(const float* p, size_t n) override {
    if (!keep_ || !p || !n) return;
    STRATA_CHECK(allocated(p, (n + 1) / 2), "cuda backend: keep_bf16 of ", n, " values outside one allocation");
    kept_[p] = n * 2;
    Copy& c = copies_[p];
    if (c.p && !c.in_place) STRATA_CUDA_CHECK(cudaFreeAsync(c.p, s()));
    c = Copy{const_cast<float*>(p), 0, n, false, true};
    longest_ = std::max(longest_, n * 2);
  }
  // Whether x is a buffer kept in bf16 only (then n values must fit in it).
  bool kept(const float* x, size_t n) const {
    if (kept_.empty() || !x) return false;
    auto it = kept_.find(x);
    if (it == kept_.end()) return false;
    STRATA_CHECK(n * 2 <= it->second, "cuda backend: ", n, " values of a buffer kept in bf16 with room for ",
                 it->second / 2);
    return true;
  }
  // An op that reads or writes these ranges as fp32 fails on one that overlaps a kept range (kept ranges do not
  // overlap each other: the one starting at or below each range's start, and the next one, are all to check).
  void plain(const char* op, std::initializer_list<std::pair<const void*, size_t>> ranges) const {
    if (kept_.empty()) return;
    for (auto [p, bytes] : ranges) {
      if (!p || !bytes) continue;
      const auto lo = reinterpret_cast<uintptr_t>(p), hi = lo + bytes;
      auto it = kept_.upper_bound(p);
      bool overlap = it != kept_.end() && reinterpret_cast<uintptr_t>(it->first) < hi;
      if (it != kept_.begin()) {
        --it;
        overlap |= reinterpret_cast<uintptr_t>(it->first) + it->second > lo;
      }
      STRATA_CHECK(!overlap, "cuda backend: ", op, " reads or writes fp32 values of a buffer kept in bf16 only",
                   " (keep_bf16)");
    }
  }
  // Copies overlapping [p, p + bytes) are stale: marked so (their memory kept for the next rounding).
  void wrote_bytes(const void* p, size_t bytes) {
    if (copies_.empty() || !p || !bytes) return;
    const auto lo = reinterpret_cast<uintptr_t>(p), hi = lo + bytes;
    // A copy starting more than `longest_` bytes below lo cannot reach it.
    auto it = copies_.lower_bound(reinterpret_cast<const float*>(lo - std::min<uintptr_t>(lo, longest_)));
    for (; it != copies_.end() && reinterpret_cast<uintptr_t>(it->first) < hi; ++it)
      if (reinterpret_cast<uintptr_t>(it->first) + extent(it->second) > lo) it->second.valid = false;
  }
  // n values at p: floats, or bf16 where p is kept in bf16 only.
  void wrote(const float* p, size_t n) { wrote_bytes(p, n * (kept_.count(p) ? 2 : sizeof(float))); }
  void wrote_to_block_end(const void* p) {
    if (copies_.empty() || !p) return;
    auto it = allocs_.upper_bound(p);
    if (it != allocs_.begin()) {
      --it;
      const auto a = reinterpret_cast<uintptr_t>(it->first), x = reinterpret_cast<uintptr_t>(p);
      if (x < a + it->second) return wrote_bytes(p, a + it->second - x);
    }
    for (auto& [x, c] : copies_) c.valid = false;  // not this backend's memory: every copy is stale
  }
  // The allocation [p, p + bytes) goes: the copies of operands inside it are freed with it.
  void drop(const void* p, size_t bytes) {
    const auto lo = reinterpret_cast<uintptr_t>(p), hi = lo + bytes;
    for (auto k = kept_.lower_bound(p); k != kept_.end() && reinterpret_cast<uintptr_t>(k->first) < hi;)
      k = kept_.erase(k);
    for (auto it = copies_.lower_bound(static_cast<const float*>(p));
         it != copies_.end() && reinterpret_cast<uintptr_t>(it->first) < hi;) {
      if (it->second.p && !it->second.in_place) cudaFreeAsync(it->second.p, s());
      it = copies_.erase(it);
    }
  }
  // Whether [x, x + n) lies in one block from alloc(): only those are cached (other memory may be freed and
  // its address reused without this backend seeing it).
  bool allocated(const float* x, size_t n) const {
    auto it = allocs_.upper_bound(x);
    if (it == allocs_.begin()) return false;
    --it;
    const auto a = reinterpret_cast<uintptr_t>(it->first), b = reinterpret_cast<uintptr_t>(x);
    return b + n * sizeof(float) <= a + it->second;
  }

  Precision precision_;
  bool fused_;
  bool mma_;  // train.attention_kernel = "mma"
  std::string name_;
  Stream stream_;
  bool memo_;
  size_t live_bytes_ = 0, peak_bytes_ = 0;  // of alloc()'s buffers (peak_alloc_bytes)
  bool keep_;  // keep_bf16 honoured (bf16 with train.bf16_activations; with or without the cache)
  std::map<const void*, size_t> kept_;    // buffers kept in bf16 only: start → fp32 bytes
  std::map<const float*, Copy> copies_;  // by the fp32 operand's address
  size_t longest_ = 0;                   // bytes of the longest fp32 operand with a copy
  std::map<const void*, size_t> allocs_;  // alloc()'s blocks (start → bytes)
  cuda::Profiler prof_{stream_.s};        // log.gpu_profile
  double* defer_slots_ = nullptr;         // kDeferSlots device doubles: the deferred statistics' values
  std::map<std::vector<uint64_t>, SegmentTable> tables_;  // AdamW segment tables, by content
  std::vector<Deferred> deferred_;
  int used_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device, const GpuOptions& options) {
  return std::make_unique<CudaBackend>(device, options);
}
std::unique_ptr<Backend> make_cuda_backend(int device, Precision precision, bool fused_attention) {
  GpuOptions o;
  o.precision = precision, o.fused_attention = fused_attention;
  return make_cuda_backend(device, o);
}

}  // namespace strata
