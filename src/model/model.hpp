// model.hpp: the decoder, or one pipeline stage of it: [embedding] → blocks [first, last) → [final norm →
// lm_head → cross-entropy], with its parameters and gradients in flat buffers (the stage's contiguous slice
// of the layer-major layout), activations in per-micro-batch slots, and a hand-written forward and a
// backward split into an input-gradient pass (B) and a weight-gradient pass (W).
// The model knows nothing of optimizers, data or communication, and computes through a Backend
// (backend/backend.hpp): on the CPU backend every buffer is host memory and `params`/`grads` are the buffers
// the ops use; on a GPU backend they are host mirrors of device buffers, synchronised by push_*/pull_*.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/ops.hpp"
#include "config/config.hpp"
#include "model/layout.hpp"

namespace strata {

// Per-block activation statistics summed over the micro-batches of a step (forward and input-gradient passes).
struct BlockStats {
  double branch_sq[2] = {0, 0};   // Σ F(·)² of attn, ffn
  double norm_in_sq[2][3] = {};   // Σ (LayerNorm input)² of attn, ffn; per LN: in (x), branch (f), sum (s)
  double resid_sq = 0;            // Σ y² of the stream leaving the block
  double resid_grad_sq = 0;       // Σ (∂loss/∂y)² of it
  double entropy = 0;             // Σ over (batch, head, query) of the attention entropy, nats
  double rows = 0;                // how many (batch, head, query) rows went into entropy
  double elems = 0;               // how many elements of one [N,d] activation went into the sums
  double max_abs = 0;             // largest |activation| in the block
};

// The part of the model a stage owns. The default is the whole model.
struct StageRange {
  int first = 0, last = -1;  // blocks [first, last); −1: every block
  bool embedding = true;     // token + position embedding (the first stage)
  bool head = true;          // final norm, lm_head and loss (the last stage)
};

// Activation recomputation (train.recompute). Every mode gives the same bits: the forward is deterministic.
//   none: every activation the backward reads is kept per micro-batch;
//   selective: attention's [B,H,T,T] probabilities are not kept but recomputed in the backward (Megatron-LM's
//     selective recomputation; a backend whose attention keeps only the log-sum-exp has nothing to recompute);
//   full: only each block's input is kept; the block's forward runs again in its backward (and again before a
//     deferred weight-gradient pass), into one block's worth of scratch shared by the micro-batches.
enum class Recompute { none, selective, full };
Recompute recompute_from_name(const std::string& name);  // "none", "selective", "full"

// What a backend keeps, for sizing activations without one (strata plan) or from one (Model).
struct ActTraits {
  bool probs = true;     // attention keeps [B,H,T,T] probabilities (else [B,H,T] log-sum-exp)
  bool hidden16 = false; // the feed-forward's hidden activations and their gradients held as bf16 (keeps_bf16)
  bool qkv16 = false;    // attention's qkv, out and their gradients held as bf16 (keeps_attention_bf16)
};
ActTraits act_traits(const Backend& be, const ModelConfig& cfg);

// Floats of activation memory a stage allocates for micro-batches of B×T (Model allocates exactly these):
// per_slot for each micro-batch in flight, deferred_w more for each one whose weight-gradient pass waits (zb-h1),
// and scratch once (backward scratch, the forward's transient outputs, full recomputation's block).
struct ActFloats {
  size_t per_slot = 0, deferred_w = 0, scratch = 0;
  size_t ints_per_slot = 0;  // int32 tokens and targets
};
ActFloats activation_floats(const ModelConfig& cfg, const StageRange& range, Recompute rc, const ActTraits& tr,
                            int B, int T);

// Activations of one sub-layer for one micro-batch (nullptr where the placement has none). N = B·T rows.
struct SubActs {
  const float* x = nullptr;                                     // [N,d] input (previous output), not owned
  float *u = nullptr, *in_mean = nullptr, *in_rstd = nullptr;   // LN_in out [N,d], [N], [N]
  float* m1 = nullptr;                                          // [N,3d] qkv | [N,d_ffn] pre-activation
  float* probs = nullptr;                                       // [B,H,T,T] attention probabilities (CPU)
  float* lse = nullptr;                                         // [B,H,T] their log-sum-exp (fused, GPU)
  float* mid = nullptr;                                         // [N,d] heads concatenated | [N,d_ffn] σ(m1)
  float* f = nullptr;                                           // [N,d] F(u)
  float *g = nullptr, *br_mean = nullptr, *br_rstd = nullptr;   // LN_branch(f)
  float *s = nullptr, *sum_mean = nullptr, *sum_rstd = nullptr; // α·x + g before LN_sum
  float* y = nullptr;                                           // [N,d] output
};

class Model {
 public:
  // be: where the stage computes; null is the CPU backend.
  explicit Model(const ModelConfig& cfg, StageRange range = {}, Backend* be = nullptr,
                 Recompute recompute = Recompute::none);
  ~Model();
  Backend& backend() const { return *be_; }

