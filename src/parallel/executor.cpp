// executor.cpp: action-list execution with non-blocking transfers, receives posted one compute action ahead,
// activation slots acquired at the first touch of a micro-batch and released after its last backward pass.
#include "parallel/executor.hpp"

#include <chrono>

#include "core/error.hpp"

namespace strata {

PipelineExecutor::PipelineExecutor(std::vector<Model*> chunks, const ScheduleSpec& spec, int stage, Transport& tr)
    : chunks_(std::move(chunks)), spec_(spec), stage_(stage), nvs_(spec.P * spec.v), tr_(tr) {
  STRATA_CHECK(int(chunks_.size()) == spec.v, "executor: ", chunks_.size(), " model chunks for ", spec.v,
               " virtual stages");
  actions_ = schedule_build(spec, stage);
  for (Model* m : chunks_) m->on_sublayer = [this] { tr_.progress(); };
  last_touch_.assign(actions_.size(), false);
  std::map<Key, size_t> last;
  for (size_t i = 0; i < actions_.size(); i++) last[{actions_[i].mb, actions_[i].chunk}] = i;
  for (auto& [k, i] : last) last_touch_[i] = true;
  // Which pass each backward action runs, and the last pass of each chunk to write each kind of gradient.
  const size_t n = actions_.size();
  pass_.assign(n, Model::Pass::both);
  fused_.assign(n, false), final_in_.assign(n, false), final_w_.assign(n, false);
  std::vector<long> last_in(spec.v, -1), last_w(spec.v, -1);
  for (size_t i = 0; i < n; i++) {
    const Action& a = actions_[i];
    if (a.op == Op::backward_input) {
      // A B whose own W is the very next action (nothing to send in between) runs fused: splitting it would
      // only cost the W pass its cache (zb-h1's stage 0 defers nothing).
      fused_[i] = i + 1 < n && actions_[i + 1].op == Op::backward_weight && actions_[i + 1].mb == a.mb &&
                  actions_[i + 1].chunk == a.chunk;
      pass_[i] = fused_[i] ? Model::Pass::both : Model::Pass::input;
    } else if (a.op == Op::backward_weight) {
      if (i > 0 && fused_[i - 1]) continue;  // runs with its B
      pass_[i] = Model::Pass::weight;
    } else if (a.op != Op::backward) {
      continue;
    }
    if (pass_[i] != Model::Pass::weight) last_in[a.chunk] = long(i);
    if (pass_[i] != Model::Pass::input) last_w[a.chunk] = long(i);
  }
  for (int c = 0; c < spec.v; c++) {
    if (last_in[c] >= 0) final_in_[size_t(last_in[c])] = true;
    if (last_w[c] >= 0) final_w_[size_t(last_w[c])] = true;
  }
}

void PipelineExecutor::set_grad_buckets(std::vector<GradBuckets*> buckets) {
  STRATA_CHECK(buckets.size() == chunks_.size(), "executor: ", buckets.size(), " gradient bucket sets for ",
               chunks_.size(), " chunks");
  buckets_ = std::move(buckets);
  for (size_t c = 0; c < chunks_.size(); c++) {
    GradBuckets* b = buckets_[c];
    chunks_[c]->on_grads_written = b ? std::function<void(Model::Pass, int)>([b](Model::Pass p, int part) {
      b->written(p, part);
    })
                                     : nullptr;
    chunks_[c]->on_sublayer = [this, b] {
      tr_.progress();
      if (b) b->progress();
    };
  }
}

PipelineExecutor::Live& PipelineExecutor::live(int mb, int c, int MB, int T) {
  auto it = live_.find({mb, c});
  if (it != live_.end()) return it->second;
  reap(false);
  Live& l = live_[{mb, c}];
  l.slot = chunks_[c]->acquire(MB, T);
  return l;
}

void PipelineExecutor::post_recv(const Action& a, int MB, int T) {
  Live& l = live(a.mb, a.chunk, MB, T);
  int& h = a.op == Op::recv_act ? l.recv_act : l.recv_grad;
  if (h >= 0) return;
  Model& m = *chunks_[a.chunk];
  const int vs = a.chunk * spec_.P + stage_;
  const size_t n = size_t(MB) * T * m.cfg.d_model;
  float* buf = a.op == Op::recv_act ? m.input(l.slot) : m.output_grad(l.slot);
  m.backend().written(buf, n * sizeof(float));
  h = tr_.irecv(buf, n, a.peer, tag(a.mb, vs, a.op != Op::recv_act));
}

void PipelineExecutor::wait_recv(int& handle) {
  if (handle < 0) return;
  const auto t0 = std::chrono::steady_clock::now();
  tr_.wait(handle);
  timing_.wait += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  handle = -1;
}

void PipelineExecutor::retire(const Key& k) {
  auto it = live_.find(k);
  retired_.emplace_back(k, std::move(it->second));
  live_.erase(it);
}

void PipelineExecutor::reap(bool block) {
  for (size_t i = 0; i < retired_.size();) {
    auto& [k, l] = retired_[i];
    bool done = true;
    for (int h : l.sends) {
      if (block)
        tr_.wait(h);
      else
        done = done && tr_.test(h);
    }
    if (done) {
      chunks_[k.second]->release(l.slot);
      retired_.erase(retired_.begin() + long(i));
    } else {
      i++;
    }
  }
}

double PipelineExecutor::train_step(const MicroBatchSource& src, int MB, int T, float dloss_scale, bool fold) {
  const size_t N = size_t(MB) * T;
  tok_.resize(N);
  tgt_.resize(N);
  double loss = 0;
  std::vector<bool> posted(actions_.size(), false);
  tr_.begin_step(true, N * size_t(chunks_[0]->cfg.d_model));
  for (size_t i = 0; i < actions_.size(); i++) {
    const Action& a = actions_[i];
    const bool compute = a.peer < 0;
    if (compute) {  // post the receives of the next compute action now, so they overlap this one
      for (size_t j = i + 1; j < actions_.size(); j++) {
        if (actions_[j].peer < 0) break;
        if ((actions_[j].op == Op::recv_act || actions_[j].op == Op::recv_grad) && !posted[j]) {
          post_recv(actions_[j], MB, T);
          posted[j] = true;
        }
      }
    }
    Model& m = *chunks_[a.chunk];
    const int vs = a.chunk * spec_.P + stage_;
    const auto t0 = std::chrono::steady_clock::now();
    const double wait0 = timing_.wait;
    switch (a.op) {
      case Op::recv_act:
      case Op::recv_grad:
        if (!posted[i]) post_recv(a, MB, T), posted[i] = true;
        break;
      case Op::forward: {
        Live& l = live(a.mb, a.chunk, MB, T);
        wait_recv(l.recv_act);
        if (m.range.embedding || m.range.head) src(a.mb, tok_.data(), tgt_.data());
        loss += m.forward_slot(l.slot, tok_.data(), tgt_.data());
        break;
      }
      case Op::send_act: {
        Live& l = live_.at({a.mb, a.chunk});
        l.sends.push_back(tr_.isend(m.output(l.slot), N * m.cfg.d_model, a.peer, tag(a.mb, vs + 1, false)));
        break;
      }
      case Op::backward:
      case Op::backward_input: {
        Live& l = live_.at({a.mb, a.chunk});
        wait_recv(l.recv_grad);
        const bool defer = pass_[i] == Model::Pass::input;
        GradBuckets* gb = buckets_.empty() ? nullptr : buckets_[a.chunk];
        if (gb) gb->begin_pass(pass_[i], final_in_[i], final_w_[i]);
        m.backward_input(l.slot, dloss_scale, defer);
        if (fold && !gb) m.fold_grads(pass_[i]);
        if (fused_[i]) skip_w_ = i + 1;
        break;
      }
      case Op::send_grad: {
        Live& l = live_.at({a.mb, a.chunk});
        l.sends.push_back(tr_.isend(m.input_grad(l.slot), N * m.cfg.d_model, a.peer, tag(a.mb, vs - 1, true)));
        break;
      }
      case Op::backward_weight: {
        if (skip_w_ == i) break;  // done with its B
        GradBuckets* gb = buckets_.empty() ? nullptr : buckets_[a.chunk];
        if (gb) gb->begin_pass(Model::Pass::weight, false, final_w_[i]);
        m.backward_weight(live_.at({a.mb, a.chunk}).slot);
        if (fold && !gb) m.fold_grads(Model::Pass::weight);
        break;
      }
    }
    if (compute) {
      const int k = int(a.op);  // forward, backward, backward_input, backward_weight are 0 … 3
      timing_.compute[k] +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() - (timing_.wait - wait0);
      timing_.count[k]++;
    }
    if (last_touch_[i]) retire({a.mb, a.chunk});  // released once its sends complete
    tr_.progress();
  }
  reap(true);
  tr_.finish();
  STRATA_CHECK(live_.empty(), "executor: ", live_.size(), " micro-batch chunks still live after the step");
  return loss;
}

double PipelineExecutor::eval_step(const MicroBatchSource& src, int M, int MB, int T) {
  const size_t N = size_t(MB) * T;
  tok_.resize(N);
  tgt_.resize(N);
  double loss = 0;
  tr_.begin_step(false, N * size_t(chunks_[0]->cfg.d_model));
  for (int mb = 0; mb < M; mb++)
    for (int c = 0; c < spec_.v; c++) {
      Model& m = *chunks_[c];
      const int vs = c * spec_.P + stage_;
      Live& l = live(mb, c, MB, T);
      if (vs > 0) {
        m.backend().written(m.input(l.slot), size_t(N) * m.cfg.d_model * sizeof(float));
        l.recv_act = tr_.irecv(m.input(l.slot), N * m.cfg.d_model, (vs - 1) % spec_.P, tag(mb, vs, false));
        wait_recv(l.recv_act);
      }
      if (m.range.embedding || m.range.head) src(mb, tok_.data(), tgt_.data());
      loss += m.forward_slot(l.slot, tok_.data(), tgt_.data());
      if (vs < nvs_ - 1)
        l.sends.push_back(tr_.isend(m.output(l.slot), N * m.cfg.d_model, (vs + 1) % spec_.P, tag(mb, vs + 1, false)));
      retire({mb, c});
    }
  reap(true);
  tr_.finish();
  return loss;
}

}  // namespace strata
