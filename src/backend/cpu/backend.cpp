// backend.cpp: the CPU backend: host memory and the strata::cpu ops, exactly the calls the model made before
// the Backend interface existed (same bits), plus the gradient fold and the registry of the GPU runtime.
#include "backend/backend.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/gpu_runtime.hpp"
#include "core/error.hpp"

namespace strata {

Precision precision_from_name(const std::string& name) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  fail("unknown precision \"", name, "\" (fp32 | bf16)");
}

GpuRuntime& gpu_runtime() {
  static GpuRuntime r;
  return r;
}

namespace {

using namespace cpu;

class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  bool host_memory() const override { return true; }
  bool keeps_attention_probs() const override { return true; }

  void* alloc(size_t bytes) override {
    void* p = std::calloc(bytes, 1);
    STRATA_CHECK(p || bytes == 0, "cpu backend: cannot allocate ", bytes, " bytes");
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void zero(void* p, size_t bytes) override { std::memset(p, 0, bytes); }
  void synchronize() override {}

  void matmul_forward(float* out, const float* in, const float* w, const float* b, int N, int IC, int OC) override {
    cpu::matmul_forward(out, in, w, b, N, IC, OC);
  }
  void matmul_backward_input(float* din, const float* dout, const float* w, int N, int IC, int OC,
                             bool accumulate) override {
    cpu::matmul_backward_input(din, dout, w, N, IC, OC, accumulate);
  }
  void matmul_backward_weight(float* dw, float* db, const float* dout, const float* in, int N, int IC,
                              int OC) override {
    cpu::matmul_backward_weight(dw, db, dout, in, N, IC, OC);
  }
  void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* gain, const float* bias,
                         int N, int C, double eps) override {
    cpu::layernorm_forward(out, mean, rstd, in, gain, bias, N, C, eps);
  }
  void layernorm_backward(float* din, float* dgain, float* dbias, const float* dout, const float* in,
                          const float* gain, const float* mean, const float* rstd, int N, int C,
                          bool accumulate) override {
    cpu::layernorm_backward(din, dgain, dbias, dout, in, gain, mean, rstd, N, C, accumulate);
  }
  void attention_forward(float* out, float* probs, float*, const float* qkv, int B, int T, int C, int H) override {
    cpu::attention_forward(out, probs, qkv, B, T, C, H);
  }
  void attention_backward(float* dqkv, const float* dout, const float*, const float* probs, const float*,
                          const float* qkv, int B, int T, int C, int H) override {
    cpu::attention_backward(dqkv, dout, probs, qkv, B, T, C, H);
  }
  void activation_forward(float* out, const float* in, size_t n, Activation a) override {
    cpu::activation_forward(out, in, n, a);
  }
  void activation_backward(float* din, const float* dout, const float* in, size_t n, Activation a) override {
    cpu::activation_backward(din, dout, in, n, a);
  }
  void crossentropy_forward(float* losses, const float* logits, const int32_t* targets, int N, int V) override {
    cpu::crossentropy_forward(losses, logits, targets, N, V);
  }
  void crossentropy_backward(float* dlogits, const float* logits, const int32_t* targets, int N, int V,
                             float scale) override {
    cpu::crossentropy_backward(dlogits, logits, targets, N, V, scale);
  }
  void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T,
                         int C) override {
    cpu::embedding_forward(out, tokens, wte, wpe, B, T, C);
  }
  void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T,
                          int C) override {
    cpu::embedding_backward(dwte, dwpe, dout, tokens, B, T, C);
  }
  void residual_forward(float* out, const float* x, float alpha, const float* g, size_t n) override {
    cpu::residual_forward(out, x, alpha, g, n);
  }
  void scale_copy(float* out, const float* in, float alpha, size_t n, bool accumulate) override {
    cpu::scale_copy(out, in, alpha, n, accumulate);
  }

  void fold(double* acc, float* g, size_t n) override {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
      acc[i] += double(g[i]);
      g[i] = 0.0f;
    }
  }
  void unfold(float* g, const double* acc, size_t n) override {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) g[i] = float(acc[i]);
  }
  void adamw_update(float* p, float* m, float* v, const float* g, size_t n, const AdamWParams& hp,
                    bool decay) override {
    cpu::adamw_update(p, m, v, g, n, hp, decay);
  }

  double sum(const float* x, size_t n) override {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
  }
  double sum_squares(const float* x, size_t n) override { return cpu::sum_squares(x, n); }
  double stats_sumsq(const float* x, size_t n) override { return cpu::stats_sumsq(x, n); }
  double stats_maxabs(const float* x, size_t n) override { return cpu::stats_maxabs(x, n); }
  double stats_sqdiff(const float* a, const float* b, size_t n) override { return cpu::stats_sqdiff(a, b, n); }
  double attention_entropy(const float* probs, const float*, int B, int T, int, int H) override {
    return cpu::attention_entropy(probs, B * H * T, T);
  }
  bool all_finite(const float* x, size_t n) override {
    bool bad = false;
#pragma omp parallel for reduction(|| : bad) schedule(static)
    for (size_t i = 0; i < n; i++) bad = bad || !std::isfinite(x[i]);
    return !bad;
  }
};

// The CPU backend posing as a device: the model keeps its buffers apart from the host vectors and copies
// between them as on a GPU (push/pull, staged transfers), so the CPU tests cover that bookkeeping.
class CpuSeparateBackend final : public CpuBackend {
 public:
  std::string name() const override { return "cpu (separate memory)"; }
  bool host_memory() const override { return false; }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend b;
  return b;
}

Backend& cpu_separate_memory_backend() {
  static CpuSeparateBackend b;
  return b;
}

}  // namespace strata
