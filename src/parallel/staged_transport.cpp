// staged_transport.cpp: see staged_transport.hpp.
#include "parallel/staged_transport.hpp"

namespace strata {

std::vector<float> StagedTransport::take(size_t n) {
  std::vector<float> v;
  if (!spare_.empty()) v = std::move(spare_.back()), spare_.pop_back();
  v.resize(n);  // free when the buffer held n before
  return v;
}

Transport::Handle StagedTransport::isend(const float* buf, size_t n, int peer, int tag) {
  Stage s;
  s.host = take(n);
  be_.download(s.host.data(), buf, n * sizeof(float));
  const Handle h = host_.isend(s.host.data(), n, peer, tag);
  stages_[h] = std::move(s);  // the vector's storage moves with it: the pending send's buffer stays valid
  return h;
}

Transport::Handle StagedTransport::irecv(float* buf, size_t n, int peer, int tag) {
  Stage s;
  s.host = take(n);
  s.device = buf;
  const Handle h = host_.irecv(s.host.data(), n, peer, tag);
  stages_[h] = std::move(s);
  return h;
}

void StagedTransport::complete(Handle h) {
  auto it = stages_.find(h);
  if (it == stages_.end()) return;
  if (it->second.device) be_.upload(it->second.device, it->second.host.data(), it->second.host.size() * sizeof(float));
  spare_.push_back(std::move(it->second.host));
  stages_.erase(it);
}

void StagedTransport::wait(Handle h) {
  host_.wait(h);
  complete(h);
}

bool StagedTransport::test(Handle h) {
  if (!host_.test(h)) return false;
  complete(h);
  return true;
}

void StagedTransport::finish() {
  host_.finish();
  while (!stages_.empty()) complete(stages_.begin()->first);
}

}  // namespace strata
