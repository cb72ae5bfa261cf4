// test_gpu_ops.cpp: every CUDA op against its CPU twin (backend/ops.hpp) on fresh random inputs, outputs
// poisoned with NaN bytes before each run (an element the kernel skips fails the comparison). fp32 within
// 1e-5 of the largest magnitude of the CPU result; bf16 GEMMs and the tensor-core attention within 2e-2 of it
// (8-bit mantissas).
// The CUDA backend (backend/cuda/backend.cu) is driven through the Backend interface against cpu_backend().
// Without a CUDA device the whole suite reports itself skipped (exit 77) with cudaGetDeviceCount's reason.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE gpu_ops
#include <algorithm>
#include <array>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/backend.hpp"
#include "core/error.hpp"
#include "backend/cuda/ops.hpp"
#include "backend/cuda/runtime.hpp"
#include "backend/ops.hpp"
#include "gpu/require_gpu.hpp"

using namespace strata;
using Vec = std::vector<float>;

namespace {

struct RequireGpu {
  RequireGpu() { test::require_gpu("test_gpu_ops"); }
};

std::mt19937& rng() {
  static std::mt19937 g(20261128);
  return g;
}
Vec rnd(size_t n, float scale = 1.0f) {
  std::uniform_real_distribution<float> u(-scale, scale);
  Vec v(n);
  for (auto& x : v) x = u(rng());
  return v;
}
std::vector<int32_t> ints(size_t n, int hi) {
  std::uniform_int_distribution<int32_t> u(0, hi - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = u(rng());
  return v;
}
template <class T>
cuda::Buffer dev(const std::vector<T>& h) {
  cuda::Buffer b(h.size() * sizeof(T));
  b.upload(h.data(), h.size() * sizeof(T));
  return b;
}
cuda::Buffer poisoned(size_t n) {
  cuda::Buffer b(n * sizeof(float));
  b.fill_bytes(0xff);
  return b;
}
template <class T>
std::vector<T> host_as(const cuda::Buffer& b) {
  cuda::synchronize();
  std::vector<T> h(b.bytes() / sizeof(T));
  b.download(h.data(), b.bytes());
  return h;
}
Vec host(const cuda::Buffer& b) { return host_as<float>(b); }
// The same through a Backend: n floats of its memory holding h, or NaN bytes (the poison), and back.
Array<float> put(Backend& be, const Vec& h) {
  Array<float> a(be, h.size());
  be.upload(a.data(), h.data(), h.size() * sizeof(float));
  return a;
}
Array<float> poisoned(Backend& be, size_t n) {
  Vec nan(n);
  std::memset(nan.data(), 0xff, n * sizeof(float));
  return put(be, nan);
}
Vec get(Backend& be, const Array<float>& a) {
  Vec h(a.size());
  be.download(h.data(), a.data(), a.size() * sizeof(float));
  return h;
}
// max |got − want| ≤ tol · max |want| (NaN anywhere fails).
void expect_close(const Vec& got, const Vec& want, double tol, const char* what) {
  BOOST_TEST_REQUIRE(got.size() == want.size(), what);
  double scale = 0, err = 0;
  for (float w : want) scale = std::max(scale, double(std::fabs(w)));
  for (size_t i = 0; i < got.size(); i++) {
    double d = std::fabs(double(got[i]) - want[i]);
    if (!(d <= err)) err = std::isnan(d) ? INFINITY : d;
  }
  BOOST_TEST(err <= tol * std::max(scale, 1e-30), what << ": max error " << err << " against max |value| " << scale);
}

// x rounded to bf16 (to nearest, ties to even; finite x): its bits, and back as a float.
uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float bf16_value(uint16_t bits) {
  const uint32_t u = uint32_t(bits) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

}  // namespace

BOOST_TEST_GLOBAL_FIXTURE(RequireGpu);

BOOST_AUTO_TEST_CASE(matmul_fp32_and_bf16_against_cpu) {
  const int N = 37, IC = 48, OC = 80;
  for (auto p : {cuda::Precision::fp32, cuda::Precision::bf16}) {
    const double tol = p == cuda::Precision::fp32 ? 1e-5 : 2e-2;
    Vec in = rnd(N * IC), w = rnd(IC * OC, 0.2f), b = rnd(OC), dout = rnd(N * OC);
    Vec out(N * OC);
    cpu::matmul_forward(out.data(), in.data(), w.data(), b.data(), N, IC, OC);
    auto in_ = dev(in), w_ = dev(w), b_ = dev(b), dout_ = dev(dout), out_ = poisoned(N * OC);
    cuda::matmul_forward(out_.as<float>(), in_.as<float>(), w_.as<float>(), b_.as<float>(), N, IC, OC, p);
    expect_close(host(out_), out, tol, "matmul_forward");
    for (bool acc : {false, true}) {
      Vec din = rnd(N * IC);
      auto dd = acc ? dev(din) : poisoned(N * IC);
      cpu::matmul_backward_input(din.data(), dout.data(), w.data(), N, IC, OC, acc);
      cuda::matmul_backward_input(dd.as<float>(), dout_.as<float>(), w_.as<float>(), N, IC, OC, acc, p);
      expect_close(host(dd), din, tol, acc ? "matmul_backward_input +=" : "matmul_backward_input =");
    }
    Vec dw = rnd(IC * OC), db = rnd(OC);
    auto dw_ = dev(dw), db_ = dev(db);
    cpu::matmul_backward_weight(dw.data(), db.data(), dout.data(), in.data(), N, IC, OC);
    cuda::matmul_backward_weight(dw_.as<float>(), db_.as<float>(), dout_.as<float>(), in_.as<float>(), N, IC, OC, p);
    expect_close(host(dw_), dw, tol, "matmul_backward_weight dw");
    expect_close(host(db_), db, 1e-5, "matmul_backward_weight db");
  }
}

// bf16 GEMMs run through cuBLASLt with the bias in its epilogue (these aligned shapes); a bias 4 bytes off a
// 16-byte boundary is added by the bias kernel after cuBLASLt (no epilogue: a kernel assuming it aligned would
// fault); an output 4 bytes off may get no algorithm (the emulator offers none), and then cublasGemmEx runs it:
// all within the bf16 bound. bf16 copies the caller passes give the same bits as the copies matmul makes itself.
BOOST_AUTO_TEST_CASE(matmul_bf16_lt_epilogue_fallback_and_caller_copies) {
  const int N = 45, IC = 64, OC = 96;
  const auto bf = cuda::Precision::bf16;
  Vec in = rnd(N * IC), w = rnd(IC * OC, 0.2f), b = rnd(OC + 1), dout = rnd(N * OC);
  Vec out(N * OC);
  auto in_ = dev(in), w_ = dev(w), b_ = dev(b), dout_ = dev(dout);
  const char* what[] = {"matmul_forward bf16", "matmul_forward bf16, bias 4 bytes off",
                        "matmul_forward bf16, output 4 bytes off"};
  for (int c = 0; c < 3; c++) {
    const int boff = c == 1, ooff = c == 2;  // the bias at b_ + boff, the output at out_ + ooff
    cpu::matmul_forward(out.data(), in.data(), w.data(), b.data() + boff, N, IC, OC);
    auto out_ = poisoned(N * OC + 1);
    const size_t before = cuda::lt_gemm_count();
    cuda::matmul_forward(out_.as<float>() + ooff, in_.as<float>(), w_.as<float>(), b_.as<float>() + boff, N, IC, OC,
                         bf);
    Vec got = host(out_);
    got.erase(ooff ? got.begin() : got.end() - 1);
    expect_close(got, out, 2e-2, what[c]);
    if (c < 2) BOOST_TEST(cuda::lt_gemm_count() == before + 1, what[c] << ": ran through cuBLASLt");
  }
  // The caller's copies: bitwise the same results as matmul's own.
  cuda::Buffer in16(size_t(N) * IC * 2), w16(size_t(IC) * OC * 2), dout16(size_t(N) * OC * 2);
  cuda::to_bf16(in16.as<void>(), in_.as<float>(), size_t(N) * IC);
  cuda::to_bf16(w16.as<void>(), w_.as<float>(), size_t(IC) * OC);
  cuda::to_bf16(dout16.as<void>(), dout_.as<float>(), size_t(N) * OC);
  auto o1 = poisoned(N * OC), o2 = poisoned(N * OC);
  cuda::matmul_forward(o1.as<float>(), in_.as<float>(), w_.as<float>(), b_.as<float>(), N, IC, OC, bf);
  cuda::matmul_forward(o2.as<float>(), in_.as<float>(), w_.as<float>(), b_.as<float>(), N, IC, OC, bf, 0,
                       in16.as<void>(), w16.as<void>());
  BOOST_TEST(host(o1) == host(o2), "matmul_forward with the caller's bf16 copies");
  auto d1 = poisoned(N * IC), d2 = poisoned(N * IC);
  cuda::matmul_backward_input(d1.as<float>(), dout_.as<float>(), w_.as<float>(), N, IC, OC, false, bf);
  cuda::matmul_backward_input(d2.as<float>(), dout_.as<float>(), w_.as<float>(), N, IC, OC, false, bf, 0,
                              dout16.as<void>(), w16.as<void>());
  BOOST_TEST(host(d1) == host(d2), "matmul_backward_input with the caller's bf16 copies");
  Vec dw0 = rnd(IC * OC);
  auto g1 = dev(dw0), g2 = dev(dw0);
  cuda::matmul_backward_weight(g1.as<float>(), nullptr, dout_.as<float>(), in_.as<float>(), N, IC, OC, bf);
  cuda::matmul_backward_weight(g2.as<float>(), nullptr, dout_.as<float>(), in_.as<float>(), N, IC, OC, bf, 0,
                               dout16.as<void>(), in16.as<void>());
  BOOST_TEST(host(g1) == host(g2), "matmul_backward_weight with the caller's bf16 copies");
}

// bf16 outputs (the buffers the backend keeps in bf16 only): the bf16 rounding of the fp32-output GEMM's result
// within 1e-2 of its largest magnitude (1 bf16 step: 2^-8 relative; the fallback rounds twice, product then
// bias), through cuBLASLt's epilogue, through cuBLASLt with the bias kernel (a bias 4 bytes off) and through
// cublasGemmEx (an output 2 bytes off: the heuristic offers nothing); the fp32 output left untouched.
BOOST_AUTO_TEST_CASE(matmul_bf16_output_is_the_rounded_result) {
  const int N = 45, IC = 64, OC = 96;
  const auto bf = cuda::Precision::bf16;
  Vec in = rnd(N * IC), w = rnd(IC * OC, 0.2f), b = rnd(OC + 1), dout = rnd(N * OC);
  auto in_ = dev(in), w_ = dev(w), b_ = dev(b), dout_ = dev(dout);
  auto as_float = [](const std::vector<uint16_t>& h, size_t off, size_t n) {
    Vec v(n);
    for (size_t i = 0; i < n; i++) v[i] = bf16_value(h[off + i]);
    return v;
  };
  const char* what[] = {"epilogue", "bias 4 bytes off", "output 2 bytes off"};
  for (int c = 0; c < 3; c++) {
    const int boff = c == 1, ooff = c == 2;  // the bias at b_ + boff (floats), the output at o16 + ooff (bf16 values)
    auto ref = poisoned(N * OC);
    cuda::matmul_forward(ref.as<float>(), in_.as<float>(), w_.as<float>(), b_.as<float>() + boff, N, IC, OC, bf);
    cuda::Buffer o16((size_t(N) * OC + 1) * 2);
    o16.fill_bytes(0xff);
    const size_t before = cuda::lt_gemm_count();
    cuda::matmul_forward(nullptr, in_.as<float>(), w_.as<float>(), b_.as<float>() + boff, N, IC, OC, bf, 0, nullptr,
                         nullptr, static_cast<uint16_t*>(o16.as<void>()) + ooff);
    BOOST_TEST(cuda::lt_gemm_count() == before + (c < 2), what[c] << ": cuBLASLt (1) or cublasGemmEx (0)");
    expect_close(as_float(host_as<uint16_t>(o16), ooff, size_t(N) * OC), host(ref), 1e-2,
                 (std::string("matmul_forward, bf16 output, ") + what[c]).c_str());
  }
  auto ref = poisoned(N * IC);
  cuda::matmul_backward_input(ref.as<float>(), dout_.as<float>(), w_.as<float>(), N, IC, OC, false, bf);
  cuda::Buffer d16(size_t(N) * IC * 2);
  d16.fill_bytes(0xff);
  cuda::matmul_backward_input(nullptr, dout_.as<float>(), w_.as<float>(), N, IC, OC, false, bf, 0, nullptr, nullptr,
                              d16.as<void>());
  expect_close(as_float(host_as<uint16_t>(d16), 0, size_t(N) * IC), host(ref), 1e-2,
               "matmul_backward_input, bf16 output");
  BOOST_CHECK_THROW(cuda::matmul_backward_input(nullptr, dout_.as<float>(), w_.as<float>(), N, IC, OC, true, bf, 0,
                                                nullptr, nullptr, d16.as<void>()),
                    strata::Error);  // a bf16 output is = only
}

BOOST_AUTO_TEST_CASE(layernorm_against_cpu) {
  for (int C : {96, 1000}) {
    const int N = 53;
    Vec in = rnd(N * C, 3.0f), g = rnd(C), b = rnd(C), dout = rnd(N * C);
    for (float& x : in) x += 0.5f;
    Vec out(N * C), mean(N), rstd(N);
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), in.data(), g.data(), b.data(), N, C, 1e-5);
    auto in_ = dev(in), g_ = dev(g), b_ = dev(b), dout_ = dev(dout);
    auto out_ = poisoned(N * C), mean_ = poisoned(N), rstd_ = poisoned(N);
    cuda::layernorm_forward(out_.as<float>(), mean_.as<float>(), rstd_.as<float>(), in_.as<float>(), g_.as<float>(),
                            b_.as<float>(), N, C, 1e-5);
    expect_close(host(out_), out, 1e-5, "layernorm_forward out");
    expect_close(host(mean_), mean, 1e-5, "layernorm_forward mean");
    expect_close(host(rstd_), rstd, 1e-5, "layernorm_forward rstd");
    for (bool acc : {false, true}) {
      Vec din = rnd(N * C), dg = rnd(C), dbias = rnd(C);
      auto din_ = acc ? dev(din) : poisoned(N * C);
      auto dg_ = dev(dg), db_ = dev(dbias);
      cpu::layernorm_backward(din.data(), dg.data(), dbias.data(), dout.data(), in.data(), g.data(), mean.data(),
                              rstd.data(), N, C, acc);
      cuda::layernorm_backward(din_.as<float>(), dg_.as<float>(), db_.as<float>(), dout_.as<float>(), in_.as<float>(),
                               g_.as<float>(), mean_.as<float>(), rstd_.as<float>(), N, C, acc);
      expect_close(host(din_), din, 1e-5, "layernorm_backward din");
      expect_close(host(dg_), dg, 1e-5, "layernorm_backward dgain");
      expect_close(host(db_), dbias, 1e-5, "layernorm_backward dbias");
    }
  }
}

