// optimizer.cpp: schedule, clipping and AdamW over the layer-major flat buffers.
#include "optim/optimizer.hpp"

#include <cmath>

#include "backend/ops.hpp"

namespace strata {

double lr_at(const TrainConfig& t, int64_t step) {
  if (step < t.warmup_steps) return t.lr * double(step + 1) / double(t.warmup_steps);
  const int64_t decay = int64_t(t.steps) - t.warmup_steps;
  if (decay <= 0) return t.lr;
  double p = double(step - t.warmup_steps) / double(decay);
  if (p > 1) p = 1;
  return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1.0 + std::cos(M_PI * p));
}

void AdamW::update(float* params, const float* g, double lr, int64_t step1, const TrainConfig& t) {
  cpu::AdamWParams hp{float(lr), float(t.beta1), float(t.beta2), float(t.adam_eps), float(t.weight_decay), int(step1)};
  for (const TensorSpec* ts : tensors_) {
    const size_t o = ts->offset - base_;
    cpu::adamw_update(params + o, m.data() + o, v.data() + o, g + o, ts->size, hp, ts->decay);
  }
}

float grad_clip(std::vector<float>& g, double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0f;
  const float s = float(max_norm / (norm + 1e-6));
  cpu::scale_copy(g.data(), g.data(), s, g.size(), false);
  return s;
}

}  // namespace strata
