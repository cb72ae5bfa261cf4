// config.cpp: TOML loading with toml++, --set overrides, unknown-key and type errors, validation.
#include "config/config.hpp"

#include <toml++/toml.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "core/files.hpp"

namespace strata {

namespace {

// The one list of every key: loading, unknown-key detection and printing all walk it.
template <class C, class F>
void config_visit(C& c, F&& f) {
  f("model", "layers", c.model.layers);
  f("model", "d_model", c.model.d_model);
  f("model", "heads", c.model.heads);
  f("model", "d_ffn", c.model.d_ffn);
  f("model", "seq_len", c.model.seq_len);
  f("model", "vocab", c.model.vocab);
  f("model", "norm", c.model.norm);
  f("model", "mix_post_fraction", c.model.mix_post_fraction);
  f("model", "activation", c.model.activation);
  f("model", "ln_eps", c.model.ln_eps);
  f("model", "init_std", c.model.init_std);
  f("model", "res_post_zero_gain", c.model.res_post_zero_gain);
  f("init", "scheme", c.model.init_scheme);
  f("train", "steps", c.train.steps);
  f("train", "batch_size", c.train.batch_size);
  f("train", "micro_batch_size", c.train.micro_batch_size);
  f("train", "lr", c.train.lr);
  f("train", "min_lr", c.train.min_lr);
  f("train", "warmup_steps", c.train.warmup_steps);
  f("train", "weight_decay", c.train.weight_decay);
  f("train", "grad_clip", c.train.grad_clip);
  f("train", "beta1", c.train.beta1);
  f("train", "beta2", c.train.beta2);
  f("train", "adam_eps", c.train.adam_eps);
  f("train", "seed", c.train.seed);
  f("train", "threads", c.train.threads);
  f("train", "device", c.train.device);
  f("train", "precision", c.train.precision);
  f("train", "attention", c.train.attention);
  f("train", "attention_kernel", c.train.attention_kernel);
  f("train", "bf16_activations", c.train.bf16_activations);
  f("train", "recompute", c.train.recompute);
  f("train", "eval_interval", c.train.eval_interval);
  f("train", "eval_batches", c.train.eval_batches);
  f("train", "exit_interval", c.train.exit_interval);
  f("train", "max_runtime", c.train.max_runtime);
  f("train", "on_nonfinite", c.train.on_nonfinite);
  f("train", "rollback_lr_scale", c.train.rollback_lr_scale);
  f("data", "train", c.data.train);
  f("data", "val", c.data.val);
  f("checkpoint", "dir", c.checkpoint.dir);
  f("checkpoint", "interval", c.checkpoint.interval);
  f("checkpoint", "keep", c.checkpoint.keep);
  f("checkpoint", "resume", c.checkpoint.resume);
  f("checkpoint", "at_end", c.checkpoint.at_end);
  f("checkpoint", "overwrite", c.checkpoint.overwrite);
  f("log", "interval", c.log.interval);
  f("log", "metrics", c.log.metrics);
  f("log", "peak_gflops", c.log.peak_gflops);
  f("log", "gpu_profile", c.log.gpu_profile);
  f("parallel", "pipeline", c.parallel.pipeline);
  f("parallel", "data", c.parallel.data);
  f("parallel", "schedule", c.parallel.schedule);
  f("parallel", "virtual_stages", c.parallel.virtual_stages);
  f("parallel", "partition", c.parallel.partition);
  f("parallel", "transport", c.parallel.transport);
  f("parallel", "zero", c.parallel.zero);
  f("parallel", "grad_bucket_mb", c.parallel.grad_bucket_mb);
  f("parallel", "watchdog_s", c.parallel.watchdog_s);
  f("stats", "interval", c.stats.interval);
  f("stats", "file", c.stats.file);
}

bool is_list_text(const std::string& s) { return !s.empty() && s.front() == '['; }

std::string node_text(const toml::node& n) {
  std::ostringstream os;
  n.visit([&](auto&& v) {
    if constexpr (toml::is_string<decltype(v)>)
      os << '"' << v.get() << '"';
    else
      os << v;
  });
  return os.str();
}

struct Reader {
  const toml::table& root;
  const std::string& source;
  template <class T>
  void operator()(const char* sec, const char* key, T& out) const {
    const toml::node* n = root.at_path(std::string(sec) + "." + key).node();
    if (!n) return;
    auto bad = [&](const char* want) {
      fail(source, ": key ", sec, ".", key, " expects ", want, ", got ", node_text(*n));
    };
    if constexpr (std::is_same_v<T, bool>) {
      if (!n->is_boolean()) bad("true or false");
      out = n->as_boolean()->get();
    } else if constexpr (std::is_integral_v<T>) {
      if (!n->is_integer()) bad("an integer");
      int64_t v = n->as_integer()->get();
      if (v < int64_t(std::numeric_limits<T>::min()) || v > int64_t(std::numeric_limits<T>::max()))
        bad("an integer in range");
      out = T(v);
    } else if constexpr (std::is_floating_point_v<T>) {
      if (n->is_integer())
        out = T(n->as_integer()->get());
      else if (n->is_floating_point())
        out = T(n->as_floating_point()->get());
      else
        bad("a number");
    } else if (n->is_array() && std::string(key) == "partition") {
      std::string t = "[";
      for (auto& e : *n->as_array()) {
        if (!e.is_integer()) bad("\"uniform\" or a list of integers");
        t += (t.size() > 1 ? ", " : "") + std::to_string(e.as_integer()->get());
      }
      out = t + "]";
    } else {
      if (!n->is_string()) bad("a string");
      out = n->as_string()->get();
    }
  }
};

// --set section.key=value: the value is parsed as TOML; when that fails it is taken as a string.
void apply_override(toml::table& root, const std::string& ov, const std::string& source) {
  auto eq = ov.find('=');
  auto dot = ov.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq)
    fail(source, ": --set '", ov, "' is not of the form section.key=value");
  std::string sec = ov.substr(0, dot), key = ov.substr(dot + 1, eq - dot - 1), val = ov.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + val);
  } catch (const toml::parse_error&) {
    parsed = toml::table{};
    parsed.insert("v", val);
  }
  if (root.contains(sec) && !root[sec].is_table())
    fail(source, ": --set '", ov, "': ", sec, " is ", node_text(*root[sec].node()), " in the file, not a section [",
         sec, "]");
  auto* t = root[sec].as_table();
  if (!t) {
    root.insert(sec, toml::table{});
    t = root[sec].as_table();
  }
  t->insert_or_assign(key, *parsed["v"].node());
}

