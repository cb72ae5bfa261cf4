// rundir.hpp: a run directory belongs to one run. Before a run starts its checkpoints, metrics and statistics in
// checkpoint.dir, what an earlier run left there is either the run this one continues (checkpoint.resume), or
// moved aside where the config says so (checkpoint.overwrite), or the start is refused: nothing is truncated or
// mixed with another run's files without a line saying so.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "parallel/topology.hpp"

namespace strata {

// The files of an earlier run in the run directory (rank 0 looks; every rank gets the list): its checkpoints
// (step-*.h5, complete or not, and latest), and its metrics and statistics files where they hold anything.
std::vector<std::string> run_dir_earlier(const Config& cfg, const Topology& topo);
// Collective. Before a fresh start (nothing resumed) over `earlier`: with checkpoint.overwrite (or, under
// resume = "auto", where the earlier run left no checkpoint at all, only history: a job that died before its first
// save and was requeued) rank 0 moves them into <dir>/replaced-<UTC time>/ and `say`s so; otherwise every rank
// throws the same AgreedError naming the directory, the files and the keys that decide.
void run_dir_fresh_start(const Config& cfg, const Topology& topo, const std::vector<std::string>& earlier,
                         const std::function<void(const std::string&)>& say);

// Collective. Rank 0 removes what a save cut short left in checkpoint.dir (.step-*.h5.tmp, latest.tmp: a process
// killed while writing, e.g. by mpirun's SIGKILL one second after its SIGTERM) and `say`s which; such a file is
// never read and never named by latest.
void run_dir_remove_partial(const Config& cfg, const Topology& topo, const std::function<void(const std::string&)>& say);

}  // namespace strata
