// runinfo.hpp: what a run records next to its checkpoints at every start, so a result can be traced to the code,
// machines and libraries that made it (and a rank can be found and signalled).
#pragma once
#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "parallel/topology.hpp"

namespace strata {

// The git commit the binary was built from ("<sha>[-dirty]"), generated at build time by cmake/git_info.cmake.
extern const char* const kGitCommit;

// Collective over topo.world. Checks that checkpoint.dir is writable (an error every rank agrees on), then
// rank 0 writes into it:
//   config.toml  the resolved config of this start
//   ranks.txt    "rank stage replica host local_rank pid", one line per rank
//   run.json     this start: git commit, hosts, MPI / HDF5 / OpenBLAS / NCCL versions, SLURM job, resume point
//   runs.jsonl   run.json of every start, appended (a requeued job shows each of its starts)
void run_info_write(const Config& cfg, const Topology& topo, int threads, const std::string& resumed_from,
                    int64_t step);

}  // namespace strata
