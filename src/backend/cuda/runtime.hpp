// runtime.hpp: the CUDA build's entry points for code that is compiled without CUDA (main.cpp, tests):
// register_cuda_runtime() fills gpu_runtime() (backend/gpu_runtime.hpp) with the device queries, the CUDA
// backend's factory and, where the build has NCCL, the NCCL transport's factory. No CUDA header needed here.
#pragma once
#include <memory>

#include "backend/backend.hpp"

namespace strata {

// The CUDA backend (backend/cuda/backend.cu) on device `device`, which it makes the calling thread's current
// device, with its own non-blocking stream; GEMMs in options.precision; attention fused (log-sum-exp kept, no T×T
// matrix; in bf16 on WMMA or mma.sync tensor cores) or unfused (cuBLAS batched GEMMs, probabilities kept); in bf16
// the hidden activations kept in bf16 only or stored in fp32. Throws strata::Error if the device is unusable.
std::unique_ptr<Backend> make_cuda_backend(int device, const GpuOptions& options);
// The same with the other options at their defaults (tests).
std::unique_ptr<Backend> make_cuda_backend(int device, Precision precision, bool fused_attention = true);

// Fills gpu_runtime(): device_count, device_name, no_device_reason, make_backend = make_cuda_backend, and
// make_nccl_transport where the build has NCCL (left null otherwise). Idempotent.
void register_cuda_runtime();

}  // namespace strata
