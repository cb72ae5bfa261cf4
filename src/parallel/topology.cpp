// topology.cpp: communicator splitting for the pipeline × data grid.
#include "parallel/topology.hpp"

#include <cstdlib>

#include "core/error.hpp"

namespace strata {

void mpi_fail(const char* call, int rc, const char* file, int line) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fail(call, " failed at ", file, ":", line, ": ", std::string(msg, len));
}

Topology topology_build(MPI_Comm world, int P, int D) {
  Topology t;
  t.world = world;
  STRATA_MPI(MPI_Comm_rank(world, &t.rank));
  STRATA_MPI(MPI_Comm_size(world, &t.size));
  STRATA_CHECK(P * D == t.size, "parallel.pipeline (", P, ") × parallel.data (", D, ") = ", P * D,
               " ≠ world size ", t.size);
  t.P = P, t.D = D;
  t.stage = t.rank / D;
  t.replica = t.rank % D;
  STRATA_MPI(MPI_Comm_split(world, t.replica, t.stage, &t.pipe));
  STRATA_MPI(MPI_Comm_split(world, t.stage, t.replica, &t.data));
  char host[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(host, &len);
  t.host.assign(host, len);
  MPI_Comm node;
  STRATA_MPI(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, t.rank, MPI_INFO_NULL, &node));
  STRATA_MPI(MPI_Comm_rank(node, &t.local_rank));
  STRATA_MPI(MPI_Comm_size(node, &t.local_size));
  MPI_Comm_free(&node);
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"})
    if (const char* v = std::getenv(var); v && *v) {
      t.local_rank = std::atoi(v);
      break;
    }
  return t;
}

void topology_free(Topology& t) {
  if (t.pipe != MPI_COMM_NULL) MPI_Comm_free(&t.pipe);
  if (t.data != MPI_COMM_NULL) MPI_Comm_free(&t.data);
}

}  // namespace strata
