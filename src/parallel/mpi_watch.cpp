// mpi_watch.cpp: the blocking MPI calls Strata makes, seen by the watchdog (core/watchdog.hpp) through MPI's
// profiling interface: each of these definitions takes the place of the library's and calls its PMPI_ twin inside
// a watchdog::Waiting scope, so a rank blocked in any of them names what it waits in, and the rank it waits for
// where the communicator has two. A scope already open (the transport's, the gradient reduction's) keeps its words.
#include <mpi.h>

#include <utility>
#include <vector>

#include "parallel/mpi_watch.hpp"

#include "core/watchdog.hpp"

std::vector<int> strata::world_ranks(MPI_Comm comm) {
  int n = 0;
  PMPI_Comm_size(comm, &n);
  std::vector<int> mine(n), out(n);
  for (int i = 0; i < n; i++) mine[i] = i;
  MPI_Group g, w;
  PMPI_Comm_group(comm, &g);
  PMPI_Comm_group(MPI_COMM_WORLD, &w);
  PMPI_Group_translate_ranks(g, n, mine.data(), w, out.data());
  PMPI_Group_free(&g);
  PMPI_Group_free(&w);
  return out;
}

int strata::sole_peer(MPI_Comm comm) {
  static std::vector<std::pair<MPI_Comm, int>> known;
  for (const auto& k : known)
    if (k.first == comm) return k.second;
  int size = 0, me = 0;
  PMPI_Comm_size(comm, &size);
  PMPI_Comm_rank(comm, &me);
  const int out = size == 2 ? world_ranks(comm)[1 - me] : -1;
  if (known.size() < 64) known.emplace_back(comm, out);  // communicators freed and made again: the cache stays small
  return out;
}

namespace {
using strata::sole_peer;
using strata::watchdog::Waiting;
}  // namespace

extern "C" {

int MPI_Allreduce(const void* s, void* r, int n, MPI_Datatype t, MPI_Op op, MPI_Comm c) {
  Waiting w(sole_peer(c), "MPI_Allreduce");
  return PMPI_Allreduce(s, r, n, t, op, c);
}
int MPI_Reduce(const void* s, void* r, int n, MPI_Datatype t, MPI_Op op, int root, MPI_Comm c) {
  Waiting w(sole_peer(c), "MPI_Reduce");
  return PMPI_Reduce(s, r, n, t, op, root, c);
}
int MPI_Bcast(void* b, int n, MPI_Datatype t, int root, MPI_Comm c) {
  Waiting w(sole_peer(c), "MPI_Bcast");
  return PMPI_Bcast(b, n, t, root, c);
}
int MPI_Barrier(MPI_Comm c) {
  Waiting w(sole_peer(c), "MPI_Barrier");
  return PMPI_Barrier(c);
}
int MPI_Gather(const void* s, int sn, MPI_Datatype st, void* r, int rn, MPI_Datatype rt, int root, MPI_Comm c) {
  Waiting w(sole_peer(c), "MPI_Gather");
  return PMPI_Gather(s, sn, st, r, rn, rt, root, c);
}
int MPI_Allgather(const void* s, int sn, MPI_Datatype st, void* r, int rn, MPI_Datatype rt, MPI_Comm c) {
  Waiting w(sole_peer(c), "MPI_Allgather");
  return PMPI_Allgather(s, sn, st, r, rn, rt, c);
}
int MPI_Allgatherv(const void* s, int sn, MPI_Datatype st, void* r, const int* rn, const int* d, MPI_Datatype rt,
                   MPI_Comm c) {
  Waiting w(sole_peer(c), "MPI_Allgatherv");
  return PMPI_Allgatherv(s, sn, st, r, rn, d, rt, c);
}
int MPI_Recv(void* b, int n, MPI_Datatype t, int src, int tag, MPI_Comm c, MPI_Status* st) {
  Waiting w(sole_peer(c), "MPI_Recv");
  return PMPI_Recv(b, n, t, src, tag, c, st);
}
int MPI_Send(const void* b, int n, MPI_Datatype t, int dst, int tag, MPI_Comm c) {
  Waiting w(sole_peer(c), "MPI_Send");
  return PMPI_Send(b, n, t, dst, tag, c);
}
int MPI_Wait(MPI_Request* r, MPI_Status* st) {
  Waiting w(-1, "MPI_Wait");
  return PMPI_Wait(r, st);
}
int MPI_Waitall(int n, MPI_Request* r, MPI_Status* st) {
  Waiting w(-1, "MPI_Waitall");
  return PMPI_Waitall(n, r, st);
}

}  // extern "C"
