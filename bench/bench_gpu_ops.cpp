// bench_gpu_ops.cpp: GPU op throughput for the shapes of one block of the d = 1024, L = 24, T = 1024 model
// (issue 6's MFU target), fp32, bf16 (operands rounded at every call) and bf16 cached (operands rounded once, as
// the CUDA backend's operand cache can give them): the four GEMMs forward (with its bias) and backward (TFLOP/s,
// and % of the bf16 dense peak given by --peak-tflops or looked up from the device name), and causal attention unfused (probs kept)
// against fused (no T×T matrix; fp32, and on bf16 tensor cores: WMMA, and the register-resident mma.sync kernels
// of train.attention_kernel = "mma", each forward alone and forward + backward), with the memory each needs. Run by
// tests/gpu/check.sh; prints one line per op.
// Usage: bench_gpu_ops [--batch 8] [--seq 1024] [--d 1024] [--heads 16] [--peak-tflops X]
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "backend/cuda/ops.hpp"
#include "train/peak.hpp"

using namespace strata;

namespace {

double time_ms(const std::function<void()>& f, int reps = 10) {
  f();  // warm-up (cuBLAS heuristics, scratch growth)
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  for (int i = 0; i < reps; i++) f();
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / reps;
}

}  // namespace

int main(int argc, char** argv) {
  int B = 8, T = 1024, d = 1024, H = 16;
  double peak = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batch")) B = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seq")) T = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--d")) d = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--heads")) H = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--peak-tflops")) peak = std::atof(argv[i + 1]);
  }
  if (cuda::device_count() == 0) {
    std::printf("bench_gpu_ops: no CUDA device (%s)\n", cuda::no_device_reason().c_str());
    return 77;
  }
  cuda::set_device(0);
  const std::string name = cuda::device_name(0);
  if (peak == 0) peak = gpu_bf16_peak_gflops(name) / 1e3;  // TFLOP/s
  const int N = B * T, dffn = 4 * d;
  std::printf("bench_gpu_ops on %s: B=%d T=%d d=%d H=%d (N=%d tokens), bf16 dense peak %.0f TFLOP/s\n", name.c_str(),
              B, T, d, H, N, peak);
  // Operands sized for the largest shape: activations [N, d_ffn], weights [d_ffn, d] (≥ d·3d).
  cuda::Buffer x(size_t(N) * dffn * 4), y(size_t(N) * dffn * 4), w(size_t(dffn) * d * 4), g(size_t(dffn) * d * 4),
      bias(size_t(dffn) * 4);
  x.fill_bytes(0);
  w.fill_bytes(0);
  bias.fill_bytes(0);
  // bf16 copies made once: the "bf16 cached" rows time the GEMMs as the CUDA backend's operand cache runs them at
  // best (no rounding pass); the "bf16" rows round both operands at every call.
  cuda::Buffer x16(size_t(N) * dffn * 2), y16(size_t(N) * dffn * 2), w16(size_t(dffn) * d * 2);
  cuda::to_bf16(x16.as<void>(), x.as<float>(), size_t(N) * dffn);
  cuda::to_bf16(y16.as<void>(), y.as<float>(), size_t(N) * dffn);
  cuda::to_bf16(w16.as<void>(), w.as<float>(), size_t(dffn) * d);
  struct Shape {
    const char* name;
    int IC, OC;
  } shapes[] = {{"qkv", d, 3 * d}, {"attn out", d, d}, {"ffn up", d, dffn}, {"ffn down", dffn, d}};
  for (int mode = 0; mode < 3; mode++) {  // fp32, bf16, bf16 cached
    const auto p = mode ? cuda::Precision::bf16 : cuda::Precision::fp32;
    const char* label = mode == 0 ? "fp32" : mode == 1 ? "bf16" : "bf16 cached";
    const bool pre = mode == 2;
    const size_t lt0 = cuda::lt_gemm_count();
    double total_flop = 0, total_ms = 0;
    for (const Shape& s : shapes) {
      const double flop = 2.0 * N * s.IC * s.OC * 3;  // forward (with its bias), input gradient, weight gradient
      const double ms = time_ms([&] {
        cuda::matmul_forward(y.as<float>(), x.as<float>(), w.as<float>(), bias.as<float>(), N, s.IC, s.OC, p, 0,
                             pre ? x16.as<void>() : nullptr, pre ? w16.as<void>() : nullptr);
        cuda::matmul_backward_input(x.as<float>(), y.as<float>(), w.as<float>(), N, s.IC, s.OC, false, p, 0,
                                    pre ? y16.as<void>() : nullptr, pre ? w16.as<void>() : nullptr);
        cuda::matmul_backward_weight(g.as<float>(), nullptr, y.as<float>(), x.as<float>(), N, s.IC, s.OC, p, 0,
                                     pre ? y16.as<void>() : nullptr, pre ? x16.as<void>() : nullptr);
      });
      total_flop += flop, total_ms += ms;
      std::printf("gemm %-11s %-9s [%d,%d]x[%d,%d] fwd+bwd %8.3f ms %7.1f TFLOP/s %5.1f%% of peak\n", label, s.name, N,
                  s.IC, s.IC, s.OC, ms, flop / ms / 1e9, peak > 0 ? 100 * flop / ms / 1e9 / peak : 0.0);
    }
    std::printf("gemm %-11s all four: %7.1f TFLOP/s, %5.1f%% of the bf16 peak (the block's GEMMs alone)%s\n", label,
                total_flop / total_ms / 1e9, peak > 0 ? 100 * total_flop / total_ms / 1e9 / peak : 0.0,
                mode && cuda::lt_gemm_count() == lt0 ? "; cuBLASLt offered no algorithm: cublasGemmEx" : "");
  }
  // The feed-forward's GEMMs whose output the backend keeps in bf16 only (keep_bf16): ffn up's forward (bias in the
  // epilogue) and ffn down's input gradient, fp32 output against bf16 output, operands cached.
  for (bool out16 : {false, true}) {
    const size_t lt0 = cuda::lt_gemm_count();
    const double flop = 2.0 * 2 * N * d * dffn;
    size_t calls = 0;
    const double ms = time_ms([&] {
      calls += 2;
      cuda::matmul_forward(out16 ? nullptr : y.as<float>(), x.as<float>(), w.as<float>(), bias.as<float>(), N, d, dffn,
                           cuda::Precision::bf16, 0, x16.as<void>(), w16.as<void>(), out16 ? y16.as<void>() : nullptr);
      cuda::matmul_backward_input(out16 ? nullptr : y.as<float>(), x.as<float>(), w.as<float>(), N, dffn, d, false,
                                  cuda::Precision::bf16, 0, x16.as<void>(), w16.as<void>(),
                                  out16 ? y16.as<void>() : nullptr);
    });
    std::printf("gemm ffn up fwd + ffn down input grad, %s output: %8.3f ms %7.1f TFLOP/s (%zu of %zu GEMMs through "
                "cuBLASLt, the rest cublasGemmEx)\n", out16 ? "bf16" : "fp32", ms, flop / ms / 1e9,
                cuda::lt_gemm_count() - lt0, calls);
  }
  // Attention: unfused keeps probs [B,H,T,T]; fused keeps lse [B,H,T].
  const size_t probs = size_t(B) * H * T * T;
  cuda::Buffer qkv(size_t(N) * 3 * d * 4), out(size_t(N) * d * 4), dout(size_t(N) * d * 4), dqkv(size_t(N) * 3 * d * 4),
      lse(size_t(B) * H * T * 4);
  qkv.fill_bytes(0);
  dout.fill_bytes(0);
  const double flop = 4.0 * B * T * T * d / 2 * 3.5;  // causal half of QKᵀ and PV, backward ≈ 2.5× forward
  double ms_f = time_ms([&] {
    cuda::attention_fused_forward(out.as<float>(), lse.as<float>(), qkv.as<float>(), B, T, d, H);
    cuda::attention_fused_backward(dqkv.as<float>(), dout.as<float>(), out.as<float>(), lse.as<float>(),
                                   qkv.as<float>(), B, T, d, H);
  }, 3);
  std::printf("attention fused   fwd+bwd %8.3f ms %7.1f TFLOP/s, keeps %8.1f MiB (lse)\n", ms_f, flop / ms_f / 1e9,
              double(B) * H * T * 4 / 1048576);
  // The bf16 mode's fused attention: forward alone (2 of the 7 causal products' FLOP), then forward + backward.
  const double flop_fwd = 4.0 * B * T * T * d / 2;
  auto tensor_cores = [&](const char* kind, auto fwd, auto bwd) {
    // fp32 qkv in and dqkv out, no bf16 copies (the function pointers carry no default arguments)
    const double ms_fwd = time_ms([&] {
      fwd(out.as<float>(), lse.as<float>(), qkv.as<float>(), B, T, d, H, nullptr, nullptr, nullptr);
    }, 3);
    const double ms_t = time_ms([&] {
      fwd(out.as<float>(), lse.as<float>(), qkv.as<float>(), B, T, d, H, nullptr, nullptr, nullptr);
      bwd(dqkv.as<float>(), dout.as<float>(), out.as<float>(), lse.as<float>(), qkv.as<float>(), B, T, d, H, nullptr,
          nullptr, nullptr, nullptr, nullptr);
    }, 3);
    std::printf("attention fused bf16 tensor cores %-4s fwd %8.3f ms %7.1f TFLOP/s | fwd+bwd %8.3f ms %7.1f TFLOP/s, "
                "%5.1f%% of the bf16 peak\n", kind, ms_fwd, flop_fwd / ms_fwd / 1e9, ms_t, flop / ms_t / 1e9,
                peak > 0 ? 100 * flop / ms_t / 1e9 / peak : 0.0);
  };
  if (cuda::attention_tc_supported(d, H))
    tensor_cores("wmma", cuda::attention_tc_forward, cuda::attention_tc_backward);
  else
    std::printf("attention fused bf16 tensor cores wmma: head size %d not supported (16, 32, 64, 128)\n", d / H);
  if (cuda::attention_mma_supported(d, H))
    tensor_cores("mma", cuda::attention_mma_forward, cuda::attention_mma_backward);
  else
    std::printf("attention fused bf16 tensor cores mma: head size %d not supported (16, 32, 64)\n", d / H);
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  if (probs * 4 < free_b / 2) {
    cuda::Buffer P(probs * 4);
    double ms_u = time_ms([&] {
      cuda::attention_forward(out.as<float>(), P.as<float>(), qkv.as<float>(), B, T, d, H);
      cuda::attention_backward(dqkv.as<float>(), dout.as<float>(), P.as<float>(), qkv.as<float>(), B, T, d, H);
    }, 3);
    std::printf("attention unfused fwd+bwd %8.3f ms %7.1f TFLOP/s, keeps %8.1f MiB (probs)\n", ms_u, flop / ms_u / 1e9,
                double(probs) * 4 / 1048576);
  } else {
    std::printf("attention unfused: probs of %.1f GiB do not fit\n", double(probs) * 4 / (1 << 30));
  }
  return 0;
}
