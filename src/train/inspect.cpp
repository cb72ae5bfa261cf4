// inspect.cpp: `strata inspect`: a checkpoint's config, state and every tensor's shape and norms.
#include <cmath>
#include <cstdio>

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/h5.hpp"
#include "io/stats.hpp"
#include "train/commands.hpp"

namespace strata {

void inspect_run(const std::string& path) {
  ModelConfig mc = checkpoint_model_config(path);
  ParamLayout l = layout_build(mc);
  std::vector<float> p(l.total), m(l.total), v(l.total);
  TrainState st;
  checkpoint_load(path, l, p.data(), m.data(), v.data(), &st);
  H5File f = H5File::open(path);
  std::printf("checkpoint %s\nstep %lld, data cursor %llu, tokens seen %llu\n\n%s\n", path.c_str(),
              static_cast<long long>(st.step), static_cast<unsigned long long>(st.data_cursor),
              static_cast<unsigned long long>(st.tokens_seen), f.read_string("/config").c_str());
  std::printf("%-32s %-14s %12s %12s %12s\n", "tensor", "shape", "|w|", "|m|", "sqrt|v|");
  auto norm = [](const float* x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += double(x[i]) * x[i];
    return std::sqrt(s);
  };
  for (const TensorSpec& t : l.tensors) {
    std::string shape = dims_text(std::vector<hsize_t>(t.shape.begin(), t.shape.end()));
    double vs = 0;
    for (size_t i = 0; i < t.size; i++) vs += v[t.offset + i];
    std::printf("%-32s %-14s %12.5g %12.5g %12.5g\n", t.name.c_str(), shape.c_str(), norm(p.data() + t.offset, t.size),
                norm(m.data() + t.offset, t.size), std::sqrt(vs));
  }
  if (!f.exists("/stats")) return;
  // The per-layer statistics of the checkpoint's step, one row per block.
  const auto& names = stats_names();
  const hsize_t L = hsize_t(mc.layers);
  std::vector<std::vector<float>> cols(names.size(), std::vector<float>(L));
  for (size_t k = 0; k < names.size(); k++) {
    f.read_f32("/stats/" + names[k], cols[k].data(), {L});
  }
  std::printf("\nper-layer statistics at step %lld (see stats.h5 for every logged step)\n%5s",
              static_cast<long long>(st.step), "block");
  for (auto& n : names) std::printf(" %11.11s", n.c_str());
  std::printf("\n");
  for (hsize_t l = 0; l < L; l++) {
    std::printf("%5llu", static_cast<unsigned long long>(l));
    for (auto& c : cols) std::printf(" %11.4g", c[l]);
    std::printf("\n");
  }
}

}  // namespace strata
