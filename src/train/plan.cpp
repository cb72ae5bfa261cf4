// plan.cpp: `strata plan`: per rank, the bytes of weights, gradients, optimizer state, activations (the schedule's
// peak of micro-batches in flight × what one keeps, from Model's own layout function), scratch, data and runtime;
// FLOPs per step, the bubble and a step time from a peak FLOP/s.
#include "train/plan.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.hpp"
#include "model/layout.hpp"
#include "model/model.hpp"
#include "parallel/grad_sync.hpp"
#include "parallel/partition.hpp"
#include "parallel/schedule.hpp"

namespace strata {

namespace {

// A CPU rank beyond the loaded binary (process_base_bytes): MPI's shared-memory transport, the OpenMP and
// OpenBLAS thread buffers, HDF5: configs/tiny.toml's peak RSS less its buffers and the base, on this machine
// (docs/scaling.md).
constexpr double kCpuRuntime = 17e6;
// A GPU rank's device memory outside Strata's buffers: CUDA context and module images, cuBLAS/cuBLASLt handles
// and the 32 MiB Lt workspace, NCCL's buffers. An estimate, not yet measured on a GPU (docs/gpu.md).
constexpr double kGpuRuntime = 1.0 * (1ull << 30);

// Most slots each chunk of `stage` holds at once, following PipelineExecutor: a slot is taken at the first action
// of its (micro-batch, chunk), the receives of the next compute action included (they are posted one compute
// action ahead), and given back after its last action (its sends taken as complete by then).
std::vector<int> slots_in_flight(const ScheduleSpec& spec, int stage, std::vector<bool>& deferred) {
  const std::vector<Action> acts = schedule_build(spec, stage);
  std::map<std::pair<int, int>, size_t> last;
  for (size_t i = 0; i < acts.size(); i++) last[{acts[i].mb, acts[i].chunk}] = i;
  std::vector<int> live(spec.v, 0), peak(spec.v, 0);
  deferred.assign(spec.v, false);
  std::map<std::pair<int, int>, bool> held;
  auto touch = [&](const Action& a) {
    if (held[{a.mb, a.chunk}]) return;
    held[{a.mb, a.chunk}] = true;
    peak[a.chunk] = std::max(peak[a.chunk], ++live[a.chunk]);
  };
  for (size_t i = 0; i < acts.size(); i++) {
    const Action& a = acts[i];
    if (a.peer < 0)
      for (size_t j = i + 1; j < acts.size() && acts[j].peer >= 0; j++)
        if (acts[j].op == Op::recv_act || acts[j].op == Op::recv_grad) touch(acts[j]);
    touch(a);
    // A B not followed by its own W keeps the W pass's inputs in the slot (Model::backward_input, defer).
    if (a.op == Op::backward_input &&
        !(i + 1 < acts.size() && acts[i + 1].op == Op::backward_weight && acts[i + 1].mb == a.mb &&
          acts[i + 1].chunk == a.chunk))
      deferred[a.chunk] = true;
    if (last[{a.mb, a.chunk}] == i) live[a.chunk]--;
  }
  return peak;
}

double shard_bytes(const std::string& path) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  return ec ? 0.0 : double(n);  // uint16 tokens after a 1 KiB header, held whole (Loader)
}

std::string mb(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", bytes / 1e6);
  return b;
}

}  // namespace

double process_base_bytes() {
  static const double base = [] {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("VmRSS:", 0) == 0) return 1024.0 * std::stod(line.substr(6));  // "VmRSS:   1234 kB"
    return 0.0;
  }();
  return base;
}

