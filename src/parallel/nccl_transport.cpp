// nccl_transport.cpp: the NCCL transport (see nccl_transport.hpp).
#include "parallel/nccl_transport.hpp"

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

NcclTransport::NcclTransport(MPI_Comm pipeline, const std::vector<Action>& actions, cudaStream_t compute,
                             double timeout_s)
    : comm_(pipeline), compute_(compute), timeout_s_(timeout_s) {
  STRATA_MPI(MPI_Comm_rank(comm_, &rank_));
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
    Channel c;
    nccl_ok(ncclCommInitRank(&c.comm, 2, id, from == rank_ ? 0 : 1), ("ncclCommInitRank for " + edge_text(e)).c_str());
    cuda_ok(cudaStreamCreateWithFlags(&c.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    channels_[e] = c;
  }
}

NcclTransport::~NcclTransport() {
  // Destroyed while an error unwinds (on this rank or reported by NCCL): touch nothing. ncclCommDestroy waits
  // for transfers whose peer may never post its half, and even ncclCommAbort can block on kernels of the other
  // communicators; main() must reach MPI_Abort, which ends the process (the driver reclaims the rest).
  if (std::uncaught_exceptions() > 0) return;
  for (cudaEvent_t ev : events_) cudaEventDestroy(ev);
  for (auto& [e, c] : channels_) {
    if (aborted_)
      ncclCommAbort(c.comm);
    else
      ncclCommDestroy(c.comm);
    cudaStreamDestroy(c.stream);
  }
}

NcclTransport::Channel& NcclTransport::channel(const Edge& e) {
  auto it = channels_.find(e);
  STRATA_CHECK(it != channels_.end(), "NCCL transport: rank ", rank_, " has no channel for ", edge_text(e),
               " (not in its schedule)");
  return it->second;
}

Transport::Handle NcclTransport::post(const Edge& e, float* buf, size_t n, bool send) {
  Channel& c = channel(e);
  // Order the transfer after the compute posted so far: the data is written, or the buffer is free.
  cudaEvent_t ready;
  cuda_ok(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
  cuda_ok(cudaEventRecord(ready, compute_), "cudaEventRecord");
  cuda_ok(cudaStreamWaitEvent(c.stream, ready, 0), "cudaStreamWaitEvent");
  cudaEventDestroy(ready);  // released once recorded work completes
  const int peer_in_edge = send ? 1 : 0;  // the sender is rank 0 of the edge's communicator
  if (send)
    nccl_ok(ncclSend(buf, n, ncclFloat32, peer_in_edge, c.comm, c.stream), ("ncclSend on " + edge_text(e)).c_str());
  else
    nccl_ok(ncclRecv(buf, n, ncclFloat32, peer_in_edge, c.comm, c.stream), ("ncclRecv on " + edge_text(e)).c_str());
  cudaEvent_t done;
  cuda_ok(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
  cuda_ok(cudaEventRecord(done, c.stream), "cudaEventRecord");
  events_.push_back(done);
  return Handle(events_.size() - 1);
}

Transport::Handle NcclTransport::isend(const float* buf, size_t n, int peer, int tag) {
  return post({(tag & 1) != 0, rank_, peer}, const_cast<float*>(buf), n, true);
}

Transport::Handle NcclTransport::irecv(float* buf, size_t n, int peer, int tag) {
  return post({(tag & 1) != 0, peer, rank_}, buf, n, false);
}

void NcclTransport::wait(Handle h) { cuda_ok(cudaStreamWaitEvent(compute_, events_.at(h), 0), "cudaStreamWaitEvent"); }

bool NcclTransport::test(Handle h) {
  cudaError_t e = cudaEventQuery(events_.at(h));
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();  // not an error: clear it, or the next kernel launch's check would report it
    return false;
  }
  cuda_ok(e, "cudaEventQuery");
  return true;
}

void NcclTransport::check_async() {
  for (auto& [e, c] : channels_) {
    ncclResult_t r = ncclSuccess;
    nccl_ok(ncclCommGetAsyncError(c.comm, &r), "ncclCommGetAsyncError");
    if (r != ncclSuccess) {
      aborted_ = true;
      fail("NCCL transport: rank ", rank_, ": ", edge_text(e), " failed: ", ncclGetErrorString(r),
           " (peer gone or network error)");
    }
  }
}

void NcclTransport::progress() { check_async(); }

void NcclTransport::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& [e, c] : channels_) {
    if (!wait_stream(c.stream, t0, timeout_s_, [this] { check_async(); })) {
      aborted_ = true;
      fail("NCCL transport: rank ", rank_, ": ", edge_text(e), " has not completed in ", timeout_s_,
           " s (a peer stopped?)");
    }
  }
  for (cudaEvent_t ev : events_) cudaEventDestroy(ev);
  events_.clear();
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