Config from_table(toml::table& root, const std::string& source) {
  Config c;
  c.source = source;
  std::set<std::string> known_sections, known_keys;
  config_visit(c, [&](const char* s, const char* k, auto&) {
    known_sections.insert(s);
    known_keys.insert(std::string(s) + "." + k);
  });
  for (auto& [sk, sv] : root) {
    std::string sec(sk.str());
    if (!known_sections.count(sec)) fail(source, ": unknown section [", sec, "]");
    auto* t = sv.as_table();
    if (!t) fail(source, ": [", sec, "] must be a table");
    for (auto& [kk, kv] : *t) {
      std::string full = sec + "." + std::string(kk.str());
      if (!known_keys.count(full)) fail(source, ": unknown key ", full, " = ", node_text(kv));
    }
  }
  config_visit(c, Reader{root, source});
  return c;
}

}  // namespace

Config config_parse(const std::string& text, const std::string& source, const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    fail(source, ":", e.source().begin.line, ":", e.source().begin.column, ": malformed TOML: ", e.description());
  }
  for (auto& ov : overrides) apply_override(root, ov, source);
  Config c = from_table(root, source);
  config_validate(c);
  return c;
}

Config config_load(const std::string& file, const std::vector<std::string>& overrides) {
  require_regular_file(file, "config file");
  constexpr uintmax_t kMaxConfig = 1 << 20;  // a config is a few hundred lines; anything larger is the wrong file
  const uintmax_t size = std::filesystem::file_size(file);
  STRATA_CHECK(size <= kMaxConfig, file, ": config file is ", size, " bytes, more than 1 MiB (", kMaxConfig,
               " bytes): is it the right file?");
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(file, ": cannot open config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return config_parse(ss.str(), file, overrides);
}

void model_config_validate(const ModelConfig& m, const std::string& src) {
  static const std::set<std::string> norms = {"post", "res_post", "pre", "peri", "deepnorm", "mix"};
  static const std::set<std::string> acts = {"gelu_tanh", "gelu", "relu"};
  static const std::set<std::string> schemes = {"", "gpt2", "normal", "xavier", "deepnet"};
  STRATA_CHECK(norms.count(m.norm), src, ": key model.norm = \"", m.norm,
               "\" is not one of post, res_post, pre, peri, deepnorm, mix");
  STRATA_CHECK(m.mix_post_fraction >= 0 && m.mix_post_fraction <= 1, src, ": key model.mix_post_fraction = ",
               m.mix_post_fraction, " must be in [0, 1]");
  STRATA_CHECK(schemes.count(m.init_scheme), src, ": key init.scheme = \"", m.init_scheme,
               "\" is not one of gpt2, normal, xavier, deepnet");
  STRATA_CHECK(acts.count(m.activation), src, ": key model.activation = \"", m.activation,
               "\" is not one of gelu_tanh, gelu, relu");
  STRATA_CHECK(m.layers >= 1, src, ": key model.layers = ", m.layers, " must be >= 1");
  STRATA_CHECK(m.d_model >= 1 && m.heads >= 1, src, ": model.d_model = ", m.d_model, " and model.heads = ", m.heads,
               " must be >= 1");
  STRATA_CHECK(m.d_model % m.heads == 0, src, ": model.d_model = ", m.d_model, " is not divisible by model.heads = ",
               m.heads);
  STRATA_CHECK(m.d_ffn >= 1, src, ": key model.d_ffn = ", m.d_ffn, " must be >= 1");
  STRATA_CHECK(m.seq_len >= 1, src, ": key model.seq_len = ", m.seq_len, " must be >= 1");
  STRATA_CHECK(m.vocab >= 2 && m.vocab <= 65536, src, ": key model.vocab = ", m.vocab,
               " must be in [2, 65536] (tokens are uint16)");
  STRATA_CHECK(m.ln_eps > 0, src, ": key model.ln_eps = ", m.ln_eps, " must be > 0");
  STRATA_CHECK(m.init_std > 0, src, ": key model.init_std = ", m.init_std, " must be > 0");
}

void config_validate(const Config& c) {
  const std::string& src = c.source;
  model_config_validate(c.model, src);
  const auto& t = c.train;
  STRATA_CHECK(t.steps >= 0, src, ": key train.steps = ", t.steps, " must be >= 0");
  STRATA_CHECK(t.batch_size >= 1 && t.micro_batch_size >= 1, src, ": train.batch_size = ", t.batch_size,
               " and train.micro_batch_size = ", t.micro_batch_size, " must be >= 1");
  STRATA_CHECK(t.batch_size % t.micro_batch_size == 0, src, ": train.batch_size = ", t.batch_size,
               " is not divisible by train.micro_batch_size = ", t.micro_batch_size);
  STRATA_CHECK(t.lr > 0 && t.min_lr >= 0 && t.min_lr <= t.lr, src, ": train.lr = ", t.lr, " and train.min_lr = ",
               t.min_lr, " must satisfy 0 <= min_lr <= lr, lr > 0");
  STRATA_CHECK(t.warmup_steps >= 0, src, ": key train.warmup_steps = ", t.warmup_steps, " must be >= 0");
  STRATA_CHECK(t.weight_decay >= 0, src, ": key train.weight_decay = ", t.weight_decay, " must be >= 0");
  STRATA_CHECK(t.grad_clip >= 0, src, ": key train.grad_clip = ", t.grad_clip, " must be >= 0");
  STRATA_CHECK(t.beta1 >= 0 && t.beta1 < 1 && t.beta2 >= 0 && t.beta2 < 1, src, ": train.beta1 = ", t.beta1,
               " and train.beta2 = ", t.beta2, " must be in [0, 1)");
  STRATA_CHECK(t.adam_eps > 0, src, ": key train.adam_eps = ", t.adam_eps, " must be > 0");
  STRATA_CHECK(t.threads >= 0, src, ": key train.threads = ", t.threads, " must be >= 0");
  STRATA_CHECK(t.eval_interval >= 0 && t.eval_batches >= 0, src, ": train.eval_interval = ", t.eval_interval,
               " and train.eval_batches = ", t.eval_batches, " must be >= 0");
  STRATA_CHECK(t.on_nonfinite == "abort" || t.on_nonfinite == "skip" || t.on_nonfinite == "rollback", src,
               ": key train.on_nonfinite = \"", t.on_nonfinite, "\" is not one of abort, skip, rollback");
  STRATA_CHECK(t.rollback_lr_scale > 0 && t.rollback_lr_scale <= 1, src, ": key train.rollback_lr_scale = ",
               t.rollback_lr_scale, " must be in (0, 1]");
  STRATA_CHECK(t.max_runtime >= 0, src, ": key train.max_runtime = ", t.max_runtime, " must be >= 0");
  STRATA_CHECK(t.exit_interval >= 0, src, ": key train.exit_interval = ", t.exit_interval, " must be >= 0");
  STRATA_CHECK(c.checkpoint.interval >= 0, src, ": key checkpoint.interval = ", c.checkpoint.interval,
               " must be >= 0");
  STRATA_CHECK(c.checkpoint.keep >= 0, src, ": key checkpoint.keep = ", c.checkpoint.keep, " must be >= 0");
  STRATA_CHECK(!c.checkpoint.dir.empty(), src, ": key checkpoint.dir must not be empty");
  STRATA_CHECK(!c.checkpoint.resume.empty(), src, ": key checkpoint.resume must be none, auto or a path");
  STRATA_CHECK(c.log.interval >= 1, src, ": key log.interval = ", c.log.interval, " must be >= 1");
  const auto& p = c.parallel;
  STRATA_CHECK(p.grad_bucket_mb >= 0, src, ": key parallel.grad_bucket_mb = ", p.grad_bucket_mb,
               " must be >= 0 (0: reduce the gradients after the backward)");
  STRATA_CHECK(p.watchdog_s == 0 || p.watchdog_s >= 1, src, ": key parallel.watchdog_s = ", p.watchdog_s,
               " must be 0 (off) or at least 1 second");
  STRATA_CHECK(p.zero == 0 || p.zero == 1, src, ": key parallel.zero = ", p.zero,
               " is not 0 (every replica keeps the whole optimizer state) or 1 (ZeRO-1: sharded over the replicas)");
  STRATA_CHECK(p.pipeline >= 1 && p.data >= 1 && p.virtual_stages >= 1, src, ": parallel.pipeline = ", p.pipeline,
               ", parallel.data = ", p.data, " and parallel.virtual_stages = ", p.virtual_stages, " must be >= 1");
  STRATA_CHECK(p.schedule == "gpipe" || p.schedule == "1f1b" || p.schedule == "interleaved" || p.schedule == "zb-h1",
               src, ": key parallel.schedule = \"", p.schedule, "\" is not one of gpipe, 1f1b, interleaved, zb-h1");
  STRATA_CHECK(t.device == "cpu" || t.device == "cuda", src, ": key train.device = \"", t.device,
               "\" is not one of cpu, cuda");
  STRATA_CHECK(t.precision == "fp32" || t.precision == "bf16", src, ": key train.precision = \"", t.precision,
               "\" is not one of fp32, bf16");
  STRATA_CHECK(t.precision == "fp32" || t.device == "cuda", src, ": key train.precision = \"", t.precision,
               "\" needs train.device = \"cuda\" (train.device = \"", t.device, "\" computes in fp32)");
  STRATA_CHECK(t.attention == "auto" || t.attention == "fused" || t.attention == "unfused", src,
               ": key train.attention = \"", t.attention, "\" is not one of auto, fused, unfused");
  STRATA_CHECK(t.attention != "fused" || t.device == "cuda", src, ": key train.attention = \"fused\" needs "
               "train.device = \"cuda\" (train.device = \"", t.device, "\" keeps the probabilities)");
  STRATA_CHECK(t.recompute == "none" || t.recompute == "selective" || t.recompute == "full", src,
               ": key train.recompute = \"", t.recompute, "\" is not one of none, selective, full");
  STRATA_CHECK(t.attention_kernel == "wmma" || t.attention_kernel == "mma", src, ": key train.attention_kernel = \"",
               t.attention_kernel, "\" is not one of wmma, mma");
  if (t.attention_kernel == "mma") {
    const auto& m = c.model;
    STRATA_CHECK(t.precision == "bf16", src, ": key train.attention_kernel = \"mma\" is bf16 tensor-core attention: "
                 "it needs train.precision = \"bf16\" (train.precision = \"", t.precision, "\")");
    STRATA_CHECK(t.attention != "unfused", src, ": key train.attention_kernel = \"mma\" is fused attention: it "
                 "needs train.attention = \"auto\" or \"fused\" (train.attention = \"", t.attention, "\")");
    const int hs = m.d_model / m.heads;  // heads >= 1 and divides d_model: model_config_validate
    STRATA_CHECK(hs == 16 || hs == 32 || hs == 64, src, ": key train.attention_kernel = \"mma\" needs a head size "
                 "of 16, 32 or 64 (model.d_model / model.heads = ", m.d_model, " / ", m.heads, " = ", hs, ")");
  }
  STRATA_CHECK(p.transport == "mpi" || p.transport == "nccl", src, ": key parallel.transport = \"", p.transport,
               "\" is not one of mpi, nccl");
  STRATA_CHECK(p.transport == "mpi" || p.pipeline > 1 || p.virtual_stages == 1, src,
               ": key parallel.transport = \"nccl\" with parallel.pipeline = 1 and parallel.virtual_stages = ",
               p.virtual_stages, ": the chunks would send to their own rank; use parallel.transport = \"mpi\"");
  STRATA_CHECK(p.transport == "mpi" || t.device == "cuda", src, ": key parallel.transport = \"", p.transport,
               "\" moves GPU buffers: it needs train.device = \"cuda\" (train.device = \"", t.device, "\")");
  STRATA_CHECK(t.batch_size % p.data == 0 && (t.batch_size / p.data) % t.micro_batch_size == 0, src,
               ": train.batch_size = ", t.batch_size, " must split into parallel.data = ", p.data,
               " replicas of whole micro-batches of train.micro_batch_size = ", t.micro_batch_size);
  STRATA_CHECK(p.partition == "uniform" || is_list_text(p.partition), src, ": key parallel.partition = \"",
               p.partition, "\" must be \"uniform\" or a list of blocks per stage");
  STRATA_CHECK(c.stats.interval >= 0, src, ": key stats.interval = ", c.stats.interval, " must be >= 0");
  STRATA_CHECK(c.log.peak_gflops >= 0, src, ": key log.peak_gflops = ", c.log.peak_gflops, " must be >= 0");
}

namespace {
std::string toml_value(bool v) { return v ? "true" : "false"; }
std::string toml_value(const std::string& v) {
  if (is_list_text(v)) return v;  // parallel.partition = [a, b, …]
  std::string o = "\"";
  for (char ch : v) {
    if (ch == '"' || ch == '\\') o += '\\';
    o += ch;
  }
  return o + "\"";
}
std::string toml_value(double v) {
  char b[64];
  auto r = std::to_chars(b, b + sizeof b, v);  // shortest text that reads back to the same double
  std::string s(b, r.ptr);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}
template <class T>
std::string toml_value(T v) {
  return std::to_string(v);
}
}  // namespace

std::string config_to_toml(const Config& c) {
  std::string out, section;
  config_visit(c, [&](const char* s, const char* k, const auto& v) {
    if (section != s) {
      out += (section.empty() ? "[" : "\n[") + std::string(s) + "]\n";
      section = s;
    }
    out += std::string(k) + " = " + toml_value(v) + "\n";
  });
  return out;
}

}  // namespace strata