BOOST_AUTO_TEST_CASE(attention_against_cpu) {
  // T > 32: the softmax loops take several passes per lane; B·H·T = 270 rows, not a multiple of 8 warps per block.
  const int B = 2, T = 45, C = 48, H = 3;
  Vec qkv = rnd(B * T * 3 * C), dout = rnd(B * T * C);
  Vec out(B * T * C), probs(size_t(B) * H * T * T), dqkv(B * T * 3 * C);
  cpu::attention_forward(out.data(), probs.data(), qkv.data(), B, T, C, H);
  cpu::attention_backward(dqkv.data(), dout.data(), probs.data(), qkv.data(), B, T, C, H);
  auto qkv_ = dev(qkv), dout_ = dev(dout), out_ = poisoned(out.size()), probs_ = poisoned(probs.size());
  auto dqkv_ = poisoned(dqkv.size());
  cuda::attention_forward(out_.as<float>(), probs_.as<float>(), qkv_.as<float>(), B, T, C, H);
  expect_close(host(out_), out, 1e-5, "attention_forward out");
  expect_close(host(probs_), probs, 1e-5, "attention_forward probs");
  cuda::attention_backward(dqkv_.as<float>(), dout_.as<float>(), probs_.as<float>(), qkv_.as<float>(), B, T, C, H);
  expect_close(host(dqkv_), dqkv, 1e-5, "attention_backward dqkv");
  // bf16 mode: the same GEMMs on TF32 tensor cores (10-bit mantissas): within 1e-2 of the largest magnitude.
  auto out16 = poisoned(out.size()), probs16 = poisoned(probs.size()), dqkv16 = poisoned(dqkv.size());
  cuda::attention_forward(out16.as<float>(), probs16.as<float>(), qkv_.as<float>(), B, T, C, H, 0, Precision::bf16);
  expect_close(host(out16), out, 1e-2, "attention_forward out (TF32)");
  expect_close(host(probs16), probs, 1e-2, "attention_forward probs (TF32)");
  cuda::attention_backward(dqkv16.as<float>(), dout_.as<float>(), probs16.as<float>(), qkv_.as<float>(), B, T, C, H, 0,
                           Precision::bf16);
  expect_close(host(dqkv16), dqkv, 1e-2, "attention_backward dqkv (TF32)");
}

