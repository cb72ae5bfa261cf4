// peak.hpp: this machine's measured sgemm throughput, the denominator of model FLOP utilisation.
#pragma once

namespace strata {

// GFLOP/s of cblas_sgemm on n×n matrices with the current thread count (best of a few runs).
double measure_sgemm_gflops(int n = 1024, int reps = 4);

}  // namespace strata
