// trainer.cpp: the training loop on one rank of the P×D grid (P = D = 1 is the single-process run): data,
// resume, the pipeline step, data-parallel gradient sum, global-norm clipping, AdamW, logging with throughput
// and MFU, periodic evaluation and checkpoints.
#include <cblas.h>
#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <climits>
#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "backend/gpu_runtime.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "core/watchdog.hpp"
#include "core/log.hpp"
#include "data/shard.hpp"
#include "io/checkpoint.hpp"
#include "io/stats.hpp"
#include "optim/optimizer.hpp"
#include "parallel/executor.hpp"
#include "parallel/grad_sync.hpp"
#include "parallel/partition.hpp"
#include "parallel/staged_transport.hpp"
#include "parallel/topology.hpp"
#include "train/commands.hpp"
#include "train/peak.hpp"
#include "train/plan.hpp"
#include "train/rundir.hpp"
#include "train/runinfo.hpp"

namespace fs = std::filesystem;

namespace strata {

int set_threads(int n) {
  if (n <= 0) n = omp_get_num_procs();
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  return n;
}

namespace {

using clock_type = std::chrono::steady_clock;

// Keeps the metrics records up to and including `step` (a resumed run rewrites what follows).
// A record cut short (a run killed while writing it: no closing brace, or no step that parses) is dropped; the
// count of such lines is returned so the caller can say so.
int metrics_truncate(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return 0;
  std::string line, kept;
  int partial = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto p = line.find("\"step\":");
    char* end = nullptr;
    const long long s = p == std::string::npos ? 0 : std::strtoll(line.c_str() + p + 7, &end, 10);
    if (p == std::string::npos || end == line.c_str() + p + 7 || line.back() != '}') {
      partial++;
      continue;
    }
    if (s > step) continue;
    kept += line + "\n";
  }
  in.close();
  write_text_atomic(path, kept);  // a disk that cannot take it leaves the history as it was
  return partial;
}

std::string fmt_time(double s) {
  char b[32];
  if (s >= 3600)
    std::snprintf(b, sizeof b, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
  else
    std::snprintf(b, sizeof b, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
  return b;
}

// SIGTERM, SIGUSR1 and SIGINT only set this; every rank looks at the step boundary (see the loop).
volatile std::sig_atomic_t g_stop_signal = 0;
void on_stop_signal(int sig) { g_stop_signal = sig; }

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
  sa.sa_flags = SA_RESTART | SA_RESETHAND;  // Ctrl-C saves; a second Ctrl-C ends the process at once
  sigaction(SIGINT, &sa, nullptr);
}

// STRATA_TEST_NAN="rank:step:name[:count[:every]]" puts a NaN into the gradient of the first tensor whose name
// contains `name` on that rank at that step and at count - 1 more, `every` steps apart (the non-finite tests).
void inject_nan(int rank, int64_t step, std::vector<std::unique_ptr<Model>>& chunks) {
  static bool done = false;  // once per process, so a rollback does not meet it again
  const char* e = std::getenv("STRATA_TEST_NAN");
  if (!e || done) return;
  int r = -1, count = 1, every = 1;
  long long s = -1;
  char name[128] = {};
  if (std::sscanf(e, "%d:%lld:%127[^:]:%d:%d", &r, &s, name, &count, &every) < 3 || r != rank || step < s ||
      every < 1 || (step - s) % every != 0 || step >= s + int64_t(count) * every)
    return;
  for (auto& ch : chunks)
    for (const TensorSpec* t : ch->tensors)
      if (t->name.find(name) != std::string::npos) {
        const float nan = NAN;
        ch->backend().upload(ch->dgrads() + (t->offset - ch->slice_begin) + t->size / 2, &nan, sizeof nan);
        done = step + every >= s + int64_t(count) * every;
        return;
      }
}

// Index (in the whole layout) of the first tensor, in layer order, whose gradient holds a non-finite value on
// this rank; INT_MAX when none.
int first_nonfinite(const std::vector<std::unique_ptr<Model>>& chunks) {
  int first = INT_MAX;
  for (auto& ch : chunks) {
    if (ch->backend().all_finite(ch->dgrads(), ch->grads.size())) continue;  // one pass (one sync on a GPU)
    for (const TensorSpec* t : ch->tensors) {
      if (!ch->backend().all_finite(ch->dgrads() + (t->offset - ch->slice_begin), t->size))
        first = std::min(first, int(t - ch->layout.tensors.data()));
    }
  }
  return first;
}

// One row of per-layer statistics (stats_names() × L, block-major within a statistic) on world rank 0.
// Activation sums are added over data replicas; each block's values come from replica 0 of its stage.
// `before` holds the parameters before this step's update (empty: no update happened, ratios are NaN);
// grad_scale is the clipping factor already applied to the gradients (their norms are reported unclipped).
// shards, zero: as in the step (each tensor's gradient statistic from the rank holding its reduced gradient).
std::vector<float> stats_row(const Topology& topo, const ModelConfig& mc,
                             const std::vector<std::unique_ptr<Model>>& chunks, const std::vector<ZeroShards>& shards,
                             bool zero, const std::vector<Array<float>>& before, bool have_acts, double grad_scale) {
  const int L = mc.layers;
  const size_t S = stats_names().size();
  std::vector<double> vals(S * L, 0.0);
  for (size_t c = 0; c < chunks.size(); c++) {
    Model& m = *chunks[c];
    const int nb = m.nblocks();
    std::vector<double> sums(size_t(nb) * 12, 0.0), maxs(nb, 0.0);
    for (int k = 0; k < nb && have_acts; k++) {
      const BlockStats& b = m.stats[k];
      double* o = sums.data() + size_t(k) * 12;
      o[0] = b.branch_sq[0], o[1] = b.branch_sq[1];
      for (int j = 0; j < 2; j++)
        for (int t = 0; t < 3; t++) o[2 + 3 * j + t] = b.norm_in_sq[j][t];
      o[8] = b.resid_sq, o[9] = b.resid_grad_sq, o[10] = b.entropy, o[11] = b.rows;
      maxs[k] = b.max_abs;
    }
    std::vector<double> elems(nb, 0.0);
    for (int k = 0; k < nb && have_acts; k++) elems[k] = m.stats[k].elems;
    STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, sums.data(), int(sums.size()), MPI_DOUBLE, MPI_SUM, topo.data));
    STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, elems.data(), nb, MPI_DOUBLE, MPI_SUM, topo.data));
    STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, maxs.data(), nb, MPI_DOUBLE, MPI_MAX, topo.data));
    // Σg² per tensor, by the rank holding its reduced gradient, gathered on replica 0.
    Backend& be = m.backend();
    std::vector<double> tg(m.tensors.size(), 0.0);
    const int r = zero ? topo.replica : 0;
    if (zero || topo.replica == 0) {
      for (size_t i = shards[c].first[r]; i < shards[c].first[r + 1]; i++)
        if (m.tensors[i]->block >= 0)
          be.stats_sumsq_to(&tg[i], m.dgrads() + (m.tensors[i]->offset - m.slice_begin), m.tensors[i]->size,
                            grad_scale * grad_scale);
      be.stats_flush();
    }
    if (zero)
      STRATA_MPI(MPI_Reduce(topo.replica == 0 ? MPI_IN_PLACE : tg.data(), tg.data(), int(tg.size()), MPI_DOUBLE,
                            MPI_SUM, 0, topo.data));
    if (topo.replica != 0) continue;
    // Parameter statistics per block and sub-layer: Σg², Σw², Σ(Δw)², Σw_before².
    std::vector<double> gsq(2 * nb, 0), wsq(2 * nb, 0), dsq(2 * nb, 0), bsq(2 * nb, 0);
    for (size_t i = 0; i < m.tensors.size(); i++) {
      const TensorSpec* t = m.tensors[i];
      if (t->block < 0) continue;
      const int k = t->block - m.range.first, j = t->name.find("/attn/") != std::string::npos ? 0 : 1;
      const size_t o = t->offset - m.slice_begin;
      gsq[2 * k + j] += tg[i];
      be.stats_sumsq_to(&wsq[2 * k + j], m.dparams() + o, t->size);
      if (!before.empty()) {
        be.stats_sqdiff_to(&dsq[2 * k + j], m.dparams() + o, before[c].data() + o, t->size);
        be.stats_sumsq_to(&bsq[2 * k + j], before[c].data() + o, t->size);
      }
    }
    be.stats_flush();  // one wait for the device, not four per tensor
    const double nan = std::nan("");
    for (int k = 0; k < nb; k++) {
      const int l = m.range.first + k;
      const double* o = sums.data() + size_t(k) * 12;
      const double n = elems[k];
      NormFlags nf = norm_flags(mc, l);
      auto rms = [&](double sq) { return have_acts && n > 0 ? std::sqrt(sq / n) : nan; };
      auto norm_in = [&](int j) {
        double w = 0;
        if (nf.ln_in) w = std::max(w, rms(o[2 + 3 * j]));
        if (nf.ln_branch) w = std::max(w, rms(o[3 + 3 * j]));
        if (nf.ln_sum) w = std::max(w, rms(o[4 + 3 * j]));
        return have_acts ? w : nan;
      };
      const double v[14] = {rms(o[0]), rms(o[1]), norm_in(0), norm_in(1), std::sqrt(gsq[2 * k]),
                            std::sqrt(gsq[2 * k + 1]), std::sqrt(wsq[2 * k]), std::sqrt(wsq[2 * k + 1]),
                            before.empty() ? nan : std::sqrt(dsq[2 * k] / bsq[2 * k]),
                            before.empty() ? nan : std::sqrt(dsq[2 * k + 1] / bsq[2 * k + 1]), rms(o[8]), rms(o[9]),
                            have_acts && o[11] > 0 ? o[10] / o[11] : nan, have_acts ? maxs[k] : nan};
      for (size_t s = 0; s < S; s++) vals[s * L + l] = v[s];
    }
  }
  std::vector<double> total(topo.rank == 0 ? vals.size() : 0);
  STRATA_MPI(MPI_Reduce(vals.data(), total.data(), int(vals.size()), MPI_DOUBLE, MPI_SUM, 0, topo.world));
  return std::vector<float>(total.begin(), total.end());
}