  // Draws the stage's parameters from the counter-based RNG: each tensor gets the values it has in the
  // whole model, whatever the partition.
  void init(uint64_t seed);
  void zero_grad();  // grads and, when in use, the float64 accumulator

  // Gradient accumulation in float64 across micro-batches (and replicas): fold_grads() adds grads into the
  // accumulator and zeroes them after each backward pass; grads_from_accumulator() rounds the sum back. Every
  // tensor receives one contribution per micro-batch, so the rounded sum is, to the last bit, independent of
  // how the micro-batches were grouped: P × D layouts train the same bits as one process.
  // Which tensors a pass wrote: B writes only the LayerNorm gains and biases, W everything else.
  enum class Pass { both, input, weight };
  void fold_grads(Pass pass = Pass::both);
  void grads_from_accumulator();
  // The same per tensor, for a data-parallel reduction that starts while the backward runs (GradBuckets):
  // whether `pass` writes tensors[k]'s gradient; fold tensors[k] alone.
  bool written_by(Pass pass, size_t k);
  void fold_tensor(size_t k);
  // Which part of the stage tensors[k] belongs to: 2·block + (0 attention | 1 feed-forward), −1 the embeddings,
  // 2·L the final norm and lm_head.
  int part_of(size_t k) const;
  // Called by a backward pass once it has written a part's gradients (the head's right after the loss, each
  // sub-layer's after it, the embeddings' at the end), then with part = INT_MIN when the pass is over.
  std::function<void(Pass pass, int part)> on_grads_written;
  std::vector<double> grad_acc;  // [params.size()] when accumulating, else empty (host mirror on a GPU)

  // ---- one micro-batch at a time (single process, eval, sample): slot 0 ----
  // Forward over tokens[B,T]; with targets returns the mean loss over B·T, else computes logits only.
  float forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // Backward of the last forward: grads += ∂(loss_sum · dloss_scale)/∂θ.
  void backward(const int32_t* tokens, const int32_t* targets, int B, int T, float dloss_scale);
  const float* logits();  // [B,T,V] of the last forward (head stages), host memory

  // ---- pipeline: many micro-batches in flight, each in its own slot ----
  int acquire(int B, int T);  // a free slot sized for B×T; the pool grows to the peak in flight
  void release(int slot);
  float* input(int slot);              // [N,d] where a non-first stage receives its input activations
  const float* output(int slot) const; // [N,d] activations leaving a non-head stage (after forward)
  float* output_grad(int slot);        // [N,d] where a non-head stage receives ∂loss/∂output
  const float* input_grad(int slot) const;  // [N,d] ∂loss/∂input to send back (after backward_input)
  // Forward of the slot's micro-batch; tokens on the first stage, targets on the head stage. Returns the
  // summed loss over the slot's tokens on the head stage, else 0.
  double forward_slot(int slot, const int32_t* tokens, const int32_t* targets);
  // B: gradients with respect to activations (and LayerNorm parameters); with defer_weight the matmul weight
  // gradients wait for backward_weight, otherwise they are done here too.
  void backward_input(int slot, float dloss_scale, bool defer_weight);
  void backward_weight(int slot);  // W: the deferred weight gradients; grads +=

  size_t activation_bytes() const;  // bytes held by all slots ever allocated (the peak in flight)
  size_t scratch_bytes() const;     // activation scratch shared by the slots (backward, forward outputs, recompute)
  Recompute recompute() const { return recompute_; }

  // With collect_stats, forward and backward passes add to stats[k] (block range.first + k).
  bool collect_stats = false;
  std::vector<BlockStats> stats;
  void reset_stats() { stats.assign(nblocks(), BlockStats{}); }
  // Called after every sub-layer of every pass: the pipeline executor lets transfers progress there, so a
  // large send completes while this rank computes (the model itself knows nothing of communication).
  std::function<void()> on_sublayer;
  int slots_allocated() const { return int(slots_.size()); }

