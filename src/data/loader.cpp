// loader.cpp: windows drawn from the counter-based RNG; contiguous windows for evaluation.
#include "data/loader.hpp"

#include "core/error.hpp"
#include "core/rng.hpp"

namespace strata {

namespace {
constexpr uint64_t kDataStream = 0x64617461;  // "data"
}

Loader::Loader(std::vector<uint16_t> tokens, int T, uint64_t seed, const std::string& source)
    : tokens_(std::move(tokens)), T_(T), seed_(seed) {
  STRATA_CHECK(tokens_.size() >= size_t(T) + 1, source, ": shard has ", tokens_.size(),
               " tokens, fewer than model.seq_len + 1 = ", T + 1);
}

void Loader::fill(uint64_t first, int n, int32_t* x, int32_t* y) const {
  const uint64_t span = tokens_.size() - T_;  // valid start positions: [0, span)
  for (int b = 0; b < n; b++) {
    const uint64_t off = rng_u64(seed_, kDataStream, first + b) % span;
    for (int t = 0; t < T_; t++) {
      x[b * T_ + t] = tokens_[off + t];
      y[b * T_ + t] = tokens_[off + t + 1];
    }
  }
}

uint64_t Loader::eval_sequences() const { return (tokens_.size() - 1) / T_; }

void Loader::eval_sequence(uint64_t j, int32_t* x, int32_t* y) const {
  const uint64_t off = j * T_;
  for (int t = 0; t < T_; t++) {
    x[t] = tokens_[off + t];
    y[t] = tokens_[off + t + 1];
  }
}

}  // namespace strata