BOOST_AUTO_TEST_CASE(fused_attention_against_cpu) {
  // hs = 16 (tiles of 32 rows), 96 (tiles of 16) and 128 (over 48 KiB of shared memory in the backward);
  // T below a tile, a multiple of one, and neither.
  for (auto [C, H, T] : {std::tuple{48, 3, 45}, std::tuple{192, 2, 45}, std::tuple{256, 2, 37}, std::tuple{48, 3, 5},
                         std::tuple{48, 3, 32}}) {
    const int B = 2;
    Vec qkv = rnd(B * T * 3 * C), dout = rnd(B * T * C);
    Vec out(B * T * C), probs(size_t(B) * H * T * T), dqkv(B * T * 3 * C);
    cpu::attention_forward(out.data(), probs.data(), qkv.data(), B, T, C, H);
    cpu::attention_backward(dqkv.data(), dout.data(), probs.data(), qkv.data(), B, T, C, H);
    // log Σ_j≤i exp(q_i·k_j/√hs) of every (b, h, i), in double.
    const int hs = C / H;
    Vec lse(size_t(B) * H * T);
    for (int b = 0; b < B; b++)
      for (int h = 0; h < H; h++)
        for (int i = 0; i < T; i++) {
          std::vector<double> sc(i + 1);
          double mx = -1e300, sum = 0;
          for (int j = 0; j <= i; j++) {
            double d = 0;
            for (int c = 0; c < hs; c++)
              d += double(qkv[(size_t(b) * T + i) * 3 * C + h * hs + c]) * qkv[(size_t(b) * T + j) * 3 * C + C + h * hs + c];
            sc[j] = d / std::sqrt(double(hs));
            mx = std::max(mx, sc[j]);
          }
          for (double x : sc) sum += std::exp(x - mx);
          lse[(size_t(b) * H + h) * T + i] = float(mx + std::log(sum));
        }
    auto qkv_ = dev(qkv), dout_ = dev(dout), out_ = poisoned(out.size()), lse_ = poisoned(lse.size());
    auto dqkv_ = poisoned(dqkv.size());
    cuda::attention_fused_forward(out_.as<float>(), lse_.as<float>(), qkv_.as<float>(), B, T, C, H);
    expect_close(host(out_), out, 1e-5, "attention_fused_forward out");
    expect_close(host(lse_), lse, 1e-5, "attention_fused_forward lse");
    cuda::attention_fused_backward(dqkv_.as<float>(), dout_.as<float>(), out_.as<float>(), lse_.as<float>(),
                                   qkv_.as<float>(), B, T, C, H);
    expect_close(host(dqkv_), dqkv, 1e-5, "attention_fused_backward dqkv");
  }
}

// A bf16 tensor-core attention (fwd, bwd: the WMMA or the mma kernels) against the CPU at (C, H, T), B = 2: out and
// dqkv within 2e-2 of the largest magnitude, lse within 2e-2 of the fp32 fused kernel's.
template <class Fwd, class Bwd>
void tensor_core_attention_checked(const char* name, Fwd fwd, Bwd bwd, int C, int H, int T) {
  const int B = 2;
  Vec qkv = rnd(size_t(B) * T * 3 * C), dout = rnd(size_t(B) * T * C);
  Vec out(size_t(B) * T * C), probs(size_t(B) * H * T * T), dqkv(size_t(B) * T * 3 * C);
  cpu::attention_forward(out.data(), probs.data(), qkv.data(), B, T, C, H);
  cpu::attention_backward(dqkv.data(), dout.data(), probs.data(), qkv.data(), B, T, C, H);
  auto qkv_ = dev(qkv), dout_ = dev(dout), out_ = poisoned(out.size()), lse_ = poisoned(size_t(B) * H * T);
  auto ref_lse = poisoned(size_t(B) * H * T), ref_out = poisoned(out.size()), dqkv_ = poisoned(dqkv.size());
  cuda::attention_fused_forward(ref_out.as<float>(), ref_lse.as<float>(), qkv_.as<float>(), B, T, C, H);
  fwd(out_.as<float>(), lse_.as<float>(), qkv_.as<float>(), B, T, C, H, nullptr, nullptr, nullptr);
  const std::string at = strata::str("C ", C, " H ", H, " T ", T), n = name;
  expect_close(host(out_), out, 2e-2, (n + "_forward out, " + at).c_str());
  expect_close(host(lse_), host(ref_lse), 2e-2, (n + "_forward lse (against the fp32 kernel), " + at).c_str());
  bwd(dqkv_.as<float>(), dout_.as<float>(), out_.as<float>(), lse_.as<float>(), qkv_.as<float>(), B, T, C, H, nullptr,
      nullptr, nullptr, nullptr, nullptr);
  expect_close(host(dqkv_), dqkv, 2e-2, (n + "_backward dqkv, " + at).c_str());
}

BOOST_AUTO_TEST_CASE(tensor_core_attention_against_cpu) {
  // bf16 tensor cores: q, k, v, dO, P and dS rounded to 8-bit mantissas: within 2e-2 of the largest magnitude,
  // like the bf16 GEMMs. Head sizes 16, 32, 64, 128; T below a 64-row tile, a multiple of one, neither, and
  // long enough for several key tiles per row tile; B·H blocks in x.
  BOOST_TEST(cuda::attention_tc_supported(64, 4));
  BOOST_TEST(!cuda::attention_tc_supported(48, 1));
  BOOST_TEST(!cuda::attention_tc_supported(96, 2));
  for (auto [C, H, T] : {std::tuple{32, 2, 45}, std::tuple{64, 2, 64}, std::tuple{128, 2, 150}, std::tuple{128, 1, 37},
                         std::tuple{64, 4, 5}, std::tuple{256, 2, 70}}) {
    BOOST_TEST_REQUIRE(cuda::attention_tc_supported(C, H));
    tensor_core_attention_checked("attention_tc", cuda::attention_tc_forward, cuda::attention_tc_backward, C, H, T);
    BOOST_TEST_MESSAGE("tensor-core attention hs " << C / H << " T " << T << ": checked");
  }
}

// The fragment layout of mma.sync m16n8k16 (mma.cuh) that the register-resident attention relies on: one warp's
// d += a·b against the product in double, for random bf16 tiles. On a GPU this is the hardware's layout; on the
// emulator, its model of the PTX ISA's table.
BOOST_AUTO_TEST_CASE(mma_fragment_layout_against_cpu) {
  for (int rep = 0; rep < 3; rep++) {
    Vec a = rnd(16 * 16, 2.0f), bt = rnd(8 * 16, 2.0f), c = rnd(16 * 8);
    std::vector<uint16_t> a16(a.size()), bt16(bt.size());
    for (size_t i = 0; i < a.size(); i++) a16[i] = bf16_bits(a[i]), a[i] = bf16_value(a16[i]);
    for (size_t i = 0; i < bt.size(); i++) bt16[i] = bf16_bits(bt[i]), bt[i] = bf16_value(bt16[i]);
    auto a_ = dev(a16), bt_ = dev(bt16), d_ = dev(c);
    cuda::mma_tile_product(d_.as<float>(), a_.as<void>(), bt_.as<void>());
    const Vec d = host(d_);
    double worst = 0;
    for (int i = 0; i < 16; i++)
      for (int j = 0; j < 8; j++) {
        double s = c[i * 8 + j], mag = std::fabs(s);
        for (int k = 0; k < 16; k++) s += double(a[i * 16 + k]) * bt[j * 16 + k], mag += std::fabs(a[i * 16 + k] * bt[j * 16 + k]);
        worst = std::max(worst, std::fabs(d[i * 8 + j] - s) / mag);
      }
    BOOST_TEST(worst < 1e-5, "mma m16n8k16: largest error " << worst << " of the terms' magnitude");
  }
}

// The register-resident (mma.sync) attention against the CPU: the bound of the WMMA kernels (2e-2 of the largest
// magnitude). Head sizes 16, 32, 64; T below a tile, one tile, and several key tiles per row tile.
BOOST_AUTO_TEST_CASE(mma_attention_against_cpu) {
  BOOST_TEST(cuda::attention_mma_supported(128, 2));
  BOOST_TEST(!cuda::attention_mma_supported(128, 1));
  BOOST_TEST(!cuda::attention_mma_supported(96, 2));
  for (auto [C, H, T] : {std::tuple{32, 2, 45}, std::tuple{64, 2, 64}, std::tuple{128, 2, 150}, std::tuple{64, 4, 5},
                         std::tuple{16, 1, 130}, std::tuple{128, 4, 70}}) {
    BOOST_TEST_REQUIRE(cuda::attention_mma_supported(C, H));
    tensor_core_attention_checked("attention_mma", cuda::attention_mma_forward, cuda::attention_mma_backward, C, H, T);
  }
}

BOOST_AUTO_TEST_CASE(activations_residual_and_scale_against_cpu) {
  const size_t n = 1027;
  for (auto a : {cpu::Activation::gelu_tanh, cpu::Activation::gelu, cpu::Activation::relu}) {
    Vec in = rnd(n, 4.0f), dout = rnd(n), out(n), din(n);
    cpu::activation_forward(out.data(), in.data(), n, a);
    cpu::activation_backward(din.data(), dout.data(), in.data(), n, a);
    auto in_ = dev(in), dout_ = dev(dout), out_ = poisoned(n), din_ = poisoned(n);
    cuda::activation_forward(out_.as<float>(), in_.as<float>(), n, a);
    cuda::activation_backward(din_.as<float>(), dout_.as<float>(), in_.as<float>(), n, a);
    expect_close(host(out_), out, 1e-5, "activation_forward");
    expect_close(host(din_), din, 1e-5, "activation_backward");
  }
  Vec x = rnd(n), g = rnd(n), out(n);
  cpu::residual_forward(out.data(), x.data(), 1.7f, g.data(), n);
  auto x_ = dev(x), g_ = dev(g), out_ = poisoned(n);
  cuda::residual_forward(out_.as<float>(), x_.as<float>(), 1.7f, g_.as<float>(), n);
  expect_close(host(out_), out, 1e-6, "residual_forward");
  for (bool acc : {false, true}) {
    Vec o = rnd(n);
    auto o_ = acc ? dev(o) : poisoned(n);
    cpu::scale_copy(o.data(), x.data(), -0.3f, n, acc);
    cuda::scale_copy(o_.as<float>(), x_.as<float>(), -0.3f, n, acc);
    expect_close(host(o_), o, 1e-6, "scale_copy");
  }
}

