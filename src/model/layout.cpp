// layout.cpp: builds the layer-major parameter layout and the norm flags of each placement.
#include "model/layout.hpp"

#include <cmath>
#include <cstdio>

namespace strata {

NormFlags norm_flags(const ModelConfig& m, int block) {
  NormFlags f;
  if (m.norm == "post") {
    f.ln_sum = true;
  } else if (m.norm == "res_post") {
    f.ln_branch = true;
  } else if (m.norm == "pre") {
    f.ln_in = true;
  } else if (m.norm == "peri") {
    f.ln_in = f.ln_branch = true;
  } else if (m.norm == "deepnorm") {
    f.ln_sum = true;
    f.alpha = float(std::pow(2.0 * m.layers, 0.25));
  } else if (m.norm == "mix") {
    f.ln_sum = block < mix_post_blocks(m);
    f.ln_in = !f.ln_sum;
  }
  return f;
}

bool has_final_norm(const ModelConfig& m) {
  return m.norm == "pre" || m.norm == "res_post" || m.norm == "peri" || m.norm == "mix";
}

// The 1e-9 keeps a fraction typed in decimal exact: 0.29 · 100 is 28.999999999999996 in binary.
int mix_post_blocks(const ModelConfig& m) { return int(std::floor(m.mix_post_fraction * m.layers + 1e-9)); }

const TensorSpec* ParamLayout::find(const std::string& name) const {
  for (auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

ParamLayout layout_build(const ModelConfig& m) {
  ParamLayout l;
  const int d = m.d_model;
  auto add = [&](const std::string& name, std::vector<int> shape, int block, bool decay) {
    TensorSpec t;
    t.name = name;
    t.shape = shape;
    t.size = 1;
    for (int s : shape) t.size *= size_t(s);
    t.offset = l.total;
    t.block = block;
    t.decay = decay;
    l.total += t.size;
    l.tensors.push_back(t);
    return t.offset;
  };
  l.tok_embedding = add("tok_embedding", {m.vocab, d}, -1, true);
  l.pos_embedding = add("pos_embedding", {m.seq_len, d}, -1, true);
  l.attn.resize(m.layers);
  l.ffn.resize(m.layers);
  for (int b = 0; b < m.layers; b++) {
    l.block_begin.push_back(l.total);
    NormFlags nf = norm_flags(m, b);
    char pre[32];
    std::snprintf(pre, sizeof pre, "blocks/%03d/", b);
    for (int s = 0; s < 2; s++) {
      std::string p = std::string(pre) + (s == 0 ? "attn/" : "ffn/");
      SubOffsets& o = s == 0 ? l.attn[b] : l.ffn[b];
      if (nf.ln_in) {
        o.ln_in_g = add(p + "ln_in/gain", {d}, b, false);
        o.ln_in_b = add(p + "ln_in/bias", {d}, b, false);
      }
      if (s == 0) {
        o.w1 = add(p + "w_qkv", {d, 3 * d}, b, true);
        o.b1 = add(p + "b_qkv", {3 * d}, b, false);
        o.w2 = add(p + "w_o", {d, d}, b, true);
        o.b2 = add(p + "b_o", {d}, b, false);
        l.matmul_params += size_t(d) * 3 * d + size_t(d) * d;
      } else {
        o.w1 = add(p + "w_h", {d, m.d_ffn}, b, true);
        o.b1 = add(p + "b_h", {m.d_ffn}, b, false);
        o.w2 = add(p + "w_f", {m.d_ffn, d}, b, true);
        o.b2 = add(p + "b_f", {d}, b, false);
        l.matmul_params += size_t(d) * m.d_ffn * 2;
      }
      if (nf.ln_branch || nf.ln_sum) {
        o.ln_out_g = add(p + "ln_out/gain", {d}, b, false);
        o.ln_out_b = add(p + "ln_out/bias", {d}, b, false);
      }
    }
  }
  l.block_begin.push_back(l.total);
  if (has_final_norm(m)) {
    l.final_norm_g = add("final_norm/gain", {d}, -1, false);
    l.final_norm_b = add("final_norm/bias", {d}, -1, false);
  }
  l.lm_head = add("lm_head/w", {d, m.vocab}, -1, true);
  l.matmul_params += size_t(d) * m.vocab;
  return l;
}

double flops_per_token(const ModelConfig& m, const ParamLayout& l) {
  return 6.0 * double(l.matmul_params) + 12.0 * m.layers * double(m.d_model) * m.seq_len;
}

}  // namespace strata
