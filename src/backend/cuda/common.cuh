// common.cuh: error checks that turn CUDA and cuBLAS failures into one-line strata::Error messages, and the
// launch helpers the kernels share.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "core/error.hpp"

#define STRATA_CUDA_CHECK(call)                                                                         \
  do {                                                                                                  \
    cudaError_t e_ = (call);                                                                            \
    if (e_ != cudaSuccess) ::strata::fail(__FILE__, ":", __LINE__, ": ", #call, ": ", cudaGetErrorString(e_)); \
  } while (0)

#define STRATA_CUBLAS_CHECK(call)                                                                       \
  do {                                                                                                  \
    cublasStatus_t e_ = (call);                                                                         \
    if (e_ != CUBLAS_STATUS_SUCCESS)                                                                    \
      ::strata::fail(__FILE__, ":", __LINE__, ": ", #call, ": ", cublasGetStatusString(e_));            \
  } while (0)

// After a kernel launch: configuration errors surface here, faults at the next synchronising call.
#define STRATA_CUDA_LAUNCHED() STRATA_CUDA_CHECK(cudaGetLastError())

namespace strata::cuda {

constexpr int kWarp = 32;

inline unsigned blocks_for(size_t n, int threads) { return unsigned((n + threads - 1) / threads); }

// out[i] = v where out is given, and its bf16 rounding (as to_bf16) into out16 where that is given (a buffer the
// CUDA backend keeps in bf16 only has no fp32 out).
__device__ inline void store(float* out, void* out16, size_t i, float v) {
  if (out) out[i] = v;
  if (out16) static_cast<__nv_bfloat16*>(out16)[i] = __float2bfloat16_rn(v);
}
// A matrix in device memory read as bf16: fp32 values rounded to nearest as they are read, or, where f is null,
// bf16 values as they are (a buffer the CUDA backend keeps in bf16 only). The tensor-core attention's qkv.
struct Bf16Src {
  const float* f = nullptr;
  const __nv_bfloat16* h = nullptr;
  __host__ __device__ Bf16Src(const float* f_ = nullptr, const void* h_ = nullptr)
      : f(f_), h(static_cast<const __nv_bfloat16*>(h_)) {}
  __host__ __device__ Bf16Src operator+(size_t o) const { return Bf16Src(f ? f + o : nullptr, h ? h + o : nullptr); }
  __device__ __nv_bfloat16 operator[](size_t i) const { return f ? __float2bfloat16_rn(f[i]) : h[i]; }
};
// x[i], or the bf16 value x16[i] where x is null (a buffer kept in bf16 only).
__device__ inline float load(const float* x, const void* x16, size_t i) {
  return x ? x[i] : __bfloat162float(static_cast<const __nv_bfloat16*>(x16)[i]);
}

__device__ inline float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace strata::cuda