BOOST_AUTO_TEST_CASE(embedding_against_cpu) {
  const int B = 3, T = 11, C = 40, V = 50;
  auto tokens = ints(B * T, V);
  Vec wte = rnd(V * C), wpe = rnd(T * C), dout = rnd(B * T * C), out(B * T * C);
  Vec dwte = rnd(V * C), dwpe = rnd(T * C);
  auto tok_ = dev(tokens), wte_ = dev(wte), wpe_ = dev(wpe), dout_ = dev(dout), out_ = poisoned(out.size());
  auto dwte_ = dev(dwte), dwpe_ = dev(dwpe);
  cpu::embedding_forward(out.data(), tokens.data(), wte.data(), wpe.data(), B, T, C);
  cpu::embedding_backward(dwte.data(), dwpe.data(), dout.data(), tokens.data(), B, T, C);
  cuda::embedding_forward(out_.as<float>(), tok_.as<int32_t>(), wte_.as<float>(), wpe_.as<float>(), B, T, C);
  cuda::embedding_backward(dwte_.as<float>(), dwpe_.as<float>(), dout_.as<float>(), tok_.as<int32_t>(), B, T, C);
  expect_close(host(out_), out, 1e-6, "embedding_forward");
  expect_close(host(dwte_), dwte, 1e-6, "embedding_backward dwte");
  expect_close(host(dwpe_), dwpe, 1e-6, "embedding_backward dwpe");
}

BOOST_AUTO_TEST_CASE(crossentropy_against_cpu) {
  const int N = 29, V = 300;
  auto targets = ints(N, V);
  Vec logits = rnd(N * V, 5.0f), losses(N), dlogits(N * V);
  cpu::crossentropy_forward(losses.data(), logits.data(), targets.data(), N, V);
  cpu::crossentropy_backward(dlogits.data(), logits.data(), targets.data(), N, V, 1.0f / N);
  auto lg_ = dev(logits), t_ = dev(targets), loss_ = poisoned(N), dl_ = poisoned(N * V);
  cuda::crossentropy_forward(loss_.as<float>(), lg_.as<float>(), t_.as<int32_t>(), N, V);
  cuda::crossentropy_backward(dl_.as<float>(), lg_.as<float>(), t_.as<int32_t>(), N, V, 1.0f / N);
  expect_close(host(loss_), losses, 1e-5, "crossentropy_forward");
  expect_close(host(dl_), dlogits, 1e-5, "crossentropy_backward");
}

BOOST_AUTO_TEST_CASE(adamw_against_cpu) {
  const size_t n = 4099;
  for (bool decay : {false, true}) {
    Vec p = rnd(n), m = rnd(n, 0.1f), v = rnd(n, 0.01f), g = rnd(n);
    for (float& x : v) x = std::fabs(x);
    auto p_ = dev(p), m_ = dev(m), v_ = dev(v), g_ = dev(g);
    cpu::AdamWParams hp{3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3};
    cpu::adamw_update(p.data(), m.data(), v.data(), g.data(), n, hp, decay);
    cuda::adamw_update(p_.as<float>(), m_.as<float>(), v_.as<float>(), g_.as<float>(), n, hp, decay);
    expect_close(host(p_), p, 1e-6, "adamw p");
    expect_close(host(m_), m, 1e-6, "adamw m");
    expect_close(host(v_), v, 1e-6, "adamw v");
  }
}

BOOST_AUTO_TEST_CASE(reductions_against_cpu) {
  for (size_t n : {size_t(1), size_t(4095), size_t(4096 * 37 + 11)}) {
    Vec x = rnd(n, 3.0f), y = rnd(n, 3.0f);
    auto x_ = dev(x), y_ = dev(y);
    cuda::Buffer out(4 * sizeof(double));
    out.fill_bytes(0xff);
    cuda::sum_squares(out.as<double>(), x_.as<float>(), n);
    cuda::stats_maxabs(out.as<double>() + 1, x_.as<float>(), n);
    cuda::stats_sqdiff(out.as<double>() + 2, x_.as<float>(), y_.as<float>(), n);
    cuda::synchronize();
    double got[3];
    out.download(got, sizeof got);
    const double ss = cpu::sum_squares(x.data(), n), sd = cpu::stats_sqdiff(x.data(), y.data(), n);
    BOOST_TEST(std::fabs(got[0] - ss) <= 1e-12 * ss, "sum_squares n=" << n << ": " << got[0] << " vs " << ss);
    BOOST_TEST(got[1] == cpu::stats_maxabs(x.data(), n), "stats_maxabs n=" << n);
    BOOST_TEST(std::fabs(got[2] - sd) <= 1e-12 * sd, "stats_sqdiff n=" << n << ": " << got[2] << " vs " << sd);
  }
  // Entropy of causal attention rows, probabilities from the CPU attention forward.
  const int B = 2, T = 45, C = 48, H = 3;
  Vec qkv = rnd(B * T * 3 * C, 2.0f), out(B * T * C), probs(size_t(B) * H * T * T);
  cpu::attention_forward(out.data(), probs.data(), qkv.data(), B, T, C, H);
  auto p_ = dev(probs);
  cuda::Buffer e(sizeof(double));
  e.fill_bytes(0xff);
  cuda::attention_entropy(e.as<double>(), p_.as<float>(), B * H * T, T);
  cuda::synchronize();
  double got = 0;
  e.download(&got, sizeof got);
  const double want = cpu::attention_entropy(probs.data(), B * H * T, T);
  BOOST_TEST(std::fabs(got - want) <= 1e-5 * want, "attention_entropy: " << got << " vs " << want);
}

BOOST_AUTO_TEST_CASE(fold_unfold_sum_and_count_nonfinite_against_cpu) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (size_t n : {size_t(1), size_t(4095), size_t(4096 * 37 + 11)}) {
    // fold: acc += g (double), g = 0; unfold: g = float(acc). The same IEEE operations as the host: exact.
    Vec g = rnd(n);
    std::vector<double> acc(n);
    std::uniform_real_distribution<double> u5(-5.0, 5.0);
    for (double& a : acc) a = u5(rng());
    auto acc_ = dev(acc), g_ = dev(g);
    cuda::fold(acc_.as<double>(), g_.as<float>(), n);
    for (size_t i = 0; i < n; i++) acc[i] += double(g[i]);
    BOOST_TEST((host_as<double>(acc_) == acc), "fold acc n=" << n);
    BOOST_TEST((host(g_) == Vec(n, 0.0f)), "fold zeroes g n=" << n);
    auto u_ = poisoned(n);
    cuda::unfold(u_.as<float>(), acc_.as<double>(), n);
    Vec u(n);
    for (size_t i = 0; i < n; i++) u[i] = float(acc[i]);
    BOOST_TEST((host(u_) == u), "unfold n=" << n);

    // sum: Σ x in double, within 1e-12 of Σ |x| (the sum itself may be near 0).
    Vec x = rnd(n, 3.0f);
    auto x_ = dev(x);
    cuda::Buffer out(2 * sizeof(double));
    out.fill_bytes(0xff);
    cuda::sum(out.as<double>(), x_.as<float>(), n);
    cuda::count_nonfinite(out.as<double>() + 1, x_.as<float>(), n);
    double want = 0, mag = 0;
    for (float v : x) want += v, mag += std::fabs(v);
    auto got = host_as<double>(out);
    BOOST_TEST(std::fabs(got[0] - want) <= 1e-12 * mag, "sum n=" << n << ": " << got[0] << " vs " << want);
    BOOST_TEST(got[1] == 0.0, "count_nonfinite of finite data n=" << n << ": " << got[1]);

    // NaN, +Inf and −Inf planted (first, last, middle element; one of them when n = 1).
    const size_t at[3] = {0, n - 1, n / 2};
    const float bad[3] = {nan, inf, -inf};
    size_t planted = 0;
    for (int k = 0; k < 3; k++)
      if (k == 0 || (at[k] != at[0] && (k < 2 || at[k] != at[1]))) x[at[k]] = bad[k], planted++;
    size_t want_bad = 0;
    for (float v : x) want_bad += !std::isfinite(v);
    BOOST_TEST_REQUIRE(want_bad == planted);
    auto y_ = dev(x);
    out.fill_bytes(0xff);
    cuda::count_nonfinite(out.as<double>(), y_.as<float>(), n);
    got = host_as<double>(out);
    BOOST_TEST(got[0] == double(want_bad), "count_nonfinite n=" << n << ": " << got[0] << " vs " << want_bad);
  }
}

