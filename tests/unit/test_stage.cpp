// test_stage.cpp: the model split into stages and the backward split into B and W passes give the same bits as
// the whole model's fused backward, for every placement; mix's per-block layout; slots keep micro-batches apart.
#define BOOST_TEST_DYN_LINK
#define BOOST_TEST_MODULE stage
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <random>

#include "model/model.hpp"

using namespace strata;
namespace bdata = boost::unit_test::data;

namespace {

ModelConfig cfg(const std::string& norm) {
  ModelConfig m;
  m.layers = 4, m.d_model = 16, m.heads = 2, m.d_ffn = 32, m.seq_len = 8, m.norm = norm;
  return m;
}

std::vector<int32_t> tokens(int n, int seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(g() % 256);
  return t;
}

}  // namespace

BOOST_DATA_TEST_CASE(split_stages_and_deferred_weights_equal_the_whole_model,
                     bdata::make({"post", "res_post", "pre", "peri", "deepnorm", "mix"}), norm) {
  const ModelConfig m = cfg(norm);
  const int B = 2, T = 8, N = B * T;
  auto xa = tokens(N, 1), ya = tokens(N, 2), xb = tokens(N, 3), yb = tokens(N, 4);
  const float scale = 1.0f / (2 * N);

  Model whole(m);
  whole.init(5);
  int sa = whole.acquire(B, T);
  double la = whole.forward_slot(sa, xa.data(), ya.data());
  whole.backward_input(sa, scale, false);
  whole.release(sa);
  int sb = whole.acquire(B, T);
  double lb = whole.forward_slot(sb, xb.data(), yb.data());
  whole.backward_input(sb, scale, false);
  whole.release(sb);

  // Both micro-batches in flight, B passes first, W passes deferred.
  Model deferred(m);
  deferred.init(5);
  int da = deferred.acquire(B, T), db = deferred.acquire(B, T);
  BOOST_TEST(da != db);
  BOOST_TEST(deferred.forward_slot(da, xa.data(), ya.data()) == la);
  BOOST_TEST(deferred.forward_slot(db, xb.data(), yb.data()) == lb);
  deferred.backward_input(da, scale, true);
  deferred.backward_input(db, scale, true);
  deferred.backward_weight(da);
  deferred.backward_weight(db);
  BOOST_TEST(std::memcmp(deferred.grads.data(), whole.grads.data(), whole.grads.size() * 4) == 0);

  // Two stages: [embedding, blocks 0–1] and [blocks 2–3, head], activations and gradients copied by hand.
  Model s0(m, {0, 2, true, false}), s1(m, {2, 4, false, true});
  s0.init(5);
  s1.init(5);
  BOOST_TEST(s0.params.size() + s1.params.size() == whole.params.size());
  BOOST_TEST(std::memcmp(s1.params.data(), whole.params.data() + s1.slice_begin, s1.params.size() * 4) == 0);
  double loss = 0;
  for (auto [x, y] : {std::pair{&xa, &ya}, std::pair{&xb, &yb}}) {
    int a0 = s0.acquire(B, T), a1 = s1.acquire(B, T);
    s0.forward_slot(a0, x->data(), nullptr);
    std::memcpy(s1.input(a1), s0.output(a0), size_t(N) * m.d_model * 4);
    loss += s1.forward_slot(a1, nullptr, y->data());
    s1.backward_input(a1, scale, false);
    std::memcpy(s0.output_grad(a0), s1.input_grad(a1), size_t(N) * m.d_model * 4);
    s0.backward_input(a0, scale, false);
    s0.release(a0);
    s1.release(a1);
  }
  BOOST_TEST(loss == la + lb);
  BOOST_TEST(std::memcmp(s0.grads.data(), whole.grads.data(), s0.grads.size() * 4) == 0);
  BOOST_TEST(std::memcmp(s1.grads.data(), whole.grads.data() + s1.slice_begin, s1.grads.size() * 4) == 0);
  // The gradients are not trivially zero.
  double sq = 0;
  for (float g : whole.grads) sq += double(g) * g;
  BOOST_TEST(sq > 1e-6);
}

