// test_ops.cpp: every CPU op's hand-written backward against central finite differences in float64,
// and the '=' / '+=' contract of each output.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE ops
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "backend/ops.hpp"

using namespace strata::cpu;
using Vec = std::vector<double>;

namespace {

Vec randn(size_t n, std::mt19937_64& g, double s = 1.0) {
  std::normal_distribution<double> d(0.0, s);
  Vec v(n);
  for (auto& x : v) x = d(g);
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

// Largest relative error between the analytic gradient of L(x) with respect to x and central differences.
double fd_error(Vec& x, const Vec& analytic, const std::function<double()>& L, double h = 1e-6) {
  double worst = 0, scale = 1e-8;
  for (double a : analytic) scale = std::max(scale, std::fabs(a));
  for (size_t i = 0; i < x.size(); i++) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = L();
    x[i] = x0 - h;
    const double lm = L();
    x[i] = x0;
    const double num = (lp - lm) / (2 * h);
    worst = std::max(worst, std::fabs(num - analytic[i]) / scale);
  }
  return worst;
}

constexpr double kTol = 1e-6;  // relative to the gradient's largest entry

}  // namespace

BOOST_AUTO_TEST_CASE(matmul_backward_matches_finite_differences) {
  std::mt19937_64 g(1);
  const int N = 5, IC = 4, OC = 3;
  Vec in = randn(N * IC, g), w = randn(IC * OC, g), b = randn(OC, g), dout = randn(N * OC, g), out(N * OC);
  auto L = [&] {
    matmul_forward(out.data(), in.data(), w.data(), b.data(), N, IC, OC);
    return dot(out, dout);
  };
  Vec din(N * IC, 0.0), dw(IC * OC, 0.0), db(OC, 0.0);
  matmul_backward_input(din.data(), dout.data(), w.data(), N, IC, OC, false);
  matmul_backward_weight(dw.data(), db.data(), dout.data(), in.data(), N, IC, OC);
  BOOST_TEST(fd_error(in, din, L) < kTol);
  BOOST_TEST(fd_error(w, dw, L) < kTol);
  BOOST_TEST(fd_error(b, db, L) < kTol);
  // '+=' contract: a second backward doubles the weight gradients, and accumulate=true adds to din.
  Vec dw2 = dw, db2 = db, din2 = din;
  matmul_backward_weight(dw2.data(), db2.data(), dout.data(), in.data(), N, IC, OC);
  matmul_backward_input(din2.data(), dout.data(), w.data(), N, IC, OC, true);
  for (size_t i = 0; i < dw.size(); i++) BOOST_TEST(dw2[i] == 2 * dw[i], boost::test_tools::tolerance(1e-12));
  for (size_t i = 0; i < db.size(); i++) BOOST_TEST(db2[i] == 2 * db[i], boost::test_tools::tolerance(1e-12));
  for (size_t i = 0; i < din.size(); i++) BOOST_TEST(din2[i] == 2 * din[i], boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(layernorm_backward_matches_finite_differences) {
  std::mt19937_64 g(2);
  const int N = 4, C = 7;
  Vec in = randn(N * C, g, 2.0), gain = randn(C, g), bias = randn(C, g), dout = randn(N * C, g);
  Vec out(N * C), mean(N), rstd(N);
  auto L = [&] {
    layernorm_forward(out.data(), mean.data(), rstd.data(), in.data(), gain.data(), bias.data(), N, C, 1e-5);
    return dot(out, dout);
  };
  L();
  Vec din(N * C, 0.0), dg(C, 0.0), db(C, 0.0);
  layernorm_backward(din.data(), dg.data(), db.data(), dout.data(), in.data(), gain.data(), mean.data(), rstd.data(),
                     N, C, false);
  BOOST_TEST(fd_error(in, din, L) < kTol);
  BOOST_TEST(fd_error(gain, dg, L) < kTol);
  BOOST_TEST(fd_error(bias, db, L) < kTol);
  // Forward: each row has mean ≈ bias-free 0 and variance ≈ 1 before the affine map.
  Vec ones(C, 1.0), zeros(C, 0.0);
  layernorm_forward(out.data(), mean.data(), rstd.data(), in.data(), ones.data(), zeros.data(), N, C, 1e-5);
  for (int n = 0; n < N; n++) {
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += out[n * C + c];
    for (int c = 0; c < C; c++) v += out[n * C + c] * out[n * C + c];
    BOOST_TEST(std::fabs(m / C) < 1e-12);
    BOOST_TEST(std::fabs(v / C - 1.0) < 1e-4);
  }
}

BOOST_AUTO_TEST_CASE(attention_backward_matches_finite_differences) {
  std::mt19937_64 g(3);
  const int B = 2, T = 5, C = 6, H = 2;
  Vec qkv = randn(B * T * 3 * C, g), dout = randn(B * T * C, g), out(B * T * C), probs(B * H * T * T);
  auto L = [&] {
    attention_forward(out.data(), probs.data(), qkv.data(), B, T, C, H);
    return dot(out, dout);
  };
  L();
  Vec dqkv(qkv.size(), 7.0);  // poisoned: the backward must overwrite
  attention_backward(dqkv.data(), dout.data(), probs.data(), qkv.data(), B, T, C, H);
  BOOST_TEST(fd_error(qkv, dqkv, L) < kTol);
  // Causality: probabilities above the diagonal are 0 and each row sums to 1.
  for (int bh = 0; bh < B * H; bh++)
    for (int i = 0; i < T; i++) {
      double s = 0;
      for (int j = 0; j < T; j++) {
        double p = probs[(size_t(bh) * T + i) * T + j];
        if (j > i) BOOST_TEST(p == 0.0);
        s += p;
      }
      BOOST_TEST(std::fabs(s - 1) < 1e-12);
    }
}

BOOST_AUTO_TEST_CASE(activations_backward_match_finite_differences) {
  for (auto a : {Activation::gelu_tanh, Activation::gelu, Activation::relu}) {
    std::mt19937_64 g(4);
    const size_t n = 64;
    Vec in = randn(n, g, 2.0), dout = randn(n, g), out(n);
    for (auto& x : in)
      if (std::fabs(x) < 1e-3) x = 0.5;  // relu's kink
    auto L = [&] {
      activation_forward(out.data(), in.data(), n, a);
      return dot(out, dout);
    };
    Vec din(n, 9.0);
    activation_backward(din.data(), dout.data(), in.data(), n, a);
    BOOST_TEST(fd_error(in, din, L) < 1e-5);  // libmvec tanh/erf are accurate to a few ulp
  }
  // gelu_tanh at known points (Hendrycks & Gimpel): gelu(1) ≈ 0.8412, gelu(-1) ≈ -0.1588.
  Vec x = {1.0, -1.0}, y(2);
  activation_forward(y.data(), x.data(), 2, Activation::gelu_tanh);
  BOOST_TEST(std::fabs(y[0] - 0.8411920) < 1e-6);
  BOOST_TEST(std::fabs(y[1] + 0.1588080) < 1e-6);
}

BOOST_AUTO_TEST_CASE(crossentropy_backward_matches_finite_differences) {
  std::mt19937_64 g(5);
  const int N = 4, V = 9;
  Vec logits = randn(N * V, g, 3.0), losses(N), w = randn(N, g);
  std::vector<int32_t> tgt = {0, 3, 8, 5};
  auto L = [&] {
    crossentropy_forward(losses.data(), logits.data(), tgt.data(), N, V);
    return dot(losses, w);
  };
  // dL/dlogits with per-row weights: backward with scale 1 per row, then weight each row.
  Vec dl(N * V);
  crossentropy_backward(dl.data(), logits.data(), tgt.data(), N, V, 1.0);
  for (int n = 0; n < N; n++)
    for (int v = 0; v < V; v++) dl[n * V + v] *= w[n];
  BOOST_TEST(fd_error(logits, dl, L) < kTol);
  // A uniform distribution has loss log V.
  Vec flat(V, 0.5), l1(1);
  int32_t t0 = 2;
  crossentropy_forward(l1.data(), flat.data(), &t0, 1, V);
  BOOST_TEST(std::fabs(l1[0] - std::log(double(V))) < 1e-12);
}

BOOST_AUTO_TEST_CASE(embedding_backward_matches_finite_differences) {
  std::mt19937_64 g(6);
  const int B = 2, T = 3, C = 4, V = 5;
  Vec wte = randn(V * C, g), wpe = randn(T * C, g), dout = randn(B * T * C, g), out(B * T * C);
  std::vector<int32_t> tok = {1, 4, 1, 0, 1, 3};  // repeated ids exercise the scatter-add
  auto L = [&] {
    embedding_forward(out.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
    return dot(out, dout);
  };
  Vec dwte(V * C, 0.0), dwpe(T * C, 0.0);
  embedding_backward(dwte.data(), dwpe.data(), dout.data(), tok.data(), B, T, C);
  BOOST_TEST(fd_error(wte, dwte, L) < kTol);
  BOOST_TEST(fd_error(wpe, dwpe, L) < kTol);
}

BOOST_AUTO_TEST_CASE(residual_and_reductions) {
  Vec x = {1, 2, 3}, gg = {0.5, 0.25, 0}, out(3);
  residual_forward(out.data(), x.data(), 2.0, gg.data(), 3);
  BOOST_TEST(out[0] == 2.5);
  BOOST_TEST(out[2] == 6.0);
  std::vector<float> v(10000);
  for (size_t i = 0; i < v.size(); i++) v[i] = float(i % 7) - 3.0f;
  double ref = 0;
  for (float f : v) ref += double(f) * f;
  BOOST_TEST(sum_squares(v.data(), v.size()) == ref);
}

BOOST_AUTO_TEST_CASE(adamw_matches_closed_form_first_step) {
  // First step: m̂ = g, v̂ = g², so p ← p − lr·(g/(|g|+eps) + wd·p) = p − lr·(sign(g) + wd·p) up to eps.
  std::vector<float> p = {1.0f, -2.0f}, m(2, 0.0f), v(2, 0.0f), gr = {0.3f, -0.1f};
  AdamWParams hp{0.01f, 0.9f, 0.95f, 1e-8f, 0.1f, 1};
  adamw_update(p.data(), m.data(), v.data(), gr.data(), 2, hp, true);
  BOOST_TEST(std::fabs(p[0] - (1.0f - 0.01f * (1.0f + 0.1f * 1.0f))) < 1e-6);
  BOOST_TEST(std::fabs(p[1] - (-2.0f - 0.01f * (-1.0f + 0.1f * -2.0f))) < 1e-6);
  std::vector<float> q = {1.0f}, mq(1, 0.0f), vq(1, 0.0f), gq = {0.3f};
  adamw_update(q.data(), mq.data(), vq.data(), gq.data(), 1, hp, false);  // no decay on this tensor
  BOOST_TEST(std::fabs(q[0] - (1.0f - 0.01f)) < 1e-6);
}
