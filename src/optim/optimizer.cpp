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

AdamW::AdamW(std::vector<const TensorSpec*> tensors, size_t base, size_t n, Backend* be)
    : be_(be ? be : &cpu_backend()), m(n, 0.0f), v(n, 0.0f) {
  if (!be_->host_memory()) dm_ = Array<float>(*be_, n), dv_ = Array<float>(*be_, n);
  for (const TensorSpec* ts : tensors) segments_.push_back({ts->offset - base, ts->size, ts->decay});
}

void AdamW::push() {
  if (be_->host_memory()) return;
  be_->upload(dm_.data(), m.data(), m.size() * sizeof(float));
  be_->upload(dv_.data(), v.data(), v.size() * sizeof(float));
}

void AdamW::pull() {
  if (be_->host_memory()) return;
  be_->download(m.data(), dm_.data(), m.size() * sizeof(float));
  be_->download(v.data(), dv_.data(), v.size() * sizeof(float));
}

void AdamW::update(float* params, const float* g, double lr, int64_t step1, const TrainConfig& t) {
  cpu::AdamWParams hp{float(lr), float(t.beta1), float(t.beta2), float(t.adam_eps), float(t.weight_decay), int(step1)};
  float* mm = be_->host_memory() ? m.data() : dm_.data();
  float* vv = be_->host_memory() ? v.data() : dv_.data();
  be_->adamw_update_segments(params, mm, vv, g, segments_, hp);
}

float grad_clip(Backend& be, float* g, size_t n, double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0f;
  const float s = float(max_norm / (norm + 1e-6));
  be.scale_copy(g, g, s, n, false);
  return s;
}

}  // namespace strata
