// blas.cuh: the per-thread cuBLAS handle and scratch buffers the GEMM-based ops share.
// Scratch is per host thread and per stream, reused in that stream's order. The handle belongs to the device
// current at this thread's first GEMM: set the device before any op.
#pragma once
#include "backend/cuda/common.cuh"
#include "backend/cuda/ops.hpp"

namespace strata::cuda {

cublasHandle_t blas(cudaStream_t s);  // this thread's handle, bound to stream s, fp32 math (no TF32)
// Scratch buffer `which` (0, 1, 2) of stream s, at least `bytes`, grown (never shrunk) as needed.
void* scratch(int which, size_t bytes, cudaStream_t s);
void scratch_release(cudaStream_t s);  // frees stream s's scratch in stream order (before destroying s)

}  // namespace strata::cuda
