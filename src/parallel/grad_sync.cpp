// grad_sync.cpp: ZeRO-1 shards, float64 gradient reduction over the replicas, weight all-gather.
#include "parallel/grad_sync.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>

#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "parallel/mpi_watch.hpp"
#include "parallel/topology.hpp"

namespace strata {

namespace {
constexpr size_t kBucket = size_t(1) << 21;  // doubles per collective call (16 MiB)
}

ZeroShards zero_shards(const std::vector<const TensorSpec*>& tensors, size_t base, size_t n, int D) {
  STRATA_CHECK(D >= 1, "zero_shards: ", D, " replicas");
  ZeroShards s;
  s.first.assign(D + 1, tensors.size());
  s.begin.assign(D + 1, n);
  s.first[0] = 0, s.begin[0] = 0;
  // Shard r starts at the tensor boundary nearest to r·n/D (never before the previous one).
  std::vector<size_t> ends{0};
  for (const TensorSpec* t : tensors) ends.push_back(t->offset - base + t->size);
  STRATA_CHECK(ends.back() == n, "zero_shards: the tensors cover ", ends.back(), " of the slice's ", n, " values");
  auto dist = [](size_t a, double b) { return std::fabs(double(a) - b); };
  size_t k = 0;
  for (int r = 1; r < D; r++) {
    const double target = double(n) * r / D;
    while (k + 1 < ends.size() && dist(ends[k + 1], target) <= dist(ends[k], target)) k++;
    s.first[r] = k, s.begin[r] = ends[k];
  }
  return s;
}

void grad_reduce(double* acc, size_t n, const ZeroShards* shards, MPI_Comm comm) {
  watchdog::Waiting waiting(sole_peer(comm), "the gradient reduction over the data replicas");
  if (!shards) {
    for (size_t o = 0; o < n; o += kBucket)
      STRATA_MPI(MPI_Allreduce(MPI_IN_PLACE, acc + o, int(std::min(kBucket, n - o)), MPI_DOUBLE, MPI_SUM, comm));
    return;
  }
  int me = 0;
  MPI_Comm_rank(comm, &me);
  const int D = int(shards->begin.size()) - 1;
  for (int r = 0; r < D; r++)
    for (size_t o = shards->begin[r]; o < shards->begin[r + 1]; o += kBucket) {
      const int len = int(std::min(kBucket, shards->begin[r + 1] - o));
      STRATA_MPI(MPI_Reduce(me == r ? MPI_IN_PLACE : acc + o, acc + o, len, MPI_DOUBLE, MPI_SUM, r, comm));
    }
}

void params_allgather(float* params, const ZeroShards& shards, MPI_Comm comm) {
  watchdog::Waiting waiting(sole_peer(comm), "the weights' all-gather over the data replicas (ZeRO-1)");
  const int D = int(shards.begin.size()) - 1;
  std::vector<int> counts(D), displs(D);
  for (int r = 0; r < D; r++) {
    STRATA_CHECK(shards.begin[r + 1] <= size_t(INT_MAX), "params_allgather: a stage of ", shards.begin[D],
                 " parameters is beyond MPI's int counts");
    counts[r] = int(shards.size(r)), displs[r] = int(shards.begin[r]);
  }
  STRATA_MPI(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, params, counts.data(), displs.data(), MPI_FLOAT, comm));
}

GradBuckets::GradBuckets(Model& chunk, const ZeroShards* shards, double bucket_bytes, MPI_Comm comm, bool thread)
    : m_(chunk), comm_(comm), peer_(sole_peer(comm)) {
  MPI_Comm_rank(comm, &me_);
  const size_t K = m_.tensors.size();
  const size_t cap = std::max<size_t>(1, size_t(bucket_bytes / sizeof(double)));
  bucket_of_.assign(K, 0);
  folded_.assign(K, false);
  auto owner = [&](size_t k) {
    if (!shards) return -1;
    int r = 0;
    while (k >= shards->first[r + 1]) r++;
    return r;
  };
  for (size_t k = K; k-- > 0;) {
    const TensorSpec& t = *m_.tensors[k];
    const size_t off = t.offset - m_.slice_begin;
    const bool fits = !buckets_.empty() && buckets_.back().len + t.size <= cap && buckets_.back().root == owner(k) &&
                      buckets_.back().len + t.size <= size_t(INT_MAX);
    if (!fits) buckets_.push_back({off + t.size, 0, owner(k), 0, false});
    Bucket& b = buckets_.back();
    b.off = off, b.len += t.size, b.pending++;
    bucket_of_[k] = buckets_.size() - 1;
  }
  reqs_.assign(buckets_.size(), MPI_REQUEST_NULL);
  parts_.assign(size_t(2 * m_.cfg.layers + 2), {});
  for (size_t k = 0; k < K; k++) parts_[size_t(m_.part_of(k) + 1)].push_back(k);
  if (thread) thread_ = std::thread([this] { poll(); });
}

