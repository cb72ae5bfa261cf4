// init.cpp: parameter initialisation from the counter-based RNG (stream = hash of the tensor name,
// counter = element index), so every tensor's values are independent of layout and thread count.
#include <cmath>

#include "core/rng.hpp"
#include "model/model.hpp"

namespace strata {

namespace {
uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}
bool ends_with(const std::string& s, const char* suf) {
  size_t n = std::char_traits<char>::length(suf);
  return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}
}  // namespace

// init.scheme ("": deepnet for deepnorm, else gpt2) for the weight matrices:
//   gpt2:    normal(0, init_std), w_o and w_f scaled by 1/√(2L) (GPT-2);
//   normal:  normal(0, init_std);
//   xavier:  normal(0, √(2/(fan_in + fan_out))) per matrix (w_qkv is one [d,3d] matrix, lm_head one [d,V]);
//   deepnet: xavier, with w_h, w_f, w_o and the v columns of w_qkv scaled by β = (8L)^(-1/4) (DeepNet).
// Embeddings normal(0, init_std) in every scheme; biases 0; LayerNorm gains 1 (0 for branch norms with
// model.res_post_zero_gain).
void Model::init(uint64_t seed) {
  const std::string scheme = !cfg.init_scheme.empty() ? cfg.init_scheme : cfg.norm == "deepnorm" ? "deepnet" : "gpt2";
  const bool xavier = scheme == "xavier" || scheme == "deepnet";
  const double out_scale = scheme == "gpt2" ? 1.0 / std::sqrt(2.0 * cfg.layers) : 1.0;
  const double beta = scheme == "deepnet" ? std::pow(8.0 * cfg.layers, -0.25) : 1.0;
  const int d = cfg.d_model;
  for (const TensorSpec* tp : tensors) {
    const TensorSpec& t = *tp;
    float* p = param(t.offset);
    const std::string& n = t.name;
    if (ends_with(n, "/gain")) {
      const bool zero = cfg.res_post_zero_gain && t.block >= 0 && n.find("ln_out") != std::string::npos &&
                        norm_flags(cfg, t.block).ln_branch;
      for (size_t i = 0; i < t.size; i++) p[i] = zero ? 0.0f : 1.0f;
      continue;
    }
    if (t.shape.size() == 1) {  // biases
      for (size_t i = 0; i < t.size; i++) p[i] = 0.0f;
      continue;
    }
    const uint64_t stream = name_hash(n);
    double scale = xavier && !ends_with(n, "_embedding") ? std::sqrt(2.0 / (t.shape[0] + t.shape[1])) : cfg.init_std;
    const bool out_proj = ends_with(n, "/w_o") || ends_with(n, "/w_f");
    if (out_proj) scale *= out_scale;
    if (out_proj || ends_with(n, "/w_h")) scale *= beta;
    const bool qkv = ends_with(n, "/w_qkv");
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < t.size; i++) {
      const double s = qkv && int(i % (3 * d)) >= 2 * d ? scale * beta : scale;  // v columns
      p[i] = float(s * rng_normal(seed, stream, i));
    }
  }
  push_params();
}

}  // namespace strata
