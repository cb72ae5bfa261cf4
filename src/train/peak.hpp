// peak.hpp: this machine's measured sgemm throughput, the denominator of model FLOP utilisation.
#pragma once

namespace strata {

// GFLOP/s of cblas_sgemm on n×n matrices with the current thread count (best of a few runs).
double measure_sgemm_gflops(int n = 2048, int reps = 3);

}  // namespace strata
