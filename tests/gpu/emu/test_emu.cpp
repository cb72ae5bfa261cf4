// test_emu.cpp: the CUDA emulator's self-test (tests/gpu/emu: cuda_emu.hpp, emu.cpp, translate.py). Pins down
// the semantics the GPU suites rely on with kernels (selftest_kernels.cu, translated and force-included like
// src/backend/cuda) whose outputs are checked against values computed here:
//   1. a shared-memory tree reduction with __syncthreads gives exact sums; 3D blockIdx/threadIdx/blockDim/gridDim;
//   2. warp shuffles (xor butterflies, down past the end of a warp or width segment, broadcasts, 64-bit values,
//      a partial last warp);
//   3. dynamic shared memory is NaN bytes before its first write in every block, and shared by the block;
//   4. launch-configuration errors: cudaGetLastError/cudaPeekAtLastError, nothing run, the limits;
//   5. cudaMemcpy direction and bounds checks, cudaMemset/cudaFree on memory that is not device memory;
//   6. in forked children: a host pointer passed to a kernel, and a divergent barrier, abort with a message;
//   7. nvcuda::wmma bf16 16x16x16 mma, row/col-major operands and accumulators, ldm > 16;
//   8. cuBLAS: cublasSgemm in every transposition with padded leading dimensions, cublasGemmEx on bf16,
//      TF32 math, operands outside device memory;
//   9. queued stream work (streams.hpp): cudaStreamQuery/cudaEventQuery not ready behind it, cudaStreamWaitEvent
//      holding a later kernel, a queued cudaFreeAsync (twice refused) and device-to-device cudaMemcpyAsync, the
//      legacy default stream waiting for a blocking stream;
//  10. the NCCL emulation between forked processes: send/recv matched by order, float64 allreduce with the
//      same bits on every rank, and the errors (size mismatch, a peer gone, init claims and timeouts).
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE emu
#include <boost/test/unit_test.hpp>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#if STRATA_EMU_NCCL
#include <nccl.h>
#endif
#include <signal.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "streams.hpp"

// selftest_kernels.cu
cudaError_t emu_block_sum(const std::vector<int>& in, int gx, int gy, std::vector<long long>& sums);
cudaError_t emu_write_ids(dim3 grid, dim3 block, std::vector<int>& ids);
cudaError_t emu_warp_shuffles(const std::vector<int>& in, std::vector<double>& out);
cudaError_t emu_smem_poison(int blocks, int threads, std::vector<float>& out);
cudaError_t emu_mark(dim3 grid, dim3 block, size_t smem, long long* threads_run);
cudaError_t emu_mark_host_pointer();
cudaError_t emu_divergent_barrier(int bad_block, std::vector<int>& out);
cudaError_t emu_wmma(const std::vector<float>& a, int lda, const std::vector<float>& b_col,
                     const std::vector<float>& b_row, int ldb, const std::vector<float>& c_row,
                     const std::vector<float>& c_col, int ldc, int ldd, std::vector<float>& d_col,
                     std::vector<float>& d_row, std::vector<float>& d_zero);

namespace {

std::mt19937& rng() {
  static std::mt19937 g(20261201);
  return g;
}
std::vector<float> rnd(size_t n, float lo, float hi) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng());
  return v;
}

