// selftest_kernels.cu: the kernels of the CUDA emulator's self-test (test_emu.cpp), written as ordinary CUDA
// (nvcc compiles it as is) and run on the CPU through translate.py + cuda_emu.hpp + emu.cpp. Each host wrapper
// uploads its inputs, launches, downloads the outputs and returns the launch's cudaGetLastError() (emu_mark:
// cudaPeekAtLastError()); the test compares the outputs with values computed on the host. The kernels:
//   - block_sum: a 256-thread shared-memory tree reduction with __syncthreads on a 2D grid;
//   - write_ids: blockIdx/threadIdx/blockDim/gridDim on a 3D grid of 3D blocks;
//   - warp_shuffles: __shfl_xor_sync butterflies, __shfl_down_sync past the end of a warp or width segment,
//     __shfl_sync broadcasts, on full warps and on the partial last warp of a 40-thread block;
//   - smem_poison: dynamic shared memory (two extern __shared__ views of it) is NaN bytes before the first
//     write in every block, then shared by the block's threads;
//   - mark: a trivial kernel for the launch-configuration errors and for the host-pointer death test;
//   - divergent_barrier: half a warp at __syncthreads, the other half in a shuffle (the deadlock test);
//   - wmma_tile: nvcuda::wmma bf16 16x16x16 mma with row/col-major operands, accumulators loaded and stored in
//     both memory layouts, an element-wise loop over a fragment;
//   - copy_floats: a copy on a given stream, launched behind queued work (the stream-order tests).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstddef>
#include <vector>

using namespace nvcuda;

namespace {

template <class T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d), h.size() * sizeof(T));
  cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
template <class T>
T* poisoned(size_t n) {  // every byte 0xff: -1 as an integer, NaN as a float
  T* d = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d), n * sizeof(T));
  cudaMemset(d, 0xff, n * sizeof(T));
  return d;
}
template <class T>
void to_host(std::vector<T>& h, const T* d) {
  cudaMemcpy(h.data(), d, h.size() * sizeof(T), cudaMemcpyDeviceToHost);
}

// ---- 1. tree reduction, indices ----
constexpr int kSumThreads = 256;

__global__ void block_sum(const int* in, long long* out) {
  __shared__ long long part[kSumThreads];
  const int block = blockIdx.y * gridDim.x + blockIdx.x;
  const int t = threadIdx.x;
  part[t] = in[block * blockDim.x + t];
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (t < s) part[t] += part[t + s];
    __syncthreads();
  }
  if (t == 0) out[block] = part[0];
}

// Thread n of the grid (blocks in x, y, z order, threads in x, y, z order within a block) writes its 12
// coordinates to out[12n ...].
__global__ void write_ids(int* out) {
  const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  const int n = block * (blockDim.x * blockDim.y * blockDim.z) + thread;
  int* o = out + 12 * n;
  o[0] = blockIdx.x, o[1] = blockIdx.y, o[2] = blockIdx.z;
  o[3] = threadIdx.x, o[4] = threadIdx.y, o[5] = threadIdx.z;
  o[6] = blockDim.x, o[7] = blockDim.y, o[8] = blockDim.z;
  o[9] = gridDim.x, o[10] = gridDim.y, o[11] = gridDim.z;
}

