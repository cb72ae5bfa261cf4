// nccl_transport.cpp: the NCCL transport (see nccl_transport.hpp).
#include "parallel/nccl_transport.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <set>
#include <thread>

#include "core/error.hpp"
#include "parallel/topology.hpp"

namespace strata {

namespace {

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("NCCL transport: ", what, ": ", cudaGetErrorString(e));
}
void nccl_ok(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) fail("NCCL transport: ", what, ": ", ncclGetErrorString(r));
}
// Waits for stream s by polling, calling check() (which throws on an NCCL asynchronous error) in between;
// false if timeout_s seconds since t0 pass first.
template <class Check>
bool wait_stream(cudaStream_t s, std::chrono::steady_clock::time_point t0, double timeout_s, Check check) {
  while (true) {
    cudaError_t q = cudaStreamQuery(s);
    if (q == cudaSuccess) return true;
    if (q != cudaErrorNotReady) cuda_ok(q, "cudaStreamQuery");
    (void)cudaGetLastError();  // NotReady is not an error: leave nothing for the next launch check to find
    check();
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}
std::string edge_text(const NcclTransport::Edge& e) {
  return str(std::get<0>(e) ? "gradients" : "activations", " stage ", std::get<1>(e), " -> ", std::get<2>(e));
}

}  // namespace

NcclTransport::NcclTransport(MPI_Comm pipeline, const ScheduleSpec& spec, cudaStream_t compute, double timeout_s)
    : comm_(pipeline), compute_(compute), timeout_s_(timeout_s) {
  STRATA_MPI(MPI_Comm_rank(comm_, &rank_));
  const std::vector<std::vector<Action>> lists = schedule_build_all(spec);
  const std::vector<Action>& actions = lists.at(size_t(rank_));
  // The global order of a training step's messages: when the simulation sends each (any cost model in which
  // transfers take time works; this one is the schedules' usual), ties broken alike on every rank.
  CostModel cost;
  cost.comm = 0.5;
  const Simulation sim = schedule_simulate(spec, lists, cost);
  STRATA_CHECK(sim.completed, "NCCL transport: the schedule's simulation does not complete: ", sim.error);
  struct Key {
    double t;
    int from, to, grad, index;
    size_t at;
    bool operator<(const Key& o) const {
      return std::tie(t, from, to, grad, index) < std::tie(o.t, o.from, o.to, o.grad, o.index);
    }
  };
  std::vector<Key> keys;
  std::map<Edge, int> count;
  for (const Action& a : actions) {
    const bool send = a.op == Op::send_act || a.op == Op::send_grad;
    if (!send && a.op != Op::recv_act && a.op != Op::recv_grad) continue;
    const bool grad = a.op == Op::send_grad || a.op == Op::recv_grad;
    const int vs = a.chunk * spec.P + rank_;
    const int dest = send ? (grad ? vs - 1 : vs + 1) : vs;
    Transfer t;
    t.edge = send ? Edge{grad, rank_, a.peer} : Edge{grad, a.peer, rank_};
    t.index = count[t.edge]++;
    t.send = send;
    const auto at = sim.sent_at.find({int(grad), a.mb, dest});
    STRATA_CHECK(at != sim.sent_at.end(), "NCCL transport: rank ", rank_, ": no send time for ", edge_text(t.edge));
    keys.push_back({at->second, std::get<1>(t.edge), std::get<2>(t.edge), int(grad), t.index, order_.size()});
    order_.push_back(t);
  }
  std::sort(keys.begin(), keys.end());
  std::vector<Transfer> sorted;
  for (const Key& k : keys) {
    place_[{order_[k.at].edge, order_[k.at].index}] = sorted.size();
    sorted.push_back(order_[k.at]);
  }
  order_ = std::move(sorted);
  cuda_ok(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking), "cudaStreamCreate");
  cuda_ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  std::set<Edge> edges;  // ordered: the same global order on every rank
  for (const Action& a : actions) {
    if (a.op == Op::send_act) edges.insert({false, rank_, a.peer});
    if (a.op == Op::send_grad) edges.insert({true, rank_, a.peer});
    if (a.op == Op::recv_act) edges.insert({false, a.peer, rank_});
    if (a.op == Op::recv_grad) edges.insert({true, a.peer, rank_});
  }
  for (const Edge& e : edges) {
    const auto [grad, from, to] = e;
    ncclUniqueId id;
    const int tag = 0x5a000 + (grad ? 1 : 0);
    if (from == rank_) {
      nccl_ok(ncclGetUniqueId(&id), "ncclGetUniqueId");
      STRATA_MPI(MPI_Send(&id, sizeof id, MPI_BYTE, to, tag, comm_));
    } else {
      STRATA_MPI(MPI_Recv(&id, sizeof id, MPI_BYTE, from, tag, comm_, MPI_STATUS_IGNORE));
    }
    nccl_ok(ncclCommInitRank(&comms_[e], 2, id, from == rank_ ? 0 : 1), ("ncclCommInitRank for " + edge_text(e)).c_str());
  }
}

