// profiler.hpp: the CUDA backend's op timing (log.gpu_profile). A pair of CUDA events brackets every op on the
// backend's stream; completed pairs are read back without waiting (checked at each new op), and summed per op
// kind with the op's floating-point operations and least memory traffic, for TFLOP/s and GB/s per kind. The
// events cost a few microseconds of launch time per op and do not synchronise the stream.
#pragma once
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <deque>
#include <vector>

#include "backend/backend.hpp"
#include "core/error.hpp"

namespace strata::cuda {

enum class OpKind {
  matmul_forward, matmul_backward_input, matmul_backward_weight, round_to_bf16, layernorm_forward,
  layernorm_backward, attention_forward, attention_backward, activation_forward, activation_backward,
  crossentropy_forward, crossentropy_backward, embedding_forward, embedding_backward, residual_forward,
  scale_copy, copy_zero, fold_unfold, adamw_update, reductions, host_transfers, count
};

inline const char* op_name(OpKind k) {
  static const char* names[] = {
      "matmul_forward", "matmul_backward_input", "matmul_backward_weight", "round_to_bf16", "layernorm_forward",
      "layernorm_backward", "attention_forward", "attention_backward", "activation_forward", "activation_backward",
      "crossentropy_forward", "crossentropy_backward", "embedding_forward", "embedding_backward",
      "residual_forward", "scale_copy", "copy_zero", "fold_unfold", "adamw_update", "reductions", "host_transfers"};
  static_assert(sizeof names / sizeof names[0] == size_t(OpKind::count), "one name per op kind");
  return names[int(k)];
}

class Profiler {
 public:
  explicit Profiler(cudaStream_t s) : s_(s) {}
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;
  ~Profiler() {
    for (auto& p : pending_) cudaEventDestroy(p.a), cudaEventDestroy(p.b);
    for (cudaEvent_t e : pool_) cudaEventDestroy(e);
    if (first_) cudaEventDestroy(first_);
  }

  bool on() const { return on_; }
  void start() {
    drain(true);
    tally_ = {};
    span_ms_ = 0;
    error_ = cudaSuccess;
    if (first_) pool_.push_back(first_), first_ = nullptr;
    on_ = true;
  }

  // Brackets one op: events recorded on the stream at construction and destruction (nothing when off).
  class Scope {
   public:
    Scope(Profiler* p, OpKind k, double flop, double bytes) : p_(p && p->on_ ? p : nullptr), k_(k), flop_(flop),
                                                               bytes_(bytes) {
      if (p_) a_ = p_->begin();
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    ~Scope() {
      if (p_) p_->end(k_, a_, flop_, bytes_);
    }

   private:
    Profiler* p_;
    OpKind k_;
    double flop_, bytes_;
    cudaEvent_t a_ = nullptr;
  };
  Scope time(OpKind k, double flop, double bytes) { return Scope(this, k, flop, bytes); }

  // Backend::profile(): waits for every bracketed op and stops timing.
  std::vector<OpTime> report() {
    drain(true);
    on_ = false;
    std::vector<OpTime> out;
    for (int k = 0; k < int(OpKind::count); k++) {
      out.push_back(tally_[k]);
      out.back().op = op_name(OpKind(k));
    }
    OpTime span;
    span.op = "(span)";
    span.ms = span_ms_;
    out.push_back(span);
    return out;
  }

 private:
  struct Pending {
    OpKind k;
    cudaEvent_t a, b;
    double flop, bytes;
  };
  static void ok(cudaError_t e, const char* what) {
    STRATA_CHECK(e == cudaSuccess, "cuda backend profile (log.gpu_profile): ", what, ": ", cudaGetErrorString(e));
  }
  cudaEvent_t event() {
    if (!pool_.empty()) {
      cudaEvent_t e = pool_.back();
      pool_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    ok(cudaEventCreate(&e), "cudaEventCreate");
    return e;
  }
  cudaEvent_t begin() {
    check_end();
    drain(pending_.size() > kMaxPending);
    if (!first_) {  // the span starts here; first_ keeps its own event
      first_ = event();
      ok(cudaEventRecord(first_, s_), "cudaEventRecord");
    }
    cudaEvent_t a = event();
    ok(cudaEventRecord(a, s_), "cudaEventRecord");
    return a;
  }
  // From ~Scope, so it does not throw (an op failing on the device unwinds through here; the next begin() or
  // report() reports an error of its own): the pair is dropped.
  void end(OpKind k, cudaEvent_t a, double flop, double bytes) noexcept {
    cudaEvent_t b = nullptr;
    cudaError_t e = cudaSuccess;
    if (!pool_.empty())
      b = pool_.back(), pool_.pop_back();
    else
      e = cudaEventCreate(&b);
    if (e == cudaSuccess) e = cudaEventRecord(b, s_);
    if (e == cudaSuccess) {
      try {
        pending_.push_back({k, a, b, flop, bytes});
        return;
      } catch (...) {
        e = cudaErrorMemoryAllocation;
      }
    }
    if (error_ == cudaSuccess) error_ = e;
    cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
  }
  // Reads back the pairs the device has completed, oldest first; with wait, all of them.
  void drain(bool wait) {
    check_end();
    while (!pending_.empty()) {
      Pending& p = pending_.front();
      if (wait) {
        ok(cudaEventSynchronize(p.b), "cudaEventSynchronize");
      } else {
        const cudaError_t e = cudaEventQuery(p.b);
        if (e == cudaErrorNotReady) {
          (void)cudaGetLastError();  // not an error: leave nothing for the next launch check to find
          return;
        }
        ok(e, "cudaEventQuery");
      }
      float ms = 0, since_first = 0;
      ok(cudaEventElapsedTime(&ms, p.a, p.b), "cudaEventElapsedTime");
      ok(cudaEventElapsedTime(&since_first, first_, p.b), "cudaEventElapsedTime");
      OpTime& t = tally_[int(p.k)];
      t.calls++, t.ms += ms, t.flop += p.flop, t.bytes += p.bytes;
      span_ms_ = std::max(span_ms_, double(since_first));
      pool_.push_back(p.a), pool_.push_back(p.b);
      pending_.pop_front();
    }
  }

  static constexpr size_t kMaxPending = 1 << 16;  // beyond this many unread pairs, begin() waits for them all
  cudaStream_t s_;
  bool on_ = false;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> pool_;
  cudaEvent_t first_ = nullptr;
  std::array<OpTime, size_t(OpKind::count)> tally_{};
  double span_ms_ = 0;
  cudaError_t error_ = cudaSuccess;  // end()'s failure, reported by the next begin() or drain()
  void check_end() const {
    STRATA_CHECK(error_ == cudaSuccess, "cuda backend profile (log.gpu_profile): recording an op's end event: ",
                 cudaGetErrorString(error_));
  }
};

}  // namespace strata::cuda
