// transport.cpp: the MPI transport: MPI_Isend / MPI_Irecv with handles recycled after completion.
#include "parallel/transport.hpp"

#include <climits>

#include "core/error.hpp"
#include "core/watchdog.hpp"
#include "parallel/mpi_watch.hpp"
#include "parallel/topology.hpp"

namespace strata {

MpiTransport::MpiTransport(MPI_Comm comm) : comm_(comm), world_(world_ranks(comm)) {}

MpiTransport::~MpiTransport() {
  for (auto& r : reqs_)
    if (r != MPI_REQUEST_NULL) MPI_Cancel(&r);
}

Transport::Handle MpiTransport::add(MPI_Request r, int peer) {
  reqs_.push_back(r);
  peers_.push_back(world_.at(size_t(peer)));
  return Handle(reqs_.size() - 1);
}

Transport::Handle MpiTransport::isend(const float* buf, size_t n, int peer, int tag) {
  STRATA_CHECK(n <= size_t(INT_MAX), "transfer of ", n, " floats exceeds MPI's int count");
  MPI_Request r;
  STRATA_MPI(MPI_Isend(buf, int(n), MPI_FLOAT, peer, tag, comm_, &r));
  return add(r, peer);
}

Transport::Handle MpiTransport::irecv(float* buf, size_t n, int peer, int tag) {
  STRATA_CHECK(n <= size_t(INT_MAX), "transfer of ", n, " floats exceeds MPI's int count");
  MPI_Request r;
  STRATA_MPI(MPI_Irecv(buf, int(n), MPI_FLOAT, peer, tag, comm_, &r));
  return add(r, peer);
}

void MpiTransport::wait(Handle h) {
  watchdog::Waiting waiting(peers_[h], "a pipeline transfer of activations or gradients");
  STRATA_MPI(MPI_Wait(&reqs_[h], MPI_STATUS_IGNORE));
}

bool MpiTransport::test(Handle h) {
  int flag = 0;
  STRATA_MPI(MPI_Test(&reqs_[h], &flag, MPI_STATUS_IGNORE));
  return flag != 0;
}

void MpiTransport::progress() {
  // One test drives Open MPI's progress engine for every outstanding transfer; start after the requests
  // known to be complete.
  watchdog::beat();  // an action finished
  int flag = 0;
  while (first_open_ < reqs_.size() && reqs_[first_open_] == MPI_REQUEST_NULL) first_open_++;
  if (first_open_ < reqs_.size()) STRATA_MPI(MPI_Test(&reqs_[first_open_], &flag, MPI_STATUS_IGNORE));
}

void MpiTransport::finish() {
  for (size_t h = 0; h < reqs_.size(); h++)  // one at a time, so that a stall names its peer
    if (reqs_[h] != MPI_REQUEST_NULL) wait(Handle(h));
  reqs_.clear();
  peers_.clear();
  first_open_ = 0;
}

}  // namespace strata
