// transport.cpp: the MPI transport: MPI_Isend / MPI_Irecv with handles recycled after completion.
#include "parallel/transport.hpp"

#include <climits>

#include "core/error.hpp"
#include "parallel/topology.hpp"

namespace strata {

MpiTransport::~MpiTransport() {
  for (auto& r : reqs_)
    if (r != MPI_REQUEST_NULL) MPI_Cancel(&r);
}

Transport::Handle MpiTransport::add(MPI_Request r) {
  reqs_.push_back(r);
  return Handle(reqs_.size() - 1);
}

Transport::Handle MpiTransport::isend(const float* buf, size_t n, int peer, int tag) {
  STRATA_CHECK(n <= size_t(INT_MAX), "transfer of ", n, " floats exceeds MPI's int count");
  MPI_Request r;
  STRATA_MPI(MPI_Isend(buf, int(n), MPI_FLOAT, peer, tag, comm_, &r));
  return add(r);
}

Transport::Handle MpiTransport::irecv(float* buf, size_t n, int peer, int tag) {
  STRATA_CHECK(n <= size_t(INT_MAX), "transfer of ", n, " floats exceeds MPI's int count");
  MPI_Request r;
  STRATA_MPI(MPI_Irecv(buf, int(n), MPI_FLOAT, peer, tag, comm_, &r));
  return add(r);
}

void MpiTransport::wait(Handle h) {
  STRATA_MPI(MPI_Wait(&reqs_[h], MPI_STATUS_IGNORE));
}

bool MpiTransport::test(Handle h) {
  int flag = 0;
  STRATA_MPI(MPI_Test(&reqs_[h], &flag, MPI_STATUS_IGNORE));
  return flag != 0;
}

void MpiTransport::progress() {
  int flag = 0;
  for (auto& r : reqs_)
    if (r != MPI_REQUEST_NULL) {
      STRATA_MPI(MPI_Test(&r, &flag, MPI_STATUS_IGNORE));
      break;  // one test drives the progress engine for all
    }
}

void MpiTransport::finish() {
  if (!reqs_.empty()) STRATA_MPI(MPI_Waitall(int(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE));
  reqs_.clear();
}

}  // namespace strata