// STRATA_TEST_FAIL="rank:step" makes that rank throw at that step (the failure test of tests/mpi).
bool injected_failure(int rank, int64_t step) {
  const char* e = std::getenv("STRATA_TEST_FAIL");
  if (!e) return false;
  int r = -1;
  long long s = -1;
  return std::sscanf(e, "%d:%lld", &r, &s) == 2 && r == rank && s == step;
}

// Σ g² over the chunks' gradients, the same bits with and without ZeRO-1: each tensor's sum by the rank holding its
// reduced gradient (shard r of each chunk; under ZeRO-1 the other replicas add 0, exactly), added in layout order.
double grad_sumsq(const std::vector<std::unique_ptr<Model>>& chunks, const std::vector<ZeroShards>& shards, int r,
                  bool zero, MPI_Comm data) {
  std::vector<double> per;
  for (size_t c = 0; c < chunks.size(); c++) {
    Model& m = *chunks[c];
    const size_t first = per.size();
    per.resize(first + m.tensors.size(), 0.0);
    for (size_t i = shards[c].first[r]; i < shards[c].first[r + 1]; i++)
      per[first + i] = m.backend().sum_squares(m.dgrads() + (m.tensors[i]->offset - m.slice_begin), m.tensors[i]->size);
  }
  if (zero) STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, per.data(), int(per.size()), MPI_DOUBLE, MPI_SUM, data));
  double sq = 0;
  for (double x : per) sq += x;
  return sq;
}

// One checkpoint written by every rank at once (parallel HDF5); replica 0 of each stage writes its tensors.
// The moments: each rank writes those it holds (`owned`, from global offset `moment_base`): replica 0 all of them, or
// under ZeRO-1 every replica its shard's.
void save_parallel(const Config& cfg, const Topology& topo, const std::vector<std::unique_ptr<Model>>& chunks,
                   std::vector<AdamW>& opts, const std::vector<std::vector<const TensorSpec*>>& owned,
                   const std::vector<size_t>& moment_base, bool zero, const TrainState& st,
                   const std::function<void(const std::string&)>& say, const std::vector<float>* stats_row) {
  std::vector<CheckpointPart> mine;
  for (size_t c = 0; c < chunks.size(); c++) {
    if (topo.replica == 0) {
      chunks[c]->pull_params();
      mine.push_back({&chunks[c]->tensors, chunks[c]->slice_begin, chunks[c]->params.data(), nullptr, nullptr});
    }
    if (topo.replica == 0 || zero) {
      opts[c].pull();
      mine.push_back({&owned[c], moment_base[c], nullptr, opts[c].m.data(), opts[c].v.data()});
    }
  }
  const auto t0 = clock_type::now();
  const std::string path =
      checkpoint_save_parallel(cfg.checkpoint.dir, topo.world, cfg, chunks[0]->layout, mine, st, cfg.checkpoint.keep,
                               stats_row);
  const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
  char line[512];
  std::snprintf(line, sizeof line, "checkpoint %s (%.1f MB in %.2f s, %.0f MB/s)", path.c_str(),
                double(std::filesystem::file_size(path)) / 1e6, s, double(std::filesystem::file_size(path)) / 1e6 / s);
  say(line);
}

