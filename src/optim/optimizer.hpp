// optimizer.hpp: learning-rate schedule (linear warmup, cosine decay to min_lr), global-norm clipping and
// AdamW over the flat parameter buffer, with weight decay on the 2-D tensors only.
#pragma once
#include <cstdint>
#include <vector>

#include "config/config.hpp"
#include "model/layout.hpp"

namespace strata {

// Learning rate of optimizer step `step` (0-based): lr·(step+1)/warmup during warmup, then cosine from lr to
// min_lr over the remaining steps.
double lr_at(const TrainConfig& t, int64_t step);

// AdamW over one stage's slice: tensors with global offsets, buffers starting at global offset `base`.
class AdamW {
 public:
  AdamW(std::vector<const TensorSpec*> tensors, size_t base, size_t n)
      : tensors_(std::move(tensors)), base_(base), m(n, 0.0f), v(n, 0.0f) {}
  // One update with gradients g (already clipped); step1 is the 1-based optimizer step.
  void update(float* params, const float* g, double lr, int64_t step1, const TrainConfig& t);

 private:
  std::vector<const TensorSpec*> tensors_;
  size_t base_;

 public:
  std::vector<float> m, v;  // same layout as the parameters
};

// Scales g so its norm is at most max_norm (0: no clipping). Returns the scale applied.
float grad_clip(std::vector<float>& g, double norm, double max_norm);

}  // namespace strata
