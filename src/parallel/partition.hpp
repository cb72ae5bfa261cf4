// partition.hpp: blocks → (virtual) pipeline stages. Pure functions, no MPI.
#pragma once
#include <string>
#include <vector>

#include "config/config.hpp"
#include "model/model.hpp"

namespace strata {

// Blocks per virtual stage (S = P·v of them, in pipeline order). spec = "uniform" balances estimated cost
// (the embedding and the head count as weighted layers); "[a, b, …]" sets the counts. Every stage gets ≥ 1
// block; the counts sum to model.layers. Throws with the values on any mismatch.
std::vector<int> partition_blocks(const ModelConfig& m, int S, const std::string& spec);
// Cost of the embedding and of the head in units of one block (model FLOPs per token).
double partition_embedding_weight(const ModelConfig& m);
double partition_head_weight(const ModelConfig& m);
// The StageRange of virtual stage vs.
StageRange partition_range(const std::vector<int>& counts, int vs);
// "stage 0: embedding + blocks 0–23 (24) | stage 1: …" for the start-up log.
std::string partition_describe(const std::vector<int>& counts, int P, int D, int v);

}  // namespace strata