Plan plan_build(const Config& cfg, const std::string& device) {
  STRATA_CHECK(device == "cpu" || device == "h100" || device == "h200", "strata plan: --device ", device,
               " is not one of cpu, h100, h200");
  const ModelConfig& mc = cfg.model;
  const TrainConfig& tc = cfg.train;
  const ParallelConfig& pc = cfg.parallel;
  const bool gpu = device != "cpu";
  const int P = pc.pipeline, D = pc.data, v = pc.virtual_stages;
  ScheduleSpec spec{schedule_kind_from_name(pc.schedule), P, tc.batch_size / D / tc.micro_batch_size, v};
  schedule_validate(spec);
  const std::vector<int> counts = partition_blocks(mc, P * v, pc.partition);
  const ParamLayout layout = layout_build(mc);
  const Recompute rc = recompute_from_name(tc.recompute);
  ActTraits tr;  // the CPU's; a GPU runs fused attention (log-sum-exp only) and keeps bf16 activations
  if (gpu) {
    const bool bf16 = tc.precision == "bf16" && tc.bf16_activations;
    const int hs = mc.d_model / mc.heads;
    tr.probs = tc.attention == "unfused";
    tr.hidden16 = bf16;
    tr.qkv16 = bf16 && !tr.probs && (hs == 16 || hs == 32 || hs == 64 || hs == 128);
  }
  const bool fold = spec.M * D > 1;
  const bool zero = pc.zero == 1 && D > 1;
  const double data = gpu ? 0.0 : shard_bytes(cfg.data.train) + shard_bytes(cfg.data.val);

  Plan p;
  p.device = device;
  for (int stage = 0; stage < P; stage++) {
    std::vector<bool> deferred;
    const std::vector<int> slots = slots_in_flight(spec, stage, deferred);
    RankPlan r;
    r.stage = stage;
    double n = 0;                                 // parameters of this rank
    std::vector<double> moments(D, 0.0);          // AdamW's values per replica (ZeRO-1: its shard's)
    for (int c = 0; c < v; c++) {
      const StageRange range = partition_range(counts, c * P + stage);
      const size_t begin = range.embedding ? 0 : layout.block_begin[range.first];
      const size_t end = range.head ? layout.total : layout.block_begin[range.last];
      n += double(end - begin);
      std::vector<const TensorSpec*> tensors;  // as Model lists them
      for (const TensorSpec& t : layout.tensors)
        if (t.offset >= begin && t.offset < end) tensors.push_back(&t);
      const ZeroShards zs = zero_shards(tensors, begin, end - begin, zero ? D : 1);
      for (int r = 0; r < D; r++) moments[r] += 2.0 * double(zs.size(zero ? r : 0));
      const ActFloats a = activation_floats(mc, range, rc, tr, tc.micro_batch_size, mc.seq_len);
      r.activations += 4.0 * slots[c] * (a.per_slot + a.ints_per_slot + (deferred[c] ? a.deferred_w : 0));
      r.scratch += 4.0 * a.scratch;
      r.slots += slots[c];
    }
    r.params = 4 * n, r.grads = 4 * n, r.grad_acc = fold ? 8 * n : 0;
    r.stats = cfg.stats.interval > 0 ? 4 * n : 0;
    r.data = data;
    r.copies = gpu && tc.precision == "bf16" ? 2 * n : 0;
    r.runtime = gpu ? kGpuRuntime : process_base_bytes() + kCpuRuntime;
    for (int replica = 0; replica < D; replica++) {
      r.rank = stage * D + replica, r.replica = replica;
      r.optimizer = 4 * moments[replica];
      p.ranks.push_back(r);
    }
  }
  const double tokens = double(tc.batch_size) * mc.seq_len;
  const double fpt = flops_per_token(mc, layout);
  p.flops_per_step = fpt * tokens;
  // Recomputed: full reruns every block's forward (a third of its 6N, plus its attention); selective on the
  // CPU attention's forward (4·L·d·T per token, the causal half of QKᵀ and PV, counted whole as in fpt).
  const double attn_fwd = 4.0 * mc.layers * mc.d_model * mc.seq_len;
  const double block_fwd = 2.0 * (double(layout.matmul_params) - double(mc.vocab) * mc.d_model) + attn_fwd;
  const double extra = rc == Recompute::full ? block_fwd * (spec.kind == ScheduleKind::zb_h1 ? 2 : 1)
                       : rc == Recompute::selective && tr.probs ? attn_fwd
                                                                : 0.0;
  p.exec_flops_per_step = (fpt + extra) * tokens;
  const Simulation sim = schedule_simulate(spec, schedule_build_all(spec), CostModel{1, 1, 1, 0});
  p.bubble = sim.completed ? sim.bubble_fraction() : 0.0;
  p.peak_flops = gpu ? 989e12 : (cfg.log.peak_gflops > 0 ? cfg.log.peak_gflops : 155.0) * 1e9;
  p.step_time_s = p.exec_flops_per_step / (double(P) * D * p.peak_flops) / std::max(1e-9, 1.0 - p.bubble);
  return p;
}