// bf16 by hand (round to nearest even), independent of cuda_bf16.h: the bits and the value.
uint16_t bf16_bits(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float bf16_round(float x) { return std::bit_cast<float>(uint32_t(bf16_bits(x)) << 16); }

// Runs f in a forked child with stderr into a pipe, SIGABRT at its default action (Boost.Test's handler would
// catch it), no core file, and 30 s to finish. What the child did and wrote.
struct ChildResult {
  bool signaled = false;
  int signal = 0, exit_code = -1;
  std::string err;
};
template <class F>
ChildResult in_child(F f) {
  std::fflush(stdout);
  std::fflush(stderr);
  int fd[2];
  BOOST_REQUIRE(pipe(fd) == 0);
  const pid_t pid = fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fd[0]);
    dup2(fd[1], 2);
    close(fd[1]);
    std::signal(SIGABRT, SIG_DFL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGABRT);
    sigprocmask(SIG_UNBLOCK, &s, nullptr);
    rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    alarm(30);
    f();
    _exit(0);
  }
  close(fd[1]);
  ChildResult r;
  char buf[4096];
  for (ssize_t n; (n = read(fd[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    r.err.append(buf, size_t(n));
  }
  close(fd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.signaled = WIFSIGNALED(status);
  if (r.signaled) r.signal = WTERMSIG(status);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  BOOST_TEST_MESSAGE("child stderr: " << r.err);
  return r;
}

bool close_to(double got, double want, double scale, double rel) { return std::fabs(got - want) <= rel * scale; }

}  // namespace

// ---- 1 ----
BOOST_AUTO_TEST_CASE(block_tree_reduction_is_exact) {
  const int gx = 3, gy = 2;
  std::vector<int> in(size_t(gx) * gy * 256);
  for (size_t i = 0; i < in.size(); i++) in[i] = int((i * 7919) % 2000003) - 1000000;
  std::vector<long long> sums;
  BOOST_TEST(emu_block_sum(in, gx, gy, sums) == cudaSuccess);
  BOOST_REQUIRE(sums.size() == size_t(gx) * gy);
  for (int b = 0; b < gx * gy; b++) {
    long long want = 0;
    for (int t = 0; t < 256; t++) want += in[size_t(b) * 256 + t];
    BOOST_TEST(sums[size_t(b)] == want, "block " << b);
  }
}

BOOST_AUTO_TEST_CASE(indices_in_three_dimensions) {
  for (auto [grid, block] : {std::pair{dim3(2, 3, 2), dim3(4, 2, 3)}, std::pair{dim3(3, 1, 2), dim3(5, 3, 2)}}) {
    std::vector<int> ids;
    BOOST_TEST(emu_write_ids(grid, block, ids) == cudaSuccess);
    const int per_block = int(block.x * block.y * block.z);
    const int n = int(grid.x * grid.y * grid.z) * per_block;
    BOOST_REQUIRE(ids.size() == size_t(n) * 12);
    int bad = 0;
    for (int i = 0; i < n; i++) {
      const int b = i / per_block, t = i % per_block;
      const int want[12] = {int(b % grid.x), int(b / grid.x % grid.y), int(b / (grid.x * grid.y)),
                            int(t % block.x), int(t / block.x % block.y), int(t / (block.x * block.y)),
                            int(block.x),     int(block.y),              int(block.z),
                            int(grid.x),      int(grid.y),               int(grid.z)};
      for (int j = 0; j < 12; j++)
        if (ids[size_t(i) * 12 + j] != want[j] && bad++ < 10)
          BOOST_ERROR("thread " << i << " coordinate " << j << ": " << ids[size_t(i) * 12 + j] << " != " << want[j]);
    }
    BOOST_TEST(bad == 0);
  }
}

// ---- 2 ----
BOOST_AUTO_TEST_CASE(warp_shuffles) {
  for (int n : {64, 40}) {  // 40: warp 1 has 8 lanes
    std::vector<int> v(static_cast<size_t>(n));
    for (int t = 0; t < n; t++) v[size_t(t)] = (t * 37) % 101 + 1 + 1000 * (t / 32);
    std::vector<double> out;
    BOOST_TEST(emu_warp_shuffles(v, out) == cudaSuccess);
    BOOST_REQUIRE(out.size() == size_t(n) * 8);
    for (int t = 0; t < n; t++) {
      const int lane = t % 32, wb = t - lane, wl = std::min(n - wb, 32);
      auto at = [&](int l) { return double(v[size_t(wb + l)]); };
      double warp_sum = 0, seg8_sum = 0;
      for (int l = 0; l < wl; l++) warp_sum += at(l);
      for (int l = lane / 8 * 8; l < lane / 8 * 8 + 8; l++) seg8_sum += at(l);
      const int seg16 = lane / 16 * 16;
      const double want[8] = {
          // the partial warp (8 lanes): masks 16 and 8 read past the block, so the lane's own value (×4)
          wl == 32 ? warp_sum : 4 * seg8_sum,
          lane + 3 < wl ? at(lane + 3) : at(lane),
          at(5),
          lane + 5 < seg16 + 16 && lane + 5 < wl ? at(lane + 5) : at(lane),
          seg8_sum,
          at(lane / 8 * 8 + 2),
          0.5 + (lane + 1 < wl ? at(lane + 1) : at(lane)),
          wl == 32 ? at((lane + 5) % 32) : at(std::min(lane + 5, wl - 1)),
      };
      for (int j = 0; j < 8; j++)
        BOOST_TEST(out[size_t(t) * 8 + j] == want[j], "blockDim " << n << " thread " << t << " slot " << j);
    }
  }
}

// ---- 3 ----
BOOST_AUTO_TEST_CASE(dynamic_shared_memory_is_poisoned_and_shared) {
  const int blocks = 3, threads = 64;
  std::vector<float> out;
  BOOST_TEST(emu_smem_poison(blocks, threads, out) == cudaSuccess);
  BOOST_REQUIRE(out.size() == size_t(blocks) * threads * 3);
  const float pi_bits = std::bit_cast<float>(0x40490fdbu);
  for (int b = 0; b < blocks; b++)
    for (int t = 0; t < threads; t++) {
      const float* o = &out[(size_t(b) * threads + t) * 3];
      BOOST_TEST(o[0] == 3.0f, "block " << b << " thread " << t << ": NaN bytes before the first write");
      BOOST_TEST(o[1] == 1000.0f * b + (t + 1) % threads, "block " << b << " thread " << t);
      BOOST_TEST(o[2] == pi_bits, "block " << b << " thread " << t);
    }
}

// ---- 4 ----
BOOST_AUTO_TEST_CASE(launch_configuration_errors) {
  BOOST_TEST(cudaGetLastError() == cudaSuccess);
  long long ran = -1;
  BOOST_TEST(emu_mark(dim3(1), dim3(2048), 0, &ran) == cudaErrorInvalidConfiguration);
  BOOST_TEST(ran == 0);
  BOOST_TEST(cudaPeekAtLastError() == cudaErrorInvalidConfiguration);  // peeking does not clear it
  BOOST_TEST(cudaGetLastError() == cudaErrorInvalidConfiguration);
  BOOST_TEST(cudaGetLastError() == cudaSuccess);  // reading does

  struct Case {
    dim3 grid, block;
    size_t smem;
    cudaError_t want;
  };
  const Case cases[] = {
      {dim3(2), dim3(32, 32, 1), 0, cudaSuccess},  // 1024 threads: the limit
      {dim3(1), dim3(33, 32, 1), 0, cudaErrorInvalidConfiguration},
      {dim3(1), dim3(1, 2, 64), 0, cudaSuccess},  // blockDim.z 64: the limit
      {dim3(1), dim3(1, 1, 65), 0, cudaErrorInvalidConfiguration},
      {dim3(1, 65536, 1), dim3(1), 0, cudaErrorInvalidConfiguration},
      {dim3(0), dim3(32), 0, cudaErrorInvalidConfiguration},
      {dim3(2), dim3(32), 232448, cudaSuccess},  // 227 KiB of dynamic shared memory: the opt-in limit
      {dim3(2), dim3(32), 232449, cudaErrorInvalidValue},
  };
  for (const Case& c : cases) {
    ran = -1;
    const cudaError_t e = emu_mark(c.grid, c.block, c.smem, &ran);
    const long long threads = (long long)c.grid.x * c.grid.y * c.grid.z * c.block.x * c.block.y * c.block.z;
    BOOST_TEST(e == c.want, "grid " << c.grid.x << "x" << c.grid.y << "x" << c.grid.z << " block " << c.block.x
                                    << "x" << c.block.y << "x" << c.block.z << " smem " << c.smem);
    BOOST_TEST(ran == (c.want == cudaSuccess ? threads : 0));
    BOOST_TEST(cudaGetLastError() == c.want);
    BOOST_TEST(cudaGetLastError() == cudaSuccess);
  }
}

// ---- 5 ----
BOOST_AUTO_TEST_CASE(memory_checks) {
  const size_t n = 64, bytes = n * sizeof(float);
  std::vector<float> h(n + 1), back(n + 1, -1.0f);
  for (size_t i = 0; i < h.size(); i++) h[i] = float(i) * 0.25f;
  float *d = nullptr, *d2 = nullptr;
  BOOST_REQUIRE(cudaMalloc(reinterpret_cast<void**>(&d), bytes) == cudaSuccess);
  BOOST_REQUIRE(cudaMalloc(reinterpret_cast<void**>(&d2), bytes) == cudaSuccess);

  // The kind must say the way the copy goes.
  BOOST_TEST(cudaMemcpy(d, h.data(), bytes, cudaMemcpyHostToDevice) == cudaSuccess);
  BOOST_TEST(cudaMemcpy(back.data(), d, bytes, cudaMemcpyHostToDevice) != cudaSuccess);  // device → host
  BOOST_TEST(back[0] == -1.0f);                                                          // nothing copied
  BOOST_TEST(cudaMemcpy(d2, h.data(), bytes, cudaMemcpyDeviceToHost) != cudaSuccess);    // host → device
  BOOST_TEST(cudaMemcpy(d2, h.data(), bytes, cudaMemcpyDeviceToDevice) != cudaSuccess);  // host → device
  BOOST_TEST(cudaMemcpy(back.data(), h.data(), bytes, cudaMemcpyDeviceToHost) != cudaSuccess);  // host → host
  BOOST_TEST(cudaMemcpy(d2, d, bytes, cudaMemcpyDeviceToDevice) == cudaSuccess);
  BOOST_TEST(cudaMemcpy(back.data(), d2, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (size_t i = 0; i < n; i++) BOOST_TEST(back[i] == h[i]);
  BOOST_TEST(back[n] == -1.0f);
  BOOST_TEST(cudaMemcpy(back.data(), d, bytes, cudaMemcpyDefault) == cudaSuccess);  // Default: any way
  // Past the end of the allocation.
  BOOST_TEST(cudaMemcpy(d, h.data(), bytes + sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess);
  BOOST_TEST(cudaMemcpy(back.data(), d, bytes + sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess);

  // cudaMemset on device memory only, within the allocation.
  BOOST_TEST(cudaMemset(h.data(), 0, bytes) != cudaSuccess);
  BOOST_TEST(h[1] == 0.25f);  // untouched
  BOOST_TEST(cudaMemset(d, 0, bytes + 1) != cudaSuccess);
  BOOST_TEST(cudaMemset(d, 0, bytes) == cudaSuccess);
  BOOST_TEST(cudaMemcpy(back.data(), d, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (size_t i = 0; i < n; i++) BOOST_TEST(back[i] == 0.0f);

  // cudaFree of memory cudaMalloc did not return; freed memory is no longer device memory.
  BOOST_TEST(cudaFree(h.data()) != cudaSuccess);
  BOOST_TEST(cudaFree(d + 1) != cudaSuccess);
  BOOST_TEST(cudaFree(d) == cudaSuccess);
  BOOST_TEST(cudaMemset(d, 0, bytes) != cudaSuccess);
  BOOST_TEST(cudaFree(d2) == cudaSuccess);
  BOOST_TEST(cudaFree(nullptr) == cudaSuccess);
  cudaGetLastError();  // a GPU's runtime records the failed calls above as the last error; the next tests expect none
}

// ---- 6 ----
BOOST_AUTO_TEST_CASE(death_by_host_pointer_and_divergent_barrier) {
  // The harness itself: a child that returns exits 0.
  ChildResult ok = in_child([] { std::fprintf(stderr, "fine\n"); });
  BOOST_TEST(!ok.signaled);
  BOOST_TEST(ok.exit_code == 0);
  BOOST_TEST(ok.err == "fine\n");

  ChildResult host = in_child([] { emu_mark_host_pointer(); });
  BOOST_TEST(host.signaled);
  BOOST_TEST(host.signal == SIGABRT);
  BOOST_TEST(host.err.find("kernel mark") != std::string::npos, host.err);
  BOOST_TEST(host.err.find("not device memory") != std::string::npos, host.err);

  ChildResult dead = in_child([] {
    std::vector<int> out;
    emu_divergent_barrier(1, out);
  });
  BOOST_TEST(dead.signaled);
  BOOST_TEST(dead.signal == SIGABRT);
  BOOST_TEST(dead.err.find("kernel divergent_barrier deadlocks") != std::string::npos, dead.err);
  BOOST_TEST(dead.err.find("block (1,0,0)") != std::string::npos, dead.err);

  // The same kernel with no block diverging runs (in this process) and writes every thread's index.
  std::vector<int> out;
  BOOST_TEST(emu_divergent_barrier(-1, out) == cudaSuccess);
  BOOST_REQUIRE(out.size() == 128u);
  for (int i = 0; i < 128; i++) BOOST_TEST(out[size_t(i)] == i % 64);
}

// ---- 7 ----
BOOST_AUTO_TEST_CASE(wmma_bf16_mma) {
  const int lda = 24, ldb = 24, ldc = 20, ldd = 20;
  const float pad = 1e30f;  // in every element past a row/column: a wrong ldm shows
  std::vector<float> A(size_t(16) * lda, pad), Bc(size_t(16) * ldb, pad), Br(size_t(16) * ldb, pad),
      Cr(size_t(16) * ldc, pad), Cc(size_t(16) * ldc, pad);
  const std::vector<float> a = rnd(256, -2, 2), b = rnd(256, -2, 2), c = rnd(256, -4, 4);  // a(i,k), b(k,j), c(i,j)
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      A[size_t(i) * lda + j] = a[size_t(i) * 16 + j];
      Bc[size_t(j) * ldb + i] = b[size_t(i) * 16 + j];  // column-major: (k=i, n=j) at n*ldb + k
      Br[size_t(i) * ldb + j] = b[size_t(i) * 16 + j];
      Cr[size_t(i) * ldc + j] = c[size_t(i) * 16 + j];
      Cc[size_t(j) * ldc + i] = c[size_t(i) * 16 + j];
    }
  std::vector<float> d_col, d_row, d_zero;
  BOOST_TEST(emu_wmma(A, lda, Bc, Br, ldb, Cr, Cc, ldc, ldd, d_col, d_row, d_zero) == cudaSuccess);
  BOOST_REQUIRE(d_col.size() == size_t(16) * ldd);
  int bad = 0;
  for (int i = 0; i < 16; i++)
    for (int j = 0; j < 16; j++) {
      double ab = 0, scale = 0;  // a·b from the bf16 inputs; the sum of |terms| bounds float's rounding
      for (int k = 0; k < 16; k++) {
        const double t = double(bf16_round(a[size_t(i) * 16 + k])) * bf16_round(b[size_t(k) * 16 + j]);
        ab += t, scale += std::fabs(t);
      }
      const double cij = c[size_t(i) * 16 + j];
      const size_t at = size_t(j) * ldd + i, at_row = size_t(i) * ldd + j;  // stored column-, row-major
      const struct {
        const char* name;
        double got, want, scale;
      } checks[] = {{"d_col", d_col[at], 0.5 * (ab + cij), 0.5 * (scale + std::fabs(cij))},
                    {"d_row", d_row[at], 2 * ab + cij, 2 * scale + std::fabs(cij)},
                    {"d_zero", d_zero[at_row], ab, scale}};
      for (const auto& ch : checks)
        if (!close_to(ch.got, ch.want, std::max(ch.scale, 1e-30), 1e-5) && bad++ < 10)
          BOOST_ERROR(ch.name << "(" << i << "," << j << ") = " << ch.got << ", want " << ch.want);
    }
  BOOST_TEST(bad == 0);
  // Past 16 in each stored column (row for d_zero) of ldd 20: not written, still the NaN bytes they were filled with.
  for (int j = 0; j < 16; j++)
    for (int i = 16; i < ldd; i++) {
      BOOST_TEST(std::isnan(d_col[size_t(j) * ldd + i]));
      BOOST_TEST(std::isnan(d_row[size_t(j) * ldd + i]));
      BOOST_TEST(std::isnan(d_zero[size_t(j) * ldd + i]));
    }
}

// ---- 8 ----
namespace {
struct Dev {
  void* p = nullptr;
  explicit Dev(size_t bytes) { BOOST_REQUIRE(cudaMalloc(&p, bytes) == cudaSuccess); }
  Dev(Dev&& o) noexcept : p(std::exchange(o.p, nullptr)) {}
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cudaFree(p); }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};
template <class T>
Dev upload(const std::vector<T>& h) {
  Dev d(h.size() * sizeof(T));
  BOOST_REQUIRE(cudaMemcpy(d.p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  return d;
}
template <class T>
std::vector<T> download(const Dev& d, size_t n) {
  std::vector<T> h(n);
  BOOST_REQUIRE(cudaMemcpy(h.data(), d.p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
  return h;
}
// op (m×k or k×n, logical, row i col l at [i*cols + l]) stored column-major for cuBLAS with transposition t:
// the stored matrix is op (N) or its transpose (T), ld rows per column, padding elements = pad.
template <class T, class Conv>
std::vector<T> store(const std::vector<double>& op, int rows, int cols, cublasOperation_t t, int ld, T pad, Conv conv) {
  const int srows = t == CUBLAS_OP_N ? rows : cols, scols = t == CUBLAS_OP_N ? cols : rows;
  BOOST_REQUIRE(ld >= srows);
  std::vector<T> s(size_t(ld) * scols, pad);
  for (int i = 0; i < rows; i++)
    for (int l = 0; l < cols; l++) {
      const double v = op[size_t(i) * cols + l];
      if (t == CUBLAS_OP_N) s[size_t(l) * ld + i] = conv(v);
      else s[size_t(i) * ld + l] = conv(v);
    }
  return s;
}
}  // namespace

BOOST_AUTO_TEST_CASE(cublas_sgemm_all_transpositions) {
  cublasHandle_t h;
  BOOST_REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  const int m = 5, n = 4, k = 3;
  const float alpha = 1.5f, beta = -0.5f;
  // Dyadic values with few bits: every product and sum is exact in float and double.
  std::vector<double> a(size_t(m) * k), b(size_t(k) * n), c0(size_t(m) * n);
  for (int i = 0; i < m; i++)
    for (int l = 0; l < k; l++) a[size_t(i) * k + l] = ((i * 3 + l * 5) % 7 - 3) * 0.25;
  for (int l = 0; l < k; l++)
    for (int j = 0; j < n; j++) b[size_t(l) * n + j] = ((l * 2 + j * 3) % 5 - 2) * 0.5;
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) c0[size_t(i) * n + j] = (i - j) * 0.125;
  const int ldc = m + 2;
  for (cublasOperation_t ta : {CUBLAS_OP_N, CUBLAS_OP_T})
    for (cublasOperation_t tb : {CUBLAS_OP_N, CUBLAS_OP_T}) {
      const int lda = (ta == CUBLAS_OP_N ? m : k) + 2, ldb = (tb == CUBLAS_OP_N ? k : n) + 1;
      auto f = [](double v) { return float(v); };
      Dev A = upload(store<float>(a, m, k, ta, lda, 1e6f, f));
      Dev B = upload(store<float>(b, k, n, tb, ldb, -1e6f, f));
      Dev C = upload(store<float>(c0, m, n, CUBLAS_OP_N, ldc, 1234.5f, f));
      BOOST_TEST(cublasSgemm(h, ta, tb, m, n, k, &alpha, A.as<float>(), lda, B.as<float>(), ldb, &beta,
                             C.as<float>(), ldc) == CUBLAS_STATUS_SUCCESS);
      const std::vector<float> got = download<float>(C, size_t(ldc) * n);
      for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++) {
          double s = 0;
          for (int l = 0; l < k; l++) s += a[size_t(i) * k + l] * b[size_t(l) * n + j];
          const double want = alpha * s + beta * c0[size_t(i) * n + j];
          BOOST_TEST(close_to(got[size_t(j) * ldc + i], want, std::max(1.0, std::fabs(want)), 1e-6),
                     "ta " << ta << " tb " << tb << " C(" << i << "," << j << ") = " << got[size_t(j) * ldc + i]
                           << ", want " << want);
        }
        for (int i = m; i < ldc; i++) BOOST_TEST(got[size_t(j) * ldc + i] == 1234.5f);  // padding untouched
      }
    }
  // An operand outside device memory is refused, C untouched.
  std::vector<float> host_a(size_t(m) * k, 1.0f);
  Dev B = upload(std::vector<float>(size_t(k) * n, 1.0f));
  Dev C = upload(std::vector<float>(size_t(m) * n, 7.0f));
  BOOST_TEST(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, host_a.data(), m, B.as<float>(), k, &beta,
                         C.as<float>(), m) == CUBLAS_STATUS_INVALID_VALUE);
  BOOST_TEST(download<float>(C, 1)[0] == 7.0f);
  // lda smaller than op(A)'s rows is refused.
  BOOST_TEST(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, B.as<float>(), m - 1, B.as<float>(), k, &beta,
                         C.as<float>(), m) == CUBLAS_STATUS_INVALID_VALUE);
  BOOST_TEST(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
}

BOOST_AUTO_TEST_CASE(cublas_gemmex_bf16_and_tf32) {
  cublasHandle_t h;
  BOOST_REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  const int m = 6, n = 5, k = 7;
  const float alpha = 1.0f, beta = 0.0f;
  const std::vector<float> af = rnd(size_t(m) * k, -1, 1), bf = rnd(size_t(k) * n, -1, 1);
  std::vector<double> a(af.size()), b(bf.size());  // the bf16-rounded values
  for (size_t i = 0; i < a.size(); i++) a[i] = bf16_round(af[i]);
  for (size_t i = 0; i < b.size(); i++) b[i] = bf16_round(bf[i]);
  auto to_bf16 = [](double v) { return bf16_bits(float(v)); };
  const int lda = m + 3, ldb = n + 1, ldc = m + 1;  // A as stored (N): m rows; B as stored (T): n rows
  Dev A = upload(store<uint16_t>(a, m, k, CUBLAS_OP_N, lda, bf16_bits(1e6f), to_bf16));
  Dev B = upload(store<uint16_t>(b, k, n, CUBLAS_OP_T, ldb, bf16_bits(-1e6f), to_bf16));
  Dev C = upload(std::vector<float>(size_t(ldc) * n, std::nanf("")));
  BOOST_TEST(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &alpha, A.p, CUDA_R_16BF, lda, B.p, CUDA_R_16BF, ldb,
                          &beta, C.p, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
             CUBLAS_STATUS_SUCCESS);
  const std::vector<float> got = download<float>(C, size_t(ldc) * n);
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double s = 0, scale = 0;
      for (int l = 0; l < k; l++) {
        const double t = a[size_t(i) * k + l] * b[size_t(l) * n + j];
        s += t, scale += std::fabs(t);
      }
      BOOST_TEST(close_to(got[size_t(j) * ldc + i], s, std::max(scale, 1e-30), 1e-6),
                 "C(" << i << "," << j << ") = " << got[size_t(j) * ldc + i] << ", want " << s);
    }

  // TF32: operands rounded to 10 mantissa bits (1 + 2^-13 becomes 1) with the TF32 math mode or compute type;
  // exact fp32 otherwise.
  const float x = 1.0f + std::ldexp(1.0f, -13);
  Dev X = upload(std::vector<float>{x}), One = upload(std::vector<float>{1.0f}), Y = upload(std::vector<float>{0.0f});
  auto sgemm_1x1 = [&] {
    BOOST_TEST(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &alpha, X.as<float>(), 1, One.as<float>(), 1, &beta,
                           Y.as<float>(), 1) == CUBLAS_STATUS_SUCCESS);
    return download<float>(Y, 1)[0];
  };
  auto gemmex_1x1 = [&](cublasComputeType_t ct) {
    BOOST_TEST(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &alpha, X.p, CUDA_R_32F, 1, One.p, CUDA_R_32F, 1,
                            &beta, Y.p, CUDA_R_32F, 1, ct, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
    return download<float>(Y, 1)[0];
  };
  BOOST_TEST(sgemm_1x1() == x);
  BOOST_TEST(gemmex_1x1(CUBLAS_COMPUTE_32F) == x);
  BOOST_TEST(gemmex_1x1(CUBLAS_COMPUTE_32F_FAST_TF32) == 1.0f);
  BOOST_REQUIRE(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS);
  BOOST_TEST(sgemm_1x1() == 1.0f);
  BOOST_REQUIRE(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH) == CUBLAS_STATUS_SUCCESS);
  BOOST_TEST(sgemm_1x1() == x);
  BOOST_TEST(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS);
}

// ---- 9. queued stream work (streams.hpp): what the NCCL emulation's transfers rely on ----
cudaError_t emu_copy_on(cudaStream_t s, const float* in, float* out, int n);
namespace emu {
bool is_device_pointer(const void* p);
}

BOOST_AUTO_TEST_CASE(queued_work_keeps_stream_order) {
  const int n = 300;
  float *x = nullptr, *y = nullptr;
  BOOST_REQUIRE(cudaMalloc(reinterpret_cast<void**>(&x), n * sizeof(float)) == cudaSuccess);
  BOOST_REQUIRE(cudaMalloc(reinterpret_cast<void**>(&y), n * sizeof(float)) == cudaSuccess);
  BOOST_REQUIRE(cudaMemset(x, 0, n * sizeof(float)) == cudaSuccess);
  cudaStream_t a, b;
  BOOST_REQUIRE(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking) == cudaSuccess);
  BOOST_REQUIRE(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking) == cudaSuccess);
  cudaEvent_t idle_ev, ev;
  BOOST_REQUIRE(cudaEventCreateWithFlags(&idle_ev, cudaEventDisableTiming) == cudaSuccess);
  BOOST_REQUIRE(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) == cudaSuccess);
  // An event recorded on a stream with nothing queued has happened.
  BOOST_TEST(cudaEventRecord(idle_ev, a) == cudaSuccess);
  BOOST_TEST(cudaEventQuery(idle_ev) == cudaSuccess);

  // Work queued on a that waits for the host's go, then writes x: a stands for a transfer in flight.
  std::atomic<bool> go{false};
  emu::enqueue(a, [&] {
    while (!go.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (int i = 0; i < n; i++) x[i] = float(i) + 0.5f;
  });
  BOOST_TEST(cudaStreamQuery(a) == cudaErrorNotReady);
  BOOST_TEST(cudaGetLastError() == cudaErrorNotReady);  // left as the last error, as the CUDA runtime does
  BOOST_TEST(cudaGetLastError() == cudaSuccess);
  BOOST_TEST(cudaEventRecord(ev, a) == cudaSuccess);
  BOOST_TEST(cudaEventQuery(ev) == cudaErrorNotReady);
  cudaGetLastError();
  // b waits for the event; nothing blocks the host yet, and a non-blocking stream does not hold the default one.
  BOOST_TEST(cudaStreamWaitEvent(b, ev, 0) == cudaSuccess);
  BOOST_TEST(cudaStreamQuery(b) == cudaErrorNotReady);
  cudaGetLastError();
  std::vector<float> h(n);
  BOOST_TEST(cudaMemcpy(h.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  // A free behind queued work is queued too: the memory stays device memory until a's worker gets there.
  float* z = nullptr;
  BOOST_REQUIRE(cudaMalloc(reinterpret_cast<void**>(&z), 64) == cudaSuccess);
  BOOST_TEST(cudaFreeAsync(z, a) == cudaSuccess);
  BOOST_TEST(emu::is_device_pointer(z));
  BOOST_TEST(cudaFreeAsync(z, a) == cudaErrorInvalidValue);  // twice
  cudaGetLastError();
  // So is a device-to-device copy: it returns at once and copies what a's work wrote before it.
  float* w = nullptr;
  BOOST_REQUIRE(cudaMalloc(reinterpret_cast<void**>(&w), n * sizeof(float)) == cudaSuccess);
  BOOST_TEST(cudaMemcpyAsync(w, x, n * sizeof(float), cudaMemcpyDeviceToDevice, a) == cudaSuccess);
  // The copy on b runs only after a's work: release it from another thread while the launch waits.
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    go = true;
  });
  BOOST_TEST(emu_copy_on(b, x, y, n) == cudaSuccess);
  release.join();
  BOOST_TEST(cudaEventQuery(ev) == cudaSuccess);
  BOOST_TEST(cudaStreamSynchronize(a) == cudaSuccess);
  BOOST_TEST(cudaStreamQuery(a) == cudaSuccess);
  BOOST_TEST(cudaStreamQuery(b) == cudaSuccess);
  BOOST_TEST(!emu::is_device_pointer(z));
  BOOST_TEST(cudaMemcpy(h.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  int wrong = 0;
  for (int i = 0; i < n; i++) wrong += h[size_t(i)] != float(i) + 0.5f;
  BOOST_TEST(wrong == 0);
  BOOST_TEST(cudaMemcpy(h.data(), w, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  wrong = 0;
  for (int i = 0; i < n; i++) wrong += h[size_t(i)] != float(i) + 0.5f;
  BOOST_TEST(wrong == 0);
  cudaFree(w);

  // The legacy default stream waits for a blocking stream's queued work.
  cudaStream_t c;
  BOOST_REQUIRE(cudaStreamCreate(&c) == cudaSuccess);
  std::atomic<bool> ran{false};
  emu::enqueue(c, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ran = true;
  });
  BOOST_TEST(cudaMemset(y, 0, 4) == cudaSuccess);
  BOOST_TEST(ran.load());
  for (cudaStream_t s : {a, b, c}) BOOST_TEST(cudaStreamDestroy(s) == cudaSuccess);
  cudaEventDestroy(idle_ev);
  cudaEventDestroy(ev);
  cudaFree(x);
  cudaFree(y);
}

#if STRATA_EMU_NCCL  // the build found nccl.h (CMake's STRATA_HAVE_NCCL)
// ---- 10. the NCCL emulation (nccl_emu.cpp) between forked processes ----
// Runs body(rank) in n forked children (stderr to a file each, 60 s alarm), reaping each as soon as it exits (a
// zombie would still look alive to its peers). The exit codes, and each rank's stderr.
struct RankResults {
  std::vector<int> codes;
  std::vector<std::string> err;
};
template <class F>
RankResults run_ranks(int n, F body) {
  const std::string dir = std::string(STRATA_TEST_TMP) + "/emu-nccl";
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids;
  for (int r = 0; r < n; r++) {
    const pid_t pid = fork();
    BOOST_REQUIRE(pid >= 0);
    if (pid == 0) {
      const std::string err = dir + "/stderr." + std::to_string(r);
      if (!std::freopen(err.c_str(), "w", stderr)) _exit(99);
      setvbuf(stderr, nullptr, _IONBF, 0);  // _exit flushes nothing
      alarm(60);
      _exit(body(r));
    }
    pids.push_back(pid);
  }
  RankResults res;
  res.codes.assign(size_t(n), -1);
  for (int left = n; left > 0; left--) {
    int status = 0;
    pid_t p;
    while ((p = waitpid(-1, &status, 0)) < 0 && errno == EINTR) {
    }
    const auto it = std::find(pids.begin(), pids.end(), p);
    BOOST_REQUIRE(it != pids.end());
    res.codes[size_t(it - pids.begin())] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  for (int r = 0; r < n; r++) {
    FILE* f = std::fopen((dir + "/stderr." + std::to_string(r)).c_str(), "r");
    std::string s;
    char buf[1024];
    for (size_t k; f && (k = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, k);
    if (f) std::fclose(f);
    BOOST_TEST_MESSAGE("rank " << r << " exit " << res.codes[size_t(r)] << ", stderr: " << s);
    res.err.push_back(s);
  }
  return res;
}

// Waits up to 20 s for the communicator's asynchronous error.
// A forked rank of a two-rank communicator on its own emulated GPU, with a non-blocking stream and `floats` of
// zeroed device memory.
struct Rank2 {
  ncclComm_t c = nullptr;
  cudaStream_t s = nullptr;
  float* d = nullptr;
};
bool join_two(const ncclUniqueId& id, int rank, size_t floats, Rank2& r) {
  cudaSetDevice(rank);
  if (ncclCommInitRank(&r.c, 2, id, rank) != ncclSuccess) return false;
  cudaStreamCreateWithFlags(&r.s, cudaStreamNonBlocking);
  cudaMalloc(reinterpret_cast<void**>(&r.d), floats * sizeof(float));
  cudaMemset(r.d, 0, floats * sizeof(float));
  return true;
}

ncclResult_t async_error(ncclComm_t c) {
  ncclResult_t r = ncclSuccess;
  for (int i = 0; i < 20000 && r == ncclSuccess; i++) {
    if (ncclCommGetAsyncError(c, &r) != ncclSuccess) return ncclInternalError;
    if (r == ncclSuccess) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return r;
}

// The emulated NCCL's files under the test's directory, and three emulated GPUs: each rank sets its own.
struct NcclDir {
  NcclDir() {
    const std::string dir = std::string(STRATA_TEST_TMP) + "/emu-nccl";
    mkdir(dir.c_str(), 0755);
    setenv("STRATA_EMU_NCCL_DIR", dir.c_str(), 1);
    setenv("STRATA_EMU_DEVICES", "3", 1);
    setenv("STRATA_EMU_HANG_S", "50", 1);  // inside run_ranks' 60 s alarm
  }
  ~NcclDir() {
    unsetenv("STRATA_EMU_DEVICES");
    unsetenv("STRATA_EMU_HANG_S");
  }
};

BOOST_AUTO_TEST_CASE(nccl_send_recv_and_allreduce_between_processes) {
  NcclDir here;
  // Two ranks: three messages each way, matched by order, of other sizes and types; the contents bit for bit.
  // One communicator per direction: a communicator runs its operations in the order posted, so both ranks
  // sending first on one communicator would hang (here as with NCCL).
  ncclUniqueId id, back;
  BOOST_REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  BOOST_REQUIRE(ncclGetUniqueId(&back) == ncclSuccess);
  auto value = [](int from, int m, size_t i) { return double(from * 100 + m) + 1e-3 * double(i); };
  const size_t sizes[3] = {1000, 1, 4099};
  RankResults two = run_ranks(2, [&](int rank) {
    cudaSetDevice(rank);
    ncclComm_t c, cb;  // c carries rank 0's messages to rank 1, cb the other way (rank 1 is cb's rank 0)
    if (ncclCommInitRank(&c, 2, id, rank) != ncclSuccess) return 2;
    if (ncclCommInitRank(&cb, 2, back, 1 - rank) != ncclSuccess) return 2;
    ncclComm_t mine = rank == 0 ? c : cb, theirs = rank == 0 ? cb : c;
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    std::vector<void*> out, in;
    for (int m = 0; m < 3; m++) {  // message 1 is a double, the others floats
      const size_t bytes = sizes[m] * (m == 1 ? 8 : 4);
      void *o, *i;
      cudaMalloc(&o, bytes), cudaMalloc(&i, bytes), cudaMemset(i, 0xff, bytes);
      for (size_t k = 0; k < sizes[m]; k++) {
        if (m == 1) static_cast<double*>(o)[k] = value(rank, m, k);
        else static_cast<float*>(o)[k] = float(value(rank, m, k));
      }
      out.push_back(o), in.push_back(i);
    }
    // Both ranks post their three sends first: rendezvous sends on one stream would hang, so each direction
    // gets its own communicator and stream, as the NCCL transport gives each edge.
    cudaStream_t r;
    cudaStreamCreateWithFlags(&r, cudaStreamNonBlocking);
    for (int m = 0; m < 3; m++)
      if (ncclSend(out[size_t(m)], sizes[m], m == 1 ? ncclFloat64 : ncclFloat32, 1, mine, s) != ncclSuccess) return 3;
    for (int m = 0; m < 3; m++)
      if (ncclRecv(in[size_t(m)], sizes[m], m == 1 ? ncclFloat64 : ncclFloat32, 0, theirs, r) != ncclSuccess) return 4;
    cudaStreamSynchronize(s);
    cudaStreamSynchronize(r);
    for (int m = 0; m < 3; m++)
      for (size_t k = 0; k < sizes[m]; k++) {
        const bool ok = m == 1 ? static_cast<double*>(in[size_t(m)])[k] == value(1 - rank, m, k)
                               : static_cast<float*>(in[size_t(m)])[k] == float(value(1 - rank, m, k));
        if (!ok) return 5;
      }
    ncclResult_t e, eb;
    ncclCommGetAsyncError(c, &e);
    ncclCommGetAsyncError(cb, &eb);
    if (e != ncclSuccess || eb != ncclSuccess) return 6;
    return ncclCommDestroy(c) == ncclSuccess && ncclCommDestroy(cb) == ncclSuccess ? 0 : 7;
  });
  BOOST_TEST(two.codes == std::vector<int>({0, 0}));

  // Three ranks, float64 sums in place: every rank gets (a0 + a1) + a2, the same bits.
  BOOST_REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  const size_t n = 777;
  auto part = [](int rank, size_t i) { return 0.1 * double(i) + 1.0 / double(rank + 3) + double(rank) * 1e6; };
  RankResults three = run_ranks(3, [&](int rank) {
    cudaSetDevice(rank);
    ncclComm_t c;
    if (ncclCommInitRank(&c, 3, id, rank) != ncclSuccess) return 2;
    double* d;
    cudaMalloc(reinterpret_cast<void**>(&d), n * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = part(rank, i);
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    for (int round = 0; round < 2; round++) {  // twice: the second sums the first's sums
      if (ncclAllReduce(d, d, n, ncclFloat64, ncclSum, c, s) != ncclSuccess) return 3;
      cudaStreamSynchronize(s);
      for (size_t i = 0; i < n; i++) {
        double want = (part(0, i) + part(1, i)) + part(2, i);
        if (round == 1) {
          const double first = want;
          want = (first + first) + first;
        }
        if (d[i] != want) return 4 + round;
      }
    }
    // Host memory is refused, as NCCL needs device buffers.
    std::vector<double> host(n);
    if (ncclAllReduce(host.data(), host.data(), n, ncclFloat64, ncclSum, c, s) != ncclInvalidArgument) return 6;
    return ncclCommDestroy(c) == ncclSuccess ? 0 : 7;
  });
  BOOST_TEST(three.codes == std::vector<int>({0, 0, 0}));
  BOOST_TEST(three.err[0].find("buffer outside device memory") != std::string::npos, three.err[0]);
}

BOOST_AUTO_TEST_CASE(nccl_errors_surface_as_the_communicator_s_async_error) {
  NcclDir here;
  // A receive of another size than was sent: ncclInvalidUsage, the receive stays incomplete until the abort.
  ncclUniqueId id;
  BOOST_REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  RankResults size = run_ranks(2, [&](int rank) {
    Rank2 r;
    if (!join_two(id, rank, 12, r)) return 2;
    auto [c, s, d] = r;
    if (rank == 0) {
      ncclSend(d, 10, ncclFloat32, 1, c, s);
      cudaStreamSynchronize(s);  // the receiver took the message (and refused it)
      return ncclCommDestroy(c) == ncclSuccess ? 0 : 3;
    }
    ncclRecv(d, 12, ncclFloat32, 0, c, s);
    if (async_error(c) != ncclInvalidUsage) return 4;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (cudaStreamQuery(s) != cudaErrorNotReady) return 5;
    cudaGetLastError();
    ncclCommAbort(c);
    for (int i = 0; i < 5000 && cudaStreamQuery(s) != cudaSuccess; i++)  // the aborted receive gives up soon
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return cudaStreamQuery(s) == cudaSuccess ? 0 : 6;
  });
  BOOST_TEST(size.codes == std::vector<int>({0, 0}));
  BOOST_TEST(size.err[1].find("ncclRecv posted for 48 bytes of type 7, rank 0 sent 40 bytes of type 7") !=
                 std::string::npos, size.err[1]);

  // A peer that is gone: ncclRemoteError for the rank waiting on it (rank 1 exits right after joining).
  BOOST_REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  RankResults gone = run_ranks(2, [&](int rank) {
    Rank2 r;
    if (!join_two(id, rank, 4, r)) return 2;
    auto [c, s, d] = r;
    if (rank == 1) return 0;
    ncclRecv(d, 4, ncclFloat32, 1, c, s);
    if (async_error(c) != ncclRemoteError) return 3;
    ncclCommAbort(c);
    return 0;
  });
  BOOST_TEST(gone.codes == std::vector<int>({0, 0}));
  BOOST_TEST(gone.err[0].find("peer rank 1") != std::string::npos, gone.err[0]);
  BOOST_TEST(gone.err[0].find("is gone") != std::string::npos, gone.err[0]);

  // Init: a rank claimed twice is ncclInvalidUsage at once; the rank left waiting for its missing peer gives up
  // with ncclSystemError after STRATA_EMU_NCCL_TIMEOUT_S (NCCL itself would wait on).
  BOOST_REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  setenv("STRATA_EMU_NCCL_TIMEOUT_S", "2", 1);
  const std::string twice_dir(id.internal);
  RankResults twice = run_ranks(2, [&](int rank) {
    cudaSetDevice(rank);
    if (rank == 1)  // rank 0's claim comes first
      while (access((twice_dir + "/rank.0").c_str(), F_OK) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ncclComm_t c;
    const ncclResult_t r = ncclCommInitRank(&c, 2, id, 0);
    return rank == 0 ? (r == ncclSystemError ? 0 : 2) : (r == ncclInvalidUsage ? 0 : 3);
  });
  unsetenv("STRATA_EMU_NCCL_TIMEOUT_S");
  BOOST_TEST(twice.codes == std::vector<int>({0, 0}));
  BOOST_TEST(twice.err[1].find("rank 0 of") != std::string::npos, twice.err[1]);
  BOOST_TEST(twice.err[1].find("is claimed twice") != std::string::npos, twice.err[1]);
  BOOST_TEST(twice.err[0].find("has not joined in 2 s") != std::string::npos, twice.err[0]);
  // A send buffer overwritten before its send completed: ncclInvalidUsage on the sender (NCCL reads the buffer
  // while the transfer runs). Rank 0 overwrites it once the message is out, before rank 1 takes it.
  BOOST_REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  const std::string reuse_dir(id.internal);
  RankResults reuse = run_ranks(2, [&](int rank) {
    Rank2 r;
    if (!join_two(id, rank, 64, r)) return 2;
    auto [c, s, d] = r;
    if (rank == 0) {
      ncclSend(d, 64, ncclFloat32, 1, c, s);
      while (access((reuse_dir + "/m.0.1.0").c_str(), F_OK) != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      d[3] = 1.0f;  // as a kernel reusing the buffer too early would
      if (async_error(c) != ncclInvalidUsage) return 3;
      ncclCommAbort(c);
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ncclRecv(d, 64, ncclFloat32, 0, c, s);
    cudaStreamSynchronize(s);
    return ncclCommDestroy(c) == ncclSuccess ? 0 : 4;
  });
  BOOST_TEST(reuse.codes == std::vector<int>({0, 0}));
  BOOST_TEST(reuse.err[0].find("was overwritten before the send completed") != std::string::npos, reuse.err[0]);

  // Two ranks on one GPU: ncclInvalidUsage on both, as NCCL's "Duplicate GPU detected".
  BOOST_REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  RankResults dup = run_ranks(2, [&](int rank) {
    cudaSetDevice(1);
    ncclComm_t c;
    return ncclCommInitRank(&c, 2, id, rank) == ncclInvalidUsage ? 0 : 2;
  });
  BOOST_TEST(dup.codes == std::vector<int>({0, 0}));
  BOOST_TEST(dup.err[0].find("rank 1 is on the same GPU (device 1") != std::string::npos, dup.err[0]);

  // A rank outside [0, nranks) and an id that is no communicator's are refused.
  ncclComm_t c;
  BOOST_TEST(ncclCommInitRank(&c, 2, id, 2) == ncclInvalidArgument);
  ncclUniqueId bogus{};
  std::snprintf(bogus.internal, sizeof bogus.internal, "/nonexistent/strata");
  BOOST_TEST(ncclCommInitRank(&c, 1, bogus, 0) == ncclInvalidArgument);
}
#endif  // STRATA_EMU_NCCL
