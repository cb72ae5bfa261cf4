// device.cu: device discovery and plain device buffers.
#include "backend/cuda/common.cuh"
#include "backend/cuda/ops.hpp"

namespace strata::cuda {

namespace {
cudaError_t count_devices(int* n) {
  *n = 0;
  cudaError_t e = cudaGetDeviceCount(n);
  if (e != cudaSuccess) *n = 0;
  return e;
}
}  // namespace

int device_count() {
  int n = 0;
  count_devices(&n);
  return n;
}

std::string no_device_reason() {
  int n = 0;
  cudaError_t e = count_devices(&n);
  if (e != cudaSuccess) return str("cudaGetDeviceCount: ", cudaGetErrorString(e));
  return n == 0 ? "cudaGetDeviceCount: 0 devices" : "";
}

std::string device_name(int d) {
  cudaDeviceProp p;
  STRATA_CUDA_CHECK(cudaGetDeviceProperties(&p, d));
  return p.name;
}

std::string device_bus_id(int d) {
  char id[32] = {};
  STRATA_CUDA_CHECK(cudaDeviceGetPCIBusId(id, sizeof id, d));
  return id;
}

void set_device(int d) { STRATA_CUDA_CHECK(cudaSetDevice(d)); }
void synchronize() { STRATA_CUDA_CHECK(cudaDeviceSynchronize()); }

Buffer::Buffer(size_t bytes) : n_(bytes) {
  if (bytes) STRATA_CUDA_CHECK(cudaMalloc(&p_, bytes));
}
Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    if (p_) cudaFree(p_);
    p_ = o.p_, n_ = o.n_;
    o.p_ = nullptr, o.n_ = 0;
  }
  return *this;
}
Buffer::~Buffer() {
  if (p_) cudaFree(p_);
}
void Buffer::upload(const void* host, size_t bytes, size_t offset) {
  STRATA_CHECK(offset + bytes <= n_, "cuda::Buffer::upload: ", bytes, " bytes at ", offset, " beyond ", n_);
  STRATA_CUDA_CHECK(cudaMemcpy(static_cast<char*>(p_) + offset, host, bytes, cudaMemcpyHostToDevice));
}
void Buffer::download(void* host, size_t bytes, size_t offset) const {
  STRATA_CHECK(offset + bytes <= n_, "cuda::Buffer::download: ", bytes, " bytes at ", offset, " beyond ", n_);
  STRATA_CUDA_CHECK(cudaMemcpy(host, static_cast<const char*>(p_) + offset, bytes, cudaMemcpyDeviceToHost));
}
void Buffer::fill_bytes(int byte) { STRATA_CUDA_CHECK(cudaMemset(p_, byte, n_)); }

}  // namespace strata::cuda