NcclTransport::~NcclTransport() {
  // Destroyed while an error unwinds (on this rank or reported by NCCL): touch nothing. ncclCommDestroy waits
  // for transfers whose peer may never post its half, and even ncclCommAbort can block on kernels of the other
  // communicators; main() must reach MPI_Abort, which ends the process (the driver reclaims the rest).
  if (std::uncaught_exceptions() > 0) return;
  for (cudaEvent_t ev : events_) cudaEventDestroy(ev);
  for (Transfer& t : order_) {
    if (t.ready) cudaEventDestroy(t.ready);
    if (t.arrived) cudaEventDestroy(t.arrived);
  }
  for (auto& [e, c] : comms_) {
    if (aborted_)
      ncclCommAbort(c);
    else
      ncclCommDestroy(c);
  }
  cudaStreamDestroy(stream_);
  cudaStreamDestroy(copy_);
}

void NcclTransport::begin_step(bool train, size_t n) {
  STRATA_CHECK(events_.empty(), "NCCL transport: rank ", rank_, ": a step begins before the last one finished");
  ordered_ = train;
  n_ = n;
}

// Issues order_[next_ …] as far as it goes: a posted transfer; a receive not yet posted, while a posted transfer
// waits behind it (into a staging buffer); it stops at a send not yet posted (its data is not computed yet).
void NcclTransport::issue_ready() {
  while (next_ < order_.size()) {
    Transfer& t = order_[next_];
    if (!t.posted && (t.send || waiting_ == 0)) break;
    issue(t);
    next_++;
  }
}

