// optimizer.hpp: learning-rate schedule (linear warmup, cosine decay to min_lr), global-norm clipping and
// AdamW over the flat parameter buffer, with weight decay on the 2-D tensors only.
#pragma once
#include <cstdint>
#include <vector>

#include "backend/backend.hpp"
#include "config/config.hpp"
#include "model/layout.hpp"

namespace strata {

// Learning rate of optimizer step `step` (0-based): lr·(step+1)/warmup during warmup, then cosine from lr to
// min_lr over the remaining steps.
double lr_at(const TrainConfig& t, int64_t step);

// AdamW over one stage's slice: tensors with global offsets, buffers starting at global offset `base`, on a
// backend (null: the CPU). The moments m, v are host vectors; on a GPU backend they mirror device buffers
// (push after loading them, pull before saving them).
class AdamW {
 public:
  AdamW(std::vector<const TensorSpec*> tensors, size_t base, size_t n, Backend* be = nullptr);
  // One update of params (the backend's buffer) with gradients g (already clipped); step1 is the 1-based
  // optimizer step.
  void update(float* params, const float* g, double lr, int64_t step1, const TrainConfig& t);
  void push();
  void pull();

 private:
  std::vector<AdamWSegment> segments_;  // the tensors, relative to the buffers' start
  Backend* be_;
  Array<float> dm_, dv_;  // GPU backends

 public:
  std::vector<float> m, v;  // same layout as the parameters
};

// Scales g[n] (the backend's buffer) so its norm is at most max_norm (0: no clipping). Returns the scale applied.
float grad_clip(Backend& be, float* g, size_t n, double norm, double max_norm);

}  // namespace strata