// ---- 2. warp shuffles ----
// out[8t ...] for thread t of one block, v = in[t]:
//   0: butterfly sum over the warp with __shfl_xor_sync (masks 16..1)      (full warps only, see below)
//   1: __shfl_down_sync(v, 3)                       (lanes 29..31: their own v)
//   2: __shfl_sync(v, 5)                            (lane 5's v)
//   3: __shfl_down_sync(v, 5, width 16)             (lanes 11..15 of each 16-lane segment: their own v)
//   4: __shfl_xor_sync butterfly sum over width 8   (the sum of the lane's 8-lane segment)
//   5: __shfl_sync(v, 2, width 8)                   (lane 2 of the lane's 8-lane segment)
//   6: __shfl_down_sync(v, 1) of a double 0.5 + v   (a 64-bit value)
//   7: five consecutive __shfl_sync rotations by one lane: in[warp + (lane + 5) mod 32] on full warps
// The partial warp (lanes 32..39 of a 40-thread block) passes mask 0xff, as CUDA code must; its lanes past the
// end of the block do not exist, and the emulator gives a lane its own value for them (slots 0, 1, 7 there).
__global__ void warp_shuffles(const int* in, double* out) {
  const int t = threadIdx.x, lane = t % warpSize;
  const int warp_lanes = min(int(blockDim.x) - (t - lane), warpSize);
  const unsigned mask = warp_lanes == 32 ? 0xffffffffu : (1u << warp_lanes) - 1u;
  const int v = in[t];
  double* o = out + 8 * t;
  int s = v;
  for (int m = 16; m > 0; m /= 2) s += __shfl_xor_sync(mask, s, m);
  o[0] = s;
  o[1] = __shfl_down_sync(mask, v, 3);
  o[2] = __shfl_sync(mask, v, 5);
  o[3] = __shfl_down_sync(mask, v, 5, 16);
  int s8 = v;
  for (int m = 4; m > 0; m /= 2) s8 += __shfl_xor_sync(mask, s8, m, 8);
  o[4] = s8;
  o[5] = __shfl_sync(mask, v, 2, 8);
  o[6] = __shfl_down_sync(mask, 0.5 + v, 1u);
  int r = v;
  for (int i = 0; i < 5; i++) r = __shfl_sync(mask, r, (lane + 1) % warpSize);
  o[7] = r;
}

// ---- 3. dynamic shared memory ----
// out[3t ...] for thread t of block b (blockDim.x threads, as many floats of dynamic shared memory):
//   0: 1 if the float at (t + 7) mod n, read before any write, is NaN; + 2 if its bits are 0xffffffff
//   1: after every thread wrote sm[t] = 1000b + t: sm[(t + 1) mod n] (another thread's value)
//   2: sm[0] after thread 0 wrote the bits of pi (0x40490fdb) through the second view, sm_bits (same memory)
__global__ void smem_poison(float* out) {
  extern __shared__ float sm[];
  extern __shared__ __align__(16) unsigned int sm_bits[];
  const int t = threadIdx.x, n = blockDim.x;
  const int j = (t + 7) % n;
  const float before = sm[j];
  const unsigned before_bits = sm_bits[j];
  __syncthreads();
  sm[t] = 1000.0f * blockIdx.x + t;
  __syncthreads();
  const float other = sm[(t + 1) % n];
  __syncthreads();
  if (t == 0) sm_bits[0] = 0x40490fdbu;
  __syncthreads();
  float* o = out + 3 * (blockIdx.x * n + t);
  o[0] = (isnan(before) ? 1.0f : 0.0f) + (before_bits == 0xffffffffu ? 2.0f : 0.0f);
  o[1] = other;
  o[2] = sm[0];
}

// ---- 4, 6. launch errors, death tests ----
// Every thread of the grid sets its own flag (flags: one int per thread, blocks in x, y, z order).
__global__ void mark(int* flags) {
  const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  flags[size_t(block) * (blockDim.x * blockDim.y * blockDim.z) + thread] = 1;
}

