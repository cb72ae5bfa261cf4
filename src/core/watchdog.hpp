// watchdog.hpp: ends a job whose ranks stopped making progress (a rank frozen, lost or stalled: a blocking MPI
// wait or a stream synchronisation would otherwise wait forever). The main thread marks progress (beat) at each
// compute action, transfer, reduction and checkpoint write, and names what it is about to wait for (Waiting); a
// thread of each rank checks once a second, and after parallel.watchdog_s seconds without progress prints one
// line naming this rank, the step, and the rank or the collective it waits for, then ends the process (exit 3,
// without MPI_Finalize), which makes mpirun or srun end every other rank too.
#pragma once
#include <cstdint>

namespace strata::watchdog {

// Starts the checking thread (timeout_s <= 0: none). `rank` is this rank in MPI_COMM_WORLD.
void start(double timeout_s, int rank);
void stop();  // before MPI_Finalize; safe without start
void beat();
void set_step(int64_t step);

// While alive: this rank waits for world rank `peer` (-1: for a collective of several ranks, named by `what`).
// Beats when made and when destroyed. `what` must outlive it (a literal).
class Waiting {
 public:
  Waiting(int peer, const char* what);
  ~Waiting();
  Waiting(const Waiting&) = delete;
  Waiting& operator=(const Waiting&) = delete;

 private:
  int prev_peer_;
  const char* prev_what_;
};

}  // namespace strata::watchdog
