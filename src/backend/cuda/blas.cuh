// blas.cuh: the per-thread cuBLAS handle and scratch buffers the GEMM-based ops share.
// Scratch is per host thread and per stream, reused in that stream's order. The handle belongs to the device
// current at this thread's first GEMM: set the device before any op.
#pragma once
#include <cublasLt.h>

#include "backend/cuda/common.cuh"
#include "backend/cuda/ops.hpp"

namespace strata::cuda {

cublasHandle_t blas(cudaStream_t s);  // this thread's handle, bound to stream s, fp32 math (no TF32)
cublasLtHandle_t blas_lt();            // this thread's cuBLASLt handle (the bf16 GEMMs)
// Scratch buffer `which` (0, 1 bf16 GEMM operands; 2 column sums, attention dP; 3 reduction partials; 4 attention
// D, entropy rows; 5–7 the CUDA backend's reduction slots and recomputed attention; 8 the cuBLASLt workspace) of
// stream s, at least `bytes`, grown (never shrunk) as needed.
void* scratch(int which, size_t bytes, cudaStream_t s);
void scratch_release(cudaStream_t s);  // frees stream s's scratch in stream order (before destroying s)

// flash_attention.cu's helpers, shared with flash_attention_tc.cu:
// opts `kernel` in to `bytes` of dynamic shared memory, or fails naming `op` and the head size hs;
void allow_dynamic_smem(const void* kernel, size_t bytes, const char* op, int hs);
// D[b,h,i] = Σ_d dO·O over head h's columns of row i, into scratch slot 4 of stream s (valid until its next use).
float* attention_row_dot(const float* dout, const float* out, int B, int Tn, int C, int H, cudaStream_t s,
                         const void* dout16 = nullptr, const void* out16 = nullptr);

}  // namespace strata::cuda
