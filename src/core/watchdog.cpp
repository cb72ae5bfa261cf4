// watchdog.cpp: see watchdog.hpp.
#include "core/watchdog.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "core/error.hpp"
#include "core/log.hpp"

namespace strata::watchdog {

namespace {
using clock_type = std::chrono::steady_clock;
std::atomic<int64_t> g_beat{0};  // steady-clock nanoseconds of the last progress
std::atomic<int64_t> g_step{0};
std::atomic<int> g_peer{-1};
std::atomic<const char*> g_what{nullptr};
std::thread g_thread;
std::mutex g_mu;
std::condition_variable g_cv;
bool g_stop = false;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count();
}
}  // namespace

void beat() { g_beat.store(now_ns(), std::memory_order_relaxed); }
void set_step(int64_t step) { g_step.store(step, std::memory_order_relaxed); }

Waiting::Waiting(int peer, const char* what) : prev_peer_(g_peer.load()), prev_what_(g_what.load()) {
  beat();
  if (peer >= 0) g_peer.store(peer);  // an outer scope's words stay; a peer named inside it is kept
  if (!prev_what_) g_what.store(what);
}

Waiting::~Waiting() {
  g_peer.store(prev_peer_);
  g_what.store(prev_what_);
  beat();
}

void start(double timeout_s, int rank) {
  if (timeout_s <= 0 || g_thread.joinable()) return;
  beat();
  g_stop = false;
  const int64_t limit = int64_t(timeout_s * 1e9);
  g_thread = std::thread([limit, timeout_s, rank] {
    std::unique_lock<std::mutex> lk(g_mu);
    int64_t last_check = now_ns();
    while (!g_cv.wait_for(lk, std::chrono::seconds(1), [] { return g_stop; })) {
      const int64_t t = now_ns(), gap = t - last_check;
      last_check = t;
      if (gap > 3000000000LL) {  // this process itself did not run (SIGSTOP, or the machine suspended it)
        beat();
        log_set_rank(rank);
        log_info(str("watchdog: this rank was stopped for ", gap / 1000000000, " s (SIGSTOP or suspended)"));
        continue;
      }
      const int64_t idle = t - g_beat.load(std::memory_order_relaxed);
      if (idle < limit) continue;
      const int peer = g_peer.load();
      const char* what = g_what.load();
      const std::string on = peer >= 0 ? str("waiting for rank ", peer, what ? str(" (", what, ")") : std::string(),
                                             ": rank ", peer, " is silent (frozen, stopped or lost)")
                             : what ? str("waiting in ", what, ": one of its ranks is silent")
                                    : std::string("computing or writing: this rank is stalled");
      log_set_rank(rank);
      log_error(str("watchdog: no progress for ", int64_t(idle / 1000000000), " s at step ", g_step.load(), ", ", on,
                    " (key parallel.watchdog_s = ", timeout_s, "); ending the job"));
      std::fflush(nullptr);
      std::_Exit(3);
    }
  });
}

void stop() {
  if (!g_thread.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    g_stop = true;
  }
  g_cv.notify_all();
  g_thread.join();
}

}  // namespace strata::watchdog
