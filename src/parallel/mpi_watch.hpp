// mpi_watch.hpp: Strata's blocking MPI calls seen by the watchdog (mpi_watch.cpp defines them over PMPI).
#pragma once
#include <mpi.h>

#include <vector>

namespace strata {

// The world rank of each rank of `comm`, in its order.
std::vector<int> world_ranks(MPI_Comm comm);

// The world rank of the other member of a two-rank communicator (the one a stalled collective waits for), else -1.
// Cached per communicator.
int sole_peer(MPI_Comm comm);

}  // namespace strata
