// partition.cpp: min-max contiguous partition of block costs by dynamic programming, or a given list.
#include "parallel/partition.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <sstream>

#include "core/error.hpp"

namespace strata {

namespace {
double block_flops(const ModelConfig& m) {
  const double d = m.d_model;
  return 6.0 * (4 * d * d + 2 * d * m.d_ffn) + 12.0 * d * m.seq_len;
}
}  // namespace

double partition_embedding_weight(const ModelConfig& m) { return 6.0 * m.d_model / block_flops(m); }
double partition_head_weight(const ModelConfig& m) {
  return (6.0 * double(m.d_model) * m.vocab + 10.0 * m.vocab) / block_flops(m);
}

std::vector<int> partition_blocks(const ModelConfig& m, int S, const std::string& spec) {
  const int L = m.layers;
  STRATA_CHECK(S >= 1 && S <= L, "parallel: ", S, " pipeline stages (pipeline × virtual_stages) for model.layers = ",
               L, ": every stage needs at least one block");
  if (spec != "uniform") {
    std::vector<int> counts;
    STRATA_CHECK(spec.size() >= 2 && spec.front() == '[' && spec.back() == ']', "parallel.partition = \"", spec,
                 "\" is neither \"uniform\" nor a list of blocks per stage such as [23, 25, 25, 23]");
    std::string t = spec.substr(1, spec.size() - 2);
    std::stringstream ss(t);
    std::string item;
    while (std::getline(ss, item, ',')) {
      const size_t a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
      const std::string num = a == std::string::npos ? "" : item.substr(a, b - a + 1);
      int v = 0;
      const auto r = std::from_chars(num.data(), num.data() + num.size(), v);
      STRATA_CHECK(!num.empty() && r.ec == std::errc() && r.ptr == num.data() + num.size(), "parallel.partition = ",
                   spec, ": entry ", counts.size() + 1, " \"", num, "\" is not a whole number of blocks");
      counts.push_back(v);
    }
    int sum = 0;
    for (int c : counts) {
      STRATA_CHECK(c >= 1, "parallel.partition = ", spec, ": every stage needs at least one block");
      sum += c;
    }
    STRATA_CHECK(int(counts.size()) == S, "parallel.partition = ", spec, " lists ", counts.size(),
                 " stages, but pipeline × virtual_stages = ", S);
    STRATA_CHECK(sum == L, "parallel.partition = ", spec, " sums to ", sum, " blocks, but model.layers = ", L);
    return counts;
  }
  // best[k][i]: the smallest achievable maximum stage cost putting blocks [0, i) into stages [0, k).
  const double we = partition_embedding_weight(m), wh = partition_head_weight(m);
  auto cost = [&](int k, int a, int b) { return double(b - a) + (k == 0 ? we : 0) + (k == S - 1 ? wh : 0); };
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(S + 1, std::vector<double>(L + 1, inf));
  std::vector<std::vector<int>> cut(S + 1, std::vector<int>(L + 1, -1));
  best[0][0] = 0;
  for (int k = 1; k <= S; k++)
    for (int i = k; i <= L - (S - k); i++)
      for (int j = k - 1; j < i; j++) {
        const double c = std::max(best[k - 1][j], cost(k - 1, j, i));
        if (c < best[k][i] - 1e-12) best[k][i] = c, cut[k][i] = j;  // ties: the earliest cut, deterministic
      }
  std::vector<int> counts(S);
  for (int k = S, i = L; k >= 1; k--) {
    counts[k - 1] = i - cut[k][i];
    i = cut[k][i];
  }
  return counts;
}

StageRange partition_range(const std::vector<int>& counts, int vs) {
  StageRange r;
  r.first = 0;
  for (int k = 0; k < vs; k++) r.first += counts[k];
  r.last = r.first + counts[vs];
  r.embedding = vs == 0;
  r.head = vs == int(counts.size()) - 1;
  return r;
}

std::string partition_describe(const std::vector<int>& counts, int P, int D, int v) {
  std::ostringstream os;
  os << "pipeline map (" << P << " stages × " << D << " data replicas" << (v > 1 ? ", interleaved" : "") << "):";
  for (int p = 0; p < P; p++) {
    os << "\n  stage " << p << " (ranks";
    for (int d = 0; d < D; d++) os << " " << p * D + d;
    os << "):";
    for (int c = 0; c < v; c++) {
      StageRange r = partition_range(counts, c * P + p);
      os << (c ? " |" : "") << (r.embedding ? " embedding +" : "") << " blocks " << r.first << "-" << r.last - 1
         << " (" << r.last - r.first << ")" << (r.head ? " + final norm, lm_head, loss" : "");
    }
  }
  return os.str();
}

}  // namespace strata
