// checkpoint.cpp: checkpoint write (atomic), read (shape-checked), model-config checks, latest lookup.
#include "io/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>

#include "core/error.hpp"
#include "core/log.hpp"
#include "io/h5.hpp"

namespace fs = std::filesystem;

namespace strata {

namespace {

std::vector<hsize_t> hdims(const TensorSpec& t) { return std::vector<hsize_t>(t.shape.begin(), t.shape.end()); }

void fsync_path(const std::string& p, bool dir) {
  int fd = ::open(p.c_str(), dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) fail(p, ": cannot open for fsync");
  int r = ::fsync(fd);
  ::close(fd);
  if (r != 0) fail(p, ": fsync failed");
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream o(tmp, std::ios::trunc);
    if (!o) fail(tmp, ": cannot create file");
    o << text;
    if (!o.flush()) fail(tmp, ": write failed");
  }
  fsync_path(tmp, false);
  fs::rename(tmp, path);
}

std::string step_name(int64_t step) {
  char b[32];
  std::snprintf(b, sizeof b, "step-%08lld.h5", static_cast<long long>(step));
  return b;
}

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

}  // namespace

void checkpoint_write_file(const std::string& path, const CheckpointView& c) {
  const ModelConfig& m = c.cfg->model;
  H5File f = H5File::create(path);
  f.make_group("/model");
  f.attr_string("/model", "norm", m.norm);
  f.attr_i64("/model", "layers", m.layers);
  f.attr_i64("/model", "d_model", m.d_model);
  f.attr_i64("/model", "heads", m.heads);
  f.attr_i64("/model", "d_ffn", m.d_ffn);
  f.attr_i64("/model", "vocab", m.vocab);
  f.attr_i64("/model", "seq_len", m.seq_len);
  f.attr_string("/model", "activation", m.activation);
  f.attr_f64("/model", "ln_eps", m.ln_eps);
  for (const TensorSpec& t : c.layout->tensors) {
    f.write_f32("/model/" + t.name, c.params + t.offset, hdims(t));
    if (c.m) f.write_f32("/optimizer/m/" + t.name, c.m + t.offset, hdims(t));
    if (c.v) f.write_f32("/optimizer/v/" + t.name, c.v + t.offset, hdims(t));
  }
  f.write_i64("/state/step", c.state.step);
  f.write_i64("/state/data_cursor", int64_t(c.state.data_cursor));
  f.write_i64("/state/tokens_seen", int64_t(c.state.tokens_seen));
  f.write_i64("/state/seed", c.cfg->train.seed);
  f.write_string("/config", config_to_toml(*c.cfg));
  f.close();
}

std::string checkpoint_save(const std::string& dir, const CheckpointView& c, int keep) {
  fs::create_directories(dir);
  const std::string final_path = dir + "/" + step_name(c.state.step);
  const std::string tmp = dir + "/." + step_name(c.state.step) + ".tmp";
  checkpoint_write_file(tmp, c);
  fsync_path(tmp, false);
  fs::rename(tmp, final_path);
  fsync_path(dir, true);
  write_text_atomic(dir + "/latest", step_name(c.state.step) + "\n");
  fsync_path(dir, true);
  if (keep > 0) {
    auto all = list_checkpoints(dir);
    for (size_t i = 0; i + size_t(keep) < all.size(); i++)
      if (all[i].second != final_path) fs::remove(all[i].second);
  }
  return final_path;
}

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
  for (const TensorSpec* tp : tensors) {
    const TensorSpec& t = *tp;
    const size_t o = t.offset - base;
    f.read_f32("/model/" + t.name, params + o, hdims(t));
    if (m) f.read_f32("/optimizer/m/" + t.name, m + o, hdims(t));
    if (v) f.read_f32("/optimizer/v/" + t.name, v + o, hdims(t));
  }
  if (st) {
    st->step = f.read_i64("/state/step");
    st->data_cursor = uint64_t(f.read_i64("/state/data_cursor"));
    st->tokens_seen = uint64_t(f.read_i64("/state/tokens_seen"));
  }
}

std::string checkpoint_find_latest(const std::string& dir) {
  std::ifstream in(dir + "/latest");
  std::string name;
  if (in && std::getline(in, name) && std::regex_match(name, std::regex("step-[0-9]{8}\\.h5")) &&
      fs::exists(dir + "/" + name))
    return dir + "/" + name;
  if (in) log_info(str(dir, "/latest: does not name a checkpoint file; using the newest step-*.h5"));
  auto all = list_checkpoints(dir);
  return all.empty() ? "" : all.back().second;
}

}  // namespace strata
