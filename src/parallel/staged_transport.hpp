// staged_transport.hpp: a host-memory Transport (MPI) for a model whose buffers live on a GPU: a send copies
// the buffer to host memory first (the backend's download waits for the compute stream, so the data is
// final), a receive lands in host memory and is copied into the device buffer when it is waited for or found
// complete. This is `parallel.transport = "mpi"` with `train.device = "cuda"`: ranks that share one GPU, or
// GPUs without NCCL between them.
#pragma once
#include <map>
#include <vector>

#include "backend/backend.hpp"
#include "parallel/transport.hpp"

namespace strata {

class StagedTransport : public Transport {
 public:
  StagedTransport(Transport& host, Backend& be) : host_(host), be_(be) {}
  Handle isend(const float* buf, size_t n, int peer, int tag) override;
  Handle irecv(float* buf, size_t n, int peer, int tag) override;
  void wait(Handle h) override;
  bool test(Handle h) override;
  void progress() override { host_.progress(); }
  void finish() override;

 private:
  struct Stage {
    std::vector<float> host;
    float* device = nullptr;  // a receive's destination; null for a send
  };
  void complete(Handle h);
  std::vector<float> take(size_t n);  // a host buffer of n floats, reused from spare_ when one is there
  Transport& host_;
  Backend& be_;
  std::map<Handle, Stage> stages_;
  std::vector<std::vector<float>> spare_;  // completed stages' buffers (a step's messages repeat their sizes)
};

}  // namespace strata
