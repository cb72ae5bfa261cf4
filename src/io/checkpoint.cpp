// checkpoint.cpp: checkpoint write (atomic), read (shape-checked), model-config checks, latest lookup.
#include "io/checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <cstdlib>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/watchdog.hpp"
#include "core/log.hpp"
#include "io/h5.hpp"
#include "io/stats.hpp"

namespace fs = std::filesystem;

namespace strata {

namespace {

std::vector<hsize_t> hdims(const TensorSpec& t) { return std::vector<hsize_t>(t.shape.begin(), t.shape.end()); }

std::string mb(int64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", double(std::max<int64_t>(bytes, 0)) / 1e6);
  return b;
}

std::string step_name(int64_t step) {
  char b[32];
  std::snprintf(b, sizeof b, "step-%08lld.h5", static_cast<long long>(step));
  return b;
}

// "blocks/012/ffn/w_h" -> "blocks/ffn/w_h"; tensors outside the blocks keep their name.
std::string stack_key(const TensorSpec& t) {
  return t.block < 0 ? t.name : "blocks/" + t.name.substr(t.name.find('/', 7) + 1);
}

}  // namespace

std::string checkpoint_dataset(const TensorSpec& t) { return "/model/" + stack_key(t); }

namespace {

// (step, path) of every complete step-*.h5 in dir, oldest first.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  if (!fs::is_directory(dir)) return out;
  static const std::regex re("step-([0-9]{8})\\.h5");
  for (auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    std::string n = e.path().filename().string();
    if (std::regex_match(n, m, re)) out.emplace_back(std::stoll(m[1]), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The datasets of a layout: each block tensor's stack over the blocks that have it, in block order (every
// block but the mix placement's, whose first blocks have ln_out where the rest have ln_in), and each other
// tensor alone; in the order of first appearance in the layout.
struct Stack {
  std::string key;
  std::vector<const TensorSpec*> rows;
  std::vector<int64_t> blocks;
};
std::vector<Stack> stacks_of(const ParamLayout& l) {
  std::vector<Stack> out;
  std::map<std::string, size_t> at;
  for (const TensorSpec& t : l.tensors) {
    auto [it, fresh] = at.emplace(stack_key(t), out.size());
    if (fresh) out.push_back({it->first, {}, {}});
    Stack& s = out[it->second];
    STRATA_CHECK(s.rows.empty() || (t.shape == s.rows[0]->shape && t.block > s.blocks.back()), "checkpoint: tensor ",
                 t.name, " does not stack with ", s.rows.empty() ? "" : s.rows[0]->name, " (shape or block order)");
    s.rows.push_back(&t);
    s.blocks.push_back(t.block);
  }
  return out;
}

}  // namespace

// Everything but the tensors' data source: `src(t, k)` gives tensor t's buffer for k = 0 (weights), 1 (m),
// 2 (v), or null where this writer has none (then it takes part without data).
template <class Src>
void write_body(H5File& f, const Config& cfg, const ParamLayout& l, const TrainState& st, bool moments, Src&& src,
                const std::vector<float>* stats_row = nullptr) {
  const ModelConfig& m = cfg.model;
  f.make_group("/model");
  f.attr_string("/model", "norm", m.norm);
  f.attr_f64("/model", "mix_post_fraction", m.mix_post_fraction);
  f.attr_i64("/model", "layers", m.layers);
  f.attr_i64("/model", "d_model", m.d_model);
  f.attr_i64("/model", "heads", m.heads);
  f.attr_i64("/model", "d_ffn", m.d_ffn);
  f.attr_i64("/model", "vocab", m.vocab);
  f.attr_i64("/model", "seq_len", m.seq_len);
  f.attr_string("/model", "activation", m.activation);
  f.attr_f64("/model", "ln_eps", m.ln_eps);
  static const float dummy = 0;
  // STRATA_TEST_SAVE_DELAY_MS stretches the write (the kill -9 tests need time to hit it mid-file).
  const char* delay = std::getenv("STRATA_TEST_SAVE_DELAY_MS");
  const int delay_ms = delay ? std::atoi(delay) : 0;
  f.attr_i64("/", "strata_checkpoint_format", kCheckpointFormat);
  const char* prefix[3] = {"/model/", "/optimizer/m/", "/optimizer/v/"};
  std::vector<float> rows_buf;
  for (const Stack& s : stacks_of(l)) {
    const TensorSpec& t0 = *s.rows[0];
    for (int k = 0; k < (moments ? 3 : 1); k++) {
      const std::string obj = prefix[k] + s.key;
      if (t0.block < 0) {  // embeddings, final norm, head: one dataset each
        const float* p = src(t0, k);
        f.write_f32(obj, p ? p : &dummy, hdims(t0), p != nullptr);
        continue;
      }
      // Block tensors: one dataset [rows, shape…] per kind, row i = block s.blocks[i]; this writer's rows.
      std::vector<hsize_t> dims = hdims(t0), rows;
      dims.insert(dims.begin(), hsize_t(s.rows.size()));
      // This writer's rows, copied into a staging buffer of these rows only (a strided memory selection over
      // the parameters instead makes HDF5 1.10 gather 5× slower than the copy).
      std::vector<const float*> mine;
      for (size_t i = 0; i < s.rows.size(); i++)
        if (const float* p = src(*s.rows[i], k)) mine.push_back(p), rows.push_back(i);
      if (rows_buf.size() < mine.size() * t0.size) rows_buf.resize(mine.size() * t0.size);
      for (size_t i = 0; i < mine.size(); i++) std::copy(mine[i], mine[i] + t0.size, rows_buf.begin() + i * t0.size);
      // The test hook: delay_ms per block of the stack, for each of weights, m and v, on every rank.
      if (delay_ms > 0 && s.key == "blocks/attn/w_qkv") usleep(useconds_t(delay_ms) * 1000 * s.rows.size());
      f.write_f32_rows(obj, rows_buf.data(), dims, rows);
      f.attr_i64s(obj, "blocks", s.blocks);
      f.start_writeback();  // the disk works on this stack while the next one is built
      watchdog::beat();
    }
  }
  f.write_i64("/state/step", st.step);
  f.write_i64("/state/data_cursor", int64_t(st.data_cursor));
  f.write_i64("/state/tokens_seen", int64_t(st.tokens_seen));
  f.write_i64("/state/seed", cfg.train.seed);
  f.write_f64("/state/lr_scale", st.lr_scale);
  f.write_i64("/state/skipped_steps", st.skipped_steps);
  f.write_string("/config", config_to_toml(cfg));
  if (stats_row) {
    const hsize_t L = hsize_t(cfg.model.layers);
    for (size_t k = 0; k < stats_names().size(); k++)
      f.write_f32("/stats/" + stats_names()[k], stats_row->empty() ? &dummy : stats_row->data() + k * L, {L},
                  !stats_row->empty());
  }
  f.close();
}

void checkpoint_write_file(const std::string& path, const CheckpointView& c) {
  H5File f = H5File::create(path);
  write_body(f, *c.cfg, *c.layout, c.state, c.m && c.v, [&](const TensorSpec& t, int k) -> const float* {
    return (k == 0 ? c.params : k == 1 ? c.m : c.v) + t.offset;
  });
}

namespace {
// fsync, rename into place, fsync the directory, point latest at it, prune: the commit of a written file.
std::string publish(const std::string& dir, const std::string& tmp, int64_t step, int keep) {
  const std::string final_path = dir + "/" + step_name(step);
  fsync_path(tmp, false);
  fs::rename(tmp, final_path);
  fsync_path(dir, true);
  write_text_atomic(dir + "/latest", step_name(step) + "\n");
  fsync_path(dir, true);
  if (keep > 0) {
    auto all = list_checkpoints(dir);
    for (size_t i = 0; i + size_t(keep) < all.size(); i++)
      if (all[i].second != final_path) fs::remove(all[i].second);
  }
  return final_path;
}
}  // namespace

std::string checkpoint_save_parallel(const std::string& dir, MPI_Comm comm, const Config& cfg, const ParamLayout& l,
                                     const std::vector<CheckpointPart>& mine, const TrainState& st, int keep,
                                     const std::vector<float>* stats_row) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (rank == 0) fs::create_directories(dir);
  MPI_Barrier(comm);
  const std::string tmp = dir + "/." + step_name(st.step) + ".tmp";
  // Per kind (weights, m, v) and tensor name (layouts are per model): where this rank's copy is. A part may carry
  // weights only or moments only (ZeRO-1: replica 0 writes a stage's weights, each replica its shard's moments).
  std::map<std::string, const float*> owned[3];
  for (const CheckpointPart& p : mine)
    for (const TensorSpec* t : *p.tensors)
      for (int k = 0; k < 3; k++)
        if (const float* b = k == 0 ? p.params : k == 1 ? p.m : p.v) owned[k][t->name] = b + (t->offset - p.base);
  // The disk the file will take: the newest checkpoint's blocks (the same model writes the same file), else the
  // payload and a margin for HDF5's metadata.
  int64_t need = 0;
  if (rank == 0) {
    const auto prev = list_checkpoints(dir);
    struct stat sb {};
    if (!prev.empty() && ::stat(prev.back().second.c_str(), &sb) == 0)
      need = int64_t(sb.st_blocks) * 512;
    else
      need = int64_t(l.total) * 4 * 3 * 101 / 100 + (stats_row ? int64_t(stats_row->size()) * 4 : 0) + (64 << 10);
  }
  try {
    // A full disk is met here, before anything is written and alike on every rank (no collective write is left
    // half done), with the previous checkpoint and `latest` as they were. A disk that fills during the write all
    // the same is reported below. STRATA_TEST_NO_SPACE_CHECK skips the check (the tests of that case).
    int err = 0;
    int64_t free_now = 0;
    if (rank == 0 && !std::getenv("STRATA_TEST_NO_SPACE_CHECK")) {
      free_now = free_bytes(dir);
      if (free_now >= 0 && free_now < need) err = ENOSPC;
    }
    MPI_Bcast(&err, 1, MPI_INT, 0, comm);
    if (err) {
      const auto prev = rank == 0 ? checkpoint_find_latest(dir) : std::string();
      throw AgreedError(str(dir, ": cannot write the checkpoint of step ", st.step, " (key checkpoint.dir): ",
                            std::strerror(err), ": it needs ", mb(need), " MB, ", mb(free_now), " MB are free; ",
                            prev.empty() ? std::string("no earlier checkpoint") : prev + " and latest are as they were"));
    }
    H5File f = size == 1 ? H5File::create(tmp) : H5File::create_parallel(tmp, comm);  // one rank: no MPI-IO
    write_body(f, cfg, l, st, true, [&](const TensorSpec& t, int k) -> const float* {
      auto it = owned[k].find(t.name);
      return it == owned[k].end() ? nullptr : it->second;
    }, stats_row);
  } catch (const AgreedError&) {
    throw;
  } catch (const std::exception& e) {  // a write that failed all the same: the file is removed, the error says so
    ::unlink(tmp.c_str());
    const auto prev = checkpoint_find_latest(dir);
    throw Error(str(e.what(), " (checkpoint of step ", st.step, " not written, ", mb(free_bytes(dir)),
                    " MB free on its disk; ",
                    prev.empty() ? std::string("no earlier checkpoint") : prev + " and latest are as they were", ")"));
  }
  std::string path = dir + "/" + step_name(st.step);
  if (rank == 0) path = publish(dir, tmp, st.step, keep);
  MPI_Barrier(comm);
  return path;
}

namespace {
int format_of(const H5File& f) {
  return f.has_attr("/", "strata_checkpoint_format") ? int(f.attr_i64("/", "strata_checkpoint_format")) : 1;
}
void check_format(const std::string& path, int v) {
  STRATA_CHECK(v == 1 || v == kCheckpointFormat, path, ": checkpoint format ", v, " is not one this build reads (1, ",
               kCheckpointFormat, "): resume it with the Strata that wrote it");
}
}  // namespace

int checkpoint_format(const std::string& path) { return format_of(H5File::open(path)); }

void checkpoint_check_format(const std::string& path) { check_format(path, checkpoint_format(path)); }

ModelConfig checkpoint_model_config(const std::string& path) {
  H5File f = H5File::open(path);
  ModelConfig m;
  m.norm = f.attr_string("/model", "norm");
  m.layers = int(f.attr_i64("/model", "layers"));
  m.d_model = int(f.attr_i64("/model", "d_model"));
  m.heads = int(f.attr_i64("/model", "heads"));
  m.d_ffn = int(f.attr_i64("/model", "d_ffn"));
  m.vocab = int(f.attr_i64("/model", "vocab"));
  m.seq_len = int(f.attr_i64("/model", "seq_len"));
  m.activation = f.attr_string("/model", "activation");
  m.ln_eps = f.attr_f64("/model", "ln_eps");
  if (m.norm == "mix") m.mix_post_fraction = f.attr_f64("/model", "mix_post_fraction");  // older files lack it
  model_config_validate(m, path);
  return m;
}

Config checkpoint_config(const std::string& path) {
  H5File f = H5File::open(path);
  return config_parse(f.read_string("/config"), path + ":/config");
}

void checkpoint_check_model(const std::string& path, const ModelConfig& c, const ModelConfig& r) {
  STRATA_CHECK(r.seq_len <= c.seq_len, path, ": model.seq_len = ", r.seq_len,
               " is beyond the checkpoint's pos_embedding of ", c.seq_len, " positions");
  auto same = [&](const char* key, const auto& a, const auto& b) {
    STRATA_CHECK(a == b, path, ": checkpoint has model.", key, " = ", a, " but the run has model.", key, " = ", b);
  };
  same("norm", c.norm, r.norm);
  if (c.norm == "mix") same("mix_post_fraction", c.mix_post_fraction, r.mix_post_fraction);
  same("layers", c.layers, r.layers);
  same("d_model", c.d_model, r.d_model);
  same("heads", c.heads, r.heads);
  same("d_ffn", c.d_ffn, r.d_ffn);
  same("vocab", c.vocab, r.vocab);
  same("seq_len", c.seq_len, r.seq_len);
  same("activation", c.activation, r.activation);
  same("ln_eps", c.ln_eps, r.ln_eps);
}

void checkpoint_load(const std::string& path, const ParamLayout& l, float* params, float* m, float* v,
                     TrainState* st) {
  std::vector<const TensorSpec*> all;
  for (const TensorSpec& t : l.tensors) all.push_back(&t);
  checkpoint_load(path, all, 0, params, m, v, st);
}

void checkpoint_load(const std::string& path, const std::vector<const TensorSpec*>& tensors, size_t base,
                     float* params, float* m, float* v, TrainState* st) {
  H5File f = H5File::open(path);
  // Format 2 stacks each block tensor over the blocks ([rows, shape…], @blocks names each row's block);
  // files without the format attribute (written before it) hold one dataset per tensor.
  const int format = format_of(f);
  check_format(path, format);
  const bool stacked = format == kCheckpointFormat;
  std::map<std::string, std::vector<int64_t>> row_blocks;  // stacked dataset -> its @blocks
  auto read = [&](const std::string& prefix, const TensorSpec& t, float* dst) {
    if (!stacked || t.block < 0) return f.read_f32(prefix + (stacked ? stack_key(t) : t.name), dst, hdims(t));
    const std::string obj = prefix + stack_key(t);
    auto it = row_blocks.find(obj);
    if (it == row_blocks.end()) {
      if (!f.exists(obj)) fail(path, ": dataset ", obj, " is missing (tensor ", t.name, ")");
      std::vector<int64_t> b = f.attr_i64s(obj, "blocks");
      const hsize_t rows = f.dims(obj).at(0);
      bool increasing = true;
      for (size_t i = 1; i < b.size(); i++) increasing = increasing && b[i] > b[i - 1];
      if (b.size() != rows || !increasing)
        fail(path, ": dataset ", obj, " has ", rows, " rows but its attribute blocks lists ", b.size(),
             increasing ? "" : " (not increasing)", " (tensor ", t.name, ")");
      it = row_blocks.emplace(obj, std::move(b)).first;
    }
    auto row = std::find(it->second.begin(), it->second.end(), int64_t(t.block));
    if (row == it->second.end()) fail(path, ": dataset ", obj, " has no row for block ", t.block, " (tensor ", t.name, ")");
    f.read_f32_row(obj, hsize_t(row - it->second.begin()), dst, hdims(t), "tensor " + t.name);
  };
  for (const TensorSpec* tp : tensors) {
    const TensorSpec& t = *tp;
    const size_t o = t.offset - base;
    if (params) read("/model/", t, params + o);
    if (m) read("/optimizer/m/", t, m + o);
    if (v) read("/optimizer/v/", t, v + o);
  }
  if (st) {
    st->step = f.read_i64("/state/step");
    st->data_cursor = uint64_t(f.read_i64("/state/data_cursor"));
    st->tokens_seen = uint64_t(f.read_i64("/state/tokens_seen"));
    f.read_f64("/state/lr_scale", &st->lr_scale, {});
    st->skipped_steps = f.read_i64("/state/skipped_steps");
    st->seed = f.exists("/state/seed") ? f.read_i64("/state/seed") : -1;
  }
}

std::vector<std::string> checkpoint_candidates(const std::string& dir, std::string* note) {
  std::vector<std::string> out;
  std::ifstream in(dir + "/latest");
  std::string name;
  if (in && std::getline(in, name) && std::regex_match(name, std::regex("step-[0-9]{8}\\.h5")) &&
      fs::exists(dir + "/" + name))
    out.push_back(dir + "/" + name);
  else if (in && note)
    *note = str(dir, "/latest: does not name a checkpoint file (", name.substr(0, 40), "); trying the newest step-*.h5");
  auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (out.empty() || it->second != out.front()) out.push_back(it->second);
  return out;
}

std::string checkpoint_find_latest(const std::string& dir) {
  auto c = checkpoint_candidates(dir);
  return c.empty() ? "" : c.front();
}

}  // namespace strata
