// cuda_emu.hpp: runs Strata's CUDA sources on the CPU, so the GPU suites (test_gpu_ops, test_gpu_model) check
// the real kernels against their CPU twins on a machine without a GPU. Force-included (g++ -include) before
// every translation unit of src/backend/cuda, after translate.py has rewritten the two pieces of CUDA syntax
// C++ cannot parse (kernel<<<grid, block, smem, stream>>>(args) and extern __shared__ arrays).
//
// The model it emulates (emu.cpp):
//   - A kernel launch runs the whole grid before it returns, block after block (z, y, x order). The threads
//     of a block are fibers (Boost.Context) on one host thread, resumed round-robin; __syncthreads parks a fiber
//     until every live thread of its block has reached a barrier; warp shuffles and __syncwarp park it until
//     every live lane of its warp has. A barrier nobody else can reach (divergent __syncthreads, a shuffle in
//     one lane only) is reported as a deadlock, which a GPU may hang on instead.
//   - __shared__ variables are function statics: the block's threads share them, and the next block finds
//     the last block's values (as a GPU gives no initial value). Dynamic shared memory is filled with NaN
//     bytes before every block, so a read before a write shows.
//   - Device memory is host memory that the emulated cudaMalloc* keeps a list of; a kernel argument that is a
//     pointer must be null or point into it (a host pointer passed to a kernel is an error, as it faults on a
//     GPU), and every cudaMemcpy must go the way its kind says.
//   - Streams are ordered by construction (everything runs at launch). cuBLAS is a plain reference GEMM in
//     double (bf16 operands converted exactly), TF32 rounds its operands to 10-bit mantissas first.
//   - nvcuda::wmma fragments hold the whole 16×16 tile in every thread (their element order is unspecified
//     on a GPU too, so code that only uses load/store/fill/mma and element-wise loops runs the same).
// What it cannot show: speed, races between blocks (blocks never overlap), the effect of the memory model,
// register and shared-memory limits (only the 227 KiB device maximum is checked, not the per-kernel opt-in
// beyond 48 KiB), and anything beyond the subset of the runtime implemented in emu.cpp (an unimplemented call
// fails to link).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- the CUDA language on the host ----
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#undef __launch_bounds__
#undef __restrict__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict

