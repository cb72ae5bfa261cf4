// runtime.cpp: register_cuda_runtime(): hands the CUDA build's device queries and factories to gpu_runtime(),
// so that strata_core (the model, the trainer) never includes a CUDA header.
#include "backend/cuda/runtime.hpp"

#include <memory>
#include <vector>

#include "backend/cuda/ops.hpp"
#include "backend/gpu_runtime.hpp"
#if STRATA_HAVE_NCCL
#include "parallel/nccl_transport.hpp"
#endif

namespace strata {

namespace {

#if STRATA_HAVE_NCCL
std::unique_ptr<Transport> make_nccl_transport(MPI_Comm pipe, const ScheduleSpec& spec, void* stream) {
  return std::make_unique<NcclTransport>(pipe, spec, static_cast<cudaStream_t>(stream));
}
std::function<void(double*, size_t)> make_nccl_allreduce(MPI_Comm comm, void* stream) {
  auto ar = std::make_shared<NcclAllreduce>(comm, static_cast<cudaStream_t>(stream));
  return [ar](double* buf, size_t n) { ar->sum(buf, n); };
}
#endif

}  // namespace

void register_cuda_runtime() {
  GpuRuntime& r = gpu_runtime();
  r.device_count = &cuda::device_count;
  r.device_name = &cuda::device_name;
  r.device_bus_id = &cuda::device_bus_id;
  r.no_device_reason = &cuda::no_device_reason;
  r.make_backend = &make_cuda_backend;
#if STRATA_HAVE_NCCL
  r.make_nccl_transport = &make_nccl_transport;
  r.make_nccl_allreduce = &make_nccl_allreduce;
#else
  r.make_nccl_transport = nullptr;
  r.make_nccl_allreduce = nullptr;
#endif
}

}  // namespace strata
