// mma.cuh: the warp-wide bf16 tensor-core product of the register-resident attention kernels
// (flash_attention_mma.cu), mma.sync m16n8k16 with fp32 accumulation, whose fragment layout the PTX ISA
// specifies (unlike WMMA's), so a kernel can apply a per-row softmax to an accumulator in registers.
// Fragments (groupID g = lane / 4, threadID_in_group t = lane % 4; a register's low 16 bits hold the lower
// column or row index):
//   A 16×16 (row):  a[0] = A[g][2t, 2t+1]   a[1] = A[g+8][2t, 2t+1]   a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
//   B 16×8 (col):   b0 = B[2t, 2t+1][g]     b1 = B[2t+8, 2t+9][g]
//   C, D 16×8:      d[0], d[1] = D[g][2t, 2t+1]   d[2], d[3] = D[g+8][2t, 2t+1]
// On the emulator (tests/gpu/emu) the same function gathers the warp's registers with shuffles.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace strata::cuda {

// d += A·B for the fragments above (all 32 lanes of the warp call it together).
__device__ inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef STRATA_CUDA_EMULATED_MMA
  ::emu::mma_bf16_16816(d, a, b0, b1);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// Two bf16 values next to each other in memory (4-byte aligned) as one fragment register.
__device__ inline uint32_t ld_pair(const __nv_bfloat16* p) { return *reinterpret_cast<const uint32_t*>(p); }

// lo and hi rounded to bf16 (to nearest) and packed: lo in the low 16 bits.
__device__ inline uint32_t pack_bf16(float lo, float hi) {
  return uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
         uint32_t(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16;
}

}  // namespace strata::cuda
