// test_init.cpp: each init.scheme on Strata's own initialised weights: every matrix's empirical std against
// the scheme's formula, 1/√(2L) and β exactly where they belong, biases 0, gains 1, the "" default, and the
// same values whatever the stage split.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE init
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>

#include "model/model.hpp"

using namespace strata;
namespace bdata = boost::unit_test::data;

namespace {

const int L = 6, d = 128;
const double kBeta = std::pow(8.0 * L, -0.25);

// Every matrix (and the v columns of w_qkv) has ≥ 16384 elements: the std's standard error is ≤ 0.55%.
ModelConfig cfg(const std::string& norm, const std::string& scheme) {
  ModelConfig m;
  m.layers = L, m.d_model = d, m.heads = 4, m.d_ffn = 512, m.seq_len = 128, m.vocab = 256;
  m.norm = norm, m.init_scheme = scheme;
  return m;
}

std::vector<float> params_of(const ModelConfig& m) {
  Model model(m);
  model.init(3);
  return model.params;
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Mean and std of columns [c0, c1) of a row-major [rows, cols] matrix.
std::pair<double, double> moments(const float* p, int rows, int cols, int c0, int c1) {
  double s = 0, sq = 0;
  for (int r = 0; r < rows; r++)
    for (int c = c0; c < c1; c++) {
      const double v = p[size_t(r) * cols + c];
      s += v, sq += v * v;
    }
  const double n = double(rows) * (c1 - c0), mean = s / n;
  return {mean, std::sqrt(sq / n - mean * mean)};
}

// Largest |a[i] / b[i] − ratio| / ratio over a tensor.
double ratio_error(const float* a, const float* b, size_t n, double ratio) {
  double worst = 0;
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0) worst = std::max(worst, std::fabs(double(a[i]) / b[i] - ratio) / ratio);
  return worst;
}

}  // namespace

BOOST_DATA_TEST_CASE(every_matrix_has_its_schemes_std, bdata::make({"gpt2", "normal", "xavier", "deepnet"}), scheme) {
  const std::string s = scheme;
  Model m(cfg("mix", s));
  m.init(3);
  const bool xavier = s == "xavier" || s == "deepnet";
  const double beta = s == "deepnet" ? kBeta : 1.0, out = s == "gpt2" ? 1.0 / std::sqrt(2.0 * L) : 1.0;
  double worst = 0;
  int matrices = 0;
  for (const TensorSpec& t : m.layout.tensors) {
    const float* p = m.params.data() + t.offset;
    const std::string& n = t.name;
    if (t.shape.size() == 1) {
      const float want = ends_with(n, "/gain") ? 1.0f : 0.0f;
      size_t bad = 0;
      for (size_t i = 0; i < t.size; i++) bad += p[i] != want;
      BOOST_TEST(bad == 0u, n << ": " << bad << " elements are not " << want);
      continue;
    }
    const int rows = t.shape[0], cols = t.shape[1];
    double want = xavier && !ends_with(n, "_embedding") ? std::sqrt(2.0 / (rows + cols)) : 0.02;
    if (ends_with(n, "/w_o") || ends_with(n, "/w_f")) want *= out * beta;
    if (ends_with(n, "/w_h")) want *= beta;
    auto check = [&](int c0, int c1, double sd_want) {
      const auto [mean, sd] = moments(p, rows, cols, c0, c1);
      const double err = std::fabs(sd / sd_want - 1);
      BOOST_TEST(err < 0.03, n << " columns [" << c0 << ", " << c1 << "): std " << sd << ", formula " << sd_want);
      BOOST_TEST(std::fabs(mean) < 0.05 * sd_want, n << ": mean " << mean);
      worst = std::max(worst, err);
    };
    if (ends_with(n, "/w_qkv")) {
      check(0, 2 * d, want);
      check(2 * d, 3 * d, want * beta);
    } else {
      check(0, cols, want);
    }
    matrices++;
  }
  BOOST_TEST(matrices == 2 + 4 * L + 1);
  BOOST_TEST_MESSAGE(s << ": " << matrices << " matrices, worst |std/formula − 1| = " << worst);
  // A stage draws exactly its part of the whole model.
  Model tail(cfg("mix", s), {3, L, false, true});
  tail.init(3);
  BOOST_TEST(std::memcmp(tail.params.data(), m.params.data() + tail.slice_begin, tail.params.size() * 4) == 0);
}

