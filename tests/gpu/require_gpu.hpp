// require_gpu.hpp: the GPU suites' global fixture: without a CUDA device the suite prints why and exits 77
// (ctest's SKIP_RETURN_CODE), else it names device 0 and makes it current.
#pragma once
#include <cstdio>
#include <cstdlib>

#include "backend/cuda/ops.hpp"

namespace strata::test {

inline void require_gpu(const char* suite) {
  if (cuda::device_count() == 0) {
    std::printf("%s: skipped: no CUDA device (%s)\n", suite, cuda::no_device_reason().c_str());
    std::fflush(stdout);
    std::exit(77);
  }
  cuda::set_device(0);
  std::printf("%s: on %s\n", suite, cuda::device_name(0).c_str());
}

}  // namespace strata::test