// train.device = "cuda": the GPU of this rank's local rank (shared round-robin on the MPI transport). `name` is
// this rank's device ("cuda:0 NVIDIA H100 …"), `ranks` every rank's, a line each.
std::unique_ptr<Backend> make_gpu_backend(const Config& cfg, const Topology& topo, std::string& name,
                                          std::string& ranks) {
  // The kernel choices that change the numbers are config keys (stored in every checkpoint), no longer the
  // environment variables of earlier versions: a leftover one is an error, not silently ignored. Not an
  // AgreedError: the environment may differ between ranks.
  for (auto [var, key] : {std::pair{"STRATA_CUDA_ATTENTION", "train.attention_kernel"},
                          std::pair{"STRATA_CUDA_BF16_ACTIVATIONS", "train.bf16_activations"}})
    if (const char* e = std::getenv(var))
      fail(cfg.source, ": environment ", var, " = '", e, "' is no longer read: set the config key ", key,
           " instead (--set ", key, "=...)");
  GpuRuntime& g = gpu_runtime();
  if (!g.make_backend)
    throw AgreedError(str(cfg.source, ": key train.device = \"cuda\": this strata was built without the CUDA "
                          "backend (no CUDA toolkit found by CMake)"));
  const int n = g.device_count();
  STRATA_CHECK(n > 0, cfg.source, ": key train.device = \"cuda\": rank ", topo.rank, " on ", topo.host,
               " sees no usable CUDA device (", g.no_device_reason(), ")");
  const int dev = topo.local_rank % n;
  name = str("cuda:", dev, " ", g.device_name(dev));
  // Every rank's "host|PCI bus id|name". NCCL needs one GPU per rank, and ranks may see different GPUs as device
  // 0 (CUDA_VISIBLE_DEVICES per task, as SLURM's --gpus-per-task sets it): compare the physical GPUs.
  constexpr size_t kRecord = 256;
  const std::string bus = g.device_bus_id(dev), where = str(topo.host, "|", bus, "|");
  char mine[kRecord] = {};
  std::snprintf(mine, kRecord, "%s%s", where.c_str(), name.c_str());
  std::vector<char> all(kRecord * size_t(topo.size));
  STRATA_MPI(MPI_Allgather(mine, kRecord, MPI_CHAR, all.data(), kRecord, MPI_CHAR, topo.world));
  for (int r = 0; r < topo.size; r++) {
    const char* rec = all.data() + r * kRecord;
    ranks += str("\n  rank ", r, ": ", std::strrchr(rec, '|') + 1);
    if (cfg.parallel.transport == "nccl" && r != topo.rank && std::strncmp(rec, where.c_str(), where.size()) == 0)
      fail(cfg.source, ": key parallel.transport = \"nccl\": ranks ", std::min(r, topo.rank), " and ",
           std::max(r, topo.rank), " on ", topo.host, " both got GPU ", bus, " (", n, " visible to rank ",
           topo.rank, ", local rank ", topo.local_rank, " of ", topo.local_size,
           "); NCCL needs one GPU per rank (parallel.transport = \"mpi\" lets ranks share a GPU)");
  }
  GpuOptions o;
  o.precision = precision_from_name(cfg.train.precision);
  o.fused_attention = cfg.train.attention != "unfused";
  o.mma_attention = cfg.train.attention_kernel == "mma";
  o.bf16_activations = cfg.train.bf16_activations;
  // A memory/speed switch outside the config: the same bits either way (test_gpu_model, test_train_emu check it).
  const char* cache = std::getenv("STRATA_CUDA_OPERAND_CACHE");
  o.operand_cache = !(cache && std::strcmp(cache, "0") == 0);
  return g.make_backend(dev, o);
}

std::string tflops(double flop_per_s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g TF/s", flop_per_s / 1e12);
  return b;
}
// log.gpu_profile's table for one rank: a header with the ops' device time against the span it covered and their
// least memory traffic per step (all ops, and outside the GEMMs), then every op kind that ran, slowest first, with
// its share, TFLOP/s where it computes and GB/s of its least traffic.
std::vector<std::string> profile_lines(const std::vector<OpTime>& prof, const std::string& who, int64_t steps) {
  std::vector<OpTime> ops(prof.begin(), prof.end() - (prof.empty() ? 0 : 1));
  const double span = prof.empty() ? 0 : prof.back().ms;
  double busy = 0, bytes = 0, gemm_bytes = 0;
  for (const OpTime& o : ops) {
    busy += o.ms, bytes += o.bytes;
    if (o.op.rfind("matmul_", 0) == 0) gemm_bytes += o.bytes;
  }
  const double per_step = steps > 0 ? 1.0 / double(steps) : 0.0;
  std::vector<std::string> out;
  char line[320];
  std::snprintf(line, sizeof line,
                "gpu profile, %s, %lld step(s): %.1f ms in ops over a %.1f ms span (%.0f%% busy), %.2f ms per step; "
                "least traffic %.3f GB per step, %.3f GB outside GEMMs",
                who.c_str(), static_cast<long long>(steps), busy, span, span > 0 ? 100 * busy / span : 0.0,
                busy * per_step, bytes * per_step / 1e9, (bytes - gemm_bytes) * per_step / 1e9);
  out.push_back(line);
  std::stable_sort(ops.begin(), ops.end(), [](const OpTime& a, const OpTime& b) { return a.ms > b.ms; });
  for (const OpTime& o : ops) {
    if (!o.calls) continue;
    const double s = o.ms / 1e3;
    std::snprintf(line, sizeof line, "  %-22s %8ld calls %10.2f ms %5.1f%% %9s %9.1f GB/s", o.op.c_str(), o.calls, o.ms,
                  busy > 0 ? 100 * o.ms / busy : 0.0,
                  o.flop > 0 && s > 0 ? tflops(o.flop / s).c_str() : "",
                  s > 0 ? o.bytes / s / 1e9 : 0.0);
    out.push_back(line);
  }
  return out;
}

// The measured peak of every rank beside strata plan's prediction, on the console and as one metrics record
// {"step", "peak_rss_bytes": [per rank], "predicted_peak_bytes": [per rank]}, with a GPU also
// "peak_device_bytes": the most the backend's buffers held at once and its operand copies, against the prediction
// less its runtime term (the CUDA context and libraries, which the backend does not see).
void report_memory(const Topology& topo, const Plan& plan, const Backend* gpu, RecordLog* metrics, int64_t step,
                   const std::function<void(const std::string&)>& say) {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  double mine[2] = {double(ru.ru_maxrss) * 1024.0,  // kilobytes on Linux
                    gpu ? double(gpu->peak_alloc_bytes() + gpu->extra_bytes()) : 0.0};
  std::vector<double> all(2 * size_t(topo.size), 0.0);
  STRATA_MPI(MPI_Gather(mine, 2, MPI_DOUBLE, all.data(), 2, MPI_DOUBLE, 0, topo.world));
  if (topo.rank != 0) return;
  for (int r = 0; r < topo.size; r++) {
    const RankPlan& p = plan.ranks[r];
    const double rss = all[2 * r], dev = all[2 * r + 1];
    char line[320];
    if (!gpu)
      std::snprintf(line, sizeof line, "memory: rank %d (stage %d, replica %d): peak RSS %.1f MB, predicted %.1f MB "
                    "(%+.1f%%)", r, p.stage, p.replica, rss / 1e6, p.peak() / 1e6, 100 * (p.peak() - rss) / rss);
    else
      std::snprintf(line, sizeof line, "memory: rank %d (stage %d, replica %d): device buffers at most %.1f MB, "
                    "predicted %.1f MB (%+.1f%%) + %.0f MB for the CUDA context (estimated); host peak RSS %.1f MB",
                    r, p.stage, p.replica, dev / 1e6, (p.peak() - p.runtime) / 1e6,
                    dev > 0 ? 100 * (p.peak() - p.runtime - dev) / dev : 0.0, p.runtime / 1e6, rss / 1e6);
    say(line);
  }
  if (!metrics) return;
  auto list = [&](const char* key, auto value) {
    *metrics << ",\"" << key << "\":[";
    for (int r = 0; r < topo.size; r++) *metrics << (r ? "," : "") << std::llround(value(r));
    *metrics << "]";
  };
  *metrics << "{\"step\":" << step;
  list("peak_rss_bytes", [&](int r) { return all[2 * r]; });
  list("predicted_peak_bytes", [&](int r) { return plan.ranks[r].peak(); });
  if (gpu) list("peak_device_bytes", [&](int r) { return all[2 * r + 1]; });
  *metrics << "}\n";
  metrics->commit();
}

}  // namespace

