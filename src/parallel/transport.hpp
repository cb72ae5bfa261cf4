// transport.hpp: point-to-point transfer of activations and gradients between pipeline stages. Every send
// and receive is non-blocking; a compute action waits only for the receives it consumes, so with a schedule
// whose simulation completes no ordering of ranks can deadlock. MPI now; NCCL with the GPU backend.
#pragma once
#include <mpi.h>

#include <cstddef>
#include <vector>

namespace strata {

class Transport {
 public:
  virtual ~Transport() = default;
  using Handle = int;
  virtual Handle isend(const float* buf, size_t n, int peer, int tag) = 0;
  virtual Handle irecv(float* buf, size_t n, int peer, int tag) = 0;
  virtual void wait(Handle h) = 0;
  virtual bool test(Handle h) = 0;  // true once complete (never blocks)
  virtual void progress() = 0;  // lets outstanding transfers advance (called between actions)
  virtual void finish() = 0;    // waits for everything outstanding; handles from before are void
  // Called before a step's transfers: a training step (the schedule's actions) or an evaluation step (forward
  // only), every message n floats. The NCCL transport orders a training step's operations by it.
  virtual void begin_step(bool train, size_t n) {
    (void)train;
    (void)n;
  }
};

// Over one pipeline communicator; peers are ranks in it (= stages).
class MpiTransport : public Transport {
 public:
  explicit MpiTransport(MPI_Comm comm);
  ~MpiTransport() override;
  Handle isend(const float* buf, size_t n, int peer, int tag) override;
  Handle irecv(float* buf, size_t n, int peer, int tag) override;
  void wait(Handle h) override;
  bool test(Handle h) override;
  void progress() override;
  void finish() override;

 private:
  Handle add(MPI_Request r, int peer);
  MPI_Comm comm_;
  std::vector<MPI_Request> reqs_;  // indexed by handle; MPI_REQUEST_NULL when done
  std::vector<int> peers_;         // indexed by handle: the world rank at the other end (the watchdog names it)
  std::vector<int> world_;         // world rank of each rank of comm_
  size_t first_open_ = 0;          // reqs_ before this are complete
};

}  // namespace strata