BOOST_AUTO_TEST_CASE(cuda_backend_against_cpu_backend) {
  auto gpu_ = make_cuda_backend(0, Precision::fp32);  // outlives every Array below (they release into it)
  Backend &gpu = *gpu_, &cpu = cpu_backend();
  BOOST_TEST(gpu.name().rfind("cuda:0 ", 0) == 0, gpu.name());
  BOOST_TEST(!gpu.host_memory());
  BOOST_TEST(!gpu.keeps_attention_probs());
  BOOST_TEST(gpu.stream() != nullptr);

  {  // memory: zero-filled alloc, upload/download round trip, copy, zero
    const size_t n = 1031;
    Array<float> a(gpu, n);
    BOOST_TEST((get(gpu, a) == Vec(n, 0.0f)), "alloc is zero-filled");
    Vec h = rnd(n);
    auto b = put(gpu, h);
    BOOST_TEST((get(gpu, b) == h), "upload/download round trip");
    gpu.copy(a.data(), b.data(), n * sizeof(float));
    BOOST_TEST((get(gpu, a) == h), "copy");
    gpu.zero(b.data() + 1, (n - 2) * sizeof(float));
    Vec z = get(gpu, b);
    BOOST_TEST((z[0] == h[0] && z[n - 1] == h[n - 1]), "zero stays in its range");
    BOOST_TEST((Vec(z.begin() + 1, z.end() - 1) == Vec(n - 2, 0.0f)), "zero");
  }

  {  // attention: fused (lse) on the GPU against the CPU's kept probabilities; entropy recomputed from qkv
    const int B = 2, T = 45, C = 48, H = 3;
    Vec qkv = rnd(B * T * 3 * C, 2.0f), dout = rnd(B * T * C);
    Vec out(B * T * C), probs(size_t(B) * H * T * T), dqkv(B * T * 3 * C);
    cpu.attention_forward(out.data(), probs.data(), nullptr, qkv.data(), B, T, C, H);
    cpu.attention_backward(dqkv.data(), dout.data(), out.data(), probs.data(), nullptr, qkv.data(), B, T, C, H);
    auto qkv_ = put(gpu, qkv), dout_ = put(gpu, dout), out_ = poisoned(gpu, out.size());
    auto lse_ = poisoned(gpu, size_t(B) * H * T), dqkv_ = poisoned(gpu, dqkv.size());
    gpu.attention_forward(out_.data(), nullptr, lse_.data(), qkv_.data(), B, T, C, H);
    gpu.attention_backward(dqkv_.data(), dout_.data(), out_.data(), nullptr, lse_.data(), qkv_.data(), B, T, C, H);
    expect_close(get(gpu, out_), out, 1e-5, "backend attention_forward out");
    expect_close(get(gpu, dqkv_), dqkv, 1e-5, "backend attention_backward dqkv");
    const double want = cpu.attention_entropy(probs.data(), qkv.data(), B, T, C, H);
    const double got = gpu.attention_entropy(nullptr, qkv_.data(), B, T, C, H);
    BOOST_TEST(std::fabs(got - want) <= 1e-5 * want, "backend attention_entropy: " << got << " vs " << want);
  }

  {  // reductions and the gradient fold, through the interface
    const size_t n = 4096 * 5 + 3;
    Vec x = rnd(n, 3.0f), y = rnd(n, 3.0f);
    auto x_ = put(gpu, x), y_ = put(gpu, y);
    double mag = 0;
    for (float v : x) mag += std::fabs(v);
    const double s = cpu.sum(x.data(), n), ss = cpu.sum_squares(x.data(), n);
    const double sd = cpu.stats_sqdiff(x.data(), y.data(), n);
    BOOST_TEST(std::fabs(gpu.sum(x_.data(), n) - s) <= 1e-12 * mag, "backend sum");
    BOOST_TEST(std::fabs(gpu.sum_squares(x_.data(), n) - ss) <= 1e-12 * ss, "backend sum_squares");
    BOOST_TEST(std::fabs(gpu.stats_sumsq(x_.data(), n) - ss) <= 1e-12 * ss, "backend stats_sumsq");
    BOOST_TEST(gpu.stats_maxabs(x_.data(), n) == cpu.stats_maxabs(x.data(), n), "backend stats_maxabs");
    BOOST_TEST(std::fabs(gpu.stats_sqdiff(x_.data(), y_.data(), n) - sd) <= 1e-12 * sd, "backend stats_sqdiff");

    BOOST_TEST(gpu.all_finite(x_.data(), n));
    BOOST_TEST(cpu.all_finite(x.data(), n));
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity()}) {
      auto z_ = put(gpu, x);
      gpu.upload(z_.data() + n / 3, &bad, sizeof bad);
      Vec z = x;
      z[n / 3] = bad;
      BOOST_TEST(!gpu.all_finite(z_.data(), n), "backend all_finite with " << bad);
      BOOST_TEST(!cpu.all_finite(z.data(), n), "cpu all_finite with " << bad);
    }

    Array<double> acc_(gpu, n);  // zero-filled
    std::vector<double> acc(n, 0.0);
    for (int k = 0; k < 2; k++) {
      auto g_ = put(gpu, k ? y : x);
      gpu.fold(acc_.data(), g_.data(), n);
      Vec g = k ? y : x;
      cpu.fold(acc.data(), g.data(), n);
      BOOST_TEST((get(gpu, g_) == Vec(n, 0.0f)), "backend fold zeroes g");
    }
    auto u_ = poisoned(gpu, n);
    Vec u(n);
    gpu.unfold(u_.data(), acc_.data(), n);
    cpu.unfold(u.data(), acc.data(), n);
    BOOST_TEST((get(gpu, u_) == u), "backend fold/unfold");
  }

  // GEMMs in each backend's precision: fp32 within 1e-5, bf16 within 2e-2 of the CPU.
  for (auto p : {Precision::fp32, Precision::bf16}) {
    const double tol = p == Precision::fp32 ? 1e-5 : 2e-2;
    auto be_ = make_cuda_backend(0, p);
    Backend& be = *be_;
    const int N = 37, IC = 48, OC = 80;
    Vec in = rnd(N * IC), w = rnd(IC * OC, 0.2f), b = rnd(OC), out(N * OC);
    cpu.matmul_forward(out.data(), in.data(), w.data(), b.data(), N, IC, OC);
    auto in_ = put(be, in), w_ = put(be, w), b_ = put(be, b), out_ = poisoned(be, out.size());
    be.matmul_forward(out_.data(), in_.data(), w_.data(), b_.data(), N, IC, OC);
    expect_close(get(be, out_), out, tol, p == Precision::fp32 ? "backend fp32 matmul_forward"
                                                               : "backend bf16 matmul_forward");
  }
}

// Deferred statistics (Backend::stats_*_to): after stats_flush(), the same bits as the immediate calls applied in
// the same order, several into one destination, groups of entropy rows, and more values than the backend's
// device slots (it flushes when they run out).
BOOST_AUTO_TEST_CASE(deferred_statistics_equal_immediate) {
  auto be_ = make_cuda_backend(0, Precision::fp32);
  Backend& be = *be_;
  const int B = 3, T = 20, C = 32, H = 2;
  Vec xa = rnd(1000, 2.0f), xb = rnd(777, 3.0f), qkv = rnd(size_t(B) * T * 3 * C);
  auto a = put(be, xa), b = put(be, xb), q = put(be, qkv);
  std::vector<double> want(5, 0.25), got(5, 0.25);
  for (int rep = 0; rep < 1500; rep++) {  // 1500 × 3 slots + entropy rows: more than the 4096 device slots
    const size_t n = 500 + rep % 200;
    want[0] += be.stats_sumsq(a.data(), n) / 7.5;
    want[1] += be.stats_sqdiff(a.data(), b.data(), 700);
    const double m = be.stats_maxabs(b.data() + rep % 50, n % 700);
    if (m > want[2]) want[2] = m;
    be.stats_sumsq_to(&got[0], a.data(), n, 7.5);
    be.stats_sqdiff_to(&got[1], a.data(), b.data(), 700);
    be.stats_maxabs_to(&got[2], b.data() + rep % 50, n % 700);
    if (rep % 100 == 0) {
      want[3] += be.attention_entropy(nullptr, q.data(), B, T, C, H);
      be.attention_entropy_to(&got[3], nullptr, q.data(), B, T, C, H);
    }
  }
  want[4] += be.stats_sumsq(b.data(), 777);
  be.stats_sumsq_to(&got[4], b.data(), 777);
  be.stats_flush();
  for (int i = 0; i < 5; i++) BOOST_TEST(got[i] == want[i], "deferred statistic " << i << ": " << got[i] << " vs " << want[i]);
  be.stats_flush();  // nothing pending: no change
  BOOST_TEST(got[4] == want[4]);
}

