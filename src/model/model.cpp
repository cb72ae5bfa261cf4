// model.cpp: forward and backward of the decoder, one sub-layer at a time, for every norm placement.
#include "model/model.hpp"

#include <algorithm>
#include <cstring>

#include "core/error.hpp"

namespace strata {

using namespace cpu;

Model::Model(const ModelConfig& c) : cfg(c), layout(layout_build(c)), act_(activation_from_name(c.activation.c_str())) {
  params.assign(layout.total, 0.0f);
  grads.assign(layout.total, 0.0f);
}

void Model::zero_grad() { std::fill(grads.begin(), grads.end(), 0.0f); }

Model::SubView Model::view(const SubOffsets& o) const {
  auto p = [&](size_t off) -> const float* { return off == kAbsent ? nullptr : params.data() + off; };
  return {p(o.ln_in_g), p(o.ln_in_b), p(o.w1), p(o.b1), p(o.w2), p(o.b2), p(o.ln_out_g), p(o.ln_out_b)};
}

Model::SubGrad Model::grad(const SubOffsets& o) {
  auto p = [&](size_t off) -> float* { return off == kAbsent ? nullptr : grads.data() + off; };
  return {p(o.ln_in_g), p(o.ln_in_b), p(o.w1), p(o.b1), p(o.w2), p(o.b2), p(o.ln_out_g), p(o.ln_out_b)};
}

void Model::reserve(int B, int T) {
  if (B <= cap_B_ && T <= cap_T_) return;
  cap_B_ = std::max(B, cap_B_);
  cap_T_ = std::max(T, cap_T_);
  const size_t N = size_t(cap_B_) * cap_T_, d = cfg.d_model, F = cfg.d_ffn, H = cfg.heads, L = cfg.layers;
  // First pass counts, second pass assigns: one allocation for every activation.
  acts_.assign(2 * L, SubActs{});
  for (int pass = 0; pass < 2; pass++) {
    size_t off = 0;
    auto take = [&](float*& p, size_t n) {
      p = pass ? arena_.data() + off : nullptr;
      off += n;
    };
    for (size_t i = 0; i < 2 * L; i++) {
      const bool attn = i % 2 == 0;
      NormFlags nf = norm_flags(cfg, int(i / 2));
      SubActs& a = acts_[i];
      if (nf.ln_in) take(a.u, N * d), take(a.in_mean, N), take(a.in_rstd, N);
      take(a.m1, N * (attn ? 3 * d : F));
      if (attn) take(a.probs, size_t(cap_B_) * H * cap_T_ * cap_T_);
      take(a.mid, N * (attn ? d : F));
      take(a.f, N * d);
      if (nf.ln_branch) take(a.g, N * d), take(a.br_mean, N), take(a.br_rstd, N);
      if (nf.ln_sum) take(a.s, N * d), take(a.sum_mean, N), take(a.sum_rstd, N);
      take(a.y, N * d);
    }
    if (!pass) arena_.assign(off, 0.0f);
  }
  emb_.assign(N * d, 0);
  xf_.assign(N * d, 0);
  fn_mean_.assign(N, 0);
  fn_rstd_.assign(N, 0);
  logits_.assign(N * cfg.vocab, 0);
  losses_.assign(N, 0);
  for (auto* v : {&dres_, &dres2_, &ds_, &df_, &du_}) v->assign(N * d, 0);
  dmid_.assign(N * std::max(d, F), 0);
  dm1_.assign(N * std::max(3 * d, F), 0);
  dlogits_.assign(N * cfg.vocab, 0);
}

// u = LN_in(x)? ; f = F(u) ; g = LN_branch(f)? ; s = α·x + g ; y = LN_sum(s)?
void Model::sub_forward(bool attn, const NormFlags& nf, const SubView& p, SubActs& a, int B, int T) {
  const int N = B * T, d = cfg.d_model, F = cfg.d_ffn;
  const double eps = cfg.ln_eps;
  const float* in = a.x;
  if (nf.ln_in) {
    layernorm_forward(a.u, a.in_mean, a.in_rstd, a.x, p.ln_in_g, p.ln_in_b, N, d, eps);
    in = a.u;
  }
  if (attn) {
    matmul_forward(a.m1, in, p.w1, p.b1, N, d, 3 * d);     // [N,3d]
    attention_forward(a.mid, a.probs, a.m1, B, T, d, cfg.heads);  // [N,d]
    matmul_forward(a.f, a.mid, p.w2, p.b2, N, d, d);       // [N,d]
  } else {
    matmul_forward(a.m1, in, p.w1, p.b1, N, d, F);          // [N,F]
    activation_forward(a.mid, a.m1, size_t(N) * F, act_);   // [N,F]
    matmul_forward(a.f, a.mid, p.w2, p.b2, N, F, d);        // [N,d]
  }
  const float* g = a.f;
  if (nf.ln_branch) {
    layernorm_forward(a.g, a.br_mean, a.br_rstd, a.f, p.ln_out_g, p.ln_out_b, N, d, eps);
    g = a.g;
  }
  if (nf.ln_sum) {
    residual_forward(a.s, a.x, nf.alpha, g, size_t(N) * d);
    layernorm_forward(a.y, a.sum_mean, a.sum_rstd, a.s, p.ln_out_g, p.ln_out_b, N, d, eps);
  } else {
    residual_forward(a.y, a.x, nf.alpha, g, size_t(N) * d);
  }
}

// dx[N,d] = ∂/∂x given dy[N,d]; parameter gradients +=.
void Model::sub_backward(bool attn, const NormFlags& nf, const SubView& p, SubGrad& gr, const SubActs& a,
                         const float* dy, float* dx, int B, int T) {
  const int N = B * T, d = cfg.d_model, F = cfg.d_ffn;
  const size_t Nd = size_t(N) * d;
  const float* ds = dy;
  if (nf.ln_sum) {
    layernorm_backward(ds_.data(), gr.ln_out_g, gr.ln_out_b, dy, a.s, p.ln_out_g, a.sum_mean, a.sum_rstd, N, d,
                       false);
    ds = ds_.data();
  }
  scale_copy(dx, ds, nf.alpha, Nd, false);  // residual path: dx = α·ds
  const float* df = ds;
  if (nf.ln_branch) {
    layernorm_backward(df_.data(), gr.ln_out_g, gr.ln_out_b, ds, a.f, p.ln_out_g, a.br_mean, a.br_rstd, N, d, false);
    df = df_.data();
  }
  const int IC2 = attn ? d : F, OC1 = attn ? 3 * d : F;
  matmul_backward_weight(gr.w2, gr.b2, df, a.mid, N, IC2, d);
  matmul_backward_input(dmid_.data(), df, p.w2, N, IC2, d, false);  // [N,IC2]
  if (attn)
    attention_backward(dm1_.data(), dmid_.data(), a.probs, a.m1, B, T, d, cfg.heads);  // [N,3d]
  else
    activation_backward(dm1_.data(), dmid_.data(), a.m1, size_t(N) * F, act_);  // [N,F]
  const float* in = nf.ln_in ? a.u : a.x;
  matmul_backward_weight(gr.w1, gr.b1, dm1_.data(), in, N, d, OC1);
  if (nf.ln_in) {
    matmul_backward_input(du_.data(), dm1_.data(), p.w1, N, d, OC1, false);
    layernorm_backward(dx, gr.ln_in_g, gr.ln_in_b, du_.data(), a.x, p.ln_in_g, a.in_mean, a.in_rstd, N, d, true);
  } else {
    matmul_backward_input(dx, dm1_.data(), p.w1, N, d, OC1, true);
  }
}

float Model::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  STRATA_CHECK(T <= cfg.seq_len, "sequence of ", T, " tokens exceeds model.seq_len = ", cfg.seq_len);
  reserve(B, T);
  const int N = B * T, d = cfg.d_model, V = cfg.vocab;
  for (int i = 0; i < N; i++)
    STRATA_CHECK(tokens[i] >= 0 && tokens[i] < V, "token id ", tokens[i], " at position ", i, " is >= model.vocab = ",
                 V);
  const float* P = params.data();
  embedding_forward(emb_.data(), tokens, P + layout.tok_embedding, P + layout.pos_embedding, B, T, d);
  const float* x = emb_.data();
  for (int l = 0; l < cfg.layers; l++) {
    NormFlags nf = norm_flags(cfg, l);
    for (int s = 0; s < 2; s++) {
      SubActs& a = acts_[2 * l + s];
      a.x = x;
      sub_forward(s == 0, nf, view(s == 0 ? layout.attn[l] : layout.ffn[l]), a, B, T);
      x = a.y;
    }
  }
  const float* xf = x;
  if (has_final_norm(cfg)) {
    layernorm_forward(xf_.data(), fn_mean_.data(), fn_rstd_.data(), x, P + layout.final_norm_g,
                      P + layout.final_norm_b, N, d, cfg.ln_eps);
    xf = xf_.data();
  }
  matmul_forward(logits_.data(), xf, P + layout.lm_head, static_cast<const float*>(nullptr), N, d, V);
  if (!targets) return 0.0f;
  for (int i = 0; i < N; i++)
    STRATA_CHECK(targets[i] >= 0 && targets[i] < V, "target id ", targets[i], " is >= model.vocab = ", V);
  crossentropy_forward(losses_.data(), logits_.data(), targets, N, V);
  double sum = 0;
  for (int i = 0; i < N; i++) sum += losses_[i];
  return float(sum / N);
}

