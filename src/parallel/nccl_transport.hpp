// nccl_transport.hpp: the Transport of the GPU backend: activations and gradients between pipeline stages
// with ncclSend/ncclRecv on device buffers. NCCL matches messages by order, not by tag, so every directed
// edge the schedule uses (sender stage, receiver stage, activations or gradients: the tag's lowest bit) gets
// its own two-rank communicator; test_schedule checks that every edge of every schedule is FIFO
// (received in the order sent), which makes order-matching exact. Transfers are ordered after the compute
// stream's work at the time they are posted (the buffer is ready, or free to overwrite), and wait() makes
// the compute stream wait for the transfer (the host does not block). Communicators are created in one
// global order of edges (no two ranks wait on each other), each bootstrapped by sending its ncclUniqueId over
// MPI. progress() and finish() poll ncclCommGetAsyncError, and finish() gives up after `timeout_s`: a dead
// peer aborts the communicators and throws instead of hanging.
//
// One order for every rank. NCCL does not promise that two operations progress at the same time (a kernel
// waiting for its peer may hold the GPU's queue, and its docs warn that concurrent operations on several
// communicators "could break at any time"), so the operations of a training step are handed to NCCL in one
// global order that every rank derives alike: the schedule's simulation (schedule_simulate) gives each message
// the time it is sent, ties broken by (sender, receiver, kind, index on the edge). Each rank issues its own
// operations in that order, on one stream, so the GPU runs them in that order too (on a stream per edge an
// operation whose inputs are ready sooner could start first and bring the hang back). A send waits until the
// executor posts it (its data is computed); a receive the
// order reaches before the executor has posted it is received into a staging buffer and copied into the
// executor's buffer when it is posted. With that order, the earliest unfinished message is next on both of its
// ranks, so the step completes even if NCCL runs one operation at a time: a compute action waits only for
// messages sent earlier than anything it sends. Evaluation (forward only) posts in one order on every rank
// already and is issued as posted.
#pragma once
#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <map>
#include <tuple>
#include <vector>

#include "parallel/schedule.hpp"
#include "parallel/transport.hpp"

namespace strata {

class NcclTransport : public Transport {
 public:
  // pipeline: the pipeline communicator (peers are its ranks = stages); spec: the schedule every stage runs (its
  // simulation orders the transfers); compute: the stream the model computes on. The CUDA device must be set.
  NcclTransport(MPI_Comm pipeline, const ScheduleSpec& spec, cudaStream_t compute, double timeout_s = 600);
  ~NcclTransport() override;
  void begin_step(bool train, size_t n) override;
  Handle isend(const float* buf, size_t n, int peer, int tag) override;
  Handle irecv(float* buf, size_t n, int peer, int tag) override;
  void wait(Handle h) override;
  bool test(Handle h) override;
  void progress() override;
  void finish() override;

  using Edge = std::tuple<bool, int, int>;  // (gradients, from stage, to stage)

 private:
  // One transfer of this rank in a training step, in the global order.
  struct Transfer {
    Edge edge;
    int index = 0;  // the how-manieth on its edge
    bool send = false;
    bool posted = false, issued = false;
    float* buf = nullptr;            // the executor's, once posted
    cudaEvent_t ready = nullptr;     // the compute stream's position when it was posted
    float* staging = nullptr;        // a receive issued before its post lands here ...
    cudaEvent_t arrived = nullptr;   // ... and this is recorded after it
    Handle handle = -1;
  };
  ncclComm_t comm(const Edge& e);
  cudaEvent_t recorded(cudaStream_t s);        // a new event recorded on s
  Handle new_handle(long transfer);            // its completion event; transfer: its place in order_, or −1
  // On stream_, after event `after` (destroyed; null: nothing to wait for): the edge's ncclSend or ncclRecv of
  // n floats at buf.
  void launch(const Edge& e, float* buf, size_t n, bool send, cudaEvent_t after);
  Handle post(const Edge& e, float* buf, size_t n, bool send);
  Handle post_ordered(const Edge& e, float* buf, size_t n, bool send);
  void issue(Transfer& t);
  void issue_ready();
  bool issued(Handle h);
  void check_async();
  MPI_Comm comm_;
  int rank_;
  cudaStream_t compute_;
  double timeout_s_;
  std::map<Edge, ncclComm_t> comms_;  // a two-rank communicator per edge (its sender is rank 0)
  std::vector<cudaEvent_t> events_;  // one per handle, recorded after its transfer
  std::vector<long> handle_transfer_;  // per handle: its place in order_ (training), or −1 (issued when posted)
  std::vector<Transfer> order_;      // this rank's transfers of a training step, in the global order
  std::map<std::pair<Edge, int>, size_t> place_;  // (edge, index on it) → place in order_
  std::map<Edge, int> posted_;       // per edge: transfers posted this step
  size_t next_ = 0;                  // order_[0, next_) are issued
  size_t waiting_ = 0;               // posted and not yet issued
  bool ordered_ = false;             // in a training step (begin_step(true, …))
  size_t n_ = 0;                     // floats per message this step
  cudaStream_t stream_ = nullptr;    // every transfer, in the order handed to NCCL
  cudaStream_t copy_ = nullptr;      // staged receives' copies into the executor's buffers
  bool aborted_ = false;
};

// The data-parallel gradient sum on GPUs: float64 device buffers summed over the ranks of `comm` with
// ncclAllReduce on the compute stream (one communicator, its ncclUniqueId broadcast over MPI from rank 0).
// sum() returns once the result is in place; it polls ncclCommGetAsyncError while it waits and gives up after
// `timeout_s`, aborting the communicator, so a dead replica ends the job instead of hanging it.
class NcclAllreduce {
 public:
  NcclAllreduce(MPI_Comm comm, cudaStream_t stream, double timeout_s = 600);
  ~NcclAllreduce();
  NcclAllreduce(const NcclAllreduce&) = delete;
  NcclAllreduce& operator=(const NcclAllreduce&) = delete;
  void sum(double* buf, size_t n);

 private:
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_;
  double timeout_s_;
  int rank_ = 0;
  bool aborted_ = false;
};

}  // namespace strata
