// peak.hpp: this machine's measured sgemm throughput, the denominator of model FLOP utilisation.
#pragma once
#include <string>

namespace strata {

// GFLOP/s of cblas_sgemm on n×n matrices with the current thread count (best of a few runs).
double measure_sgemm_gflops(int n = 2048, int reps = 3);

// A GPU's dense bf16 peak in GFLOP/s from its name (vendor data sheets; the MFU denominator on a GPU, for the
// trainer and bench_gpu_ops alike); 0 where unknown.
double gpu_bf16_peak_gflops(const std::string& name);

}  // namespace strata