void Model::backward(const int32_t* tokens, const int32_t* targets, int B, int T, float dloss_scale) {
  const int N = B * T, d = cfg.d_model, V = cfg.vocab;
  const float* P = params.data();
  float* G = grads.data();
  crossentropy_backward(dlogits_.data(), logits_.data(), targets, N, V, dloss_scale);
  const float* xlast = acts_.back().y;
  const bool fn = has_final_norm(cfg);
  const float* xf = fn ? xf_.data() : xlast;
  matmul_backward_weight(G + layout.lm_head, static_cast<float*>(nullptr), dlogits_.data(), xf, N, d, V);
  float* dres = dres_.data();
  float* dnext = dres2_.data();
  if (fn) {
    matmul_backward_input(du_.data(), dlogits_.data(), P + layout.lm_head, N, d, V, false);
    layernorm_backward(dres, G + layout.final_norm_g, G + layout.final_norm_b, du_.data(), xlast,
                       P + layout.final_norm_g, fn_mean_.data(), fn_rstd_.data(), N, d, false);
  } else {
    matmul_backward_input(dres, dlogits_.data(), P + layout.lm_head, N, d, V, false);
  }
  for (int l = cfg.layers - 1; l >= 0; l--) {
    NormFlags nf = norm_flags(cfg, l);
    for (int s = 1; s >= 0; s--) {
      const SubOffsets& o = s == 0 ? layout.attn[l] : layout.ffn[l];
      SubGrad g = grad(o);
      sub_backward(s == 0, nf, view(o), g, acts_[2 * l + s], dres, dnext, B, T);
      std::swap(dres, dnext);
    }
  }
  embedding_backward(G + layout.tok_embedding, G + layout.pos_embedding, dres, tokens, B, T, d);
}

}  // namespace strata