  ModelConfig cfg;
  StageRange range;
  int nblocks() const { return range.last - range.first; }
  ParamLayout layout;                // of the whole model; offsets are global
  size_t slice_begin = 0, slice_end = 0;  // this stage's part of the layout
  std::vector<const TensorSpec*> tensors;  // the tensors this stage owns
  std::vector<float> params, grads;  // [slice_end − slice_begin], host
  float* param(size_t global_offset) { return params.data() + (global_offset - slice_begin); }
  float* grad(size_t global_offset) { return grads.data() + (global_offset - slice_begin); }

  // The buffers the backend computes on (= params.data(), grads.data(), grad_acc.data() on the CPU backend),
  // and the copies between them and the host vectors (no-ops on the CPU backend). init() pushes the params.
  float* dparams() { return dp_; }
  float* dgrads() { return dg_; }
  double* dgrad_acc() { return da_; }  // null until the first fold
  void push_params();
  void pull_params();
  void pull_grads();
  void push_grad_acc();
  void pull_grad_acc();

 private:
  struct Slot;
  struct SubView {
    const float *ln_in_g, *ln_in_b, *w1, *b1, *w2, *b2, *ln_out_g, *ln_out_b;
  };
  struct SubGrad {
    float *ln_in_g, *ln_in_b, *w1, *b1, *w2, *b2, *ln_out_g, *ln_out_b;
  };
  SubView view(const SubOffsets& o) const;
  SubGrad grad_view(const SubOffsets& o);
  void sub_forward(bool attn, const NormFlags& nf, const SubView& p, SubActs& a, int B, int T);
  const float* sub_backward_input(bool attn, const NormFlags& nf, const SubView& p, SubGrad& g, const SubActs& a,
                                  const float* dy, float* dx, int B, int T, float* df_keep, float* dm1);
  void sub_backward_weight(bool attn, const NormFlags& nf, SubGrad& g, const SubActs& a, const float* df,
                           const float* dm1, int B, int T);
  void reserve_scratch(int B, int T);
  void ensure_accumulator();
  SubActs& acts_of(Slot& s, int i, bool rerun);  // sub-layer i's activations (full recompute: the block scratch)
  void rerun_block(Slot& s, int k);              // full recompute: block k's forward again, into the scratch
  void add_forward_stats(int k, bool attn, const NormFlags& nf, const SubActs& a, int B, int T);

  const float* dparam(size_t global_offset) const { return dp_ + (global_offset - slice_begin); }
  float* dgrad(size_t global_offset) { return dg_ + (global_offset - slice_begin); }

  Backend* be_;
  Recompute recompute_;
  ActTraits traits_;
  Array<float> dparams_, dgrads_;  // GPU backends: the device buffers (CPU: empty)
  Array<double> dacc_;
  float *dp_ = nullptr, *dg_ = nullptr;
  double* da_ = nullptr;
  std::vector<float> logits_host_;  // logits() on a GPU backend
  cpu::Activation act_;
  std::vector<std::unique_ptr<Slot>> slots_;
  int single_slot_ = -1;  // slot used by forward()/backward()
  std::vector<bool> norm_tensors_;  // tensors[k] is a LayerNorm gain or bias
  int cap_B_ = 0, cap_T_ = 0;
  // Backward scratch. The feed-forward's ∂/∂mid and ∂/∂m1 [N, d_ffn] apart from attention's: the backend may keep
  // them in bf16 only (Backend::keep_bf16), so no op reads them as fp32.
  Array<float> sa_, sb_, ds_, df_, dmid_, dm1_, dmid_ffn_, dm1_ffn_, du_, dlogits_;
  // Forward scratch: F's output where no backward reads it (no LN_branch), LN_branch's output (never read back),
  // with selective recomputation the probabilities and the recomputed attention output; with full recomputation
  // one block's activations (block_[0] attention, block_[1] feed-forward, rerun_y_ the rerun block's output).
  Array<float> fwd_;
  float *fwd_f_ = nullptr, *fwd_g_ = nullptr, *fwd_probs_ = nullptr, *fwd_mid_ = nullptr, *rerun_y_ = nullptr;
  SubActs block_kept_[2], block_[2];
};

}  // namespace strata
