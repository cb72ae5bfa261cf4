// checkpoint.hpp: HDF5 checkpoints: /model (weights + model attributes), /optimizer/{m,v}, /state
// (step, data cursor, tokens seen, seed) and /config (the resolved TOML). Written atomically:
// temporary name, flush, fsync, rename, then <dir>/latest names it.
// Format 2 (root attribute strata_checkpoint_format = 2): each block tensor is stacked over the blocks, e.g.
// /model/blocks/ffn/w_h [L, d, d_ffn], row i holding block @blocks[i] (chunked by row, a row over 1 MiB split
// along its first axis; Fletcher32), so a
// 96-block model is ~50 datasets instead of ~3500 (HDF5's cost is per dataset); embeddings, final norm and
// head are datasets of their own (/model/tok_embedding, …). Files without the attribute (format 1, one dataset
// per tensor: /model/blocks/012/ffn/w_h) still load.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "model/layout.hpp"

namespace strata {

constexpr int64_t kCheckpointFormat = 2;

// The whole training state beyond weights and moments. The RNG is counter-based (seed, sequence index), so
// the data cursor is every rank's RNG and data state at once.
struct TrainState {
  int64_t step = 0;          // optimizer steps completed (the LR schedule's position)
  uint64_t data_cursor = 0;  // next training sequence index
  uint64_t tokens_seen = 0;
  double lr_scale = 1.0;     // product of train.rollback_lr_scale over the rollbacks so far
  int64_t skipped_steps = 0; // steps whose update was dropped (on_nonfinite = skip)
  int64_t seed = -1;         // /state/seed of a loaded checkpoint (−1: not stored); saves write cfg.train.seed
};

struct CheckpointView {  // what a save writes (m, v may be null for weights-only files)
  const Config* cfg;
  const ParamLayout* layout;
  const float *params, *m, *v;
  TrainState state;
};

// What one rank owns of the model: tensors (global offsets) in buffers starting at global offset `base`; a null
// buffer is a kind (weights, m, v) this part does not write.
struct CheckpointPart {
  const std::vector<const TensorSpec*>* tensors;
  size_t base;
  const float *params, *m, *v;
};
// Writes <dir>/step-<8 digits>.h5, then points <dir>/latest at it and keeps the newest `keep` (0 = all): the
// file written by every rank of comm at once (collective MPI-IO through parallel HDF5): every rank
// creates every dataset, the owner of a tensor writes it, the others take part with nothing to write. Parts
// may be empty on ranks that own nothing (data-parallel replicas other than 0). Returns the path on every rank.
// stats_row (may be null on every rank alike): the per-layer statistics of this step, stats_names() × L values,
// read on rank 0 only, stored as /stats/<name> [L].
std::string checkpoint_save_parallel(const std::string& dir, MPI_Comm comm, const Config& cfg, const ParamLayout& l,
                                     const std::vector<CheckpointPart>& mine, const TrainState& st, int keep,
                                     const std::vector<float>* stats_row = nullptr);
// Writes a checkpoint file at an exact path (no latest, no pruning), for tools and tests.
void checkpoint_write_file(const std::string& path, const CheckpointView& c);

// Where tensor t lives in a checkpoint of the current format: "/model/blocks/ffn/w_h" (a stack whose rows are
// the blocks listed in its @blocks attribute) for block tensors, "/model/lm_head" for the others.
std::string checkpoint_dataset(const TensorSpec& t);
// The file's format (1 where it has no strata_checkpoint_format attribute); check_format throws unless this
// build reads it, so resume = "auto" stops instead of falling back past a file written by a newer Strata.
int checkpoint_format(const std::string& path);
void checkpoint_check_format(const std::string& path);
ModelConfig checkpoint_model_config(const std::string& path);
Config checkpoint_config(const std::string& path);
// Reads weights (and moments where m, v are non-null, and state where st is non-null), checking every shape.
void checkpoint_load(const std::string& path, const ParamLayout& l, float* params, float* m, float* v,
                     TrainState* st);
// The same for a stage: only `tensors`, into buffers that start at global offset `base` (params may be null too:
// moments only, as a ZeRO-1 shard reads them).
void checkpoint_load(const std::string& path, const std::vector<const TensorSpec*>& tensors, size_t base,
                     float* params, float* m, float* v, TrainState* st);
// The run's model config must equal the checkpoint's; seq_len beyond its pos_embedding is named as such.
void checkpoint_check_model(const std::string& path, const ModelConfig& ckpt, const ModelConfig& run);
// Newest checkpoint in dir: <dir>/latest when it names a readable file, else the highest step-*.h5; "" if none.
std::string checkpoint_find_latest(const std::string& dir);
// Every complete step-*.h5 in dir, the one <dir>/latest names first, then the others newest first (the order in
// which resume = "auto" tries them). `note` receives a line when latest is missing or names no checkpoint.
std::vector<std::string> checkpoint_candidates(const std::string& dir, std::string* note = nullptr);

}  // namespace strata