// LayerNorm and the activations write their output's bf16 copy on request (the CUDA backend's operand cache):
// bit for bit to_bf16 of the fp32 output they write, which itself is unchanged by the request.
BOOST_AUTO_TEST_CASE(producers_write_the_bf16_copy_to_bf16_gives) {
  const int N = 37, C = 96;
  const size_t n = size_t(N) * C;
  Vec in = rnd(n, 2.0f), dout = rnd(n), gain = rnd(C), bias = rnd(C), acc = rnd(n);
  auto in_ = dev(in), dout_ = dev(dout), gain_ = dev(gain), bias_ = dev(bias);
  auto mean_ = poisoned(N), rstd_ = poisoned(N);
  cuda::Buffer o16(n * 2), r16(n * 2);
  auto check = [&](const cuda::Buffer& plain, const cuda::Buffer& with, const char* what) {
    BOOST_TEST(host(plain) == host(with), what << ": fp32 output with and without the bf16 copy");
    cuda::to_bf16(r16.as<void>(), with.as<float>(), n);
    BOOST_TEST((host_as<uint16_t>(o16) == host_as<uint16_t>(r16)), what << ": the copy is to_bf16 of the output");
  };
  {
    auto a = poisoned(n), b = poisoned(n);
    cuda::layernorm_forward(a.as<float>(), mean_.as<float>(), rstd_.as<float>(), in_.as<float>(), gain_.as<float>(),
                            bias_.as<float>(), N, C, 1e-5);
    cuda::layernorm_forward(b.as<float>(), mean_.as<float>(), rstd_.as<float>(), in_.as<float>(), gain_.as<float>(),
                            bias_.as<float>(), N, C, 1e-5, 0, o16.as<void>());
    check(a, b, "layernorm_forward");
    for (bool accumulate : {false, true}) {
      auto da = dev(acc), db = dev(acc);
      cuda::layernorm_backward(da.as<float>(), nullptr, nullptr, dout_.as<float>(), in_.as<float>(), gain_.as<float>(),
                               mean_.as<float>(), rstd_.as<float>(), N, C, accumulate);
      cuda::layernorm_backward(db.as<float>(), nullptr, nullptr, dout_.as<float>(), in_.as<float>(), gain_.as<float>(),
                               mean_.as<float>(), rstd_.as<float>(), N, C, accumulate, 0, o16.as<void>());
      check(da, db, accumulate ? "layernorm_backward +=" : "layernorm_backward =");
    }
  }
  for (auto act : {cpu::Activation::gelu_tanh, cpu::Activation::gelu, cpu::Activation::relu}) {
    auto a = poisoned(n), b = poisoned(n);
    cuda::activation_forward(a.as<float>(), in_.as<float>(), n, act);
    cuda::activation_forward(b.as<float>(), in_.as<float>(), n, act, 0, o16.as<void>());
    check(a, b, "activation_forward");
    auto da = poisoned(n), db = poisoned(n);
    cuda::activation_backward(da.as<float>(), dout_.as<float>(), in_.as<float>(), n, act);
    cuda::activation_backward(db.as<float>(), dout_.as<float>(), in_.as<float>(), n, act, 0, o16.as<void>());
    check(da, db, "activation_backward");
  }
}

// The fused attention (fp32 kernels and tensor cores, forward and backward) and the cross-entropy's backward
// also write their output's bf16 copy: the fp32 output unchanged by it, the copy to_bf16 of that output, every
// element written (the copy's buffer is poisoned first).
BOOST_AUTO_TEST_CASE(attention_and_crossentropy_write_the_bf16_copy) {
  auto check = [](const cuda::Buffer& plain, const cuda::Buffer& with, const cuda::Buffer& copy, size_t n,
                  const std::string& what) {
    BOOST_TEST(host(plain) == host(with), what << ": fp32 output with and without the bf16 copy");
    cuda::Buffer r16(n * 2);
    cuda::to_bf16(r16.as<void>(), with.as<float>(), n);
    BOOST_TEST((host_as<uint16_t>(copy) == host_as<uint16_t>(r16)), what << ": the copy is to_bf16 of the output");
  };
  auto poisoned16 = [](size_t n) {
    cuda::Buffer b(n * 2);
    b.fill_bytes(0xff);  // bf16 NaN
    return b;
  };
  for (auto [B, T, C, H] : {std::array<int, 4>{2, 45, 64, 2}, {1, 70, 128, 2}, {2, 5, 48, 2}}) {
    const size_t BT = size_t(B) * T;
    Vec qkv = rnd(BT * 3 * C), dout = rnd(BT * C);
    auto qkv_ = dev(qkv), dout_ = dev(dout);
    for (bool tc : {false, true}) {
      if (tc && !cuda::attention_tc_supported(C, H)) continue;
      const std::string what = std::string(tc ? "tensor-core" : "fp32") + " attention C " + std::to_string(C) +
                               " T " + std::to_string(T);
      auto fwd = [&](float* out, float* lse, const float* q, int B_, int T_, int C_, int H_, cudaStream_t s, void* o16) {
        if (tc) return cuda::attention_tc_forward(out, lse, q, B_, T_, C_, H_, s, o16);
        cuda::attention_fused_forward(out, lse, q, B_, T_, C_, H_, s, o16);
      };
      auto bwd = [&](float* dq, const float* d_out, const float* out, const float* lse, const float* q, int B_, int T_,
                     int C_, int H_, cudaStream_t s, void* d16) {
        if (tc) return cuda::attention_tc_backward(dq, d_out, out, lse, q, B_, T_, C_, H_, s, d16);
        cuda::attention_fused_backward(dq, d_out, out, lse, q, B_, T_, C_, H_, s, d16);
      };
      auto oa = poisoned(BT * C), ob = poisoned(BT * C), lse = poisoned(BT * H), o16 = poisoned16(BT * C);
      fwd(oa.as<float>(), lse.as<float>(), qkv_.as<float>(), B, T, C, H, 0, nullptr);
      fwd(ob.as<float>(), lse.as<float>(), qkv_.as<float>(), B, T, C, H, 0, o16.as<void>());
      check(oa, ob, o16, BT * C, what + " forward");
      auto da = poisoned(BT * 3 * C), db = poisoned(BT * 3 * C), d16 = poisoned16(BT * 3 * C);
      bwd(da.as<float>(), dout_.as<float>(), oa.as<float>(), lse.as<float>(), qkv_.as<float>(), B, T, C, H, 0, nullptr);
      bwd(db.as<float>(), dout_.as<float>(), oa.as<float>(), lse.as<float>(), qkv_.as<float>(), B, T, C, H, 0,
          d16.as<void>());
      check(da, db, d16, BT * 3 * C, what + " backward");
    }
  }
  const int N = 33, V = 259;
  Vec logits = rnd(size_t(N) * V, 3.0f);
  auto logits_ = dev(logits), targets_ = dev(ints(N, V));
  auto da = poisoned(size_t(N) * V), db = poisoned(size_t(N) * V), d16 = poisoned16(size_t(N) * V);
  cuda::crossentropy_backward(da.as<float>(), logits_.as<float>(), targets_.as<int32_t>(), N, V, 0.25f);
  cuda::crossentropy_backward(db.as<float>(), logits_.as<float>(), targets_.as<int32_t>(), N, V, 0.25f, 0,
                              d16.as<void>());
  check(da, db, d16, size_t(N) * V, "crossentropy_backward");
}