cudaEvent_t NcclTransport::recorded(cudaStream_t s) {
  cudaEvent_t ev;
  cuda_ok(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
  cuda_ok(cudaEventRecord(ev, s), "cudaEventRecord");
  return ev;
}

Transport::Handle NcclTransport::new_handle(long transfer) {
  cudaEvent_t done;
  cuda_ok(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
  events_.push_back(done);
  handle_transfer_.push_back(transfer);
  return Handle(events_.size() - 1);
}

void NcclTransport::launch(const Edge& e, float* buf, size_t n, bool send, cudaEvent_t after) {
  if (after) {
    cuda_ok(cudaStreamWaitEvent(stream_, after, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(after);  // released once recorded work completes
  }
  const int peer_in_edge = send ? 1 : 0;  // the sender is rank 0 of the edge's communicator
  if (send)
    nccl_ok(ncclSend(buf, n, ncclFloat32, peer_in_edge, comm(e), stream_), ("ncclSend on " + edge_text(e)).c_str());
  else
    nccl_ok(ncclRecv(buf, n, ncclFloat32, peer_in_edge, comm(e), stream_), ("ncclRecv on " + edge_text(e)).c_str());
}

void NcclTransport::issue(Transfer& t) {
  if (t.posted) {
    launch(t.edge, t.buf, n_, t.send, t.ready);
    t.ready = nullptr;
    waiting_--;
    cuda_ok(cudaEventRecord(events_.at(size_t(t.handle)), stream_), "cudaEventRecord");
  } else {  // a receive ahead of its post: into a staging buffer, after nothing but the transfers before it
    void* p = nullptr;
    cuda_ok(cudaMallocAsync(&p, n_ * sizeof(float), stream_), "cudaMallocAsync (NCCL staging buffer)");
    t.staging = static_cast<float*>(p);
    launch(t.edge, t.staging, n_, false, nullptr);
    t.arrived = recorded(stream_);
  }
  t.issued = true;
}

Transport::Handle NcclTransport::post_ordered(const Edge& e, float* buf, size_t n, bool send) {
  STRATA_CHECK(n == n_, "NCCL transport: rank ", rank_, ": ", edge_text(e), " message of ", n, " floats, the step's are ", n_);
  const int index = posted_[e]++;
  const auto it = place_.find({e, index});
  STRATA_CHECK(it != place_.end(), "NCCL transport: rank ", rank_, ": ", edge_text(e), " message ", index,
               " is not in the schedule");
  Transfer& t = order_[it->second];
  STRATA_CHECK(t.send == send, "NCCL transport: rank ", rank_, ": ", edge_text(e), " posted the wrong way");
  t.handle = new_handle(long(it->second));
  t.buf = buf;
  t.posted = true;
  // The compute stream's work so far: the data is written, or the buffer is free to overwrite.
  cudaEvent_t ready = recorded(compute_);
  if (t.issued) {  // received into staging already: copy it over once it has arrived and the buffer is free
    cuda_ok(cudaStreamWaitEvent(copy_, ready, 0), "cudaStreamWaitEvent");
    cuda_ok(cudaStreamWaitEvent(copy_, t.arrived, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(ready);
    cudaEventDestroy(t.arrived);
    t.arrived = nullptr;
    cuda_ok(cudaMemcpyAsync(buf, t.staging, n * sizeof(float), cudaMemcpyDeviceToDevice, copy_), "cudaMemcpyAsync");
    cuda_ok(cudaFreeAsync(t.staging, copy_), "cudaFreeAsync");
    t.staging = nullptr;
    cuda_ok(cudaEventRecord(events_.at(size_t(t.handle)), copy_), "cudaEventRecord");
  } else {
    t.ready = ready;
    waiting_++;
    issue_ready();
  }
  return t.handle;
}

bool NcclTransport::issued(Handle h) {
  const long at = handle_transfer_.at(size_t(h));
  return at < 0 || order_[size_t(at)].issued;
}

ncclComm_t NcclTransport::comm(const Edge& e) {
  auto it = comms_.find(e);
  STRATA_CHECK(it != comms_.end(), "NCCL transport: rank ", rank_, " has no communicator for ", edge_text(e),
               " (not in its schedule)");
  return it->second;
}

// Evaluation: issued as posted, after the compute posted so far (the data is written, or the buffer is free).
Transport::Handle NcclTransport::post(const Edge& e, float* buf, size_t n, bool send) {
  const Handle h = new_handle(-1);
  launch(e, buf, n, send, recorded(compute_));
  cuda_ok(cudaEventRecord(events_.at(size_t(h)), stream_), "cudaEventRecord");
  return h;
}

Transport::Handle NcclTransport::isend(const float* buf, size_t n, int peer, int tag) {
  const Edge e{(tag & 1) != 0, rank_, peer};
  return ordered_ ? post_ordered(e, const_cast<float*>(buf), n, true) : post(e, const_cast<float*>(buf), n, true);
}

Transport::Handle NcclTransport::irecv(float* buf, size_t n, int peer, int tag) {
  const Edge e{(tag & 1) != 0, peer, rank_};
  return ordered_ ? post_ordered(e, buf, n, false) : post(e, buf, n, false);
}

void NcclTransport::wait(Handle h) {
  // Its turn has come: everything before it is a send the executor posted before it waits here (a compute action
  // waits only for messages sent earlier than what it sends) or a receive, which can be staged.
  STRATA_CHECK(issued(h), "NCCL transport: rank ", rank_, ": waits for a transfer whose turn in the global order has not "
               "come (a send before it is not posted: the executor and the schedule disagree)");
  cuda_ok(cudaStreamWaitEvent(compute_, events_.at(h), 0), "cudaStreamWaitEvent");
}

bool NcclTransport::test(Handle h) {
  if (!issued(h)) return false;
  cudaError_t e = cudaEventQuery(events_.at(h));
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();  // not an error: clear it, or the next kernel launch's check would report it
    return false;
  }
  cuda_ok(e, "cudaEventQuery");
  return true;
}

void NcclTransport::check_async() {
  for (auto& [e, c] : comms_) {
    ncclResult_t r = ncclSuccess;
    nccl_ok(ncclCommGetAsyncError(c, &r), "ncclCommGetAsyncError");
    if (r != ncclSuccess) {
      aborted_ = true;
      fail("NCCL transport: rank ", rank_, ": ", edge_text(e), " failed: ", ncclGetErrorString(r),
           " (peer gone or network error)");
    }
  }
}

void NcclTransport::progress() { check_async(); }

void NcclTransport::finish() {
  if (ordered_) {
    issue_ready();
    for (const Transfer& t : order_)
      STRATA_CHECK(t.posted, "NCCL transport: rank ", rank_, ": the step ended without ", t.send ? "sending" : "receiving",
                   " message ", t.index, " of ", edge_text(t.edge));
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (!wait_stream(stream_, t0, timeout_s_, [this] { check_async(); })) {
    aborted_ = true;
    std::string open;  // the first transfer not complete, for the message
    for (const Transfer& t : order_)
      if (t.handle >= 0 && cudaEventQuery(events_.at(size_t(t.handle))) != cudaSuccess) {
        open = str(" (", t.send ? "sending" : "receiving", " message ", t.index, " of ", edge_text(t.edge), ")");
        break;
      }
    (void)cudaGetLastError();
    fail("NCCL transport: rank ", rank_, ": transfers have not completed in ", timeout_s_, " s", open,
         ": a peer stopped?");
  }
  if (!wait_stream(copy_, t0, timeout_s_, [this] { check_async(); })) {
    aborted_ = true;
    fail("NCCL transport: rank ", rank_, ": the staged receives' copies have not completed in ", timeout_s_, " s");
  }
  for (cudaEvent_t ev : events_) cudaEventDestroy(ev);
  events_.clear();
  handle_transfer_.clear();
  for (Transfer& t : order_) t.posted = t.issued = false, t.buf = nullptr, t.handle = -1;
  posted_.clear();
  next_ = waiting_ = 0;
  ordered_ = false;
}

NcclAllreduce::NcclAllreduce(MPI_Comm comm, cudaStream_t stream, double timeout_s)
    : stream_(stream), timeout_s_(timeout_s) {
  int size = 1;
  STRATA_MPI(MPI_Comm_rank(comm, &rank_));
  STRATA_MPI(MPI_Comm_size(comm, &size));
  ncclUniqueId id;
  if (rank_ == 0) nccl_ok(ncclGetUniqueId(&id), "ncclGetUniqueId");
  STRATA_MPI(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm));
  nccl_ok(ncclCommInitRank(&comm_, size, id, rank_), "ncclCommInitRank for the data-parallel group");
}

NcclAllreduce::~NcclAllreduce() {
  if (!comm_ || std::uncaught_exceptions() > 0) return;  // unwinding an error: as ~NcclTransport
  if (aborted_)
    ncclCommAbort(comm_);
  else
    ncclCommDestroy(comm_);
}

void NcclAllreduce::sum(double* buf, size_t n) {
  nccl_ok(ncclAllReduce(buf, buf, n, ncclFloat64, ncclSum, comm_, stream_), "ncclAllReduce of the gradients");
  auto check = [this] {
    ncclResult_t r = ncclSuccess;
    nccl_ok(ncclCommGetAsyncError(comm_, &r), "ncclCommGetAsyncError");
    if (r != ncclSuccess) {
      aborted_ = true;
      fail("NCCL allreduce: rank ", rank_, " of the data-parallel group: ", ncclGetErrorString(r),
           " (a replica gone or a network error)");
    }
  };
  if (!wait_stream(stream_, std::chrono::steady_clock::now(), timeout_s_, check)) {
    aborted_ = true;
    fail("NCCL allreduce: rank ", rank_, " of the data-parallel group: no result in ", timeout_s_,
         " s (a replica stopped?)");
  }
}

}  // namespace strata