// In block `bad_block` only: lanes 0..15 of warp 0 wait at __syncthreads while lanes 16..31 wait in a full-warp
// shuffle: neither barrier can complete (a GPU may hang; the emulator aborts).
__global__ void divergent_barrier(int* out, int bad_block) {
  int v = threadIdx.x;
  if (int(blockIdx.x) == bad_block) {
    if (threadIdx.x < 16) __syncthreads();
    else v = __shfl_xor_sync(0xffffffffu, v, 1);
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// ---- 7. wmma ----
// One warp. a: 16x16 row-major (ldm lda); b: 16x16 in both layouts (col-major with ldm ldb: element (k, n) at
// b_col[n*ldb + k]; row-major: b_row[k*ldb + n]); c: 16x16 floats in both layouts (ldm ldc).
//   d_col = 0.5 * (a * b_col + c)           c loaded mem_row_major, stored mem_col_major (ldm ldd)
//   d_row = a * b_row + (a * b_row + c)     c loaded mem_col_major, stored mem_col_major (ldm ldd)
//   d_zero = a * b_row from a zero fill     stored mem_row_major (ldm ldd)
__global__ void wmma_tile(const __nv_bfloat16* a, int lda, const __nv_bfloat16* b_col, const __nv_bfloat16* b_row,
                          int ldb, const float* c_row, const float* c_col, int ldc, float* d_col, float* d_row,
                          float* d_zero, int ldd) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb_col;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb_row;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(fa, a, lda);
  wmma::load_matrix_sync(fb_col, b_col, ldb);
  wmma::load_matrix_sync(fb_row, b_row, ldb);

  wmma::load_matrix_sync(acc, c_row, ldc, wmma::mem_row_major);
  wmma::mma_sync(acc, fa, fb_col, acc);
  for (int i = 0; i < acc.num_elements; i++) acc.x[i] *= 0.5f;
  wmma::store_matrix_sync(d_col, acc, ldd, wmma::mem_col_major);

  wmma::load_matrix_sync(acc, c_col, ldc, wmma::mem_col_major);
  wmma::mma_sync(acc, fa, fb_row, acc);
  wmma::mma_sync(acc, fa, fb_row, acc);
  wmma::store_matrix_sync(d_row, acc, ldd, wmma::mem_col_major);

  wmma::fill_fragment(acc, 0.0f);
  wmma::mma_sync(acc, fa, fb_row, acc);
  wmma::store_matrix_sync(d_zero, acc, ldd, wmma::mem_row_major);
}

}  // namespace

// ---- host wrappers (declared again in test_emu.cpp) ----

// in: gx*gy*256 values; sums: gx*gy block sums, block (x, y) at y*gx + x.
cudaError_t emu_block_sum(const std::vector<int>& in, int gx, int gy, std::vector<long long>& sums) {
  int* d_in = to_device(in);
  long long* d_out = poisoned<long long>(size_t(gx) * gy);
  block_sum<<<dim3(gx, gy), kSumThreads>>>(d_in, d_out);
  const cudaError_t e = cudaGetLastError();
  sums.assign(size_t(gx) * gy, 0);
  to_host(sums, d_out);
  cudaFree(d_in);
  cudaFree(d_out);
  return e;
}

// ids: 12 ints per thread of the grid (write_ids); bytes never written stay 0xff (-1).
cudaError_t emu_write_ids(dim3 grid, dim3 block, std::vector<int>& ids) {
  const size_t n = size_t(grid.x) * grid.y * grid.z * block.x * block.y * block.z * 12;
  int* d = poisoned<int>(n);
  write_ids<<<grid, block>>>(d);
  const cudaError_t e = cudaGetLastError();
  ids.assign(n, 0);
  to_host(ids, d);
  cudaFree(d);
  return e;
}

// One block of in.size() threads; out: 8 doubles per thread (warp_shuffles).
cudaError_t emu_warp_shuffles(const std::vector<int>& in, std::vector<double>& out) {
  int* d_in = to_device(in);
  double* d_out = poisoned<double>(in.size() * 8);
  warp_shuffles<<<1, unsigned(in.size())>>>(d_in, d_out);
  const cudaError_t e = cudaGetLastError();
  out.assign(in.size() * 8, 0);
  to_host(out, d_out);
  cudaFree(d_in);
  cudaFree(d_out);
  return e;
}

// blocks blocks of threads threads with threads floats of dynamic shared memory; out: 3 floats per thread.
cudaError_t emu_smem_poison(int blocks, int threads, std::vector<float>& out) {
  const size_t n = size_t(blocks) * threads * 3;
  float* d = poisoned<float>(n);
  smem_poison<<<blocks, threads, threads * sizeof(float)>>>(d);
  const cudaError_t e = cudaGetLastError();
  out.assign(n, 0);
  to_host(out, d);
  cudaFree(d);
  return e;
}