// qkv kept in bf16 only (qkv16, null qkv) and dqkv written as bf16 only (null dqkv): the tensor-core attention
// (WMMA and mma) rounds fp32 qkv to the same bf16 values as it loads it, so out, lse and dqkv are the same bits as
// from fp32 qkv, and the bf16-only dqkv is to_bf16 of the fp32 one. out written as bf16 only (null out) is to_bf16
// of the fp32 out. dout and out read as bf16 only (dout16, out16) give the same bits as fp32 inputs holding those
// bf16 values (the row sums D = Σ dO·O then see the same numbers).
BOOST_AUTO_TEST_CASE(tensor_core_attention_reads_bf16_qkv_bitwise) {
  const int B = 2, T = 70, C = 128, H = 2;
  const size_t BT = size_t(B) * T;
  Vec qkv = rnd(BT * 3 * C), dout = rnd(BT * C);
  auto qkv_ = dev(qkv), dout_ = dev(dout);
  cuda::Buffer qkv16(BT * 3 * C * 2), dout16(BT * C * 2);
  cuda::to_bf16(qkv16.as<void>(), qkv_.as<float>(), BT * 3 * C);
  cuda::to_bf16(dout16.as<void>(), dout_.as<float>(), BT * C);
  auto dout_wide = poisoned(BT * C);  // dout's bf16 values as fp32
  cuda::from_bf16(dout_wide.as<float>(), dout16.as<void>(), BT * C);
  for (bool mma : {false, true}) {
    const char* kind = mma ? "mma" : "wmma";
    auto fwd = mma ? cuda::attention_mma_forward : cuda::attention_tc_forward;
    auto bwd = mma ? cuda::attention_mma_backward : cuda::attention_tc_backward;
    auto o1 = poisoned(BT * C), o2 = poisoned(BT * C), l1 = poisoned(BT * H), l2 = poisoned(BT * H),
         l3 = poisoned(BT * H);
    fwd(o1.as<float>(), l1.as<float>(), qkv_.as<float>(), B, T, C, H, 0, nullptr, nullptr);
    fwd(o2.as<float>(), l2.as<float>(), nullptr, B, T, C, H, 0, nullptr, qkv16.as<void>());
    BOOST_TEST(host(o1) == host(o2), kind << ": out from bf16 qkv");
    BOOST_TEST(host(l1) == host(l2), kind << ": lse from bf16 qkv");
    cuda::Buffer o16(BT * C * 2), ro16(BT * C * 2);
    o16.fill_bytes(0xff);
    fwd(nullptr, l3.as<float>(), nullptr, B, T, C, H, 0, o16.as<void>(), qkv16.as<void>());
    cuda::to_bf16(ro16.as<void>(), o1.as<float>(), BT * C);
    BOOST_TEST((host_as<uint16_t>(o16) == host_as<uint16_t>(ro16)), kind << ": bf16-only out");
    BOOST_TEST(host(l1) == host(l3), kind << ": lse with bf16-only out");
    auto d1 = poisoned(BT * 3 * C);
    cuda::Buffer d16(BT * 3 * C * 2), r16(BT * 3 * C * 2);
    d16.fill_bytes(0xff);
    bwd(d1.as<float>(), dout_.as<float>(), o1.as<float>(), l1.as<float>(), qkv_.as<float>(), B, T, C, H, 0, nullptr,
        nullptr, nullptr, nullptr);
    bwd(nullptr, dout_.as<float>(), o1.as<float>(), l1.as<float>(), nullptr, B, T, C, H, 0, d16.as<void>(),
        qkv16.as<void>(), nullptr, nullptr);
    cuda::to_bf16(r16.as<void>(), d1.as<float>(), BT * 3 * C);
    BOOST_TEST((host_as<uint16_t>(d16) == host_as<uint16_t>(r16)), kind << ": bf16-only dqkv from bf16 qkv");
    // dout and out in bf16 only, against fp32 buffers holding the same bf16 values.
    auto o_wide = poisoned(BT * C), dw = poisoned(BT * 3 * C), dk = poisoned(BT * 3 * C);
    cuda::from_bf16(o_wide.as<float>(), o16.as<void>(), BT * C);
    bwd(dw.as<float>(), dout_wide.as<float>(), o_wide.as<float>(), l1.as<float>(), qkv_.as<float>(), B, T, C, H, 0,
        nullptr, nullptr, nullptr, nullptr);
    bwd(dk.as<float>(), nullptr, nullptr, l1.as<float>(), nullptr, B, T, C, H, 0, nullptr, qkv16.as<void>(),
        dout16.as<void>(), o16.as<void>());
    BOOST_TEST(host(dw) == host(dk), kind << ": dqkv from bf16-only dout and out");
    // The row sums see bf16 values now, so dqkv moves, within the tensor-core bound of the fp32-input one.
    expect_close(host(dk), host(d1), 2e-2, (std::string(kind) + ": dqkv from bf16 dout, out vs fp32").c_str());
  }
}

// AdamW over many tensors of one buffer in one launch (the optimizer's call): bit for bit the per-tensor updates,
// with empty tensors, gaps between tensors and both decay settings, over two steps (the table is reused).
BOOST_AUTO_TEST_CASE(adamw_segments_equal_per_tensor_updates) {
  auto be_ = make_cuda_backend(0, Precision::fp32);
  Backend& be = *be_;
  const size_t n = 5000;
  std::vector<AdamWSegment> segs;
  for (size_t o = 0, k = 0; o < n - 400; k++) {
    const size_t size = k % 5 == 3 ? 0 : 1 + (k * 37) % 300;
    segs.push_back({o, size, k % 3 != 0});
    o += size + (k % 4 == 0 ? 7 : 0);  // some gaps: elements no segment covers stay as they are
  }
  Vec p0 = rnd(n), g = rnd(n, 0.1f);
  auto pa = put(be, p0), pb = put(be, p0), ga = put(be, g);
  Array<float> ma(be, n), va(be, n), mb(be, n), vb(be, n);
  for (int step = 1; step <= 2; step++) {
    const cpu::AdamWParams hp{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, step};
    for (const AdamWSegment& s : segs)
      be.adamw_update(pa.data() + s.offset, ma.data() + s.offset, va.data() + s.offset, ga.data() + s.offset, s.size,
                      hp, s.decay);
    be.adamw_update_segments(pb.data(), mb.data(), vb.data(), ga.data(), segs, hp);
    BOOST_TEST((get(be, pa) == get(be, pb)), "parameters after step " << step);
    BOOST_TEST((get(be, ma) == get(be, mb)), "first moments after step " << step);
    BOOST_TEST((get(be, va) == get(be, vb)), "second moments after step " << step);
  }
  BOOST_TEST((get(be, pa) != p0), "the update changed the parameters");
}