std::string plan_text(const Config& cfg, const Plan& p) {
  std::ostringstream os;
  const auto& pc = cfg.parallel;
  os << "plan: " << cfg.source << " on " << p.device << ", " << cfg.model.layers << " blocks, d = " << cfg.model.d_model
     << ", T = " << cfg.model.seq_len << ", " << pc.pipeline << " stage(s) x " << pc.data << " replica(s), "
     << pc.schedule << ", M = " << cfg.train.batch_size / pc.data / cfg.train.micro_batch_size
     << ", recompute = " << cfg.train.recompute << ", zero = " << pc.zero << "\n";
  os << "  rank stage replica  slots   params    grads  grad_acc  optimizer  stats  activations  scratch     data  "
        "copies  runtime     peak (MB)\n";
  for (const RankPlan& r : p.ranks) {
    char line[256];
    std::snprintf(line, sizeof line, "  %4d %5d %7d %6d %8s %8s %9s %10s %6s %12s %8s %8s %7s %8s %8s\n", r.rank,
                  r.stage, r.replica, r.slots, mb(r.params).c_str(), mb(r.grads).c_str(), mb(r.grad_acc).c_str(),
                  mb(r.optimizer).c_str(), mb(r.stats).c_str(), mb(r.activations).c_str(), mb(r.scratch).c_str(),
                  mb(r.data).c_str(), mb(r.copies).c_str(), mb(r.runtime).c_str(), mb(r.peak()).c_str());
    os << line;
  }
  char line[256];
  std::snprintf(line, sizeof line,
                "  %.3g GFLOP per step (%.3g with recomputation), bubble %.1f%%, predicted %.3f s per step at %.4g "
                "GFLOP/s per rank\n",
                p.flops_per_step / 1e9, p.exec_flops_per_step / 1e9, 100 * p.bubble, p.step_time_s,
                p.peak_flops / 1e9);
  os << line;
  return os.str();
}

std::string plan_json(const Config& cfg, const Plan& p) {
  std::ostringstream os;
  os.precision(15);
  os << "{\"config\": \"" << cfg.source << "\", \"device\": \"" << p.device << "\", \"ranks\": [";
  for (size_t i = 0; i < p.ranks.size(); i++) {
    const RankPlan& r = p.ranks[i];
    os << (i ? ", " : "") << "{\"rank\": " << r.rank << ", \"stage\": " << r.stage << ", \"replica\": " << r.replica
       << ", \"slots\": " << r.slots << ", \"params_bytes\": " << r.params << ", \"grads_bytes\": " << r.grads
       << ", \"grad_acc_bytes\": " << r.grad_acc << ", \"optimizer_bytes\": " << r.optimizer
       << ", \"stats_bytes\": " << r.stats << ", \"activation_bytes\": " << r.activations
       << ", \"scratch_bytes\": " << r.scratch << ", \"data_bytes\": " << r.data << ", \"copies_bytes\": " << r.copies
       << ", \"runtime_bytes\": " << r.runtime
       << ", \"peak_bytes\": " << r.peak() << "}";
  }
  os << "], \"flops_per_step\": " << p.flops_per_step << ", \"exec_flops_per_step\": " << p.exec_flops_per_step
     << ", \"bubble_fraction\": " << p.bubble << ", \"peak_flops_per_rank\": " << p.peak_flops
     << ", \"step_time_s\": " << p.step_time_s << "}\n";
  return os.str();
}

void plan_run(const std::string& config_file, const std::vector<std::string>& sets, const std::string& device,
              bool json) {
  const Config cfg = config_load(config_file, sets);
  const Plan p = plan_build(cfg, device);
  std::fputs((json ? plan_json(cfg, p) : plan_text(cfg, p)).c_str(), stdout);
}

}  // namespace strata
