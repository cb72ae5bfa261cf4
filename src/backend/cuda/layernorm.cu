// layernorm.cu: LayerNorm over each row's C features, the twin of cpu/layernorm.cpp.
// Rows: one warp each (mean, then the variance about it, two passes like the CPU). dgain/dbias: the fixed-shape
// two-pass column sums of colsum.cuh (deterministic, no atomics; the CPU adds row by row: the same sums up to
// rounding).
#include "backend/cuda/colsum.cuh"

namespace strata::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // warps per block

__global__ void ln_fwd(float* out, void* out16, float* mean, float* rstd, const float* in, const float* gain,
                       const float* bias, int N, int C, float eps) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (n >= N) return;
  const float* x = in + size_t(n) * C;
  float s = 0;
  for (int c = lane; c < C; c += kWarp) s += x[c];
  const float m = warp_sum(s) / C;
  float v = 0;
  for (int c = lane; c < C; c += kWarp) {
    float d = x[c] - m;
    v += d * d;
  }
  const float r = 1.0f / sqrtf(warp_sum(v) / C + eps);
  const size_t row = size_t(n) * C;
  for (int c = lane; c < C; c += kWarp) store(out, out16, row + c, (x[c] - m) * r * gain[c] + bias[c]);
  if (lane == 0) mean[n] = m, rstd[n] = r;
}

// din (=, or += with accumulate, or = alpha·resid + with resid) the input gradient of each row.
__global__ void ln_bwd_input(float* din, void* din16, const float* dout, const float* in, const float* gain,
                             const float* mean, const float* rstd, int N, int C, bool accumulate,
                             const float* resid = nullptr, float alpha = 0.0f) {
  const int n = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (n >= N) return;
  const float* x = in + size_t(n) * C;
  const float* dy = dout + size_t(n) * C;
  const float m = mean[n], r = rstd[n];
  float a = 0, b = 0;
  for (int c = lane; c < C; c += kWarp) {
    float dxhat = dy[c] * gain[c];
    a += dxhat;
    b += dxhat * (x[c] - m) * r;
  }
  a = warp_sum(a) / C;
  b = warp_sum(b) / C;
  const size_t row = size_t(n) * C;
  for (int c = lane; c < C; c += kWarp) {
    float v = r * (dy[c] * gain[c] - a - (x[c] - m) * r * b);
    // resid: α·r rounded on its own (no fused multiply-add), as scale_copy stores it before the += of the
    // unfused pair
    const float base = resid ? __fmul_rn(alpha, resid[row + c]) : accumulate ? din[row + c] : 0.0f;
    store(din, din16, row + c, resid || accumulate ? base + v : v);
  }
}

}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* in, const float* gain, const float* bias,
                       int N, int C, double eps, cudaStream_t s, void* out16) {
  if (N <= 0) return;
  ln_fwd<<<blocks_for(size_t(N), kRowsPerBlock), kRowsPerBlock * kWarp, 0, s>>>(out, out16, mean, rstd, in, gain, bias,
                                                                                 N, C, float(eps));
  STRATA_CUDA_LAUNCHED();
}

// dgain += Σ_rows dout·x̂, dbias += Σ_rows dout (column_sums: fixed shape, deterministic). External linkage:
// nvcc's extended __device__ lambdas need an enclosing function it can name.
void layernorm_param_grads(float* dgain, float* dbias, const float* dout, const float* in, const float* mean,
                           const float* rstd, int N, int C, cudaStream_t s) {
  column_sums(dgain, dbias, N, C, [=] __device__(int n, int c) {
    const float dy = dout[size_t(n) * C + c];
    return make_float2(dy * (in[size_t(n) * C + c] - mean[n]) * rstd[n], dy);
  }, s);
}

void layernorm_backward(float* din, float* dgain, float* dbias, const float* dout, const float* in, const float* gain,
                        const float* mean, const float* rstd, int N, int C, bool accumulate, cudaStream_t s,
                        void* din16) {
  if (N <= 0) return;
  ln_bwd_input<<<blocks_for(size_t(N), kRowsPerBlock), kRowsPerBlock * kWarp, 0, s>>>(din, din16, dout, in, gain, mean,
                                                                                       rstd, N, C, accumulate);
  STRATA_CUDA_LAUNCHED();
  layernorm_param_grads(dgain, dbias, dout, in, mean, rstd, N, C, s);
}

void layernorm_backward_residual(float* din, float* dgain, float* dbias, const float* dout, const float* in,
                                 const float* gain, const float* mean, const float* rstd, int N, int C,
                                 const float* resid, float alpha, cudaStream_t s, void* din16) {
  if (N <= 0) return;
  ln_bwd_input<<<blocks_for(size_t(N), kRowsPerBlock), kRowsPerBlock * kWarp, 0, s>>>(din, din16, dout, in, gain, mean,
                                                                                       rstd, N, C, true, resid, alpha);
  STRATA_CUDA_LAUNCHED();
  layernorm_param_grads(dgain, dbias, dout, in, mean, rstd, N, C, s);
}

}  // namespace strata::cuda
