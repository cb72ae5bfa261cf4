// model.cpp: forward, input-gradient (B) and weight-gradient (W) passes of a stage, one sub-layer at a time,
// for every norm placement; activation slots per micro-batch.
#include "model/model.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

#include "core/error.hpp"

namespace strata {

namespace {
// Floats of room for n values: n, or n bf16 values where the backend keeps the buffer in bf16 (keep_bf16).
size_t room(bool bf16, size_t n) { return bf16 ? (n + 1) / 2 : n; }

// The shapes of a micro-batch of B×T.
struct Dims {
  size_t B, T, N, d, F, H, V;
  Dims(const ModelConfig& c, int b, int t)
      : B(b), T(t), N(size_t(b) * t), d(c.d_model), F(c.d_ffn), H(c.heads), V(c.vocab) {}
};

// What one sub-layer keeps for its backward, laid out by take(p, n) (room for n floats at p). probs: the
// [B,H,T,T] probabilities are kept here. Not kept: F's output where no LN_branch backward reads it, and
// LN_branch's output, which no backward reads (both in forward scratch).
template <class Take>
void sub_layout(Take&& take, SubActs& a, bool attn, const NormFlags& nf, const Dims& m, const ActTraits& tr,
                bool probs) {
  const size_t Nd = m.N * m.d;
  if (nf.ln_in) take(a.u, Nd), take(a.in_mean, m.N), take(a.in_rstd, m.N);  // W reads u; LN_in' reads x, mean, rstd
  take(a.m1, attn ? room(tr.qkv16, 3 * Nd) : room(tr.hidden16, m.N * m.F));  // attention' / σ' read it
  if (attn && tr.probs && probs) take(a.probs, m.B * m.H * m.T * m.T);
  if (attn && !tr.probs) take(a.lse, m.B * m.H * m.T);
  take(a.mid, attn ? room(tr.qkv16, Nd) : room(tr.hidden16, m.N * m.F));  // W reads it (and attention')
  if (nf.ln_branch) take(a.f, Nd), take(a.br_mean, m.N), take(a.br_rstd, m.N);
  if (nf.ln_sum) take(a.s, Nd), take(a.sum_mean, m.N), take(a.sum_rstd, m.N);
  take(a.y, Nd);  // the next sub-layer's input
}

// Every LayerNorm: full recomputation's block scratch serves every block of the stage (mix has both kinds).
const NormFlags kEveryNorm{true, true, true, 1.0f};

}  // namespace

Recompute recompute_from_name(const std::string& name) {
  if (name == "none") return Recompute::none;
  if (name == "selective") return Recompute::selective;
  if (name == "full") return Recompute::full;
  fail("unknown recompute mode '", name, "' (none, selective, full)");
}

ActTraits act_traits(const Backend& be, const ModelConfig& cfg) {
  return {be.keeps_attention_probs(), be.keeps_bf16(), be.keeps_attention_bf16(cfg.d_model, cfg.heads)};
}

using cpu::Activation;

// The activations one micro-batch keeps between its forward and its backward passes (pointers into its arena).
struct SlotLayout {
  float* x0 = nullptr;         // [N,d] embedding output (first stage) or received input
  std::vector<SubActs> acts;   // [2·nblocks]: block k attn = 2k, ffn = 2k+1 (not with full recomputation)
  std::vector<float*> xs;      // full recomputation: [nblocks + 1] block inputs [N,d], xs[0] = x0, xs[nb] the output
  float* out = nullptr;        // [N,d] the stage's output
  float *xf = nullptr, *fn_mean = nullptr, *fn_rstd = nullptr, *logits = nullptr, *losses = nullptr;  // head
  float *dy = nullptr, *dx = nullptr;  // [N,d] received output gradient; input gradient to send / embedding's
};

namespace {
template <class Take>
void slot_layout(Take&& take, SlotLayout& s, const ModelConfig& cfg, const StageRange& r, Recompute rc,
                 const ActTraits& tr, const Dims& m) {
  const int nb = r.last - r.first;
  const size_t Nd = m.N * m.d;
  take(s.x0, Nd);
  s.acts.assign(rc == Recompute::full ? 0 : 2 * nb, SubActs{});
  s.xs.assign(rc == Recompute::full ? nb + 1 : 0, nullptr);
  if (rc == Recompute::full) {
    s.xs[0] = s.x0;
    for (int k = 1; k <= nb; k++) take(s.xs[k], Nd);
  }
  for (int i = 0; i < int(s.acts.size()); i++)
    sub_layout(take, s.acts[i], i % 2 == 0, norm_flags(cfg, r.first + i / 2), m, tr, rc == Recompute::none);
  s.out = rc == Recompute::full ? s.xs[nb] : nb ? s.acts.back().y : s.x0;
  if (r.head) {
    take(s.xf, Nd), take(s.fn_mean, m.N), take(s.fn_rstd, m.N), take(s.logits, m.N * m.V), take(s.losses, m.N);
  } else {
    take(s.dy, Nd);
  }
  take(s.dx, Nd);
}

// The forward scratch (Model::fwd_): transient outputs, selective's probabilities, full recomputation's block.
template <class Take>
void scratch_layout(Take&& take, float*& f, float*& g, float*& probs, float*& mid, float*& rerun_y, SubActs* block,
                    Recompute rc, const ActTraits& tr, const Dims& m) {
  const size_t Nd = m.N * m.d;
  take(f, Nd), take(g, Nd);
  if (rc == Recompute::selective && tr.probs) take(probs, m.B * m.H * m.T * m.T), take(mid, Nd);
  if (rc == Recompute::full) {
    for (int j = 0; j < 2; j++) sub_layout(take, block[j], j == 0, kEveryNorm, m, tr, true);
    take(rerun_y, Nd);
  }
}

// Counts floats through a layout (the pointers stay null).
struct Counter {
  size_t n = 0;
  void operator()(float*& p, size_t k) { p = nullptr, n += k; }
};
}  // namespace

ActFloats activation_floats(const ModelConfig& cfg, const StageRange& range, Recompute rc, const ActTraits& tr,
                            int B, int T) {
  StageRange r = range;
  if (r.last < 0) r.last = cfg.layers;
  const Dims m(cfg, B, T);
  const size_t Nd = m.N * m.d;
  ActFloats out;
  SlotLayout s;
  Counter c;
  slot_layout(c, s, cfg, r, rc, tr, m);
  out.per_slot = c.n;
  out.ints_per_slot = 2 * m.N;
  // Deferred W (zb-h1): ∂/∂logits [N,V] on the head, per sub-layer ∂/∂f [N,d] and ∂/∂m1 [N, 3d | d_ffn].
  out.deferred_w = r.head ? m.N * m.V : 0;
  for (int k = r.first; k < r.last; k++)
    out.deferred_w += 2 * Nd + room(tr.qkv16, 3 * Nd) + room(tr.hidden16, m.N * m.F);
  // Backward scratch (Model::reserve_scratch): sa, sb, ds, df, du; ∂/∂out and ∂/∂qkv; the FFN's ∂/∂mid, ∂/∂m1;
  // ∂/∂logits.
  out.scratch = 5 * Nd + room(tr.qkv16, Nd) + room(tr.qkv16, 3 * Nd) + 2 * room(tr.hidden16, m.N * m.F) +
                (r.head ? m.N * m.V : 0);
  float *f, *g, *probs, *mid, *y;
  SubActs block[2];
  Counter sc;
  scratch_layout(sc, f, g, probs, mid, y, block, rc, tr, m);
  out.scratch += sc.n;
  return out;
}

// Everything one micro-batch keeps between its forward and its backward passes.
struct Model::Slot : SlotLayout {
  int B = 0, T = 0;  // capacity
  int b = 0, t = 0;  // in use
  bool used = false, pending_w = false;
  Array<float> arena;            // every activation of SlotLayout, one allocation
  // Deferred W inputs, allocated on the first deferred backward: ∂/∂logits [N,V] (head), and per sub-layer
  // ∂/∂f [N,d] and ∂/∂m1 [N,3d | d_ffn].
  Array<float> dlogits;
  std::vector<Array<float>> wdf, wdm1;
  Array<int32_t> tokens, targets;      // [B·T] in the backend's memory
};

Model::Model(const ModelConfig& c, StageRange r, Backend* be, Recompute rc)
    : cfg(c),
      range(r),
      layout(layout_build(c)),
      be_(be ? be : &cpu_backend()),
      recompute_(rc),
      act_(cpu::activation_from_name(c.activation.c_str())) {
  if (range.last < 0) range.last = c.layers;
  traits_ = act_traits(*be_, cfg);
  STRATA_CHECK(range.first >= 0 && range.first <= range.last && range.last <= c.layers, "stage blocks [",
               range.first, ", ", range.last, ") are outside the model's ", c.layers, " blocks");
  slice_begin = range.embedding ? 0 : layout.block_begin[range.first];
  slice_end = range.head ? layout.total : layout.block_begin[range.last];
  for (const TensorSpec& t : layout.tensors)
    if (t.offset >= slice_begin && t.offset < slice_end) tensors.push_back(&t);
  params.assign(slice_end - slice_begin, 0.0f);
  grads.assign(slice_end - slice_begin, 0.0f);
  if (be_->host_memory()) {
    dp_ = params.data(), dg_ = grads.data();
  } else {
    dparams_ = Array<float>(*be_, params.size());
    dgrads_ = Array<float>(*be_, grads.size());
    dp_ = dparams_.data(), dg_ = dgrads_.data();
  }
}

Model::~Model() = default;

void Model::push_params() {
  if (!be_->host_memory()) be_->upload(dp_, params.data(), params.size() * sizeof(float));
}
void Model::pull_params() {
  if (!be_->host_memory()) be_->download(params.data(), dp_, params.size() * sizeof(float));
}
void Model::pull_grads() {
  if (!be_->host_memory()) be_->download(grads.data(), dg_, grads.size() * sizeof(float));
}
void Model::push_grad_acc() {
  if (!be_->host_memory() && da_) be_->upload(da_, grad_acc.data(), grad_acc.size() * sizeof(double));
}
void Model::pull_grad_acc() {
  if (be_->host_memory() || !da_) return;
  grad_acc.resize(grads.size());
  be_->download(grad_acc.data(), da_, grad_acc.size() * sizeof(double));
}

void Model::zero_grad() {
  be_->zero(dg_, grads.size() * sizeof(float));
  if (da_) be_->zero(da_, grads.size() * sizeof(double));
}

void Model::ensure_accumulator() {
  if (da_) return;
  if (be_->host_memory()) {
    grad_acc.assign(grads.size(), 0.0);
    da_ = grad_acc.data();
  } else {
    dacc_ = Array<double>(*be_, grads.size());
    da_ = dacc_.data();
  }
}

void Model::fold_grads(Pass pass) {
  ensure_accumulator();
  if (pass == Pass::both) return be_->fold(da_, dg_, grads.size());
  for (size_t k = 0; k < tensors.size(); k++)
    if (written_by(pass, k)) fold_tensor(k);
}

void Model::grads_from_accumulator() { be_->unfold(dg_, da_, grads.size()); }

bool Model::written_by(Pass pass, size_t k) {
  if (pass == Pass::both) return true;
  if (norm_tensors_.empty() && !tensors.empty()) {  // LayerNorm gains and biases: what a B pass writes
    norm_tensors_.assign(tensors.size(), false);
    for (size_t j = 0; j < tensors.size(); j++)
      norm_tensors_[j] = tensors[j]->name.find("ln_") != std::string::npos ||
                         tensors[j]->name.rfind("final_norm", 0) == 0;
  }
  return norm_tensors_[k] == (pass == Pass::input);
}

void Model::fold_tensor(size_t k) {
  ensure_accumulator();
  const size_t o = tensors[k]->offset - slice_begin;
  be_->fold(da_ + o, dg_ + o, tensors[k]->size);
}

int Model::part_of(size_t k) const {
  const TensorSpec& t = *tensors[k];
  if (t.block >= 0) return 2 * t.block + (t.name.find("/attn/") != std::string::npos ? 0 : 1);
  return t.offset < layout.block_begin[0] ? -1 : 2 * cfg.layers;
}

Model::SubView Model::view(const SubOffsets& o) const {
  auto p = [&](size_t off) -> const float* { return off == kAbsent ? nullptr : dparam(off); };
  return {p(o.ln_in_g), p(o.ln_in_b), p(o.w1), p(o.b1), p(o.w2), p(o.b2), p(o.ln_out_g), p(o.ln_out_b)};
}

Model::SubGrad Model::grad_view(const SubOffsets& o) {
  auto p = [&](size_t off) -> float* { return off == kAbsent ? nullptr : dgrad(off); };
  return {p(o.ln_in_g), p(o.ln_in_b), p(o.w1), p(o.b1), p(o.w2), p(o.b2), p(o.ln_out_g), p(o.ln_out_b)};
}

void Model::reserve_scratch(int B, int T) {
  if (B <= cap_B_ && T <= cap_T_) return;
  cap_B_ = std::max(B, cap_B_);
  cap_T_ = std::max(T, cap_T_);
  const Dims m(cfg, cap_B_, cap_T_);
  const size_t N = m.N, d = m.d, F = m.F;
  for (auto* v : {&sa_, &sb_, &ds_, &df_, &du_}) *v = Array<float>(*be_, N * d);
  const bool qkv16 = traits_.qkv16;  // ∂/∂qkv kept in bf16 (keep_bf16 below)
  dmid_ = Array<float>(*be_, room(qkv16, N * d));  // ∂/∂(attention's out), kept likewise
  dm1_ = Array<float>(*be_, room(qkv16, N * 3 * d));
  if (qkv16) be_->keep_bf16(dmid_.data(), N * d), be_->keep_bf16(dm1_.data(), N * 3 * d);
  const size_t hidden = room(traits_.hidden16, N * F);
  dmid_ffn_ = Array<float>(*be_, hidden);
  dm1_ffn_ = Array<float>(*be_, hidden);
  be_->keep_bf16(dmid_ffn_.data(), N * F);
  be_->keep_bf16(dm1_ffn_.data(), N * F);
  dlogits_ = Array<float>(*be_, range.head ? N * cfg.vocab : 0);
  // Forward scratch: counted, then assigned in one allocation.
  for (int pass = 0; pass < 2; pass++) {
    size_t off = 0;
    auto take = [&](float*& p, size_t n) {
      p = pass ? fwd_.data() + off : nullptr;
      off += n;
    };
    scratch_layout(take, fwd_f_, fwd_g_, fwd_probs_, fwd_mid_, rerun_y_, block_kept_, recompute_, traits_, m);
    if (!pass) fwd_ = Array<float>(*be_, off);
  }
  if (recompute_ == Recompute::full) {  // the block's hidden activations, as a slot's below
    be_->keep_bf16(block_kept_[1].m1, N * F), be_->keep_bf16(block_kept_[1].mid, N * F);
    if (qkv16) be_->keep_bf16(block_kept_[0].m1, N * 3 * d), be_->keep_bf16(block_kept_[0].mid, N * d);
  }
}

int Model::acquire(int B, int T) {
  STRATA_CHECK(T >= 1 && T <= cfg.seq_len, "sequence of ", T, " tokens: model.seq_len = ", cfg.seq_len);
  reserve_scratch(B, T);
  for (size_t i = 0; i < slots_.size(); i++)
    if (!slots_[i]->used && slots_[i]->B >= B && slots_[i]->T >= T) {
      slots_[i]->used = true;
      slots_[i]->b = B, slots_[i]->t = T;
      return int(i);
    }
  auto s = std::make_unique<Slot>();
  s->B = B, s->T = T, s->b = B, s->t = T, s->used = true;
  const Dims m(cfg, B, T);
  const size_t N = m.N, d = m.d, F = m.F;
  // First pass counts, second assigns: one allocation for every activation of the micro-batch.
  for (int pass = 0; pass < 2; pass++) {
    size_t off = 0;
    auto take = [&](float*& p, size_t n) {
      p = pass ? s->arena.data() + off : nullptr;
      off += n;
    };
    slot_layout(take, *s, cfg, range, recompute_, traits_, m);
    if (!pass) s->arena = Array<float>(*be_, off);
  }
  // The feed-forward's hidden activations (pre- and post-activation [N, d_ffn]) are read only by its GEMMs, the
  // activation and its backward, and max-abs statistics: a bf16 backend may keep them in bf16 only. So are
  // attention's qkv [N, 3d] and out [N, d] by its GEMMs, the attention and max-abs statistics, where it reads them
  // as bf16 (keeps_attention_bf16).
  for (int i = 1; i < int(s->acts.size()); i += 2) {
    be_->keep_bf16(s->acts[i].m1, N * F);
    be_->keep_bf16(s->acts[i].mid, N * F);
    if (traits_.qkv16) be_->keep_bf16(s->acts[i - 1].m1, N * 3 * d), be_->keep_bf16(s->acts[i - 1].mid, N * d);
  }
  s->tokens = Array<int32_t>(*be_, N);
  s->targets = Array<int32_t>(*be_, N);
  slots_.push_back(std::move(s));
  return int(slots_.size() - 1);
}

// Sub-layer i's activations. Full recomputation: the block scratch, reading block i/2's input from the slot and,
// in the first forward, writing its output there (rerun: into scratch, the slot's copy being the same bits).
SubActs& Model::acts_of(Slot& s, int i, bool rerun) {
  if (recompute_ != Recompute::full) return s.acts[i];
  const int k = i / 2;
  block_[i % 2] = block_kept_[i % 2];  // the forward points some of them at other scratch
  if (i % 2 == 0) {
    block_[0].x = s.xs[k];
    return block_[0];
  }
  block_[1].x = block_[0].y;
  block_[1].y = rerun ? rerun_y_ : s.xs[k + 1];
  return block_[1];
}

void Model::rerun_block(Slot& s, int k) {
  const int l = range.first + k;
  NormFlags nf = norm_flags(cfg, l);
  for (int j = 0; j < 2; j++)
    sub_forward(j == 0, nf, view(j == 0 ? layout.attn[l] : layout.ffn[l]), acts_of(s, 2 * k + j, true), s.b, s.t);
}

void Model::release(int slot) {
  STRATA_CHECK(!slots_[slot]->pending_w, "activation slot ", slot, " released before its weight gradients");
  slots_[slot]->used = false;
}

float* Model::input(int slot) { return slots_[slot]->x0; }
const float* Model::output(int slot) const { return slots_[slot]->out; }
float* Model::output_grad(int slot) { return slots_[slot]->dy; }
const float* Model::input_grad(int slot) const { return slots_[slot]->dx; }
const float* Model::logits() {
  const Slot& s = *slots_[single_slot_];
  if (be_->host_memory()) return s.logits;
  logits_host_.resize(size_t(s.b) * s.t * cfg.vocab);
  be_->download(logits_host_.data(), s.logits, logits_host_.size() * sizeof(float));
  return logits_host_.data();
}

size_t Model::activation_bytes() const {
  size_t n = 0;
  for (auto& s : slots_) {
    n += (s->arena.size() + s->dlogits.size()) * sizeof(float);
    for (size_t i = 0; i < s->wdf.size(); i++) n += (s->wdf[i].size() + s->wdm1[i].size()) * sizeof(float);
  }
  return n;
}

size_t Model::scratch_bytes() const {
  size_t n = fwd_.size() + dlogits_.size() + dmid_.size() + dm1_.size() + dmid_ffn_.size() + dm1_ffn_.size();
  for (auto* v : {&sa_, &sb_, &ds_, &df_, &du_}) n += v->size();
  return n * sizeof(float);
}

void Model::add_forward_stats(int k, bool attn, const NormFlags& nf, const SubActs& a, int B, int T) {
  BlockStats& st = stats[k];
  const size_t Nd = size_t(B) * T * cfg.d_model, Nm = size_t(B) * T * (attn ? 3 * cfg.d_model : cfg.d_ffn);
  const int j = attn ? 0 : 1;
  // Deferred (Backend::stats_*_to): added to st at the forward's stats_flush(), in this order.
  be_->stats_sumsq_to(&st.branch_sq[j], a.f, Nd);  // F's output: the branch, and LN_branch's input
  if (nf.ln_in) be_->stats_sumsq_to(&st.norm_in_sq[j][0], a.x, Nd);
  if (nf.ln_branch) be_->stats_sumsq_to(&st.norm_in_sq[j][1], a.f, Nd);
  if (nf.ln_sum) be_->stats_sumsq_to(&st.norm_in_sq[j][2], a.s, Nd);
  be_->stats_maxabs_to(&st.max_abs, a.m1, Nm);
  be_->stats_maxabs_to(&st.max_abs, a.mid, attn ? Nd : Nm);
  be_->stats_maxabs_to(&st.max_abs, a.f, Nd);
  be_->stats_maxabs_to(&st.max_abs, a.y, Nd);
  if (attn) {
    const int H = cfg.heads;
    be_->attention_entropy_to(&st.entropy, a.probs, a.m1, B, T, cfg.d_model, H);
    st.rows += double(B) * H * T;
  } else {
    be_->stats_sumsq_to(&st.resid_sq, a.y, Nd);
    st.elems += double(Nd);
  }
}

// u = LN_in(x)? ; f = F(u) ; g = LN_branch(f)? ; s = α·x + g ; y = LN_sum(s)?
void Model::sub_forward(bool attn, const NormFlags& nf, const SubView& p, SubActs& a, int B, int T) {
  const int N = B * T, d = cfg.d_model, F = cfg.d_ffn;
  const double eps = cfg.ln_eps;
  const float* in = a.x;
  if (!nf.ln_branch) a.f = fwd_f_;  // no backward reads F's output then: scratch
  if (nf.ln_branch) a.g = fwd_g_;   // nor LN_branch's output
  if (attn && recompute_ == Recompute::selective && traits_.probs) a.probs = fwd_probs_;
  if (nf.ln_in) {
    be_->layernorm_forward(a.u, a.in_mean, a.in_rstd, a.x, p.ln_in_g, p.ln_in_b, N, d, eps);
    in = a.u;
  }
  if (attn) {
    be_->matmul_forward(a.m1, in, p.w1, p.b1, N, d, 3 * d);            // [N,3d]
    be_->attention_forward(a.mid, a.probs, a.lse, a.m1, B, T, d, cfg.heads);  // [N,d]
    be_->matmul_forward(a.f, a.mid, p.w2, p.b2, N, d, d);              // [N,d]
  } else {
    be_->matmul_forward(a.m1, in, p.w1, p.b1, N, d, F);         // [N,F]
    be_->activation_forward(a.mid, a.m1, size_t(N) * F, act_);  // [N,F]
    be_->matmul_forward(a.f, a.mid, p.w2, p.b2, N, F, d);       // [N,d]
  }
  const float* g = a.f;
  if (nf.ln_branch) {
    be_->layernorm_forward(a.g, a.br_mean, a.br_rstd, a.f, p.ln_out_g, p.ln_out_b, N, d, eps);
    g = a.g;
  }
  if (nf.ln_sum) {
    be_->residual_forward(a.s, a.x, nf.alpha, g, size_t(N) * d);
    be_->layernorm_forward(a.y, a.sum_mean, a.sum_rstd, a.s, p.ln_out_g, p.ln_out_b, N, d, eps);
  } else {
    be_->residual_forward(a.y, a.x, nf.alpha, g, size_t(N) * d);
  }
}

// dx[N,d] = ∂/∂x given dy[N,d]; LayerNorm parameter gradients +=. Writes ∂/∂m1 to dm1 and returns ∂/∂f, the two
// inputs of the W pass. With df_keep (a deferred W pass) ∂/∂f is written there, else it may live in scratch.
const float* Model::sub_backward_input(bool attn, const NormFlags& nf, const SubView& p, SubGrad& gr,
                                       const SubActs& a, const float* dy, float* dx, int B, int T, float* df_keep,
                                       float* dm1) {
  const int N = B * T, d = cfg.d_model, F = cfg.d_ffn;
  const size_t Nd = size_t(N) * d;
  const float* ds = dy;
  if (nf.ln_sum) {
    float* out = df_keep && !nf.ln_branch ? df_keep : ds_.data();
    be_->layernorm_backward(out, gr.ln_out_g, gr.ln_out_b, dy, a.s, p.ln_out_g, a.sum_mean, a.sum_rstd, N, d, false);
    ds = out;
  }
  if (!nf.ln_in) be_->scale_copy(dx, ds, nf.alpha, Nd, false);  // residual path: dx = α·ds (with LN_in: below)
  const float* df = ds;
  if (nf.ln_branch) {
    float* out = df_keep ? df_keep : df_.data();
    be_->layernorm_backward(out, gr.ln_out_g, gr.ln_out_b, ds, a.f, p.ln_out_g, a.br_mean, a.br_rstd, N, d, false);
    df = out;
  } else if (df_keep && df != df_keep) {
    be_->copy(df_keep, df, Nd * sizeof(float));
    df = df_keep;
  }
  const int IC2 = attn ? d : F, OC1 = attn ? 3 * d : F;
  float* dmid = attn ? dmid_.data() : dmid_ffn_.data();
  be_->matmul_backward_input(dmid, df, p.w2, N, IC2, d, false);  // [N,IC2]
  if (on_sublayer) on_sublayer();
  const float* probs = a.probs;
  if (attn && recompute_ == Recompute::selective && traits_.probs) {  // the probabilities again, same bits
    be_->attention_forward(fwd_mid_, fwd_probs_, nullptr, a.m1, B, T, d, cfg.heads);
    probs = fwd_probs_;
  }
  if (attn)
    be_->attention_backward(dm1, dmid, a.mid, probs, a.lse, a.m1, B, T, d, cfg.heads);  // [N,3d]
  else
    be_->activation_backward(dm1, dmid, a.m1, size_t(N) * F, act_);  // [N,F]
  if (on_sublayer) on_sublayer();
  if (nf.ln_in) {  // dx = α·ds + LN_in's gradient
    be_->matmul_backward_input(du_.data(), dm1, p.w1, N, d, OC1, false);
    be_->layernorm_backward_residual(dx, gr.ln_in_g, gr.ln_in_b, du_.data(), a.x, p.ln_in_g, a.in_mean, a.in_rstd, N,
                                     d, ds, nf.alpha);
  } else {
    be_->matmul_backward_input(dx, dm1, p.w1, N, d, OC1, true);
  }
  return df;
}

// dw2 += midᵀ·df, db2 += Σ df ; dw1 += inᵀ·dm1, db1 += Σ dm1.
void Model::sub_backward_weight(bool attn, const NormFlags& nf, SubGrad& gr, const SubActs& a, const float* df,
                                const float* dm1, int B, int T) {
  const int N = B * T, d = cfg.d_model, F = cfg.d_ffn;
  const int IC2 = attn ? d : F, OC1 = attn ? 3 * d : F;
  be_->matmul_backward_weight(gr.w2, gr.b2, df, a.mid, N, IC2, d);
  if (on_sublayer) on_sublayer();
  be_->matmul_backward_weight(gr.w1, gr.b1, dm1, nf.ln_in ? a.u : a.x, N, d, OC1);
}

double Model::forward_slot(int slot, const int32_t* tokens, const int32_t* targets) {
  Slot& s = *slots_[slot];
  const int B = s.b, T = s.t, N = B * T, d = cfg.d_model, V = cfg.vocab;
  if (range.embedding) {
    for (int i = 0; i < N; i++)
      STRATA_CHECK(tokens[i] >= 0 && tokens[i] < V, "token id ", tokens[i], " at position ", i,
                   " is >= model.vocab = ", V);
    be_->upload(s.tokens.data(), tokens, size_t(N) * sizeof(int32_t));
    be_->embedding_forward(s.x0, s.tokens.data(), dparam(layout.tok_embedding), dparam(layout.pos_embedding), B, T, d);
  }
  if (range.head && targets) {  // uploaded before the forward is queued: the upload's wait is for no work
    for (int i = 0; i < N; i++)
      STRATA_CHECK(targets[i] >= 0 && targets[i] < V, "target id ", targets[i], " is >= model.vocab = ", V);
    be_->upload(s.targets.data(), targets, size_t(N) * sizeof(int32_t));
  }
  const float* x = s.x0;
  for (int k = 0; k < nblocks(); k++) {
    const int l = range.first + k;
    NormFlags nf = norm_flags(cfg, l);
    for (int j = 0; j < 2; j++) {
      SubActs& a = acts_of(s, 2 * k + j, false);
      a.x = x;
      sub_forward(j == 0, nf, view(j == 0 ? layout.attn[l] : layout.ffn[l]), a, B, T);
      if (collect_stats) add_forward_stats(k, j == 0, nf, a, B, T);
      x = a.y;
      if (on_sublayer) on_sublayer();
    }
  }
  if (collect_stats) be_->stats_flush();  // stats are complete when forward_slot returns
  if (!range.head) return 0.0;
  const float* xf = x;
  if (has_final_norm(cfg)) {
    be_->layernorm_forward(s.xf, s.fn_mean, s.fn_rstd, x, dparam(layout.final_norm_g), dparam(layout.final_norm_b), N, d,
                      cfg.ln_eps);
    xf = s.xf;
  }
  be_->matmul_forward(s.logits, xf, dparam(layout.lm_head), static_cast<const float*>(nullptr), N, d, V);
  if (!targets) return 0.0;
  be_->crossentropy_forward(s.losses, s.logits, s.targets.data(), N, V);
  return be_->sum(s.losses, size_t(N));
}

void Model::backward_input(int slot, float dloss_scale, bool defer) {
  Slot& s = *slots_[slot];
  const int B = s.b, T = s.t, N = B * T, d = cfg.d_model, V = cfg.vocab;
  const float* dcur = s.dy;  // ∂loss/∂(current stream)
  const float* xlast = output(slot);
  if (range.head) {
    float* dl = dlogits_.data();
    if (defer) {
      s.dlogits.reserve(*be_, size_t(s.B) * s.T * V);
      dl = s.dlogits.data();
    }
    be_->crossentropy_backward(dl, s.logits, s.targets.data(), N, V, dloss_scale);
    const bool fn = has_final_norm(cfg);
    if (!defer)
      be_->matmul_backward_weight(dgrad(layout.lm_head), static_cast<float*>(nullptr), dl, fn ? s.xf : xlast, N, d, V);
    float* dh = nblocks() > 0 ? sa_.data() : s.dx;
    if (fn) {
      be_->matmul_backward_input(du_.data(), dl, dparam(layout.lm_head), N, d, V, false);
      be_->layernorm_backward(dh, dgrad(layout.final_norm_g), dgrad(layout.final_norm_b), du_.data(), xlast,
                         dparam(layout.final_norm_g), s.fn_mean, s.fn_rstd, N, d, false);
    } else {
      be_->matmul_backward_input(dh, dl, dparam(layout.lm_head), N, d, V, false);
    }
    dcur = dh;
    if (on_grads_written) on_grads_written(defer ? Pass::input : Pass::both, 2 * cfg.layers);
  }
  for (int i = 2 * nblocks() - 1; i >= 0; i--) {
    const int l = range.first + i / 2;
    const bool attn = i % 2 == 0;
    const SubOffsets& o = attn ? layout.attn[l] : layout.ffn[l];
    SubGrad g = grad_view(o);
    NormFlags nf = norm_flags(cfg, l);
    float* dnext = i == 0 ? s.dx : (dcur == sa_.data() ? sb_.data() : sa_.data());
    if (collect_stats && !attn) be_->stats_sumsq_to(&stats[i / 2].resid_grad_sq, dcur, size_t(N) * d);  // ∂loss/∂(block output)
    if (recompute_ == Recompute::full && !attn) rerun_block(s, i / 2);  // the block's activations again
    const SubActs& a = acts_of(s, i, true);
    if (defer) {  // the W pass reads ∂/∂f and ∂/∂m1 later: they go to the slot's own buffers
      s.wdf.resize(2 * nblocks());
      s.wdm1.resize(2 * nblocks());
      s.wdf[i].reserve(*be_, size_t(s.B) * s.T * d);
      // ∂/∂m1 [N, 3d | d_ffn]: room for bf16 values where the backend keeps them so (keep_bf16)
      const size_t n1 = size_t(s.B) * s.T * (attn ? 3 * d : cfg.d_ffn);
      const bool kept = attn ? be_->keeps_attention_bf16(d, cfg.heads) : be_->keeps_bf16();
      s.wdm1[i].reserve(*be_, room(kept, n1));
      if (kept) be_->keep_bf16(s.wdm1[i].data(), n1);
      sub_backward_input(attn, nf, view(o), g, a, dcur, dnext, B, T, s.wdf[i].data(), s.wdm1[i].data());
    } else {
      float* dm1 = attn ? dm1_.data() : dm1_ffn_.data();
      const float* df = sub_backward_input(attn, nf, view(o), g, a, dcur, dnext, B, T, nullptr, dm1);
      sub_backward_weight(attn, nf, g, a, df, dm1, B, T);
    }
    dcur = dnext;
    if (on_grads_written) on_grads_written(defer ? Pass::input : Pass::both, 2 * l + (attn ? 0 : 1));
    if (on_sublayer) on_sublayer();
  }
  if (collect_stats) be_->stats_flush();
  if (range.embedding && !defer)
    be_->embedding_backward(dgrad(layout.tok_embedding), dgrad(layout.pos_embedding), s.dx, s.tokens.data(), B, T, d);
  s.pending_w = defer;
  if (on_grads_written) {
    if (range.embedding) on_grads_written(defer ? Pass::input : Pass::both, -1);
    on_grads_written(defer ? Pass::input : Pass::both, INT_MIN);
  }
}

void Model::backward_weight(int slot) {
  Slot& s = *slots_[slot];
  STRATA_CHECK(s.pending_w, "backward_weight on slot ", slot, " without a deferred backward_input");
  const int B = s.b, T = s.t, N = B * T, d = cfg.d_model, V = cfg.vocab;
  if (range.head) {
    be_->matmul_backward_weight(dgrad(layout.lm_head), static_cast<float*>(nullptr), s.dlogits.data(),
                           has_final_norm(cfg) ? s.xf : output(slot), N, d, V);
    if (on_grads_written) on_grads_written(Pass::weight, 2 * cfg.layers);
  }
  // First the sub-layers whose B pass ran last (their ∂/∂f, ∂/∂m1 are still in cache), then upwards.
  for (int i = 0; i < 2 * nblocks(); i++) {
    const int l = range.first + i / 2;
    const bool attn = i % 2 == 0;
    SubGrad g = grad_view(attn ? layout.attn[l] : layout.ffn[l]);
    if (recompute_ == Recompute::full && attn) rerun_block(s, i / 2);  // once more for the W pass
    const SubActs& a = acts_of(s, i, true);
    sub_backward_weight(attn, norm_flags(cfg, l), g, a, s.wdf[i].data(), s.wdm1[i].data(), B, T);
    if (on_grads_written) on_grads_written(Pass::weight, 2 * l + (attn ? 0 : 1));
    if (on_sublayer) on_sublayer();
  }
  if (range.embedding)
    be_->embedding_backward(dgrad(layout.tok_embedding), dgrad(layout.pos_embedding), s.dx, s.tokens.data(), B, T, d);
  s.pending_w = false;
  if (on_grads_written) {
    if (range.embedding) on_grads_written(Pass::weight, -1);
    on_grads_written(Pass::weight, INT_MIN);
  }
}

float Model::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  STRATA_CHECK(range.embedding && range.head, "forward(tokens) needs the whole model");
  if (single_slot_ >= 0 && (slots_[single_slot_]->B < B || slots_[single_slot_]->T < T)) {
    release(single_slot_);
    single_slot_ = -1;
  }
  if (single_slot_ < 0) {
    single_slot_ = acquire(B, T);
  } else {
    slots_[single_slot_]->b = B;
    slots_[single_slot_]->t = T;
  }
  return float(forward_slot(single_slot_, tokens, targets) / (double(B) * T));
}

void Model::backward(const int32_t* tokens, const int32_t* targets, int B, int T, float dloss_scale) {
  (void)tokens, (void)targets, (void)B, (void)T;
  backward_input(single_slot_, dloss_scale, false);
}

}  // namespace strata
