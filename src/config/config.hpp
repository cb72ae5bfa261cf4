// config.hpp: the typed run configuration (one struct per TOML section; [init] is read into ModelConfig,
// whose Model::init uses it), loading, --set overrides, validation and the resolved TOML text stored in
// every checkpoint.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace strata {

struct ModelConfig {
  int layers = 12;
  int d_model = 256;
  int heads = 4;
  int d_ffn = 1024;
  int seq_len = 128;
  int vocab = 256;
  std::string norm = "pre";              // post | res_post | pre | peri | deepnorm | mix
  double mix_post_fraction = 0.25;       // mix: the first ⌊f·L⌋ blocks are post-norm, the rest pre-norm
  std::string activation = "gelu_tanh";  // gelu_tanh | gelu | relu
  double ln_eps = 1e-5;
  double init_std = 0.02;
  bool res_post_zero_gain = false;  // res_post: branch-norm gains start at 0 (every block starts as the identity)
  std::string init_scheme = "";  // [init] scheme: gpt2 | normal | xavier | deepnet; "": deepnet for deepnorm, else gpt2
};

struct TrainConfig {
  int steps = 1000;
  int batch_size = 8;        // sequences per optimizer step
  int micro_batch_size = 8;  // sequences per forward/backward; batch_size % micro_batch_size == 0
  double lr = 1e-3;
  double min_lr = 1e-4;
  int warmup_steps = 100;
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // global L2 norm; 0 disables
  double beta1 = 0.9;
  double beta2 = 0.95;
  double adam_eps = 1e-8;
  int64_t seed = 1337;
  int threads = 0;  // 0: all cores
  std::string device = "cpu";     // cpu | cuda (each rank takes the GPU of its local rank)
  std::string precision = "fp32";  // fp32 | bf16 (cuda: bf16 GEMMs, fp32 master weights and moments)
  std::string attention = "auto";  // auto | fused (cuda: no T×T matrix) | unfused (probabilities kept; the CPU's)
  // bf16 fused attention on tensor cores: wmma (WMMA 16x16x16, head sizes 16/32/64/128) | mma (mma.sync m16n8k16,
  // scores and probabilities in registers, head sizes 16/32/64)
  std::string attention_kernel = "wmma";
  bool bf16_activations = true;  // bf16: the FFN's hidden activations (qkv, out on tensor cores) kept in bf16 only
  // Activation recomputation (the same bits as none): selective recomputes attention's probabilities in the backward
  // pass (Megatron-LM's selective; the GPU's fused attention keeps none anyway), full keeps only each block's input
  // and reruns the block's forward in its backward.
  std::string recompute = "none";  // none | selective | full
  int eval_interval = 0;  // steps between validation passes; 0: only at the end
  int eval_batches = 16;  // validation batches of batch_size sequences
  int exit_interval = 0;  // save and exit when the step is a multiple of this (Megatron-LM's --exit-interval)
  double max_runtime = 0;  // seconds: save and exit 0 at the first step boundary past it (0: no limit)
  std::string on_nonfinite = "abort";  // abort | skip | rollback
  double rollback_lr_scale = 0.5;      // learning-rate factor applied at each rollback
};

struct DataConfig {
  std::string train = "data/kjv/train.bin";
  std::string val = "data/kjv/val.bin";
};

struct CheckpointConfig {
  std::string dir = "checkpoints/run";
  int interval = 0;             // steps between checkpoints; 0: only at the end
  int keep = 0;                 // newest complete checkpoints kept; 0: all
  std::string resume = "none";  // none | auto | a checkpoint path
  bool at_end = true;           // save when training ends (false: benchmarks; signals and exit_interval still save)
  bool overwrite = false;       // a fresh start over an earlier run's files moves them to <dir>/replaced-<time>/
};

struct LogConfig {
  int interval = 10;
  std::string metrics = "";  // JSON-lines file; empty: <checkpoint.dir>/metrics.jsonl
  double peak_gflops = 0;    // sgemm peak for MFU; 0: measured at start
  bool gpu_profile = false;  // time every backend op on the GPU (CUDA events) after the run's first step
};

struct ParallelConfig {
  int pipeline = 1;                // P: pipeline stages (ranks per pipeline)
  int data = 1;                    // D: data-parallel replicas; world size = P·D
  std::string schedule = "1f1b";   // gpipe | 1f1b | interleaved | zb-h1
  int virtual_stages = 1;          // model chunks per rank (interleaved)
  std::string partition = "uniform";  // "uniform" or blocks per (virtual) stage, e.g. "[23, 25, 25, 23]"
  std::string transport = "mpi";   // mpi (host memory; GPU buffers staged through it) | nccl (GPU to GPU)
  // 1: ZeRO-1, AdamW's moments sharded over the replicas of a stage (each updates its shard of the weights, then
  // all-gathers them); checkpoints keep the one logical layout, so zero = 0 and 1 resume each other.
  int zero = 0;
  // > 0: the replicas' gradient sums reduced in buckets of this many MB (of float64 sums), each started while the
  // backward runs as soon as its gradients are final (Megatron-LM's overlap_grad_reduce, PyTorch DDP's buckets); 0:
  // one reduction after the backward. The same bits either way.
  double grad_bucket_mb = 0;
  // Seconds a rank may go without progress (a finished compute action, transfer, reduction or write) before the
  // watchdog ends the job, naming the rank it waits for; 0: off. A frozen or lost rank otherwise hangs the job.
  double watchdog_s = 600;
};

struct StatsConfig {
  int interval = 0;       // steps between rows of per-layer statistics; 0: off
  std::string file = "";  // default <checkpoint.dir>/stats.h5
};

struct Config {
  ModelConfig model;
  TrainConfig train;
  DataConfig data;
  CheckpointConfig checkpoint;
  LogConfig log;
  ParallelConfig parallel;
  StatsConfig stats;
  std::string source = "<defaults>";  // file the config came from, for messages
};

// Loads FILE, applies "section.key=value" overrides in order, checks for unknown keys and types,
// then validates. Throws strata::Error with one line naming the file/key and the values.
Config config_load(const std::string& file, const std::vector<std::string>& overrides);
// Builds a config from TOML text (checkpoints store their resolved config this way).
Config config_parse(const std::string& toml_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});
void config_validate(const Config& c);
void model_config_validate(const ModelConfig& m, const std::string& source);
std::string config_to_toml(const Config& c);

}  // namespace strata
