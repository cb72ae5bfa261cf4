// plan.hpp: `strata plan`, the memory and time a config will take per rank, predicted from the same layout
// functions the model allocates with (Model's activation_floats, the parameter layout, the schedule's action
// lists), without allocating any of it.
#pragma once
#include <string>
#include <vector>

#include "config/config.hpp"

namespace strata {

// Bytes one rank holds, by kind. On "cpu" host memory (what its RSS shows); on a GPU device memory.
struct RankPlan {
  int rank = 0, stage = 0, replica = 0;
  double params = 0;       // fp32 weights (a GPU also keeps a host mirror, not counted)
  double grads = 0;        // fp32 gradients
  double grad_acc = 0;     // float64 gradient sums across micro-batches and replicas
  double optimizer = 0;    // AdamW's two moments
  double stats = 0;        // the weights before a statistics step's update (stats.interval > 0)
  double activations = 0;  // peak micro-batch slots in flight × their bytes (and deferred W inputs)
  double scratch = 0;      // activation scratch shared by the slots
  double data = 0;         // token shards held in memory (train and val)
  double copies = 0;       // a GPU's bf16 copies of the weights (the operand cache), in bf16
  double runtime = 0;      // the process or device context, libraries, BLAS/cuBLAS workspaces
  int slots = 0;           // micro-batch slots in flight at the peak (over the rank's chunks)
  double peak() const {
    return params + grads + grad_acc + optimizer + stats + activations + scratch + data + copies + runtime;
  }
};

struct Plan {
  std::string device;     // cpu | h100 | h200
  std::vector<RankPlan> ranks;
  double flops_per_step = 0;   // the model's FLOPs per step (6N per token and attention), recomputation excluded
  double exec_flops_per_step = 0;  // what runs, the recomputed forward included
  double bubble = 0;           // the schedule's bubble fraction (equal F, B, W costs)
  double peak_flops = 0;       // per rank, FLOP/s
  double step_time_s = 0;      // exec_flops / (ranks · peak) / (1 − bubble)
};

// devices: "cpu" (the host; log.peak_gflops, else 155 GFLOP/s, two cores of this machine's sgemm),
// "h100", "h200" (dense bf16 peak 989 TFLOP/s).
Plan plan_build(const Config& cfg, const std::string& device);
std::string plan_text(const Config& cfg, const Plan& p);
std::string plan_json(const Config& cfg, const Plan& p);

// Resident bytes of this process before it allocated anything (VmRSS, read once: main() calls it first thing, so
// later calls return that first reading). The binary and its shared libraries, relocated: about 40 MB for a CPU
// build, about 200 MB where CUDA, cuBLAS(Lt) and NCCL are linked in.
double process_base_bytes();

// `strata plan`.
void plan_run(const std::string& config_file, const std::vector<std::string>& sets, const std::string& device,
              bool json);

}  // namespace strata
