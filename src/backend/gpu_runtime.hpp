// gpu_runtime.hpp: the GPU pieces a CUDA build of the executable registers at start (main.cpp calls
// register_cuda_runtime(), defined in backend/cuda/runtime.cpp), so that strata_core itself needs no CUDA. In a
// CPU-only build every pointer stays null and the trainer says that train.device = "cuda" needs a CUDA build.
#pragma once
#include <mpi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "parallel/schedule.hpp"
#include "parallel/transport.hpp"

namespace strata {

struct GpuRuntime {
  int (*device_count)() = nullptr;               // 0 where no device is usable
  std::string (*device_name)(int) = nullptr;      // "NVIDIA H100 80GB HBM3"
  std::string (*device_bus_id)(int) = nullptr;    // PCI bus id: the physical GPU (two ranks, one GPU?)
  std::string (*no_device_reason)() = nullptr;   // why device_count() is 0
  // A backend on device `device` (sets the calling thread's device) with the kernels `options` choose.
  std::unique_ptr<Backend> (*make_backend)(int device, const GpuOptions& options) = nullptr;
  // The NCCL transport over the pipeline communicator for the schedule `spec` (this rank's stage is its rank
  // in `pipe`), ordered after `stream` (the backend's compute stream); null where the build has no NCCL.
  std::unique_ptr<Transport> (*make_nccl_transport)(MPI_Comm pipe, const ScheduleSpec& spec, void* stream) = nullptr;
  // The data-parallel sum over `comm` with ncclAllReduce on `stream`: the returned function sums a float64
  // buffer of device memory in place (it owns the communicator); null where the build has no NCCL.
  std::function<void(double*, size_t)> (*make_nccl_allreduce)(MPI_Comm comm, void* stream) = nullptr;
};

GpuRuntime& gpu_runtime();

}  // namespace strata
