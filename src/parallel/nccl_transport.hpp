// nccl_transport.hpp: the Transport of the GPU backend: activations and gradients between pipeline stages
// with ncclSend/ncclRecv on device buffers. NCCL matches messages by order, not by tag, so every directed
// edge the schedule uses (sender stage, receiver stage, activations or gradients: the tag's lowest bit) gets
// its own two-rank communicator and stream; test_schedule checks that every edge of every schedule is FIFO
// (received in the order sent), which makes order-matching exact. Transfers are ordered after the compute
// stream's work at the time they are posted (the buffer is ready, or free to overwrite), and wait() makes
// the compute stream wait for the transfer (the host does not block). Communicators are created in one
// global order of edges (no two ranks wait on each other), each bootstrapped by sending its ncclUniqueId over
// MPI. progress() and finish() poll ncclCommGetAsyncError, and finish() gives up after `timeout_s`: a dead
// peer aborts the communicators and throws instead of hanging.
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
  // pipeline: the pipeline communicator (peers are its ranks = stages); actions: this stage's schedule, for
  // the edges it uses; compute: the stream the model computes on. The CUDA device must be set.
  NcclTransport(MPI_Comm pipeline, const std::vector<Action>& actions, cudaStream_t compute, double timeout_s = 600);
  ~NcclTransport() override;
  Handle isend(const float* buf, size_t n, int peer, int tag) override;
  Handle irecv(float* buf, size_t n, int peer, int tag) override;
  void wait(Handle h) override;
  bool test(Handle h) override;
  void progress() override;
  void finish() override;

  using Edge = std::tuple<bool, int, int>;  // (gradients, from stage, to stage)

 private:
  struct Channel {
    ncclComm_t comm = nullptr;
    cudaStream_t stream = nullptr;
  };
  Channel& channel(const Edge& e);
  Handle post(const Edge& e, float* buf, size_t n, bool send);
  void check_async();
  MPI_Comm comm_;
  int rank_;
  cudaStream_t compute_;
  double timeout_s_;
  std::map<Edge, Channel> channels_;
  std::vector<cudaEvent_t> events_;  // one per handle, recorded after its transfer
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
