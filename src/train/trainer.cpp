// trainer.cpp: the training loop: data, resume, micro-batch accumulation, clipping, AdamW, logging with
// throughput and MFU, periodic evaluation and checkpoints.
#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/shard.hpp"
#include "io/checkpoint.hpp"
#include "optim/optimizer.hpp"
#include "train/commands.hpp"
#include "train/peak.hpp"

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
void metrics_truncate(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    auto p = line.find("\"step\":");
    if (p != std::string::npos && std::stoll(line.substr(p + 7)) > step) continue;
    kept += line + "\n";
  }
  in.close();
  std::ofstream(path, std::ios::trunc) << kept;
}

std::string fmt_time(double s) {
  char b[32];
  if (s >= 3600)
    std::snprintf(b, sizeof b, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
  else
    std::snprintf(b, sizeof b, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
  return b;
}

}  // namespace

double train_run(const Config& cfg) {
  const auto& tc = cfg.train;
  const ModelConfig& mc = cfg.model;
  log_info("resolved config (" + cfg.source + "):\n" + config_to_toml(cfg));
  const int threads = set_threads(tc.threads);

  Loader train_data(shard_read(cfg.data.train, mc.vocab), mc.seq_len, uint64_t(tc.seed), cfg.data.train);
  Loader val_data(shard_read(cfg.data.val, mc.vocab), mc.seq_len, uint64_t(tc.seed), cfg.data.val);

  Model model(mc);
  AdamW opt(model.tensors, model.slice_begin, model.params.size());
  TrainState st;
  std::string resume_from;
  if (cfg.checkpoint.resume == "auto") {
    resume_from = checkpoint_find_latest(cfg.checkpoint.dir);
  } else if (cfg.checkpoint.resume != "none") {
    resume_from = cfg.checkpoint.resume;
    STRATA_CHECK(fs::exists(resume_from), cfg.source, ": key checkpoint.resume = \"", resume_from,
                 "\": no such checkpoint file");
  }
  if (!resume_from.empty()) {
    checkpoint_check_model(resume_from, checkpoint_model_config(resume_from), mc);
    checkpoint_load(resume_from, model.layout, model.params.data(), opt.m.data(), opt.v.data(), &st);
    log_info(str("resumed from ", resume_from, " at step ", st.step));
  } else {
    model.init(uint64_t(tc.seed));
  }

  fs::create_directories(cfg.checkpoint.dir);
  const std::string metrics_path = cfg.log.metrics.empty() ? cfg.checkpoint.dir + "/metrics.jsonl" : cfg.log.metrics;
  if (st.step > 0)
    metrics_truncate(metrics_path, st.step);
  else
    std::ofstream(metrics_path, std::ios::trunc);
  std::ofstream metrics(metrics_path, std::ios::app);
  STRATA_CHECK(metrics.good(), metrics_path, ": cannot open the metrics file (key log.metrics)");
  metrics.precision(9);

  const double peak = cfg.log.peak_gflops > 0 ? cfg.log.peak_gflops : measure_sgemm_gflops();
  const double fpt = flops_per_token(mc, model.layout);
  log_info(str("model: ", model.layout.total, " parameters (", model.layout.matmul_params, " in matmuls), ",
               mc.layers, " blocks, norm = ", mc.norm, "; ", threads, " threads; sgemm peak ", int(peak),
               " GFLOP/s", cfg.log.peak_gflops > 0 ? " (config)" : " (measured)"));

  const int B = tc.batch_size, MB = tc.micro_batch_size, T = mc.seq_len, accum = B / MB;
  std::vector<int32_t> x(size_t(MB) * T), y(size_t(MB) * T);
  const uint64_t val_seqs = std::min<uint64_t>(uint64_t(tc.eval_batches) * B, val_data.eval_sequences());
  const bool tty = isatty(fileno(stdout));
  const auto t_start = clock_type::now();
  const int64_t first_step = st.step;
  double val_loss = NAN;

  auto run_eval = [&](int64_t step) {
    if (val_seqs == 0) return;
    val_loss = evaluate(model, val_data, val_seqs, MB);
    if (tty) std::printf("\r\033[K");
    log_info(str("step ", step, " | val_loss ", val_loss, " (", val_seqs * T, " tokens)"));
    metrics << "{\"step\":" << step << ",\"val_loss\":" << val_loss << "}\n" << std::flush;
  };
  int64_t last_saved = -1;
  auto save = [&]() {
    if (st.step == last_saved) return;
    last_saved = st.step;
    CheckpointView cv{&cfg, &model.layout, model.params.data(), opt.m.data(), opt.v.data(), st};
    std::string p = checkpoint_save(cfg.checkpoint.dir, cv, cfg.checkpoint.keep);
    if (tty) std::printf("\r\033[K");
    log_info("checkpoint " + p);
  };

  double window_s = 0;
  int window_steps = 0;
  while (st.step < tc.steps) {
    const auto t0 = clock_type::now();
    model.zero_grad();
    double loss_sum = 0;
    for (int a = 0; a < accum; a++) {
      train_data.next_batch(MB, st.data_cursor, x.data(), y.data());
      loss_sum += model.forward(x.data(), y.data(), MB, T) * double(MB) * T;
      model.backward(x.data(), y.data(), MB, T, 1.0f / float(B * T));
    }
    const double loss = loss_sum / (double(B) * T);
    const double norm = grad_global_norm(model.grads);
    STRATA_CHECK(std::isfinite(loss) && std::isfinite(norm), "step ", st.step + 1, ": non-finite loss ", loss,
                 " or gradient norm ", norm, " (norm = ", mc.norm, ", lr = ", lr_at(tc, st.step), ")");
    grad_clip(model.grads, norm, tc.grad_clip);
    const double lr = lr_at(tc, st.step);
    opt.update(model.params.data(), model.grads.data(), lr, st.step + 1, tc);
    st.step++;
    st.tokens_seen += uint64_t(B) * T;
    const double dt = std::chrono::duration<double>(clock_type::now() - t0).count();
    window_s += dt;
    window_steps++;

    if (st.step % cfg.log.interval == 0 || st.step == tc.steps) {
      const double ms = 1e3 * window_s / window_steps;
      const double tps = double(B) * T / (window_s / window_steps);
      const double mfu = tps * fpt / (peak * 1e9);
      char line[256];
      std::snprintf(line, sizeof line,
                    "step %6lld/%d | loss %.4f | lr %.3e | grad_norm %.4f | %7.1f ms/step | %8.0f tok/s | MFU %.1f%%",
                    static_cast<long long>(st.step), tc.steps, loss, lr, norm, ms, tps, 100 * mfu);
      if (tty) std::printf("\r\033[K");
      log_info(line);
      metrics << "{\"step\":" << st.step << ",\"loss\":" << loss << ",\"lr\":" << lr << ",\"grad_norm\":" << norm
              << ",\"ms_per_step\":" << ms << ",\"tokens_per_s\":" << tps << ",\"mfu\":" << mfu << "}\n"
              << std::flush;
      window_s = 0;
      window_steps = 0;
    }
    if (tc.eval_interval > 0 && st.step % tc.eval_interval == 0 && st.step != tc.steps) run_eval(st.step);
    if (cfg.checkpoint.interval > 0 && st.step % cfg.checkpoint.interval == 0 && st.step != tc.steps) save();
    if (tc.exit_interval > 0 && st.step % tc.exit_interval == 0 && st.step != tc.steps) {
      if (tty) std::printf("\r\033[K");
      log_info(str("step ", st.step, " is a multiple of train.exit_interval = ", tc.exit_interval, ": saving and exiting"));
      save();
      return val_loss;
    }
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
  if (tty) std::printf("\r\033[K");
  run_eval(st.step);
  if (st.step > first_step || resume_from.empty()) save();
  return val_loss;
}

}  // namespace strata
