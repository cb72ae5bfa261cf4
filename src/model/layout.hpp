// layout.hpp: the parameter layout of the decoder: every tensor's name, shape and offset in one flat
// buffer, layer-major ([embeddings][block 0]…[block L−1][final norm][lm_head]) so the parameters,
// gradients and moments of a contiguous range of blocks are one contiguous slice.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace strata {

constexpr size_t kAbsent = size_t(-1);

// Where LayerNorm sits around one sub-layer F:  u = LN_in(x)?  f = F(u)  g = LN_branch(f)?
// s = α·x + g  y = LN_sum(s)?   (post: ln_sum; res_post: ln_branch; pre: ln_in; peri: ln_in + ln_branch;
// deepnorm: ln_sum with α = (2L)^¼; mix: post in the first mix_post_blocks, pre in the rest). ln_branch and
// ln_sum are stored as "ln_out".
struct NormFlags {
  bool ln_in = false, ln_branch = false, ln_sum = false;
  float alpha = 1.0f;
};
NormFlags norm_flags(const ModelConfig& m, int block);
bool has_final_norm(const ModelConfig& m);
int mix_post_blocks(const ModelConfig& m);  // ⌊mix_post_fraction · L⌋ (Mix-LN, Li et al. 2025)

struct TensorSpec {
  std::string name;         // path below /model, e.g. "blocks/003/attn/w_qkv"
  std::vector<int> shape;   // row-major
  size_t offset = 0, size = 0;
  int block = -1;           // owning block, -1 for embeddings, final norm and head
  bool decay = false;       // AdamW weight decay applies (2-D weights)
};

// Offsets of one sub-layer's tensors (kAbsent where the placement has none).
// attn: w1 = w_qkv [d,3d], w2 = w_o [d,d]; ffn: w1 = w_h [d,d_ffn], w2 = w_f [d_ffn,d].
struct SubOffsets {
  size_t ln_in_g = kAbsent, ln_in_b = kAbsent, w1, b1, w2, b2, ln_out_g = kAbsent, ln_out_b = kAbsent;
};

struct ParamLayout {
  std::vector<TensorSpec> tensors;
  std::vector<SubOffsets> attn, ffn;  // [L]
  std::vector<size_t> block_begin;    // [L+1]: block l occupies [block_begin[l], block_begin[l+1])
  size_t tok_embedding = 0, pos_embedding = 0, final_norm_g = kAbsent, final_norm_b = kAbsent, lm_head = 0;
  size_t total = 0;
  size_t matmul_params = 0;  // parameters that take part in matmuls (blocks' weights + lm_head), for FLOPs
  const TensorSpec* find(const std::string& name) const;
};

ParamLayout layout_build(const ModelConfig& m);

// Model FLOPs per trained token: 6·matmul_params + 12·L·d·T (forward + backward, attention included,
// as in PaLM appendix B and llm.c).
double flops_per_token(const ModelConfig& m, const ParamLayout& l);

}  // namespace strata