// Launches mark with grid, block and smem bytes of dynamic shared memory; *threads_run: how many threads of the
// grid set their flag. Returns cudaPeekAtLastError(): the launch's error stays for the caller to read.
cudaError_t emu_mark(dim3 grid, dim3 block, size_t smem, long long* threads_run) {
  const size_t n = size_t(grid.x) * grid.y * grid.z * block.x * block.y * block.z;
  int* d = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d), n * sizeof(int));
  cudaMemset(d, 0, n * sizeof(int));
  if (smem > 48 * 1024)  // opt in, as a GPU requires beyond 48 KiB
    cudaFuncSetAttribute(reinterpret_cast<const void*>(mark), cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  mark<<<grid, block, smem>>>(d);
  const cudaError_t e = cudaPeekAtLastError();
  std::vector<int> h(n);
  to_host(h, d);
  cudaFree(d);
  *threads_run = 0;
  for (int f : h) *threads_run += f;
  return e;
}

// Passes a host pointer to a kernel (a GPU would fault; the emulator aborts before launching).
cudaError_t emu_mark_host_pointer() {
  static int host_flags[32];
  mark<<<1, 32>>>(host_flags);
  return cudaGetLastError();
}

// Two blocks of 64 threads, block bad_block deadlocks unless bad_block < 0; out: the 128 values written.
cudaError_t emu_divergent_barrier(int bad_block, std::vector<int>& out) {
  int* d = poisoned<int>(128);
  divergent_barrier<<<2, 64>>>(d, bad_block);
  const cudaError_t e = cudaGetLastError();
  out.assign(128, 0);
  to_host(out, d);
  cudaFree(d);
  return e;
}

// The wmma tile (wmma_tile) on float inputs converted to bf16 here (round to nearest even, as the host reference
// in the test does); lda, ldb, ldc, ldd as in the kernel; d_*: 16 columns (d_zero: rows) of ldd floats each.
cudaError_t emu_wmma(const std::vector<float>& a, int lda, const std::vector<float>& b_col,
                     const std::vector<float>& b_row, int ldb, const std::vector<float>& c_row,
                     const std::vector<float>& c_col, int ldc, int ldd, std::vector<float>& d_col,
                     std::vector<float>& d_row, std::vector<float>& d_zero) {
  auto bf16 = [](const std::vector<float>& v) {
    std::vector<__nv_bfloat16> h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = __float2bfloat16(v[i]);
    return h;
  };
  __nv_bfloat16* da = to_device(bf16(a));
  __nv_bfloat16* dbc = to_device(bf16(b_col));
  __nv_bfloat16* dbr = to_device(bf16(b_row));
  float* dcr = to_device(c_row);
  float* dcc = to_device(c_col);
  const size_t nd = size_t(16) * ldd;
  float *dd_col = poisoned<float>(nd), *dd_row = poisoned<float>(nd), *dd_zero = poisoned<float>(nd);
  wmma_tile<<<1, 32>>>(da, lda, dbc, dbr, ldb, dcr, dcc, ldc, dd_col, dd_row, dd_zero, ldd);
  const cudaError_t e = cudaGetLastError();
  d_col.assign(nd, 0), d_row.assign(nd, 0), d_zero.assign(nd, 0);
  to_host(d_col, dd_col);
  to_host(d_row, dd_row);
  to_host(d_zero, dd_zero);
  for (void* p : {(void*)da, (void*)dbc, (void*)dbr, (void*)dcr, (void*)dcc, (void*)dd_col, (void*)dd_row,
                  (void*)dd_zero})
    cudaFree(p);
  return e;
}

// ---- 9. stream order: a copy kernel on a given stream (the queued-work tests) ----
namespace {
__global__ void copy_floats(const float* in, float* out, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = in[i];
}
}  // namespace
cudaError_t emu_copy_on(cudaStream_t s, const float* in, float* out, int n) {
  copy_floats<<<(n + 63) / 64, 64, 0, s>>>(in, out, n);
  return cudaGetLastError();
}
