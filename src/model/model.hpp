// model.hpp: the decoder (embedding → L blocks → [final norm] → lm_head → cross-entropy) with its
// parameters, gradients and activations in flat buffers, and a hand-written forward and backward.
// The model knows nothing of optimizers, data or parallelism.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/ops.hpp"
#include "config/config.hpp"
#include "model/layout.hpp"

namespace strata {

// Activations of one sub-layer for one micro-batch (nullptr where the placement has none). N = B·T rows.
struct SubActs {
  const float* x = nullptr;                              // [N,d] input (previous output), not owned
  float *u = nullptr, *in_mean = nullptr, *in_rstd = nullptr;      // LN_in out [N,d], [N], [N]
  float* m1 = nullptr;                                   // [N,3d] qkv | [N,d_ffn] pre-activation
  float* probs = nullptr;                                // [B,H,T,T] attention probabilities
  float* mid = nullptr;                                  // [N,d] heads concatenated | [N,d_ffn] σ(m1)
  float* f = nullptr;                                    // [N,d] F(u)
  float *g = nullptr, *br_mean = nullptr, *br_rstd = nullptr;      // LN_branch(f)
  float *s = nullptr, *sum_mean = nullptr, *sum_rstd = nullptr;    // α·x + g before LN_sum
  float* y = nullptr;                                    // [N,d] output
};

class Model {
 public:
  explicit Model(const ModelConfig& cfg);

  // Draws the parameters from the counter-based RNG: the same seed gives the same weights in any layout.
  void init(uint64_t seed);
  // Sizes the activation buffers for micro-batches of B sequences of up to T tokens.
  void reserve(int B, int T);

  // Forward pass over tokens[B,T]. With targets, returns the mean loss over B·T and keeps what the
  // backward needs; without, computes logits only (see logits()).
  float forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // Backward of the last forward: grads += d(loss_sum · dloss_scale)/dθ.
  void backward(const int32_t* tokens, const int32_t* targets, int B, int T, float dloss_scale);
  void zero_grad();

  const float* logits() const { return logits_.data(); }  // [B,T,V] of the last forward
  const float* losses() const { return losses_.data(); }  // [B·T] of the last forward with targets

  ModelConfig cfg;
  ParamLayout layout;
  std::vector<float> params, grads;  // [layout.total]

 private:
  struct SubView {
    const float *ln_in_g, *ln_in_b, *w1, *b1, *w2, *b2, *ln_out_g, *ln_out_b;
  };
  struct SubGrad {
    float *ln_in_g, *ln_in_b, *w1, *b1, *w2, *b2, *ln_out_g, *ln_out_b;
  };
  SubView view(const SubOffsets& o) const;
  SubGrad grad(const SubOffsets& o);
  void sub_forward(bool attn, const NormFlags& nf, const SubView& p, SubActs& a, int B, int T);
  void sub_backward(bool attn, const NormFlags& nf, const SubView& p, SubGrad& g, const SubActs& a, const float* dy,
                    float* dx, int B, int T);

  cpu::Activation act_;
  int cap_B_ = 0, cap_T_ = 0;
  std::vector<float> arena_;       // all activations
  std::vector<SubActs> acts_;      // [2L]: block b attn = 2b, ffn = 2b+1 (pointers into arena_ at full capacity)
  std::vector<float> emb_, xf_, fn_mean_, fn_rstd_, logits_, losses_;
  std::vector<float> dres_, dres2_, ds_, df_, dmid_, dm1_, du_, dlogits_;  // backward scratch
};

}  // namespace strata