BOOST_AUTO_TEST_CASE(mix_has_post_blocks_then_pre_blocks_and_a_final_norm) {
  ModelConfig m = cfg("mix");
  m.layers = 8;
  auto names = [](const ModelConfig& c) {
    std::vector<std::string> n;
    for (const TensorSpec& t : layout_build(c).tensors) n.push_back(t.name);
    return n;
  };
  const ParamLayout l = layout_build(m);
  BOOST_TEST(mix_post_blocks(m) == 2);
  for (int b = 0; b < 8; b++) {
    const bool post = b < 2;
    BOOST_TEST((l.attn[b].ln_out_g != kAbsent) == post);
    BOOST_TEST((l.ffn[b].ln_out_g != kAbsent) == post);
    BOOST_TEST((l.attn[b].ln_in_g != kAbsent) == !post);
    BOOST_TEST((l.ffn[b].ln_in_g != kAbsent) == !post);
    BOOST_TEST(norm_flags(m, b).alpha == 1.0f);
  }
  BOOST_TEST(l.final_norm_g != kAbsent);
  // f = 0 is pre's layout, f = 1 post's plus the final norm; ⌊f·L⌋ of a decimal f is exact.
  ModelConfig pre = cfg("pre"), post = cfg("post");
  pre.layers = post.layers = m.layers;
  m.mix_post_fraction = 0;
  BOOST_TEST((names(m) == names(pre)));
  m.mix_post_fraction = 1;
  std::vector<std::string> want = names(post);
  want.insert(want.end() - 1, {"final_norm/gain", "final_norm/bias"});
  BOOST_TEST((names(m) == want));
  m.mix_post_fraction = 0.29, m.layers = 100;
  BOOST_TEST(mix_post_blocks(m) == 29);
}

BOOST_AUTO_TEST_CASE(slots_are_reused_after_release_and_counted) {
  Model m(cfg("pre"));
  int a = m.acquire(2, 8), b = m.acquire(2, 8);
  const size_t two = m.activation_bytes();
  m.release(a);
  int c = m.acquire(2, 8);
  BOOST_TEST(c == a);
  BOOST_TEST(m.activation_bytes() == two);
  BOOST_TEST(m.slots_allocated() == 2);
  (void)b;
}

// Recomputation changes what a slot keeps, never a bit of the result: two micro-batches in flight with deferred W
// passes (the case where full recomputation reruns a block twice), a middle stage and a head stage, every mode
// against none; and each mode allocates exactly what activation_floats (strata plan) predicts, full the least.
BOOST_DATA_TEST_CASE(recompute_keeps_less_and_gives_the_same_bits,
                     bdata::make({"post", "res_post", "pre", "peri", "deepnorm", "mix"}), norm) {
  const ModelConfig m = cfg(norm);
  const int B = 2, T = 8, N = B * T;
  auto xa = tokens(N, 1), ya = tokens(N, 2), xb = tokens(N, 3), yb = tokens(N, 4);
  const float scale = 1.0f / (2 * N);
  for (StageRange range : {StageRange{0, 4, true, true}, StageRange{1, 3, false, false}, StageRange{2, 4, false, true}}) {
    std::vector<float> ref_grads, ref_dx;
    double ref_loss = 0;
    size_t none_bytes = 0;
    for (Recompute rc : {Recompute::none, Recompute::selective, Recompute::full}) {
      Model md(m, range, nullptr, rc);
      md.init(5);
      md.collect_stats = true;
      md.reset_stats();
      int a = md.acquire(B, T), b = md.acquire(B, T);
      std::vector<float> in(size_t(N) * m.d_model);
      for (size_t i = 0; i < in.size(); i++) in[i] = 0.5f * std::sin(0.37f * float(i));
      double loss = 0;
      for (int s : {a, b}) {
        if (!range.embedding) std::memcpy(md.input(s), in.data(), in.size() * 4);
        if (!range.head)
          for (size_t i = 0; i < in.size(); i++) md.output_grad(s)[i] = 0.01f * std::cos(0.11f * float(i));
        loss += md.forward_slot(s, (s == a ? xa : xb).data(), (s == a ? ya : yb).data());
      }
      md.backward_input(a, scale, true);
      md.backward_input(b, scale, true);
      md.backward_weight(b);
      md.backward_weight(a);
      std::vector<float> dx(md.input_grad(a), md.input_grad(a) + in.size());
      const ActFloats f = activation_floats(m, range, rc, act_traits(md.backend(), m), B, T);
      BOOST_TEST(md.activation_bytes() == 2 * 4 * (f.per_slot + f.deferred_w));
      BOOST_TEST(md.scratch_bytes() == 4 * f.scratch);
      if (rc == Recompute::none) {
        ref_grads = md.grads, ref_dx = dx, ref_loss = loss, none_bytes = md.activation_bytes();
        continue;
      }
      BOOST_TEST(loss == ref_loss);
      BOOST_TEST(std::memcmp(md.grads.data(), ref_grads.data(), ref_grads.size() * 4) == 0, "gradients, mode " << int(rc));
      BOOST_TEST(std::memcmp(dx.data(), ref_dx.data(), dx.size() * 4) == 0, "input gradient, mode " << int(rc));
      BOOST_TEST(md.activation_bytes() < none_bytes);
    }
  }
}