namespace emu {

struct ThreadState;
uint3& thread_idx();
uint3& block_idx();
dim3& block_dim();
dim3& grid_dim();
void syncthreads();
void syncwarp();
unsigned long long shuffle(unsigned long long bits, int src_lane_or_minus1, int lane_xor, int delta, int width);
int lane();
void* dynamic_smem();
bool is_device_pointer(const void* p);
[[noreturn]] void host_pointer_passed(const void* p, const char* kernel);
[[noreturn]] void fail_wmma_alignment(const void* p);

// One launch: the grid, the block, the dynamic shared memory; runs body() in every thread of the grid.
struct Config {
  dim3 grid, block;
  size_t smem = 0;
  cudaStream_t stream = nullptr;
};
void run_grid(const Config& c, void (*body)(void*), void* arg, const char* kernel);

template <class T>
void check_arg(const T& a, const char* kernel) {
  if constexpr (std::is_pointer_v<std::decay_t<T>>) {
    if (a != nullptr && !is_device_pointer(static_cast<const void*>(a))) host_pointer_passed(a, kernel);
  }
}

// translate.py turns `name<<<g, b, smem, s>>>(args)` into `::emu::launch("name", [](auto&&... a){ name(a...); },
// g, b, smem, s)(args)`: the kernel's arguments are copied once, like a GPU's kernel parameters, and each
// thread calls the kernel with them.
template <class K>
struct Launch {
  K kernel;
  Config cfg;
  const char* name;
  template <class... A>
  void operator()(A... args) const {
    (check_arg(args, name), ...);
    struct Ctx {
      const K* k;
      std::tuple<A...>* args;
    };
    std::tuple<A...> tup(args...);
    Ctx ctx{&kernel, &tup};
    run_grid(
        cfg,
        [](void* p) {
          auto* c = static_cast<Ctx*>(p);
          std::apply([&](auto... copy) { (*c->k)(copy...); }, *c->args);
        },
        &ctx, name);
  }
};
template <class K>
Launch<K> launch(const char* name, K k, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t s = nullptr) {
  return Launch<K>{k, Config{grid, block, smem, s}, name};
}

template <class T>
unsigned long long to_bits(T v) {
  static_assert(sizeof(T) <= 8, "emu: shuffle of a type wider than 8 bytes");
  unsigned long long b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(unsigned long long b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

}  // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::block_idx())
#define blockDim (::emu::block_dim())
#define gridDim (::emu::grid_dim())
constexpr int warpSize = 32;

inline void __syncthreads() { ::emu::syncthreads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::emu::syncwarp(); }
template <class T>
T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
  return ::emu::from_bits<T>(::emu::shuffle(::emu::to_bits(v), -1, lane_mask, 0, width));
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  return ::emu::from_bits<T>(::emu::shuffle(::emu::to_bits(v), -1, 0, int(delta), width));
}
template <class T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  return ::emu::from_bits<T>(::emu::shuffle(::emu::to_bits(v), src, 0, 0, width));
}
template <class T>
T __ldg(const T* p) {
  return *p;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
// The product rounded on its own, as on a GPU: the empty asm keeps g++ (-march=native, -ffp-contract=fast) from
// fusing it into a following add.
inline float __fmul_rn(float a, float b) {
  float r = a * b;
  asm volatile("" : "+x"(r));
  return r;
}
using std::isfinite;
using std::isinf;
using std::isnan;
// CUDA's integer min/max take mixed operand types; the common type keeps std's exactness.
template <class A, class B>
constexpr std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B>
constexpr std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(b) : C(a);
}

// ---- nvcuda::wmma: the 16×16×16 shapes, bf16 and half inputs, float accumulators ----
namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = rows * cols;  // every thread holds the whole tile (see the header)
  using element_type = std::conditional_t<std::is_same_v<Use, accumulator>, T, float>;
  element_type x[num_elements];  // row-major (rows × cols)
};

template <class Use, int M, int N, int K, class T, class L, class V>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, V v) {
  for (auto& e : f.x) e = static_cast<typename fragment<Use, M, N, K, T, L>::element_type>(v);
}

namespace detail {
template <class T>
float to_float(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(v);
  else return float(v);
}
}  // namespace detail

// Loads and stores do not synchronise the warp: each lane reads the whole tile the moment it gets there (lane 0
// first), so a kernel that writes a tile lane by lane and loads it without __syncwarp() in between reads lanes
// 1…31's elements unwritten and fails its test, as it could on a GPU. The pointer must be 32-byte aligned.
inline void check_aligned(const void* p) {
  if (reinterpret_cast<uintptr_t>(p) % 32) ::emu::fail_wmma_alignment(p);
}
// A matrix_a or matrix_b tile from memory in the fragment's layout, ldm elements between rows (row_major) or
// columns (col_major). The element values are the stored ones, exactly (bf16 converts exactly to float).
template <class Use, int M, int N, int K, class T, class L>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const T* p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, L>;
  check_aligned(p);
  for (int r = 0; r < F::rows; r++)
    for (int c = 0; c < F::cols; c++)
      f.x[r * F::cols + c] = detail::to_float(std::is_same_v<L, row_major> ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]);
}
template <int M, int N, int K, class T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t l) {
  check_aligned(p);
  for (int r = 0; r < M; r++)
    for (int c = 0; c < N; c++) f.x[r * N + c] = l == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r];
}
template <int M, int N, int K, class T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t l) {
  check_aligned(p);
  if (::emu::lane() == 0)  // one writer: the tile is the same in every lane
    for (int r = 0; r < M; r++)
      for (int c = 0; c < N; c++) (l == mem_row_major ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]) = f.x[r * N + c];
}
// d = a·b + c, products of the exact input values summed in float (a tensor core's order is unspecified).
template <int M, int N, int K, class T, class LA, class LB, class TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, TC>& c) {
  fragment<accumulator, M, N, K, TC> out;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; k++) s += a.x[i * K + k] * b.x[k * N + j];
      out.x[i * N + j] = s;
    }
  d = out;
}
}  // namespace nvcuda::wmma

