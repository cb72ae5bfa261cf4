// sample.cpp: `strata sample`: autoregressive generation with temperature and top-k from a checkpoint.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "core/error.hpp"
#include "core/rng.hpp"
#include "io/checkpoint.hpp"
#include "train/commands.hpp"

namespace strata {

void sample_run(const SampleArgs& a) {
  set_threads(a.threads);
  ModelConfig mc = checkpoint_model_config(a.checkpoint);
  Model model(mc);
  checkpoint_load(a.checkpoint, model.layout, model.params.data(), nullptr, nullptr, nullptr);
  STRATA_CHECK(a.temperature >= 0, "sample: --temperature ", a.temperature, " must be >= 0");
  STRATA_CHECK(a.tokens >= 0, "sample: --tokens ", a.tokens, " must be >= 0");
  STRATA_CHECK(mc.vocab == 256, a.checkpoint, ": sample decodes byte tokens only (model.vocab = ", mc.vocab, ")");
  std::vector<int32_t> ctx;
  for (unsigned char c : a.prompt) ctx.push_back(c);
  if (ctx.empty()) ctx.push_back('\n');
  std::fwrite(a.prompt.data(), 1, a.prompt.size(), stdout);
  const int V = mc.vocab;
  std::vector<double> p(V);
  std::vector<int> idx(V);
  for (int n = 0; n < a.tokens; n++) {
    const int T = std::min<int>(int(ctx.size()), mc.seq_len);
    model.forward(ctx.data() + ctx.size() - T, nullptr, 1, T);
    const float* z = model.logits() + size_t(T - 1) * V;
    int next;
    if (a.temperature == 0) {
      next = int(std::max_element(z, z + V) - z);
    } else {
      std::iota(idx.begin(), idx.end(), 0);
      int k = a.top_k > 0 && a.top_k < V ? a.top_k : V;
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int i, int j) { return z[i] > z[j]; });
      double mx = z[idx[0]], sum = 0;
      for (int i = 0; i < k; i++) sum += p[i] = std::exp((z[idx[i]] - mx) / a.temperature);
      double r = rng_uniform(a.seed, 0x73616d70, uint64_t(n)) * sum;
      next = idx[k - 1];
      for (int i = 0; i < k; i++) {
        r -= p[i];
        if (r < 0) {
          next = idx[i];
          break;
        }
      }
    }
    ctx.push_back(next);
    std::putchar(next);
  }
  std::putchar('\n');
  std::fflush(stdout);
}

}  // namespace strata