BOOST_AUTO_TEST_CASE(depth_scales_apply_exactly_where_they_belong) {
  const auto gpt2 = params_of(cfg("pre", "gpt2")), normal = params_of(cfg("pre", "normal"));
  const auto xavier = params_of(cfg("pre", "xavier")), deepnet = params_of(cfg("pre", "deepnet"));
  const double out = 1.0 / std::sqrt(2.0 * L);
  double worst = 0;
  for (const TensorSpec& t : layout_build(cfg("pre", "")).tensors) {
    const std::string& n = t.name;
    const size_t o = t.offset;
    const bool out_proj = ends_with(n, "/w_o") || ends_with(n, "/w_f");
    // gpt2 is normal with w_o and w_f × 1/√(2L).
    if (out_proj) {
      const double e = ratio_error(&gpt2[o], &normal[o], t.size, out);
      BOOST_TEST(e < 1e-6, n << ": gpt2/normal off 1/√(2L) by " << e);
      worst = std::max(worst, e);
    } else {
      BOOST_TEST(std::memcmp(&gpt2[o], &normal[o], t.size * 4) == 0, n << ": gpt2 ≠ normal");
    }
    // deepnet is xavier with w_h, w_f, w_o and the v columns of w_qkv × β.
    if (out_proj || ends_with(n, "/w_h")) {
      const double e = ratio_error(&deepnet[o], &xavier[o], t.size, kBeta);
      BOOST_TEST(e < 1e-6, n << ": deepnet/xavier off β by " << e);
      worst = std::max(worst, e);
    } else if (ends_with(n, "/w_qkv")) {
      for (int r = 0; r < d; r++) {
        const size_t row = o + size_t(r) * 3 * d;
        BOOST_TEST_REQUIRE(std::memcmp(&deepnet[row], &xavier[row], 2 * d * 4) == 0, n << ": q, k");
        const double e = ratio_error(&deepnet[row + 2 * d], &xavier[row + 2 * d], d, kBeta);
        BOOST_TEST_REQUIRE(e < 1e-6, n << ": deepnet/xavier v columns off β by " << e);
        worst = std::max(worst, e);
      }
    } else {
      BOOST_TEST(std::memcmp(&deepnet[o], &xavier[o], t.size * 4) == 0, n << ": deepnet ≠ xavier");
    }
    // Embeddings are normal(init_std) in every scheme.
    if (ends_with(n, "_embedding"))
      BOOST_TEST(std::memcmp(&xavier[o], &normal[o], t.size * 4) == 0, n << ": xavier ≠ normal");
  }
  BOOST_TEST_MESSAGE("worst relative error of a scaled element: " << worst);
}

BOOST_AUTO_TEST_CASE(empty_scheme_is_deepnet_for_deepnorm_and_gpt2_otherwise) {
  for (const char* norm : {"post", "res_post", "pre", "peri", "deepnorm", "mix"}) {
    const std::string want = std::string(norm) == "deepnorm" ? "deepnet" : "gpt2";
    BOOST_TEST((params_of(cfg(norm, "")) == params_of(cfg(norm, want))), norm << ": \"\" is not " << want);
  }
  // Placement and init are independent: deepnorm with gpt2 is not deepnet.
  BOOST_TEST((params_of(cfg("deepnorm", "gpt2")) != params_of(cfg("deepnorm", "deepnet"))));
}