GradBuckets::~GradBuckets() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (MPI_Request& r : reqs_)
    if (r != MPI_REQUEST_NULL) MPI_Wait(&r, MPI_STATUS_IGNORE);
}

void GradBuckets::poll() {
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stop_ || active_ > 0; });
    if (stop_) return;
    int done = 0;
    try {
      STRATA_MPI(MPI_Testall(int(reqs_.size()), reqs_.data(), &done, MPI_STATUSES_IGNORE));
    } catch (...) {
      error_ = std::current_exception();
      done = 1;
    }
    if (done) {
      active_ = 0;
      continue;
    }
    lk.unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    lk.lock();
  }
}

void GradBuckets::begin_pass(Model::Pass pass, bool final_in, bool final_w) {
  pass_ = pass, final_in_ = final_in, final_w_ = final_w;
}

void GradBuckets::fold(size_t k) {
  m_.fold_tensor(k);
  folded_[k] = true;
  Bucket& b = buckets_[bucket_of_[k]];
  if (--b.pending > 0) return;
  double* acc = m_.dgrad_acc() + b.off;
  const int n = int(b.len);
  {
    std::lock_guard<std::mutex> g(mu_);
    if (b.root < 0)
      STRATA_MPI(MPI_Iallreduce(MPI_IN_PLACE, acc, n, MPI_DOUBLE, MPI_SUM, comm_, &reqs_[bucket_of_[k]]));
    else
      STRATA_MPI(MPI_Ireduce(me_ == b.root ? MPI_IN_PLACE : acc, acc, n, MPI_DOUBLE, MPI_SUM, b.root, comm_,
                             &reqs_[bucket_of_[k]]));
    active_++;
  }
  cv_.notify_one();
  b.started = true;
}

void GradBuckets::written(Model::Pass pass, int part) {
  auto visit = [&](size_t k, bool end) {
    if (!m_.written_by(pass, k) || folded_[k]) return;
    if (m_.written_by(Model::Pass::input, k) ? final_in_ : final_w_)
      fold(k);
    else if (end)
      m_.fold_tensor(k);  // not its last pass: folded when the pass ends, as without buckets
  };
  if (part != INT_MIN) {
    for (size_t k : parts_.at(size_t(part + 1))) visit(k, false);
  } else {
    for (size_t k = 0; k < m_.tensors.size(); k++) visit(k, true);
  }
}

void GradBuckets::progress() {
  if (thread_.joinable()) return;  // the thread polls
  int done = 0;
  STRATA_MPI(MPI_Testall(int(reqs_.size()), reqs_.data(), &done, MPI_STATUSES_IGNORE));
}

double GradBuckets::finish() {
  for (size_t i = 0; i < buckets_.size(); i++)
    STRATA_CHECK(buckets_[i].started, "gradient bucket ", i, " of ", buckets_.size(), " (", buckets_[i].len,
                 " values at ", buckets_[i].off, ") was never started: its tensors were not all written in the step");
  const double t0 = MPI_Wtime();
  {
    watchdog::Waiting waiting(peer_, "the gradient buckets' reduction over the data replicas");
    std::lock_guard<std::mutex> g(mu_);
    if (error_) std::rethrow_exception(error_);
    STRATA_MPI(MPI_Waitall(int(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE));
    active_ = 0;
  }
  const double waited = MPI_Wtime() - t0;
  folded_.assign(folded_.size(), false);
  for (Bucket& b : buckets_) b.started = false;
  for (size_t k = 0; k < m_.tensors.size(); k++) buckets_[bucket_of_[k]].pending++;
  return waited;
}

}  // namespace strata
