// main.cpp: the strata command line (train, eval, sample, prepare, inspect); nothing else.
#include <mpi.h>

#include <CLI/CLI.hpp>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/prepare.hpp"
#include "train/commands.hpp"

int main(int argc, char** argv) {
  using namespace strata;
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

  auto* inspect = app.add_subcommand("inspect", "print a checkpoint's config, state and tensors");
  std::string inspect_path;
  inspect->add_option("checkpoint", inspect_path, "checkpoint .h5")->required();

  CLI11_PARSE(app, argc, argv);
  try {
    if (*train) {
      MPI_Init(&argc, &argv);
      Config cfg = config_load(config_file, sets);
      train_run(cfg);
      MPI_Finalize();
    } else if (*eval) {
      eval_run(ea);
    } else if (*sample) {
      sample_run(sa);
    } else if (*prepare) {
      prepare_text(texts, out_dir, val_fraction);
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
