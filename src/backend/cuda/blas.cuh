// blas.cuh: the per-thread cuBLAS handle and scratch buffers the GEMM-based ops share.
// Scratch is per host thread and reused in stream order: one thread drives one stream.
#pragma once
#include "backend/cuda/common.cuh"
#include "backend/cuda/ops.hpp"

namespace strata::cuda {

cublasHandle_t blas(cudaStream_t s);  // this thread's handle, bound to stream s, fp32 math (no TF32)
// Scratch buffer `which` (0, 1, 2) of at least `bytes`, grown (never shrunk) as needed.
void* scratch(int which, size_t bytes);

}  // namespace strata::cuda
