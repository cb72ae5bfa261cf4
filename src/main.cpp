// main.cpp: the strata command line (train, eval, sample, prepare, schedule, plan, config, inspect); nothing else.
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <toml++/toml.h>

#include "core/error.hpp"
#include "core/log.hpp"
#include "io/h5.hpp"
#include "data/prepare.hpp"
#include "parallel/schedule.hpp"
#include "train/plan.hpp"
#include "train/commands.hpp"
#ifdef STRATA_HAVE_CUDA
#include "backend/cuda/runtime.hpp"
#endif

namespace {

using namespace strata;

// After an error: MPI_Finalize, unless an HDF5 file could not be closed (a full disk): HDF5 1.10's clean-up, which
// MPI_Finalize runs, then crashes on it, so the process ends here with the error already reported.
void finalize_after_error() {
  if (h5_unclean()) {
    std::fflush(nullptr);
    std::_Exit(1);
  }
  MPI_Finalize();
}

// `strata train` on every rank. Errors every rank meets alike (the config, the world size) are printed once, by
// rank 0, and end every rank with exit 1; an error on one rank ends the whole job through MPI_Abort.
int train_main(int argc, char** argv, const std::string& file, const std::vector<std::string>& sets) {
  // Gradient buckets reduced while the backward runs want a thread that polls MPI (parallel/grad_sync.hpp): ask for
  // MPI_THREAD_MULTIPLE then, and only then (a config that does not load is reported below, after MPI_Init).
  bool polling_thread = false;
  try {
    const Config c = config_load(file, sets);
    polling_thread = c.parallel.grad_bucket_mb > 0 && c.parallel.data > 1;
  } catch (const Error&) {
  }
  int provided = 0;
  MPI_Init_thread(&argc, &argv, polling_thread ? MPI_THREAD_MULTIPLE : MPI_THREAD_SINGLE, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  Config cfg;
  try {
    cfg = config_load(file, sets);
    STRATA_CHECK(cfg.parallel.pipeline * cfg.parallel.data == size, "parallel.pipeline (", cfg.parallel.pipeline,
                 ") × parallel.data (", cfg.parallel.data, ") = ", cfg.parallel.pipeline * cfg.parallel.data,
                 " ≠ world size ", size);
  } catch (const Error& e) {
    if (rank == 0) log_error(e.what());
    MPI_Finalize();
    return 1;
  }
  try {
    train_run(cfg, MPI_COMM_WORLD);
  } catch (const AgreedError& e) {  // every rank is here with the same message
    if (rank == 0) log_error(e.what());
    finalize_after_error();
    return 1;
  } catch (const std::exception& e) {
    if (size > 1) log_set_rank(rank);
    log_error(e.what());
    if (size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    finalize_after_error();
    return 1;
  }
  MPI_Finalize();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  strata::process_base_bytes();  // the loaded binary's resident bytes, before anything is allocated (strata plan)
#ifdef STRATA_HAVE_CUDA
  strata::register_cuda_runtime();  // train.device = "cuda" (backend/gpu_runtime.hpp); touches no device yet
#endif
  CLI::App app{"Strata: a trainer for very deep decoder-only Transformers with selectable LayerNorm placement"};
  app.require_subcommand(1);

  auto* train = app.add_subcommand("train", "train a model from a TOML config");
  std::string config_file;
  std::vector<std::string> sets;
  train->add_option("--config", config_file, "TOML config file")->required();
  train->add_option("--set", sets, "override: section.key=value (repeatable)");

  auto* eval = app.add_subcommand("eval", "mean loss of a checkpoint over contiguous sequences of a shard");
  EvalArgs ea;
  eval->add_option("--checkpoint", ea.checkpoint, "checkpoint .h5")->required();
  eval->add_option("--data", ea.data, "token shard (.bin)")->required();
  eval->add_option("--batches", ea.batches, "number of batches")->required();
  eval->add_option("--batch-size", ea.batch_size, "sequences per batch")->required();
  eval->add_option("--seq-len", ea.seq_len, "sequence length (default: the checkpoint's)");
  eval->add_option("--threads", ea.threads, "threads (0: all cores)");
  eval->add_flag("--json", ea.json, "print {\"loss\": …, \"tokens\": …}");

  auto* sample = app.add_subcommand("sample", "generate text from a checkpoint");
  SampleArgs sa;
  sample->add_option("--checkpoint", sa.checkpoint, "checkpoint .h5")->required();
  sample->add_option("--prompt", sa.prompt, "prompt text")->required();
  sample->add_option("--tokens", sa.tokens, "tokens to generate");
  sample->add_option("--temperature", sa.temperature, "softmax temperature (0: greedy)");
  sample->add_option("--top-k", sa.top_k, "sample from the k most likely tokens (0: all)");
  sample->add_option("--seed", sa.seed, "sampling seed");
  sample->add_option("--threads", sa.threads, "threads (0: all cores)");

  auto* prepare = app.add_subcommand("prepare", "byte-tokenise text files into train.bin and val.bin");
  std::vector<std::string> texts;
  std::string out_dir;
  double val_fraction = 0.1;
  prepare->add_option("--text", texts, "text files")->required();
  prepare->add_option("--out", out_dir, "output directory")->required();
  prepare->add_option("--val-fraction", val_fraction, "fraction kept for validation (the end of the text)");

  auto* sched = app.add_subcommand("schedule", "print a pipeline schedule as a timeline with its bubble fraction");
  int s_pipeline = 4, s_micro = 8, s_virtual = 1;
  std::string s_kind = "1f1b";
  double cost_f = 1, cost_b = 1, cost_w = 1;
  sched->add_option("--pipeline", s_pipeline, "pipeline stages P")->required();
  sched->add_option("--microbatches", s_micro, "micro-batches per step M")->required();
  sched->add_option("--schedule", s_kind, "gpipe, 1f1b, interleaved or zb-h1")->required();
  sched->add_option("--virtual", s_virtual, "model chunks per stage (interleaved)");
  sched->add_option("--cost-f", cost_f, "forward time of one stage's micro-batch");
  sched->add_option("--cost-b", cost_b, "input-gradient time (B)");
  sched->add_option("--cost-w", cost_w, "weight-gradient time (W); a fused backward costs B + W");

  auto* plan = app.add_subcommand("plan", "predict each rank's memory (weights, optimizer, activations) and step time");
  std::string plan_device = "cpu";
  bool plan_as_json = false;
  plan->add_option("--config", config_file, "TOML config file")->required();
  plan->add_option("--set", sets, "override: section.key=value (repeatable)");
  plan->add_option("--device", plan_device, "cpu (host memory), h100 or h200 (device memory)");
  plan->add_flag("--json", plan_as_json, "print JSON: {\"ranks\": [{\"rank\", \"stage\", \"replica\", \"peak_bytes\", ...}], ...}");

  auto* conf = app.add_subcommand("config", "print the resolved config (TOML), or one key's value, and check it");
  std::string get_key;
  conf->add_option("--config", config_file, "TOML config file")->required();
  conf->add_option("--set", sets, "override: section.key=value (repeatable)");
  conf->add_option("--get", get_key, "print only this key's value (section.key), as launch scripts need it");

  auto* inspect = app.add_subcommand("inspect", "print a checkpoint's config, state and tensors");
  std::string inspect_path;
  inspect->add_option("checkpoint", inspect_path, "checkpoint .h5")->required();

  CLI11_PARSE(app, argc, argv);
  if (*train) return train_main(argc, argv, config_file, sets);
  try {
    if (*sched) {
      schedule_print(s_kind, s_pipeline, s_micro, s_virtual, cost_f, cost_b, cost_w);
    } else if (*eval) {
      eval_run(ea);
    } else if (*sample) {
      sample_run(sa);
    } else if (*prepare) {
      prepare_text(texts, out_dir, val_fraction);
    } else if (*plan) {
      plan_run(config_file, sets, plan_device, plan_as_json);
    } else if (*conf) {
      const std::string text = config_to_toml(config_load(config_file, sets));
      if (get_key.empty()) {
        std::fputs(text.c_str(), stdout);
      } else {
        const toml::table t = toml::parse(text);
        const toml::node* n = t.at_path(get_key).node();
        STRATA_CHECK(n && !n->is_table(), config_file, ": key ", get_key, ": no such key (strata config --get)");
        std::ostringstream os;
        if (const auto* sv = n->as_string())
          os << sv->get();
        else
          n->visit([&](const auto& v) { os << v; });
        std::puts(os.str().c_str());
      }
    } else if (*inspect) {
      inspect_run(inspect_path);
    }
  } catch (const Error& e) {
    log_error(e.what());
    return 1;
  } catch (const std::exception& e) {
    log_error(std::string("unexpected: ") + e.what());
    return 1;
  }
  return 0;
}
