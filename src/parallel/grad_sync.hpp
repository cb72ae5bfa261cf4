// grad_sync.hpp: the data-parallel side of a step: ZeRO-1's shards of a stage's tensors over its replicas, the
// float64 gradient sums (allreduce, or a reduce to each shard's owner) after the backward or in buckets during it,
// and the all-gather of updated weights.
#pragma once
#include <mpi.h>

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "model/layout.hpp"
#include "model/model.hpp"

namespace strata {

// Contiguous shards of one chunk's tensors over D replicas, cut at tensor boundaries as evenly as the tensors allow
// (a tensor is never split, so its AdamW moments are one dataset row of one owner in a checkpoint): replica r owns
// tensors [first[r], first[r + 1]) of the chunk's list, elements [begin[r], begin[r + 1]) of its slice.
struct ZeroShards {
  std::vector<size_t> first, begin;  // D + 1 entries each
  size_t size(int r) const { return begin[r + 1] - begin[r]; }
};
// tensors: the chunk's, in layout order, starting at global offset base; n: the slice's size. D = 1: one shard.
ZeroShards zero_shards(const std::vector<const TensorSpec*>& tensors, size_t base, size_t n, int D);

// acc[0, n) summed over comm in float64, in buckets of at most 2 Mi doubles: on every rank (shards null), or
// (ZeRO-1) each shard's sum on its owner only, the rest left as it was.
void grad_reduce(double* acc, size_t n, const ZeroShards* shards, MPI_Comm comm);
// params[0, n): every replica's shard sent to all the others (in place), after each updated its own.
void params_allgather(float* params, const ZeroShards& shards, MPI_Comm comm);

// One chunk's float64 gradient sums reduced in buckets while its backward runs (parallel.grad_bucket_mb): the
// tensors in reverse layout order (the order the backward finishes them), cut every `bucket_bytes` of sums and at
// ZeRO-1's shard boundaries. In a step's last pass writing a tensor's gradient the bucket folds it into the
// float64 sums as soon as the model announces its part (Model::on_grads_written) and starts a bucket's
// MPI_Iallreduce (ZeRO-1: MPI_Ireduce to the shard's owner) once all its tensors are folded; earlier passes fold
// when they end, as without buckets. Every replica runs the same passes, so they start the buckets in one order.
// The sums are those of grad_reduce, bit for bit (each element's sum over the replicas is the same operation).
// Open MPI moves a non-blocking collective only inside MPI calls, so where MPI gives MPI_THREAD_MULTIPLE a thread
// polls the started buckets every 200 µs while the rank computes (as NCCL's side stream or gloo's threads do); else
// they move between the backward's GEMMs (progress()). 200 µs: bench/bench_grad_overlap.py on bench-12L exposes
// 2-4 ms of the 24 ms reduction; 50 µs as little but costs more step time, 1 ms exposes 8-11 ms.
class GradBuckets {
 public:
  GradBuckets(Model& chunk, const ZeroShards* shards, double bucket_bytes, MPI_Comm comm, bool thread);
  ~GradBuckets();
  GradBuckets(const GradBuckets&) = delete;
  GradBuckets& operator=(const GradBuckets&) = delete;
  // Before each backward pass: what it writes, and whether it is the step's last pass to write the LayerNorm
  // gradients (final_in; a B pass writes only those) or the others (final_w).
  void begin_pass(Model::Pass pass, bool final_in, bool final_w);
  void written(Model::Pass pass, int part);  // the model's hook; part INT_MIN: the pass is over
  void progress();                           // lets MPI move the started buckets (between sub-layers)
  double finish();  // after the step's passes: waits for every bucket; the seconds waited (the exposed time)
  size_t count() const { return buckets_.size(); }

 private:
  struct Bucket {
    size_t off = 0, len = 0;  // elements of the accumulator
    int root = -1;            // ZeRO-1's owner, −1: every replica
    int pending = 0;          // tensors not yet folded this step
    bool started = false;
  };
  void fold(size_t k);
  Model& m_;
  MPI_Comm comm_;
  int peer_;  // the world rank the watchdog names when a reduction stalls (-1: one of several)
  int me_ = 0;
  std::vector<Bucket> buckets_;
  std::vector<MPI_Request> reqs_;          // per bucket
  std::vector<size_t> bucket_of_;          // per tensor
  std::vector<bool> folded_;               // per tensor: folded in its last pass this step
  std::vector<std::vector<size_t>> parts_; // tensors per part (part + 1; the head's last)
  Model::Pass pass_ = Model::Pass::both;
  bool final_in_ = false, final_w_ = false;
  // The polling thread: reqs_ under mu_; active_ buckets started and not yet seen complete.
  void poll();
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool stop_ = false;
  int active_ = 0;
  std::exception_ptr error_;
};

}  // namespace strata