// ---- mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (PTX ISA, "Matrix Fragments for mma.m16n8k16") ----
// The kernels reach it through mma_bf16_16816 (backend/cuda/mma.cuh), which is inline PTX on a GPU and this
// function here. Each lane holds the fragment elements the PTX ISA assigns it (groupID g = lane / 4,
// threadID_in_group t = lane % 4; a register's low 16 bits hold the lower column / row index):
//   A 16×16 (row):  a[0] = A[g][2t, 2t+1]   a[1] = A[g+8][2t, 2t+1]   a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
//   B 16×8 (col):   b0 = B[2t, 2t+1][g]     b1 = B[2t+8, 2t+9][g]
//   C, D 16×8:      d[0], d[1] = D[g][2t, 2t+1]   d[2], d[3] = D[g+8][2t, 2t+1]
// Every lane's registers are gathered through a per-warp exchange between two warp barriers (so all lanes must
// arrive, as on a GPU), the tiles rebuilt, and each lane's four results computed as the WMMA emulation does:
// exact products summed in float in k order, starting from d.
#define STRATA_CUDA_EMULATED_MMA 1
namespace emu {
inline float bf16_bits_to_float(uint32_t bits16) {
  const uint32_t f = bits16 << 16;
  float v;
  std::memcpy(&v, &f, 4);
  return v;
}
inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  // The block's threads are fibers of one host thread and blocks run one after another: a static array is the
  // running block's, like shared memory. Indexed by the warp within the block (at most 1024 threads).
  static uint32_t exchange[32][32][6];
  const uint3 tid = thread_idx();
  const dim3 bd = block_dim();
  const unsigned linear = tid.x + bd.x * (tid.y + bd.y * tid.z), warp = linear / 32;
  uint32_t* mine = exchange[warp][lane()];
  for (int k = 0; k < 4; k++) mine[k] = a[k];
  mine[4] = b0, mine[5] = b1;
  syncwarp();  // every lane's registers are in place
  float A[16][16], B[16][8];
  for (int src = 0; src < 32; src++) {
    const uint32_t* ra = exchange[warp][src];
    const uint32_t* rb = ra + 4;
    const int g = src / 4, t = src % 4;
    for (int h = 0; h < 2; h++) {  // h: the low (0) or high (1) half of a register
      A[g][2 * t + h] = bf16_bits_to_float(ra[0] >> (16 * h) & 0xffffu);
      A[g + 8][2 * t + h] = bf16_bits_to_float(ra[1] >> (16 * h) & 0xffffu);
      A[g][2 * t + 8 + h] = bf16_bits_to_float(ra[2] >> (16 * h) & 0xffffu);
      A[g + 8][2 * t + 8 + h] = bf16_bits_to_float(ra[3] >> (16 * h) & 0xffffu);
      B[2 * t + h][g] = bf16_bits_to_float(rb[0] >> (16 * h) & 0xffffu);
      B[2 * t + 8 + h][g] = bf16_bits_to_float(rb[1] >> (16 * h) & 0xffffu);
    }
  }
  const int g = lane() / 4, t = lane() % 4;
  for (int e = 0; e < 4; e++) {
    const int r = g + (e / 2) * 8, c = 2 * t + e % 2;
    float s = d[e];
    for (int k = 0; k < 16; k++) s += A[r][k] * B[k][c];
    d[e] = s;
  }
  syncwarp();  // every lane has read the exchange before the warp's next product writes it
}
}  // namespace emu
