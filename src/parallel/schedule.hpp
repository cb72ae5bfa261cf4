// schedule.hpp: pipeline schedules as data. A pure function of (kind, P, stage, M, v) gives each stage's
// ordered list of actions (compute and point-to-point communication); a simulator runs all lists against a
// cost model to check that every send has its receive, that no ordering deadlocks, the activations held, and
// the bubble. No MPI here: the executor (executor.hpp) runs the same lists over a transport.
#pragma once
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace strata {

enum class ScheduleKind { gpipe, one_f_one_b, interleaved, zb_h1 };
ScheduleKind schedule_kind_from_name(const std::string& name);  // "gpipe", "1f1b", "interleaved", "zb-h1"
const char* schedule_kind_name(ScheduleKind k);

enum class Op {
  forward,          // F: forward of one micro-batch through one model chunk
  backward,         // B+W together (gpipe, 1f1b, interleaved)
  backward_input,   // B: gradient with respect to the chunk's input only (zb-h1)
  backward_weight,  // W: gradient with respect to the chunk's weights, deferred (zb-h1)
  send_act, recv_act, send_grad, recv_grad
};
const char* op_name(Op op);

struct Action {
  Op op;
  int mb;     // micro-batch
  int chunk;  // model chunk on this rank (0 … v−1); virtual stage = chunk·P + stage
  int peer;   // pipeline rank sent to / received from (−1 for compute)
};

struct ScheduleSpec {
  ScheduleKind kind = ScheduleKind::one_f_one_b;
  int P = 1;  // pipeline stages (ranks)
  int M = 1;  // micro-batches per step
  int v = 1;  // model chunks per rank (interleaved only; 1 otherwise)
};

// Throws strata::Error naming the values when the spec is invalid (e.g. interleaved with M % P != 0).
void schedule_validate(const ScheduleSpec& s);
// The ordered actions of pipeline rank `stage`.
std::vector<Action> schedule_build(const ScheduleSpec& s, int stage);
std::vector<std::vector<Action>> schedule_build_all(const ScheduleSpec& s);

struct CostModel {
  double F = 1, B = 1, W = 1;  // per micro-batch and chunk; a fused backward costs B + W
  double comm = 0;             // latency of one transfer
};

struct Simulation {
  bool completed = false;
  std::string error;                 // why not (deadlock, unmatched send, …)
  double makespan = 0;
  std::vector<double> busy;          // compute time per stage
  std::vector<int> peak_activations; // most micro-batch chunks held (forwarded, weight gradient not yet done)
  // Timeline: per stage, (start, end, action) of every compute action.
  struct Slot {
    double start, end;
    Action a;
  };
  std::vector<std::vector<Slot>> timeline;
  // When each message was sent (the sender's clock at its send action), keyed (is gradient, micro-batch,
  // destination virtual stage): the NCCL transport orders its operations by it.
  std::map<std::tuple<int, int, int>, double> sent_at;
  double bubble_time() const;      // Σ over stages (makespan − busy) / P: idle time of one stage on average
  double bubble_fraction() const;  // bubble_time / makespan
};

Simulation schedule_simulate(const ScheduleSpec& s, const std::vector<std::vector<Action>>& lists,
                             const CostModel& cost);

// A text timeline (one row per stage, one column per time unit of the cost model) with the bubble fraction.
std::string schedule_render(const ScheduleSpec& s, const Simulation& sim, const CostModel& cost);

}  // namespace strata
