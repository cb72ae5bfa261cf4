// reduce.cu: deterministic reductions into a device double, twins of cpu/reduce.cpp and cpu/stats.cpp (and of
// the CPU backend's sum and non-finite check), so the trainer can gather many statistics on the device and
// download them once. Fixed shape: pass 1 reduces each
// 4096-element chunk in one block (each thread 16 elements in order, then a fixed tree), pass 2 reduces the
// chunk results in one block the same way: the same bits on every run and launch.
#include "backend/cuda/blas.cuh"

namespace strata::cuda {

namespace {

constexpr int kThreads = 256;
constexpr size_t kChunk = 4096;

struct Sum {
  __device__ static double init() { return 0.0; }
  __device__ static double op(double a, double b) { return a + b; }
};
struct Max {
  __device__ static double init() { return 0.0; }  // of absolute values
  __device__ static double op(double a, double b) { return fmax(a, b); }
};

template <class Op>
__device__ double block_tree(double v, double* s) {
  s[threadIdx.x] = v;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) s[threadIdx.x] = Op::op(s[threadIdx.x], s[threadIdx.x + w]);
    __syncthreads();
  }
  return s[0];
}

template <class Op, class F>
__global__ void chunk_reduce(double* part, size_t n, F f) {
  __shared__ double s[kThreads];
  const size_t lo = size_t(blockIdx.x) * kChunk, hi = min(n, lo + kChunk);
  double v = Op::init();
  for (size_t i = lo + threadIdx.x; i < hi; i += kThreads) v = Op::op(v, f(i));
  v = block_tree<Op>(v, s);
  if (threadIdx.x == 0) part[blockIdx.x] = v;
}

template <class Op>
__global__ void final_reduce(double* out, const double* part, size_t n) {
  __shared__ double s[kThreads];
  double v = Op::init();
  for (size_t i = threadIdx.x; i < n; i += kThreads) v = Op::op(v, part[i]);
  v = block_tree<Op>(v, s);
  if (threadIdx.x == 0) *out = v;
}

// *out = Op over i < n of f(i); scratch slot 3 holds the chunk results.
template <class Op, class F>
void reduce(double* out, size_t n, F f, cudaStream_t s) {
  const size_t chunks = std::max<size_t>(1, (n + kChunk - 1) / kChunk);
  auto* part = static_cast<double*>(scratch(3, chunks * sizeof(double), s));
  chunk_reduce<Op><<<unsigned(chunks), kThreads, 0, s>>>(part, n, f);
  STRATA_CUDA_LAUNCHED();
  final_reduce<Op><<<1, kThreads, 0, s>>>(out, part, chunks);
  STRATA_CUDA_LAUNCHED();
}

// Row r of causal attention probabilities [rows, T] (query r mod T sees keys 0 … r mod T): −Σ p log p in
// float, one warp per row, into ent[r].
__global__ void row_entropy(double* ent, const float* probs, int rows, int T) {
  const int r = blockIdx.x * (kThreads / kWarp) + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (r >= rows) return;
  const float* p = probs + size_t(r) * T;
  const int n = r % T + 1;
  float e = 0;
  for (int c = lane; c < n; c += kWarp) e -= p[c] > 0 ? p[c] * logf(p[c]) : 0.0f;
  e = warp_sum(e);
  if (lane == 0) ent[r] = e;
}

}  // namespace

void sum_squares(double* out, const float* x, size_t n, cudaStream_t s) {
  reduce<Sum>(out, n, [=] __device__(size_t i) { return double(x[i]) * double(x[i]); }, s);
}

void stats_maxabs(double* out, const float* x, size_t n, cudaStream_t s, const void* x16) {
  reduce<Max>(out, n, [=] __device__(size_t i) { return double(fabsf(load(x, x16, i))); }, s);
}

void stats_sqdiff(double* out, const float* a, const float* b, size_t n, cudaStream_t s) {
  reduce<Sum>(out, n, [=] __device__(size_t i) {
    const double d = double(a[i]) - double(b[i]);
    return d * d;
  }, s);
}

void attention_entropy(double* out, const float* probs, int rows, int T, cudaStream_t s) {
  auto* ent = static_cast<double*>(scratch(4, std::max(rows, 1) * sizeof(double), s));
  if (rows > 0) {
    row_entropy<<<blocks_for(size_t(rows), kThreads / kWarp), kThreads, 0, s>>>(ent, probs, rows, T);
    STRATA_CUDA_LAUNCHED();
  }
  reduce<Sum>(out, size_t(rows), [=] __device__(size_t i) { return ent[i]; }, s);
}

void sum(double* out, const float* x, size_t n, cudaStream_t s) {
  reduce<Sum>(out, n, [=] __device__(size_t i) { return double(x[i]); }, s);
}

// A count of at most 2⁵³ is exact in a double, whatever the order of the additions.
void count_nonfinite(double* out, const float* x, size_t n, cudaStream_t s) {
  reduce<Sum>(out, n, [=] __device__(size_t i) { return isfinite(x[i]) ? 0.0 : 1.0; }, s);
}

}  // namespace strata::cuda
