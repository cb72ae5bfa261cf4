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
//      TF32 math, operands outside device memory.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE emu
#include <boost/test/unit_test.hpp>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <csignal>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <utility>
#include <vector>

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
