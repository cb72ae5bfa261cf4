// schedule_cmd.cpp: `strata schedule`: plan a pipeline from a laptop: the timeline, bubble and memory.
#include <cstdio>

#include "core/error.hpp"
#include "parallel/schedule.hpp"
#include "train/commands.hpp"

namespace strata {

void schedule_print(const std::string& kind, int P, int M, int v, double f, double b, double w) {
  STRATA_CHECK(f > 0 && b > 0 && w > 0, "schedule: --cost-f ", f, ", --cost-b ", b, ", --cost-w ", w,
               " must be > 0");
  ScheduleSpec s{schedule_kind_from_name(kind), P, M, v};
  auto lists = schedule_build_all(s);
  CostModel cost{f / v, b / v, w / v, 0};
  Simulation sim = schedule_simulate(s, lists, cost);
  STRATA_CHECK(sim.completed, "schedule: simulation failed: ", sim.error);
  std::fputs(schedule_render(s, sim, cost).c_str(), stdout);
  // One rank running the whole model takes P·M·(F+B+W).
  std::printf("speedup over one rank: %.3f (1f1b's P·M/(M+P−1) = %.3f)\n", P * M * (f + b + w) / sim.makespan,
              double(P) * M / (M + P - 1));
}

}  // namespace strata