double train_run(const Config& cfg, MPI_Comm world) {
  const auto& tc = cfg.train;
  const ModelConfig& mc = cfg.model;
  const auto& pc = cfg.parallel;
  Topology topo = topology_build(world, pc.pipeline, pc.data);
  if (topo.size > 1) log_set_rank(topo.rank);
  const bool lead = topo.rank == 0;
  const bool tty = topo.size == 1 && isatty(fileno(stdout));  // mpirun gives ranks a pty: no bar there
  auto say = [&](const std::string& s) {
    if (!lead) return;
    if (tty) std::printf("\r\033[K");
    log_info(s);
  };
  say("resolved config (" + cfg.source + "):\n" + config_to_toml(cfg));
  const int threads = set_threads(tc.threads);
  std::unique_ptr<Backend> gpu;
  std::string gpu_name, gpu_ranks;
  if (tc.device == "cuda") gpu = make_gpu_backend(cfg, topo, gpu_name, gpu_ranks);
  // STRATA_TEST_SEPARATE_MEMORY=1: the CPU ops on buffers kept apart from the host vectors, as on a GPU.
  Backend* be = gpu                                          ? gpu.get()
                : std::getenv("STRATA_TEST_SEPARATE_MEMORY") ? &cpu_separate_memory_backend()
                                                             : &cpu_backend();
  if (gpu)
    say(str("device: ", tc.precision, ", attention ", gpu->attention_kernel(mc.d_model, mc.heads), ", head size ",
            mc.d_model / mc.heads,
            tc.precision != "bf16" ? ""
            : gpu->keeps_bf16()    ? ", hidden activations kept in bf16"
                                   : ", hidden activations stored in fp32",
            ", on", gpu_ranks));

  // Stages and chunks: this rank owns virtual stages c·P + stage, c = 0 … v−1.
  const int P = pc.pipeline, D = pc.data, v = pc.virtual_stages;
  ScheduleSpec spec{schedule_kind_from_name(pc.schedule), P, tc.batch_size / D / tc.micro_batch_size, v};
  schedule_validate(spec);
  const std::vector<int> counts = partition_blocks(mc, P * v, pc.partition);
  say(partition_describe(counts, P, D, v));
  std::vector<std::unique_ptr<Model>> chunks;
  std::vector<AdamW> opts;
  std::vector<Model*> raw;
  // ZeRO-1 (parallel.zero = 1, D > 1): this replica's AdamW holds the moments of its shard of each chunk only.
  const bool zero = pc.zero == 1 && D > 1;
  std::vector<ZeroShards> shards;
  std::vector<std::vector<const TensorSpec*>> owned;  // per chunk: the tensors whose moments this rank holds
  for (int c = 0; c < v; c++) {
    chunks.push_back(
        std::make_unique<Model>(mc, partition_range(counts, c * P + topo.stage), be, recompute_from_name(tc.recompute)));
    Model& ch = *chunks.back();
    shards.push_back(zero_shards(ch.tensors, ch.slice_begin, ch.params.size(), zero ? D : 1));
    const int r = zero ? topo.replica : 0;
    owned.emplace_back(ch.tensors.begin() + long(shards[c].first[r]), ch.tensors.begin() + long(shards[c].first[r + 1]));
    opts.emplace_back(owned.back(), ch.slice_begin + shards[c].begin[r], shards[c].size(r), be);
    raw.push_back(&ch);
  }
  const int shard_of = zero ? topo.replica : 0;  // which shard of shards[c] this rank updates

  // The shards are regular files on every rank (a FIFO would block its reader), said once: the first rank that
  // finds one is not sends its line to all, and rank 0 prints it.
  {
    std::string why;
    try {
      require_regular_file(cfg.data.train, "token shard (key data.train)");
      require_regular_file(cfg.data.val, "token shard (key data.val)");
    } catch (const Error& e) {
      why = e.what();
    }
    int first = why.empty() ? INT_MAX : topo.rank;
    STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, topo.world));
    if (first != INT_MAX) {
      unsigned long long n = why.size();
      STRATA_MPI(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, first, topo.world));
      why.resize(n);
      STRATA_MPI(MPI_Bcast(why.data(), int(n), MPI_CHAR, first, topo.world));
      throw AgreedError(topo.size > 1 ? str(why, " (seen by rank ", first, ")") : why);
    }
  }
  Loader train_data(shard_read(cfg.data.train, mc.vocab), mc.seq_len, uint64_t(tc.seed), cfg.data.train);
  Loader val_data(shard_read(cfg.data.val, mc.vocab), mc.seq_len, uint64_t(tc.seed), cfg.data.val);
  // Validation asked for but impossible (fewer tokens than one batch of micro_batch_size × parallel.data sequences):
  // said before anything runs, rather than silently never validating.
  if (tc.eval_batches > 0 && val_data.eval_sequences() < uint64_t(tc.micro_batch_size) * uint64_t(pc.data))
    throw AgreedError(str(cfg.data.val, ": the validation shard (key data.val) holds ", val_data.size(),
                          " tokens, fewer than one validation batch needs (", tc.micro_batch_size * pc.data,
                          " sequence(s) of ", mc.seq_len, " tokens and one more: train.micro_batch_size × parallel.data); "
                          "set train.eval_batches = 0 to train without validation"));

  // Resume: the named checkpoint, or (auto) the newest one every rank can read, falling back past any that is
  // truncated, corrupt or incomplete. A model config that disagrees is an error, not a reason to fall back.
  TrainState st;
  std::string resume_from;
  run_dir_remove_partial(cfg, topo, say);
  const std::vector<std::string> earlier = run_dir_earlier(cfg, topo);  // an earlier run's files in checkpoint.dir
  auto load_all = [&](const std::string& path) {
    std::string err;
    try {
      for (int c = 0; c < v; c++) {
        checkpoint_load(path, chunks[c]->tensors, chunks[c]->slice_begin, chunks[c]->params.data(), nullptr, nullptr,
                        &st);
        checkpoint_load(path, owned[c], chunks[c]->slice_begin + shards[c].begin[shard_of], nullptr, opts[c].m.data(),
                        opts[c].v.data(), nullptr);
        chunks[c]->push_params();
        opts[c].push();
      }
    } catch (const Error& e) {
      err = e.what();
    }
    int ok = err.empty() ? 1 : 0, all = 0;
    STRATA_MPI(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, topo.world));
    if (!err.empty()) log_info("warning: " + err);
    return all == 1;
  };
  auto model_of = [&](const std::string& path, ModelConfig& out) {
    int ok = 1, all = 0;
    try {
      out = checkpoint_model_config(path);
    } catch (const Error& e) {
      ok = 0;
      if (lead) log_info(std::string("warning: ") + e.what());
    }
    STRATA_MPI(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, topo.world));
    return all == 1;
  };
  if (cfg.checkpoint.resume == "auto") {
    std::string note;
    for (const std::string& cand : checkpoint_candidates(cfg.checkpoint.dir, &note)) {
      if (!note.empty()) say("warning: " + note), note.clear();
      ModelConfig cm;
      if (!model_of(cand, cm)) continue;
      checkpoint_check_format(cand);
      checkpoint_check_model(cand, cm, mc);
      if (load_all(cand)) {
        resume_from = cand;
        break;
      }
      say("warning: " + cand + " is unreadable on some rank (see above); trying an older checkpoint");
      st = TrainState{};
    }
  } else if (cfg.checkpoint.resume != "none") {
    const std::string& path = cfg.checkpoint.resume;
    STRATA_CHECK(fs::exists(path), cfg.source, ": key checkpoint.resume = \"", path, "\": no such checkpoint file");
    ModelConfig cm;
    if (!model_of(path, cm)) throw AgreedError(str(path, ": not a readable checkpoint (key checkpoint.resume)"));
    checkpoint_check_format(path);
    checkpoint_check_model(path, cm, mc);
    if (!load_all(path)) throw AgreedError(str(path, ": a dataset is unreadable (key checkpoint.resume; see above)"));
    resume_from = path;
  }
  if (!resume_from.empty()) {
    // The seed decides the data order (and the init): a resumed run that changed it would train other data than the
    // checkpoint's run would have, silently.
    if (st.seed >= 0 && st.seed != tc.seed)
      throw AgreedError(str(resume_from, ": the checkpoint's run has train.seed = ", st.seed, " but this run has ",
                            "train.seed = ", tc.seed, " (", cfg.source, "); a resumed run keeps its seed, which fixes "
                            "its data order"));
    say(str("resumed from ", resume_from, " at step ", st.step));
  } else {
    run_dir_fresh_start(cfg, topo, earlier, say);  // moved aside, or refused: never truncated unsaid
    for (auto& ch : chunks) ch->init(uint64_t(tc.seed));
  }

  run_info_write(cfg, topo, threads, resume_from, st.step);
  RecordLog metrics;
  if (lead) {
    fs::create_directories(cfg.checkpoint.dir);
    const std::string path = cfg.log.metrics.empty() ? cfg.checkpoint.dir + "/metrics.jsonl" : cfg.log.metrics;
    if (st.step > 0) {
      if (const int cut = metrics_truncate(path, st.step))
        log_info(str("warning: ", path, ": dropped ", cut, " record(s) cut short (a run killed while writing them)"));
    } else
      write_text_atomic(path, "");
    metrics.open(path, "the metrics file (key log.metrics)");
  }

  // MFU's peak: the config's; else the GPU's dense bf16 peak from its name; else the measured CPU sgemm peak.
  const double gpu_peak = gpu ? gpu_bf16_peak_gflops(gpu_name) : 0;
  const double peak = cfg.log.peak_gflops > 0 ? cfg.log.peak_gflops
                      : gpu                   ? gpu_peak  // 0: unknown GPU, MFU not reported
                                              : measure_sgemm_gflops();
  const std::string peak_text =
      cfg.log.peak_gflops > 0 ? str(gpu ? "peak " : "sgemm peak ", int(peak), " GFLOP/s (config)")
      : gpu                   ? (gpu_peak > 0 ? str("bf16 dense peak ", int(peak), " GFLOP/s (", gpu_name, ")")
                                              : str("peak of ", gpu_name, " unknown: set log.peak_gflops for MFU"))
                              : str("sgemm peak ", int(peak), " GFLOP/s (measured)");
  const ParamLayout& layout = chunks[0]->layout;
  const double fpt = flops_per_token(mc, layout);
  say(str("model: ", layout.total, " parameters (", layout.matmul_params, " in matmuls), ", mc.layers,
          " blocks, norm = ", mc.norm, "; ", topo.size, " rank(s) × ", threads, " thread(s) on ", be->name(),
          "; schedule ", pc.schedule, ", ", spec.M, " micro-batches of ", tc.micro_batch_size, " per replica; ",
          peak_text));
  // strata plan's prediction for this layout; the measured peaks follow at the end of the run.
  const Plan plan = plan_build(cfg, !gpu ? "cpu" : gpu_name.find("H200") != std::string::npos ? "h200" : "h100");
  {
    double most = 0;
    for (const RankPlan& r : plan.ranks) most = std::max(most, r.peak());
    say(str("memory: predicted peak ", int(most / 1e6), " MB per rank at most (", gpu ? "device memory" : "host RSS",
            "; strata plan --config ", cfg.source, " for the breakdown), recompute = ", tc.recompute));
  }

  // Transport: MPI between host buffers (staged through the host for GPU buffers), or NCCL GPU to GPU.
  MpiTransport mpi_transport(topo.pipe);
  std::unique_ptr<Transport> staged_or_nccl;
  if (gpu && pc.transport == "nccl") {
    STRATA_CHECK(gpu_runtime().make_nccl_transport, cfg.source,
                 ": key parallel.transport = \"nccl\": this strata was built without NCCL");
    staged_or_nccl = gpu_runtime().make_nccl_transport(topo.pipe, spec, gpu->stream());
  } else if (!be->host_memory()) {
    staged_or_nccl = std::make_unique<StagedTransport>(mpi_transport, *be);
  }
  Transport& transport = staged_or_nccl ? *staged_or_nccl : static_cast<Transport&>(mpi_transport);
  // Data-parallel gradient sums: ncclAllReduce on device buffers with the NCCL transport, else MPI (through
  // host memory on a GPU).
  std::function<void(double*, size_t)> nccl_sum;
  if (gpu && pc.transport == "nccl" && D > 1) nccl_sum = gpu_runtime().make_nccl_allreduce(topo.data, gpu->stream());
  if (P > 1 || D > 1) {
    std::string how = !gpu ? "mpi (host buffers)" : "mpi (device buffers staged through host memory)";
    if (gpu && pc.transport == "nccl")
      how = str("nccl (GPU to GPU: ", P > 1 ? "ncclSend/ncclRecv between stages" : "",
                P > 1 && D > 1 ? ", " : "", D > 1 ? "ncclAllReduce over replicas" : "", ")");
    say("transport: " + how);
  }
  PipelineExecutor exec(raw, spec, topo.stage, transport);
  // parallel.grad_bucket_mb: the replicas' gradient sums reduced in buckets while the backward runs (host memory).
  std::vector<std::unique_ptr<GradBuckets>> buckets;
  if (pc.grad_bucket_mb > 0 && D > 1 && be->host_memory()) {
    std::vector<GradBuckets*> mine;
    for (int c = 0; c < v; c++) {
      int level = 0;
      MPI_Query_thread(&level);
      buckets.push_back(std::make_unique<GradBuckets>(*chunks[c], zero ? &shards[c] : nullptr, pc.grad_bucket_mb * 1e6,
                                                      topo.data, level == MPI_THREAD_MULTIPLE));
      mine.push_back(buckets.back().get());
    }
    exec.set_grad_buckets(mine);
  } else if (pc.grad_bucket_mb > 0 && D > 1) {
    say(str("parallel.grad_bucket_mb = ", pc.grad_bucket_mb, ": gradients in device memory are reduced after the "
            "backward (buckets during it are not built for device buffers yet)"));
  }
  double reduce_s = 0;  // wall time of the replicas' gradient reduction after the pipeline step (the exposed part)
  int64_t reduce_steps = 0;
  const int B = tc.batch_size, MB = tc.micro_batch_size, T = mc.seq_len, BD = B / D;
  const auto t_start = clock_type::now();
  const int64_t first_step = st.step;
  double val_loss = NAN;

  // Mean over val sequences: micro-batches split round-robin over replicas, loss summed on the head stage.
  const uint64_t val_avail = val_data.eval_sequences() / uint64_t(MB * D) * uint64_t(MB * D);
  const uint64_t val_seqs = std::min<uint64_t>(uint64_t(tc.eval_batches) * B / (MB * D) * (MB * D), val_avail);
  auto run_eval = [&](int64_t step) {
    if (val_seqs == 0) return;
    const int nmb = int(val_seqs / MB / D);
    double sum = exec.eval_step(
        [&](int mb, int32_t* x, int32_t* y) {
          for (int i = 0; i < MB; i++)
            val_data.eval_sequence(uint64_t((mb * D + topo.replica) * MB + i), x + size_t(i) * T, y + size_t(i) * T);
        },
        nmb, MB, T);
    STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, topo.data));
    STRATA_MPI(MPI_Bcast(&sum, 1, MPI_DOUBLE, P - 1, topo.pipe));
    val_loss = sum / (double(val_seqs) * T);
    say(str("step ", step, " | val_loss ", val_loss, " (", val_seqs * T, " tokens)"));
    if (lead) (metrics << "{\"step\":" << step << ",\"val_loss\":" << val_loss << "}\n").commit();
  };
  // Per-layer statistics every stats.interval steps into stats.h5 (rank 0 writes); the last row also goes into
  // every checkpoint. have_row is the same on every rank; last_row holds values on rank 0.
  std::unique_ptr<StatsWriter> stats_out;
  const std::string stats_path = cfg.stats.file.empty() ? cfg.checkpoint.dir + "/stats.h5" : cfg.stats.file;
  if (cfg.stats.interval > 0 && lead) stats_out = std::make_unique<StatsWriter>(stats_path, mc.layers, st.step);
  std::vector<float> last_row;
  bool have_row = false;
  auto write_stats = [&](int64_t step, double loss, double norm, double lr,
                         const std::vector<Array<float>>& before, bool acts, double grad_scale) {
    if (cfg.stats.interval <= 0) return;
    last_row = stats_row(topo, mc, chunks, shards, zero, before, acts, grad_scale);
    have_row = true;
    if (stats_out) stats_out->append(step, loss, norm, lr, last_row);
  };
  int64_t last_saved = -1;
  auto save = [&]() {
    if (st.step == last_saved) return;
    last_saved = st.step;
    std::vector<size_t> base;
    for (int c = 0; c < v; c++) base.push_back(chunks[c]->slice_begin + shards[c].begin[shard_of]);
    save_parallel(cfg, topo, chunks, opts, owned, base, zero, st, say, have_row ? &last_row : nullptr);
  };

  install_stop_handlers();
  // From here every rank makes progress or the watchdog ends the job (a frozen rank would hang it).
  struct WatchdogScope {
    WatchdogScope(double s, const Topology& t) {
      if (t.size > 1) watchdog::start(s, t.rank);
    }
    ~WatchdogScope() { watchdog::stop(); }
  } watchdog_scope(cfg.parallel.watchdog_s, topo);
  constexpr int kMaxRollbacks = 5;
  int rollbacks_in_a_row = 0;
  constexpr int kMaxSkipsInARow = 5;  // a run whose updates keep failing is not training: stop, non-zero
  int skips_in_a_row = 0;
  double window_s = 0;
  int window_steps = 0;
  std::vector<Array<float>> before;  // the parameters before a stats step's update, for ‖ΔW‖/‖W‖ (kept allocated)
  // log.gpu_profile: every backend op timed on the device from the run's second step (the first warms up).
  bool profiling = false;
  int64_t profiled_steps = 0;  // completed (rolled-back ones not counted)
  if (cfg.log.gpu_profile && !gpu) say("log.gpu_profile: the CPU backend has no device timing; nothing is profiled");
  while (st.step < tc.steps) {
    watchdog::set_step(st.step + 1);
    if (gpu && st.step == first_step + 1) {  // after the run's first step: the operand cache has its size
      unsigned long long extra = be->extra_bytes();
      STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, &extra, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, topo.world));
      char mib[32];
      std::snprintf(mib, sizeof mib, "%.1f", double(extra) / (1 << 20));
      if (extra) say(str("device memory beside the model's buffers: ", mib,
                         " MiB of bf16 GEMM operand copies (largest rank; STRATA_CUDA_OPERAND_CACHE=0: none)"));
      if (cfg.log.gpu_profile && !profiling) profiling = be->start_profile();
    }
    const auto t0 = clock_type::now();
    if (injected_failure(topo.rank, st.step + 1)) fail("injected failure at step ", st.step + 1, " (STRATA_TEST_FAIL)");
    for (auto& ch : chunks) ch->zero_grad();
    const bool collecting = cfg.stats.interval > 0 && (st.step + 1) % cfg.stats.interval == 0;
    for (auto& ch : chunks) {
      ch->collect_stats = collecting;
      if (collecting) ch->reset_stats();
    }
    // Replica r takes sequences cursor + r·B/D … of the global batch; micro-batch mb the next MB of them.
    const uint64_t first = st.data_cursor + uint64_t(topo.replica) * BD;
    // With more than one micro-batch in the global batch, gradients are summed in float64 (Model::fold_grads).
    const bool fold = spec.M * D > 1;
    double loss_sum = exec.train_step(
        [&](int mb, int32_t* x, int32_t* y) { train_data.fill(first + uint64_t(mb) * MB, MB, x, y); }, MB, T,
        1.0f / float(B * T), fold);
    // The gradient buckets still in flight (parallel.grad_bucket_mb): what the step waits for is their exposed part.
    if (st.step == first_step + 1) reduce_s = 0, reduce_steps = 0;  // the run's first step warms up
    {
      const auto tw = clock_type::now();
      for (auto& b : buckets) b->finish();
      reduce_s += std::chrono::duration<double>(clock_type::now() - tw).count();
    }
    // Loss: summed over replicas on the head stage, then known to every rank.
    STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, &loss_sum, 1, MPI_DOUBLE, MPI_SUM, topo.data));
    STRATA_MPI(MPI_Bcast(&loss_sum, 1, MPI_DOUBLE, P - 1, topo.pipe));
    const double loss = loss_sum / (double(B) * T);
    // Gradients: summed over replicas (each already carries the 1/(B·T) of the global mean), then rounded.
    if (fold)
      for (auto& ch : chunks) {
        const auto tr0 = clock_type::now();
        if (!buckets.empty()) {
          // reduced during the backward (finished above)
        } else if (D > 1 && nccl_sum) {
          nccl_sum(ch->dgrad_acc(), ch->grads.size());
          ch->backend().written(ch->dgrad_acc(), ch->grads.size() * sizeof(double));
        } else if (D > 1) {  // float64 sums over replicas (ZeRO-1: each shard's on its owner), through host memory on a GPU
          const size_t c = size_t(&ch - chunks.data());
          ch->pull_grad_acc();
          grad_reduce(ch->grad_acc.data(), ch->grad_acc.size(), zero ? &shards[c] : nullptr, topo.data);
          ch->push_grad_acc();
        }
        reduce_s += std::chrono::duration<double>(clock_type::now() - tr0).count();
        ch->grads_from_accumulator();  // ZeRO-1: only this rank's shard holds the sums; the rest is not read
      }
    if (D > 1) reduce_steps++;
    inject_nan(topo.rank, st.step + 1, chunks);
    // Non-finite loss or gradients: every rank learns the first tensor (in layer order) holding one.
    int bad = first_nonfinite(chunks);
    STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MIN, topo.world));
    if (bad != INT_MAX || !std::isfinite(loss)) {
      std::string where = "non-finite loss";
      if (bad != INT_MAX) {
        const TensorSpec& t = layout.tensors[bad];
        int stage = 0;
        for (int vs = 0, first = 0; vs < P * v; first += counts[vs], vs++)
          if (t.block < 0 ? (t.offset < layout.block_begin[0] ? vs == 0 : vs == P * v - 1)
                          : (t.block >= first && t.block < first + counts[vs]))
            stage = vs % P;
        where = str("non-finite gradient first in stage ", stage, ", ", t.block >= 0 ? str("block ", t.block) : "no block",
                    ", tensor ", checkpoint_dataset(t), t.block >= 0 ? str(" (the row of block ", t.block, ")") : "");
      }
      const std::string report = str("step ", st.step + 1, ": ", where, " (loss ", loss, ", lr ",
                                     lr_at(tc, st.step) * st.lr_scale, ", norm = ", mc.norm, ")");
      write_stats(st.step + 1, loss, std::nan(""), lr_at(tc, st.step) * st.lr_scale, {}, collecting, 1.0);  // first
      if (tc.on_nonfinite == "abort") throw AgreedError(report + "; train.on_nonfinite = abort");
      if (tc.on_nonfinite == "skip") {
        if (++skips_in_a_row > kMaxSkipsInARow)
          throw AgreedError(str(report, "; train.on_nonfinite = skip gave up after ", kMaxSkipsInARow,
                                " skipped steps in a row (", st.skipped_steps, " skipped in all)"));
        st.skipped_steps++;
        // Skips that are not in a row count too: more than a tenth of the run's steps is not training.
        const int64_t allowed = std::max<int64_t>(kMaxSkipsInARow, tc.steps / 10);
        if (st.skipped_steps > allowed)
          throw AgreedError(str(report, "; train.on_nonfinite = skip gave up: ", st.skipped_steps,
                                " updates skipped, more than a tenth of train.steps = ", tc.steps, " (at most ",
                                allowed, ")"));
        say(str("warning: ", report, "; update skipped (train.on_nonfinite = skip, ", st.skipped_steps,
                " skipped so far)"));
        st.step++;
        st.data_cursor += uint64_t(B);
        st.tokens_seen += uint64_t(B) * T;
        continue;
      }
      // rollback: the newest checkpoint, a smaller learning rate, and the batches since then left behind.
      if (++rollbacks_in_a_row > kMaxRollbacks)
        throw AgreedError(str(report, "; train.on_nonfinite = rollback gave up after ", kMaxRollbacks,
                              " rollbacks without a finite step"));
      const uint64_t cursor = st.data_cursor + uint64_t(B), tokens = st.tokens_seen + uint64_t(B) * T;
      const double scale = st.lr_scale * tc.rollback_lr_scale;
      std::string from;
      for (const std::string& cand : checkpoint_candidates(cfg.checkpoint.dir))
        if (load_all(cand)) {
          from = cand;
          break;
        }
      if (from.empty()) throw AgreedError(report + "; train.on_nonfinite = rollback, but " + cfg.checkpoint.dir +
                                          " holds no readable checkpoint");
      st.data_cursor = cursor;
      st.tokens_seen = tokens;
      st.lr_scale = scale;
      say(str("warning: ", report, "; rolled back to ", from, " (step ", st.step, "), learning rate × ", scale,
              ", data resumes at sequence ", cursor));
      continue;
    }
    rollbacks_in_a_row = 0;
    skips_in_a_row = 0;
    double sq = grad_sumsq(chunks, shards, shard_of, zero, topo.data);
    STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, &sq, 1, MPI_DOUBLE, MPI_SUM, topo.pipe));
    const double norm = std::sqrt(sq);
    const double lr = lr_at(tc, st.step) * st.lr_scale;
    if (collecting)
      for (size_t c = 0; c < chunks.size(); c++) {
        if (before.size() == c) before.emplace_back(*be, chunks[c]->params.size());
        be->copy(before[c].data(), chunks[c]->dparams(), chunks[c]->params.size() * sizeof(float));
      }
    double clip_scale = 1.0;
    for (int c = 0; c < v; c++) {  // this rank's shard (all of it without ZeRO-1), then the others' from them
      const size_t o = shards[c].begin[shard_of], n = shards[c].size(shard_of);
      clip_scale = grad_clip(*be, chunks[c]->dgrads() + o, n, norm, tc.grad_clip);
      opts[c].update(chunks[c]->dparams() + o, chunks[c]->dgrads() + o, lr, st.step + 1, tc);
      if (zero) {
        chunks[c]->pull_params();
        params_allgather(chunks[c]->params.data(), shards[c], topo.data);
        chunks[c]->push_params();
      }
    }
    if (collecting) write_stats(st.step + 1, loss, norm, lr, before, true, clip_scale);
    st.step++;
    st.data_cursor += uint64_t(B);
    st.tokens_seen += uint64_t(B) * T;
    const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
    window_s += dt;
    window_steps++;

    if (st.step % cfg.log.interval == 0 || st.step == tc.steps) {
      const double ms = 1e3 * window_s / window_steps;
      const double tps = double(B) * T / (window_s / window_steps);
      const double mfu = peak > 0 ? tps * fpt / (peak * 1e9 * topo.size) : 0;  // 0: peak unknown
      char line[256], mfu_text[32] = "n/a";
      if (peak > 0) std::snprintf(mfu_text, sizeof mfu_text, "%.1f%%", 100 * mfu);
      std::snprintf(line, sizeof line,
                    "step %6lld/%d | loss %.4f | lr %.3e | grad_norm %.4f | %7.1f ms/step | %8.0f tok/s | MFU %s",
                    static_cast<long long>(st.step), tc.steps, loss, lr, norm, ms, tps, mfu_text);
      say(line);
      if (lead) {
        metrics << "{\"step\":" << st.step << ",\"loss\":" << loss << ",\"lr\":" << lr << ",\"grad_norm\":" << norm
                << ",\"ms_per_step\":" << ms << ",\"tokens_per_s\":" << tps << ",\"mfu\":";
        if (peak > 0)
          metrics << mfu;
        else
          metrics << "null";  // the GPU's peak is unknown (log.peak_gflops sets it)
        (metrics << ",\"activation_bytes\":" << chunks[0]->activation_bytes() << "}\n").commit();
      }
      window_s = 0;
      window_steps = 0;
    }
    if (tc.eval_interval > 0 && st.step % tc.eval_interval == 0 && st.step != tc.steps) run_eval(st.step);
    if (cfg.checkpoint.interval > 0 && st.step % cfg.checkpoint.interval == 0 && st.step != tc.steps) save();
    // SIGTERM / SIGUSR1 on any rank, or train.max_runtime: all ranks agree here, save and exit 0.
    int stop = int(g_stop_signal);
    if (tc.max_runtime > 0 && std::chrono::duration<double>(clock_type::now() - t_start).count() > tc.max_runtime)
      stop = std::max(stop, 1000);
    {
      watchdog::Waiting waiting(-1, "the step's end, where every rank agrees on stopping");
      STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, &stop, 1, MPI_INT, MPI_MAX, topo.world));
    }
    if (stop && st.step != tc.steps) {
      const char* sig = stop == SIGTERM ? "SIGTERM" : stop == SIGUSR1 ? "SIGUSR1" : stop == SIGINT ? "SIGINT" : "a signal";
      say(str(stop == 1000 ? str("train.max_runtime = ", tc.max_runtime, " s reached") : str("received ", sig),
              ": saving at step ", st.step, " and exiting"));
      save();
      topology_free(topo);
      return val_loss;
    }
    if (tc.exit_interval > 0 && st.step % tc.exit_interval == 0 && st.step != tc.steps) {
      say(str("step ", st.step, " is a multiple of train.exit_interval = ", tc.exit_interval, ": saving and exiting"));
      save();
      topology_free(topo);
      return val_loss;
    }
    if (profiling) profiled_steps++;
    if (tty) {
      const double el = std::chrono::duration<double>(clock_type::now() - t_start).count();
      const double frac = double(st.step - first_step) / double(tc.steps - first_step);
      const int w = 30, fill = int(frac * w);
      std::printf("\r[%s%s] %3d%% step %lld/%d ETA %s", std::string(fill, '=').c_str(),
                  std::string(w - fill, ' ').c_str(), int(100 * double(st.step) / tc.steps),
                  static_cast<long long>(st.step), tc.steps, fmt_time(el / frac * (1 - frac)).c_str());
      std::fflush(stdout);
    }
  }
  if (profiling) {  // replica 0 of each stage, as gathered to rank 0
    const std::vector<OpTime> prof = be->profile();
    const int K = int(prof.size());
    std::vector<double> mine;
    for (const OpTime& o : prof) mine.insert(mine.end(), {double(o.calls), o.ms, o.flop, o.bytes});
    std::vector<double> all(lead ? mine.size() * topo.size : 0);
    STRATA_MPI(MPI_Gather(mine.data(), int(mine.size()), MPI_DOUBLE, all.data(), int(mine.size()), MPI_DOUBLE, 0,
                          topo.world));
    for (int p = 0; lead && p < P; p++) {
      std::vector<OpTime> theirs(prof);
      for (int k = 0; k < K; k++) {
        const double* x = all.data() + (size_t(p) * D * K + k) * 4;
        theirs[k].calls = long(x[0]), theirs[k].ms = x[1], theirs[k].flop = x[2], theirs[k].bytes = x[3];
      }
      for (const std::string& l : profile_lines(theirs, str("stage ", p), profiled_steps)) say(l);
    }
  }
  {  // Measured per micro-batch chunk on every stage (the inputs of `strata schedule --cost-*`).
    const auto& tm = exec.timing();
    double mine[5];
    for (int k = 0; k < 4; k++) mine[k] = tm.count[k] ? 1e3 * tm.compute[k] / double(tm.count[k]) : 0.0;
    mine[4] = 1e3 * tm.wait / double(std::max<int64_t>(1, st.step - first_step));
    std::vector<double> all(lead ? 5 * topo.size : 0);
    STRATA_MPI(MPI_Gather(mine, 5, MPI_DOUBLE, all.data(), 5, MPI_DOUBLE, 0, topo.world));
    for (int p = 0; p < P; p++) {  // replica 0 of each stage
      const double* t = all.data() + 5 * p * D;
      char line[256];
      if (lead)
        std::snprintf(line, sizeof line,
                      "stage %d per micro-batch chunk: F %.2f ms, B+W %.2f ms, B %.2f ms, W %.2f ms; waiting for "
                      "receives %.1f ms per step",
                      p, t[0], t[1], t[2], t[3], t[4]);
      say(line);
    }
  }
  if (D > 1) {  // the largest rank's figure: what the step waits for
    double ms = reduce_steps ? 1e3 * reduce_s / double(reduce_steps) : 0.0;
    STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, &ms, 1, MPI_DOUBLE, MPI_MAX, topo.world));
    size_t nb = 0;
    for (auto& b : buckets) nb += b->count();
    char line[256];
    std::snprintf(line, sizeof line,
                  "gradient reduction over %d replicas: %.2f ms per step exposed (%s; the run's first step left out "
                  "where it has more, largest rank)",
                  D, ms,
                  buckets.empty() ? "one reduction after the backward"
                                  : str(nb, " bucket(s) of at most ", pc.grad_bucket_mb,
                                        " MB started during the backward").c_str());
    say(line);
    if (lead) (metrics << "{\"step\":" << st.step << ",\"grad_reduce_exposed_ms\":" << ms << "}\n").commit();
  }
  run_eval(st.step);
  if ((st.step > first_step || resume_from.empty()) && cfg.checkpoint.at_end) save();
  report_memory(topo, plan, gpu.get(), lead ? &metrics : nullptr, st.step, say);
  topology_free(topo);
  return val_loss;
}

}  // namespace strata
