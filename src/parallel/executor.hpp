// executor.hpp: runs one stage's schedule (schedule.hpp) on its model chunks, moving activations and
// gradients through a Transport. The model code knows nothing of this; the schedule knows nothing of MPI.
#pragma once
#include <functional>
#include <map>
#include <vector>

#include "model/model.hpp"
#include "parallel/grad_sync.hpp"
#include "parallel/schedule.hpp"
#include "parallel/transport.hpp"

namespace strata {

// Fills tokens[MB·T] and targets[MB·T] of micro-batch mb (called on the stages that embed or compute the loss).
using MicroBatchSource = std::function<void(int mb, int32_t* tokens, int32_t* targets)>;

class PipelineExecutor {
 public:
  // chunks[c] is model chunk c of this rank (virtual stage c·P + stage).
  PipelineExecutor(std::vector<Model*> chunks, const ScheduleSpec& spec, int stage, Transport& tr);
  // Forward and backward of spec.M micro-batches of MB×T; gradients accumulate in the chunks (folded into
  // their float64 accumulators after every backward pass when fold is true). Returns the summed loss over
  // every token (head stage; 0 elsewhere).
  double train_step(const MicroBatchSource& src, int MB, int T, float dloss_scale, bool fold);
  // Forward only over M micro-batches (evaluation). Returns the summed loss (head stage).
  double eval_step(const MicroBatchSource& src, int M, int MB, int T);
  const std::vector<Action>& actions() const { return actions_; }
  // Data-parallel reduction during the backward (one GradBuckets per chunk, or null): train_step then leaves the
  // float64 folds to them, telling each which passes are the step's last to write its gradients.
  void set_grad_buckets(std::vector<GradBuckets*> buckets);

  // Seconds spent in each kind of compute action (index: Op::forward, backward, backward_input,
  // backward_weight) and waiting for receives, summed since construction; and how many of each ran.
  struct Timing {
    double compute[4] = {0, 0, 0, 0};
    long count[4] = {0, 0, 0, 0};
    double wait = 0;
  };
  const Timing& timing() const { return timing_; }

 private:
  struct Live {
    int slot = -1;
    int recv_act = -1;       // pending receive of the chunk's input activation
    int recv_grad = -1;      // pending receive of its output gradient (both at once where M = 1: the
                             // look-ahead posts the gradient's before the forward waits for the input)
    std::vector<int> sends;  // send handles reading the slot's buffers
  };
  using Key = std::pair<int, int>;  // (micro-batch, chunk)
  Live& live(int mb, int c, int MB, int T);
  void post_recv(const Action& a, int MB, int T);
  void wait_recv(int& handle);
  void retire(const Key& k);        // the slot is released once its sends complete
  void reap(bool block);            // releases retired slots whose sends are done
  int tag(int mb, int vs, bool grad) const { return (mb * nvs_ + vs) * 2 + (grad ? 1 : 0); }

  std::vector<Model*> chunks_;
  ScheduleSpec spec_;
  int stage_, nvs_;
  Transport& tr_;
  std::vector<Action> actions_;
  std::vector<bool> last_touch_;  // action i is the last one of its (micro-batch, chunk)
  size_t skip_w_ = size_t(-1);    // a W action already run fused with its B
  // Per action: the backward pass it runs (a B whose W is next runs both), and whether that pass is its chunk's
  // last to write the LayerNorm gradients (final_in_) or the other gradients (final_w_) in a step.
  std::vector<Model::Pass> pass_;
  std::vector<bool> fused_, final_in_, final_w_;
  std::vector<GradBuckets*> buckets_;
  std::map<Key, Live> live_;
  std::vector<std::pair<Key, Live>> retired_;
  std::vector<int32_t> tok_, tgt_;
  Timing timing_;
};

}  // namespace strata
