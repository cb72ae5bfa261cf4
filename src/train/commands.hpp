// commands.hpp: the verbs behind `strata train|eval|sample|inspect` (main.cpp only parses arguments).
#pragma once
#include <mpi.h>

#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "data/loader.hpp"
#include "model/model.hpp"

namespace strata {

// Sets OpenMP and OpenBLAS to n threads (0: every core). Returns the count in use.
int set_threads(int n);

// Trains per the config on every rank of `world` (parallel.pipeline × parallel.data of them): resume, logging,
// evaluation, checkpoints. Returns the final validation loss (NaN when none was computed).
double train_run(const Config& cfg, MPI_Comm world = MPI_COMM_WORLD);

// Mean loss over contiguous sequences j = 0 … nseq−1 of the loader, in micro-batches of mb sequences.
double evaluate(Model& model, const Loader& data, uint64_t nseq, int mb);

struct EvalArgs {
  std::string checkpoint, data;
  int batches = 1, batch_size = 1, seq_len = 0, threads = 0;
  bool json = false;
};
void eval_run(const EvalArgs& a);

struct SampleArgs {
  std::string checkpoint, prompt;
  int tokens = 200, top_k = 0, threads = 0;
  double temperature = 1.0;
  uint64_t seed = 1;
};
void sample_run(const SampleArgs& a);

void inspect_run(const std::string& checkpoint);

// `strata schedule`: the timeline and bubble of one schedule under a cost model (per stage; chunks of an
// interleaved stage cost 1/v of it).
void schedule_print(const std::string& kind, int P, int M, int v, double f, double b, double w);

}  // namespace strata