// Buffers kept in bf16 only (Backend::keep_bf16: the feed-forward's hidden activations and their gradients, in
// bf16 with train.bf16_activations): the feed-forward's forward and backward through them within 2e-2 of the largest
// magnitude of the same ops on fp32 buffers (train.bf16_activations = false), their values stored in place as
// bf16 in the first half of the room an fp32 buffer would take (the rest untouched: zero as allocated), and every
// op that would read or write their fp32 values refused with a one-line error.
BOOST_AUTO_TEST_CASE(kept_bf16_buffers_hold_only_their_copy) {
  const int N = 37, IC = 64, F = 96;
  Vec x = rnd(size_t(N) * IC), w1 = rnd(size_t(IC) * F, 0.2f), b1 = rnd(F), w2 = rnd(size_t(F) * IC, 0.2f), b2 = rnd(IC),
      dy = rnd(size_t(N) * IC);
  struct Out {
    Vec f, dx, dw1, db1, dw2, db2, m1;
    double max_m1 = 0, max_mid = 0;
  } out[2];
  auto fp32_stored = make_cuda_backend(0, GpuOptions{.precision = Precision::bf16, .bf16_activations = false});
  auto kept = make_cuda_backend(0, Precision::bf16);
  BOOST_TEST(!fp32_stored->keeps_bf16());
  BOOST_TEST(kept->keeps_bf16());
  for (int k = 0; k < 2; k++) {
    Backend& be = k ? *kept : *fp32_stored;
    auto x_ = put(be, x), w1_ = put(be, w1), b1_ = put(be, b1), w2_ = put(be, w2), b2_ = put(be, b2), dy_ = put(be, dy);
    Array<float> m1(be, size_t(N) * F), mid(be, size_t(N) * F), dmid(be, size_t(N) * F), dm1(be, size_t(N) * F);
    Array<float> f(be, size_t(N) * IC), dx(be, size_t(N) * IC), dw1(be, size_t(IC) * F), db1(be, F),
        dw2(be, size_t(F) * IC), db2(be, IC);
    for (auto* a : {&m1, &mid, &dmid, &dm1}) be.keep_bf16(a->data(), a->size());
    if (k) {  // read before anything wrote it: refused
      Array<float> fresh(be, size_t(N) * F), o(be, size_t(N) * F);
      be.keep_bf16(fresh.data(), fresh.size());
      BOOST_CHECK_THROW(be.activation_forward(o.data(), fresh.data(), fresh.size(), cpu::Activation::gelu_tanh),
                        strata::Error);
    }
    be.matmul_forward(m1.data(), x_.data(), w1_.data(), b1_.data(), N, IC, F);
    be.activation_forward(mid.data(), m1.data(), mid.size(), cpu::Activation::gelu_tanh);
    be.matmul_forward(f.data(), mid.data(), w2_.data(), b2_.data(), N, F, IC);
    out[k].max_m1 = be.stats_maxabs(m1.data(), m1.size());
    out[k].max_mid = be.stats_maxabs(mid.data(), mid.size());
    be.matmul_backward_input(dmid.data(), dy_.data(), w2_.data(), N, F, IC, false);
    be.activation_backward(dm1.data(), dmid.data(), m1.data(), dm1.size(), cpu::Activation::gelu_tanh);
    be.matmul_backward_input(dx.data(), dm1.data(), w1_.data(), N, IC, F, false);
    be.matmul_backward_weight(dw1.data(), db1.data(), dm1.data(), x_.data(), N, IC, F);
    be.matmul_backward_weight(dw2.data(), db2.data(), dy_.data(), mid.data(), N, F, IC);
    out[k].f = get(be, f), out[k].dx = get(be, dx), out[k].dw1 = get(be, dw1), out[k].db1 = get(be, db1);
    out[k].dw2 = get(be, dw2), out[k].db2 = get(be, db2);
    if (!k) {
      out[k].m1 = get(be, m1);
      continue;
    }
    be.synchronize();
    for (auto* a : {&m1, &mid, &dmid, &dm1}) {  // raw memory, past the backend's guard
      std::vector<uint16_t> raw(a->size() * 2, 1);
      BOOST_REQUIRE(cudaMemcpy(raw.data(), a->data(), raw.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess);
      BOOST_TEST(std::all_of(raw.begin() + a->size(), raw.end(), [](uint16_t v) { return v == 0; }),
                 "past its n bf16 values the room of a kept buffer is untouched");
      if (a != &m1) continue;
      Vec m1_values(a->size());
      for (size_t i = 0; i < m1_values.size(); i++) m1_values[i] = bf16_value(raw[i]);
      expect_close(m1_values, out[0].m1, 1e-2, "kept: m1 stored in place as bf16");
    }
    Vec host_m1(m1.size());
    Array<float> lo(be, size_t(N) * F), mean(be, N), rstd(be, N), g(be, F);
    auto refused = [](auto&& call, const char* op) {
      try {
        call();
        BOOST_ERROR(op << " of a buffer kept in bf16 was not refused");
      } catch (const strata::Error& e) {
        const std::string m = e.what();
        BOOST_TEST((m.find(op) != std::string::npos && m.find('\n') == std::string::npos), m);
      }
    };
    refused([&] { be.download(host_m1.data(), m1.data(), host_m1.size() * sizeof(float)); }, "download");
    refused([&] { be.layernorm_forward(lo.data(), mean.data(), rstd.data(), m1.data(), g.data(), g.data(), N, F, 1e-5); },
            "layernorm_forward");
    refused([&] { be.residual_forward(mid.data(), lo.data(), 1.0f, lo.data(), lo.size()); }, "residual_forward");
    refused([&] { be.copy(lo.data(), dm1.data(), lo.size() * sizeof(float)); }, "copy");
    refused([&] { be.matmul_backward_input(dmid.data(), dy_.data(), w2_.data(), N, F, IC, true); },
            "matmul_backward_input");
  }
  expect_close(out[1].f, out[0].f, 2e-2, "kept: forward output");
  expect_close(out[1].dx, out[0].dx, 2e-2, "kept: input gradient");
  expect_close(out[1].dw1, out[0].dw1, 2e-2, "kept: dw1");
  expect_close(out[1].db1, out[0].db1, 2e-2, "kept: db1 (from the bf16 gradient)");
  expect_close(out[1].dw2, out[0].dw2, 2e-2, "kept: dw2");
  expect_close(out[1].db2, out[0].db2, 2e-2, "kept: db2");
  BOOST_TEST(std::fabs(out[1].max_m1 - out[0].max_m1) <= 8e-3 * out[0].max_m1, "max |m1| of the bf16 values");
  BOOST_TEST(std::fabs(out[1].max_mid - out[0].max_mid) <= 8e-3 * out[0].max_mid, "max |mid| of the bf16 values");
  BOOST_TEST(out[1].f != out[0].f, "kept in bf16 rounds the hidden activations");
}

// The attention sub-layer through the CUDA backend with qkv, the attention's out and their gradients kept in bf16
// only (as the model keeps them where keeps_attention_bf16), WMMA and mma: every output within 2e-2 of the largest
// magnitude of the same backend storing them in fp32 (train.bf16_activations = false); out's max-abs statistic
// read from its bf16 values; an fp32 read of the kept out refused. Head size 16, T = 37 (a partial tile).
BOOST_AUTO_TEST_CASE(kept_attention_buffers_through_the_backend) {
  const int B = 2, T = 37, C = 64, H = 4, N = B * T;
  Vec x = rnd(size_t(N) * C), w1 = rnd(size_t(C) * 3 * C, 0.2f), b1 = rnd(3 * C), w2 = rnd(size_t(C) * C, 0.2f),
      b2 = rnd(C), df = rnd(size_t(N) * C);
  for (bool mma : {false, true}) {
    const char* kind = mma ? "mma" : "wmma";
    std::vector<Vec> res[2];
    double max_out[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
      auto be_ = make_cuda_backend(0, GpuOptions{.precision = Precision::bf16, .mma_attention = mma,
                                                 .bf16_activations = k == 1});
      Backend& be = *be_;
      BOOST_TEST_REQUIRE(be.keeps_attention_bf16(C, H) == (k == 1));
      auto x_ = put(be, x), w1_ = put(be, w1), b1_ = put(be, b1), w2_ = put(be, w2), b2_ = put(be, b2),
           df_ = put(be, df);
      Array<float> qkv(be, size_t(N) * 3 * C), out(be, size_t(N) * C), lse(be, size_t(B) * H * T), f(be, size_t(N) * C),
          dout(be, size_t(N) * C), dqkv(be, size_t(N) * 3 * C), dx(be, size_t(N) * C), dw1(be, size_t(C) * 3 * C),
          db1(be, 3 * C), dw2(be, size_t(C) * C), db2(be, C);
      for (auto* a : {&qkv, &out, &dout, &dqkv}) be.keep_bf16(a->data(), a->size());
      be.matmul_forward(qkv.data(), x_.data(), w1_.data(), b1_.data(), N, C, 3 * C);
      be.attention_forward(out.data(), nullptr, lse.data(), qkv.data(), B, T, C, H);
      be.matmul_forward(f.data(), out.data(), w2_.data(), b2_.data(), N, C, C);
      max_out[k] = be.stats_maxabs(out.data(), out.size());
      be.matmul_backward_input(dout.data(), df_.data(), w2_.data(), N, C, C, false);
      be.attention_backward(dqkv.data(), dout.data(), out.data(), nullptr, lse.data(), qkv.data(), B, T, C, H);
      be.matmul_backward_input(dx.data(), dqkv.data(), w1_.data(), N, C, 3 * C, false);
      be.matmul_backward_weight(dw1.data(), db1.data(), dqkv.data(), x_.data(), N, C, 3 * C);
      be.matmul_backward_weight(dw2.data(), db2.data(), df_.data(), out.data(), N, C, C);
      res[k] = {get(be, f), get(be, lse), get(be, dx), get(be, dw1), get(be, db1), get(be, dw2)};
      if (k) {
        Vec host_out(out.size());
        BOOST_CHECK_THROW(be.download(host_out.data(), out.data(), host_out.size() * sizeof(float)), strata::Error);
      }
    }
    const char* names[] = {"f", "lse", "dx", "dw1", "db1", "dw2"};
    for (int i = 0; i < 6; i++)
      expect_close(res[1][i], res[0][i], 2e-2, (std::string(kind) + ": kept attention buffers: " + names[i]).c_str());
    BOOST_TEST(std::fabs(max_out[1] - max_out[0]) <= 1e-2 * max_out[0], kind << ": max |out| kept " << max_out[1]
                                                                            << " vs fp32-stored " << max_out[0]);
  }
}

// The sub-layer's input gradient in one pass (layernorm_backward_residual): the bits of scale_copy then
// layernorm_backward(+=) on the same backend, and within 1e-5 of the CPU's pair.
BOOST_AUTO_TEST_CASE(layernorm_backward_residual_equals_the_pair) {
  auto be_ = make_cuda_backend(0, Precision::fp32);
  Backend& be = *be_;
  Backend& cpu = cpu_backend();
  const int N = 45, C = 96;
  const size_t n = size_t(N) * C;
  Vec in = rnd(n, 2.0f), dout = rnd(n), gain = rnd(C), resid = rnd(n), mean(N), rstd(N), lnout(n);
  cpu.layernorm_forward(lnout.data(), mean.data(), rstd.data(), in.data(), gain.data(), gain.data(), N, C, 1e-5);
  auto in_ = put(be, in), dout_ = put(be, dout), gain_ = put(be, gain), resid_ = put(be, resid), mean_ = put(be, mean),
       rstd_ = put(be, rstd);
  for (float alpha : {1.0f, 0.37f}) {
    Vec dg0 = rnd(C), db0 = rnd(C);
    auto pair = poisoned(be, n), fused = poisoned(be, n);
    auto dg1 = put(be, dg0), db1 = put(be, db0), dg2 = put(be, dg0), db2 = put(be, db0);
    be.scale_copy(pair.data(), resid_.data(), alpha, n, false);
    be.layernorm_backward(pair.data(), dg1.data(), db1.data(), dout_.data(), in_.data(), gain_.data(), mean_.data(),
                          rstd_.data(), N, C, true);
    be.layernorm_backward_residual(fused.data(), dg2.data(), db2.data(), dout_.data(), in_.data(), gain_.data(),
                                   mean_.data(), rstd_.data(), N, C, resid_.data(), alpha);
    BOOST_TEST((get(be, pair) == get(be, fused)), "alpha " << alpha << ": din, fused vs the pair");
    BOOST_TEST((get(be, dg1) == get(be, dg2)), "alpha " << alpha << ": dgain");
    BOOST_TEST((get(be, db1) == get(be, db2)), "alpha " << alpha << ": dbias");
    Vec want(n), dgw = dg0, dbw = db0;
    cpu.layernorm_backward_residual(want.data(), dgw.data(), dbw.data(), dout.data(), in.data(), gain.data(),
                                    mean.data(), rstd.data(), N, C, resid.data(), alpha);
    expect_close(get(be, fused), want, 1e-5, "layernorm_backward_residual against the CPU");
  }
}
