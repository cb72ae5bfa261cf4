// rng.hpp: counter-based random numbers: value = f(seed, stream, counter), so any element of any
// tensor can be drawn independently of thread count, partition or order.
#pragma once
#include <cmath>
#include <cstdint>

namespace strata {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

inline uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t counter) {
  return splitmix64(splitmix64(seed ^ splitmix64(stream + 0x632be59bd9b4e019ULL)) ^ splitmix64(counter));
}

// Uniform in [0, 1) with 53 random bits.
inline double rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
  return double(rng_u64(seed, stream, counter) >> 11) * 0x1.0p-53;
}

// Standard normal by Box-Muller from counters 2c and 2c+1.
inline double rng_normal(uint64_t seed, uint64_t stream, uint64_t counter) {
  double u1 = rng_uniform(seed, stream, 2 * counter);
  double u2 = rng_uniform(seed, stream, 2 * counter + 1);
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

}  // namespace strata
