// topology.hpp: the P×D grid of ranks (rank = stage·D + replica) with one communicator per pipeline and one per
// data-parallel group, passed explicitly (no global communicators).
#pragma once
#include <mpi.h>

#include <string>

namespace strata {

// MPI calls: failures become strata::Error with the call text and file:line.
#define STRATA_MPI(call)                                                                            \
  do {                                                                                              \
    int strata_mpi_rc_ = (call);                                                                    \
    if (strata_mpi_rc_ != MPI_SUCCESS) ::strata::mpi_fail(#call, strata_mpi_rc_, __FILE__, __LINE__); \
  } while (0)
[[noreturn]] void mpi_fail(const char* call, int rc, const char* file, int line);

struct Topology {
  MPI_Comm world = MPI_COMM_NULL;
  int rank = 0, size = 1;
  int P = 1, D = 1;
  int stage = 0, replica = 0;       // this rank's pipeline stage and data-parallel index
  MPI_Comm pipe = MPI_COMM_NULL;    // the P ranks of this replica's pipeline (rank in it = stage)
  MPI_Comm data = MPI_COMM_NULL;    // the D replicas of this stage (rank in it = replica)
  std::string host;
  // Index of this rank among the ranks on its host: OMPI_COMM_WORLD_LOCAL_RANK or SLURM_LOCALID where the
  // launcher sets one, else the rank in MPI's shared-memory communicator. A GPU rank takes device local_rank.
  int local_rank = 0, local_size = 1;
};

// Validates P·D = world size (an error naming all three) and splits the communicators.
Topology topology_build(MPI_Comm world, int P, int D);
void topology_free(Topology& t);

}  // namespace strata
