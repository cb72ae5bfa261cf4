// nccl_emu.cpp: the subset of NCCL that src/parallel/nccl_transport.cpp calls, for the emulated GPUs of
// tests/gpu/emu: processes on one machine (MPI ranks, or forked children) exchange device buffers through files
// in a directory per communicator, so the NCCL transport and the data-parallel ncclAllReduce run, and fail, as
// the trainer's code drives them, on a machine without a GPU. Linked instead of libnccl into the *_emu binaries.
//
// The model:
//   - ncclGetUniqueId makes the communicator's directory (under $STRATA_EMU_NCCL_DIR, else /dev/shm or /tmp,
//     in strata-nccl-emu.<uid>) and the id holds its path, so the id must reach the other ranks as it does with
//     NCCL (over MPI here). ncclCommInitRank claims rank r's file in it and blocks until all nranks ranks have
//     joined, as NCCL's init does; a rank claimed twice, a different nranks or two ranks on one GPU (host and
//     current device) is ncclInvalidUsage, ranks that never come are ncclSystemError after
//     STRATA_EMU_NCCL_TIMEOUT_S seconds (default 120) where NCCL would hang.
//   - ncclSend, ncclRecv and ncclAllReduce are queued on their stream (streams.hpp) and match by order per
//     (communicator, sender, receiver), as NCCL's do. A communicator's operations run one after another in the
//     order posted, whatever their streams; with STRATA_EMU_NCCL_SERIAL=1 no two operations of the process run
//     at once (NCCL does not promise they progress together): whichever may start first runs to completion.
//     A send completes only when its receiver has taken the data (rendezvous: NCCL needs the receiver for any
//     message larger than its buffers), so an ordering that relies on sends finishing alone hangs here as it may
//     on a GPU.
//   - A receive whose size or type differs from what was sent (the send completes), a send buffer changed or
//     freed before its send completed (NCCL reads it while the transfer runs), a receive buffer freed, or a
//     peer process that is gone sets the communicator's asynchronous error (ncclInvalidUsage, ncclRemoteError)
//     for ncclCommGetAsyncError, and the operation stays incomplete, as a failed NCCL kernel leaves its
//     stream, until ncclCommAbort.
//   - ncclAllReduce gathers every rank's buffer at rank 0, sums in rank order (sum only) and hands the result
//     back, so every rank gets the same bits; NCCL's ring or tree order differs and is not modelled.
// Buffers must be device memory of the emulator (as NCCL needs device or registered memory); the messages are
// checked whole, never partly delivered.
#include <fcntl.h>
#include <nccl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cuda_emu.hpp"
#include "streams.hpp"

struct ncclComm {
  std::string dir;
  int nranks = 0, rank = 0;
  std::vector<pid_t> pids;
  std::vector<unsigned long long> sent, received;  // per peer: messages posted so far (host thread only)
  unsigned long long collectives = 0;
  std::atomic<int> async{ncclSuccess};
  std::atomic<bool> aborted{false};
  std::atomic<int> pending{0};  // operations queued and not finished
  unsigned long long tickets = 0;  // operations posted (host thread only): each runs after the one before
  std::atomic<unsigned long long> served{0};  // operations finished, in post order
};

namespace {

// STRATA_EMU_COUNTS=1: at exit, how many operations this process posted (so a test can tell NCCL was used).
struct Counts {
  std::atomic<long long> sends{0}, receives{0}, allreduces{0};
  ~Counts() {
    const char* e = std::getenv("STRATA_EMU_COUNTS");
    if (e && std::strcmp(e, "1") == 0)
      std::fprintf(stderr, "nccl emulator: %lld sends, %lld receives, %lld allreduces\n", sends.load(), receives.load(),
                   allreduces.load());
  }
} counts;

double env_seconds(const char* name, double fallback) {
  const char* e = std::getenv(name);
  return e ? std::atof(e) : fallback;
}

std::string base_dir() {
  const char* e = std::getenv("STRATA_EMU_NCCL_DIR");
  std::string b = e && *e ? e : access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return b + "/strata-nccl-emu." + std::to_string(getuid());
}

size_t type_size(ncclDataType_t t) {
  switch (t) {
    case ncclInt8: case ncclUint8: case ncclFloat8e4m3: case ncclFloat8e5m2: return 1;
    case ncclFloat16: case ncclBfloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    case ncclInt64: case ncclUint64: case ncclFloat64: return 8;
    default: return 0;
  }
}

bool exists(const std::string& p) { return access(p.c_str(), F_OK) == 0; }

// Records the communicator's asynchronous error (the first one stays).
void set_error(ncclComm* c, ncclResult_t r) {
  int expected = ncclSuccess;
  c->async.compare_exchange_strong(expected, int(r));
}

// Polls ready() until it holds (true) or the communicator is aborted (false). A peer process that is gone
// sets ncclRemoteError; the wait then goes on until the abort, as a GPU's NCCL kernel would stay.
template <class Ready>
bool await(ncclComm* c, int peer, Ready ready) {
  auto last_check = std::chrono::steady_clock::now();
  bool reported = false;
  while (!c->aborted.load()) {
    if (!reported && ready()) return true;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
    const auto now = std::chrono::steady_clock::now();
    if (!reported && peer >= 0 && now - last_check > std::chrono::milliseconds(50)) {
      last_check = now;
      if (kill(c->pids[size_t(peer)], 0) != 0 && errno == ESRCH && !ready()) {  // it may have finished, then gone
        std::fprintf(stderr, "nccl emulator: rank %d of %s: peer rank %d (pid %d) is gone\n", c->rank,
                     c->dir.c_str(), peer, int(c->pids[size_t(peer)]));
        set_error(c, ncclRemoteError);
        reported = true;
      }
    }
  }
  return false;
}

// Holds an operation that failed until the abort (its stream stays busy, as a failed NCCL kernel leaves it).
void hold(ncclComm* c) {
  while (!c->aborted.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

struct Header {
  unsigned long long magic = 0x53545241544e4343ull;  // "STRATNCC"
  unsigned long long bytes = 0;
  int type = 0, from = 0;
};

// Writes header and data to name.tmp, then renames it to name: a reader sees the file whole or not at all.
bool put(ncclComm* c, const std::string& name, const void* data, size_t bytes, ncclDataType_t type) {
  const std::string tmp = name + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  Header h;
  h.bytes = bytes, h.type = int(type), h.from = c->rank;
  const bool ok = f && std::fwrite(&h, sizeof h, 1, f) == 1 && (bytes == 0 || std::fwrite(data, bytes, 1, f) == 1);
  if (f) std::fclose(f);
  if (!ok || std::rename(tmp.c_str(), name.c_str()) != 0) {
    std::fprintf(stderr, "nccl emulator: rank %d: cannot write %s: %s\n", c->rank, name.c_str(), std::strerror(errno));
    set_error(c, ncclSystemError);
    return false;
  }
  return true;
}

// Reads file name into data (bytes of type type, as the receiver posted) and removes it; a size or type other
// than the sender's is ncclInvalidUsage.
bool take(ncclComm* c, const std::string& name, void* data, size_t bytes, ncclDataType_t type, const char* what) {
  FILE* f = std::fopen(name.c_str(), "rb");
  Header h;
  bool ok = f && std::fread(&h, sizeof h, 1, f) == 1 && h.magic == Header{}.magic;
  if (ok && (h.bytes != bytes || h.type != int(type))) {
    std::fprintf(stderr,
                 "nccl emulator: rank %d of %s: %s posted for %zu bytes of type %d, rank %d sent %llu bytes of type %d\n",
                 c->rank, c->dir.c_str(), what, bytes, int(type), h.from, h.bytes, h.type);
    std::fclose(f);
    std::remove(name.c_str());
    set_error(c, ncclInvalidUsage);
    return false;
  }
  ok = ok && (bytes == 0 || std::fread(data, bytes, 1, f) == 1);
  if (f) std::fclose(f);
  if (!ok) {
    std::fprintf(stderr, "nccl emulator: rank %d: cannot read %s\n", c->rank, name.c_str());
    set_error(c, ncclSystemError);
    return false;
  }
  std::remove(name.c_str());
  return true;
}

std::string msg_name(const ncclComm* c, int from, int to, unsigned long long seq) {
  return c->dir + "/m." + std::to_string(from) + "." + std::to_string(to) + "." + std::to_string(seq);
}

bool on_device(const void* p, size_t bytes) {
  return bytes == 0 || (p && emu::is_device_pointer(p) && emu::is_device_pointer(static_cast<const char*>(p) + bytes - 1));
}

unsigned long long fnv1a(const void* p, size_t bytes) {
  unsigned long long h = 1469598103934665603ull;
  for (size_t i = 0; i < bytes; i++) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  return h;
}

ncclResult_t usage(const char* call, const char* why) {
  std::fprintf(stderr, "nccl emulator: %s: %s\n", call, why);
  return ncclInvalidArgument;
}

// Queues op on stream s, counted as pending on c until it returns.
// One operation at a time (STRATA_EMU_NCCL_SERIAL=1): an operation whose stream and communicator let it start
// runs only when no other operation of the process is running, whichever got there first, and holds the others
// off until it completes: NCCL's "no guarantee that two operations progress concurrently", read strictly.
std::mutex serial_mu;
bool serial() {
  const char* e = std::getenv("STRATA_EMU_NCCL_SERIAL");
  return e && std::strcmp(e, "1") == 0;
}

// Queues op on stream s, counted as pending on c until it returns. A communicator's operations run in the order
// posted, whatever their streams (as NCCL runs them), and with STRATA_EMU_NCCL_SERIAL=1 the process's too.
template <class Op>
void post(ncclComm* c, cudaStream_t s, Op op) {
  c->pending++;
  const unsigned long long mine = c->tickets++;
  const bool one_at_a_time = serial();
  emu::enqueue(s, [c, op, mine, one_at_a_time]() mutable {
    while (!c->aborted.load() && c->served.load() != mine) std::this_thread::sleep_for(std::chrono::microseconds(50));
    {
      std::unique_lock<std::mutex> l(serial_mu, std::defer_lock);
      if (one_at_a_time) l.lock();
      if (!c->aborted.load()) op();
    }
    c->served++;
    c->pending--;
  });
}

void release(ncclComm* c) {
  const double limit = env_seconds("STRATA_EMU_HANG_S", 300);
  const auto t0 = std::chrono::steady_clock::now();
  while (c->pending.load() > 0) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > limit) {
      std::fprintf(stderr, "nccl emulator: rank %d of %s: ncclCommDestroy waited %.0f s (STRATA_EMU_HANG_S) for "
                   "%d operation(s) whose peers never posted their half: a hang on a GPU\n", c->rank,
                   c->dir.c_str(), limit, c->pending.load());
      std::abort();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  std::remove((c->dir + "/rank." + std::to_string(c->rank)).c_str());
  rmdir(c->dir.c_str());  // the last rank out removes it (ENOTEMPTY before)
  delete c;
}

}  // namespace

extern "C" {

const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (emulator)";
    case ncclSystemError: return "unhandled system error (emulator)";
    case ncclInternalError: return "internal error (emulator)";
    case ncclInvalidArgument: return "invalid argument (emulator)";
    case ncclInvalidUsage: return "invalid usage (emulator)";
    case ncclRemoteError: return "remote process exited or there was a network error (emulator)";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code (emulator)";
  }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static std::atomic<unsigned> counter{0};
  const std::string base = base_dir();
  for (size_t at = base.find('/', 1); at != std::string::npos; at = base.find('/', at + 1))
    mkdir(base.substr(0, at).c_str(), 0755);  // the parents, as mkdir -p (existing ones stay)
  mkdir(base.c_str(), 0700);
  std::string dir;
  for (int attempt = 0;; attempt++) {  // a directory left by an earlier process of the same pid: the next name
    const auto t = std::chrono::steady_clock::now().time_since_epoch().count();
    dir = base + "/c." + std::to_string(getpid()) + "." + std::to_string(counter++) + "." + std::to_string(t % 1000000007);
    if (dir.size() >= sizeof id->internal) return usage("ncclGetUniqueId", "directory path too long for the id");
    if (mkdir(dir.c_str(), 0700) == 0) break;
    if (errno != EEXIST || attempt == 100) {
      std::fprintf(stderr, "nccl emulator: ncclGetUniqueId: cannot make %s: %s\n", dir.c_str(), std::strerror(errno));
      return ncclSystemError;
    }
  }
  std::memset(id->internal, 0, sizeof id->internal);
  std::memcpy(id->internal, dir.data(), dir.size());
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* out, int nranks, ncclUniqueId id, int rank) {
  if (nranks < 1 || rank < 0 || rank >= nranks) return usage("ncclCommInitRank", "rank outside [0, nranks)");
  const std::string dir(id.internal, strnlen(id.internal, sizeof id.internal));
  struct stat st;
  if (dir.empty() || stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return usage("ncclCommInitRank", "the id is not one ncclGetUniqueId made on this machine");
  auto* c = new ncclComm;
  c->dir = dir, c->nranks = nranks, c->rank = rank;
  c->pids.assign(size_t(nranks), 0);
  c->sent.assign(size_t(nranks), 0), c->received.assign(size_t(nranks), 0);
  // Claim rank's file: written whole under a temporary name, then linked (fails if the rank is taken).
  const std::string mine = dir + "/rank." + std::to_string(rank), tmp = mine + ".tmp." + std::to_string(getpid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  int device = 0;
  cudaGetDevice(&device);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  if (!f || std::fprintf(f, "%d %d %d %s\n", int(getpid()), nranks, device, host) <= 0 || std::fclose(f) != 0) {
    std::fprintf(stderr, "nccl emulator: ncclCommInitRank: cannot write %s\n", tmp.c_str());
    delete c;
    return ncclSystemError;
  }
  const int linked = link(tmp.c_str(), mine.c_str());
  std::remove(tmp.c_str());
  if (linked != 0) {
    std::fprintf(stderr, "nccl emulator: ncclCommInitRank: rank %d of %s is claimed twice\n", rank, dir.c_str());
    delete c;
    return ncclInvalidUsage;
  }
  const double timeout = env_seconds("STRATA_EMU_NCCL_TIMEOUT_S", 120);
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < nranks; r++) {
    const std::string p = dir + "/rank." + std::to_string(r);
    int pid = 0, n = 0, dev = 0;
    char their_host[256] = {};
    for (;;) {
      FILE* g = std::fopen(p.c_str(), "r");
      const bool got = g && std::fscanf(g, "%d %d %d %255s", &pid, &n, &dev, their_host) == 4;
      if (g) std::fclose(g);
      if (got) break;
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout) {
        std::fprintf(stderr, "nccl emulator: ncclCommInitRank: rank %d of %s: rank %d of %d has not joined in %.0f s\n",
                     rank, dir.c_str(), r, nranks, timeout);
        std::remove(mine.c_str());
        rmdir(dir.c_str());  // the last one out
        delete c;
        return ncclSystemError;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (n != nranks) {
      std::fprintf(stderr, "nccl emulator: ncclCommInitRank: rank %d of %s says nranks = %d, rank %d says %d\n", rank,
                   dir.c_str(), nranks, r, n);
      delete c;  // its rank file stays: the other rank must find the mismatch too
      return ncclInvalidUsage;
    }
    if (r != rank && dev == device && std::strcmp(their_host, host) == 0) {  // as NCCL's "Duplicate GPU detected"
      std::fprintf(stderr, "nccl emulator: ncclCommInitRank: rank %d of %s: rank %d is on the same GPU (device %d "
                   "of %s)\n", rank, dir.c_str(), r, dev, host);
      delete c;  // its rank file stays: the other rank must find the duplicate too
      return ncclInvalidUsage;
    }
    c->pids[size_t(r)] = pid_t(pid);
  }
  *out = c;
  return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t c, ncclResult_t* r) {
  if (!c || !r) return usage("ncclCommGetAsyncError", "null communicator or result");
  *r = ncclResult_t(c->async.load());
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t c) {  // after the operations posted on it (as ncclCommFinalize)
  if (!c) return usage("ncclCommDestroy", "null communicator");
  release(c);
  return ncclSuccess;
}

ncclResult_t ncclCommAbort(ncclComm_t c) {  // operations still waiting give up
  if (!c) return usage("ncclCommAbort", "null communicator");
  c->aborted = true;
  release(c);
  return ncclSuccess;
}

ncclResult_t ncclSend(const void* buf, size_t count, ncclDataType_t type, int peer, ncclComm_t c, cudaStream_t s) {
  if (!c || peer < 0 || peer >= c->nranks || peer == c->rank) return usage("ncclSend", "bad communicator or peer");
  const size_t bytes = count * type_size(type);
  if (!type_size(type)) return usage("ncclSend", "unknown data type");
  if (!on_device(buf, bytes)) return usage("ncclSend", "buffer outside device memory");
  const std::string name = msg_name(c, c->rank, peer, c->sent[size_t(peer)]++);
  counts.sends++;
  post(c, s, [c, buf, bytes, type, peer, name] {
    // NCCL reads the buffer while the transfer runs: it must stay allocated and unchanged until the send completes.
    const unsigned long long sum = fnv1a(buf, bytes);
    if (!put(c, name, buf, bytes, type)) return hold(c);
    if (!await(c, peer, [&] { return !exists(name); })) return;  // taken by the receiver
    if (!on_device(buf, bytes) || fnv1a(buf, bytes) != sum) {
      std::fprintf(stderr, "nccl emulator: rank %d of %s: the buffer of ncclSend to rank %d was %s before the send "
                   "completed (a GPU would send what it read then)\n", c->rank, c->dir.c_str(), peer,
                   on_device(buf, bytes) ? "overwritten" : "freed");
      set_error(c, ncclInvalidUsage);
      hold(c);
    }
  });
  return ncclSuccess;
}

ncclResult_t ncclRecv(void* buf, size_t count, ncclDataType_t type, int peer, ncclComm_t c, cudaStream_t s) {
  if (!c || peer < 0 || peer >= c->nranks || peer == c->rank) return usage("ncclRecv", "bad communicator or peer");
  const size_t bytes = count * type_size(type);
  if (!type_size(type)) return usage("ncclRecv", "unknown data type");
  if (!on_device(buf, bytes)) return usage("ncclRecv", "buffer outside device memory");
  const std::string name = msg_name(c, peer, c->rank, c->received[size_t(peer)]++);
  counts.receives++;
  post(c, s, [c, buf, bytes, type, peer, name] {
    if (!await(c, peer, [&] { return exists(name); })) return;
    if (!on_device(buf, bytes)) {
      std::fprintf(stderr, "nccl emulator: rank %d of %s: the buffer of ncclRecv from rank %d was freed before the "
                   "receive completed\n", c->rank, c->dir.c_str(), peer);
      set_error(c, ncclInvalidUsage);
      return hold(c);
    }
    if (!take(c, name, buf, bytes, type, "ncclRecv")) hold(c);
  });
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* sendbuf, void* recvbuf, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t c, cudaStream_t s) {
  if (!c) return usage("ncclAllReduce", "null communicator");
  if (op != ncclSum) return usage("ncclAllReduce", "the emulator implements ncclSum only");
  if (type != ncclFloat32 && type != ncclFloat64) return usage("ncclAllReduce", "the emulator sums float32 or float64");
  const size_t bytes = count * type_size(type);
  if (!on_device(sendbuf, bytes) || !on_device(recvbuf, bytes)) return usage("ncclAllReduce", "buffer outside device memory");
  const std::string tag = c->dir + "/a." + std::to_string(c->collectives++) + ".";
  counts.allreduces++;
  post(c, s, [c, sendbuf, recvbuf, count, bytes, type, tag] {
    if (c->rank != 0) {  // hand the buffer to rank 0, take the sum back
      const std::string up = tag + std::to_string(c->rank), down = tag + "sum." + std::to_string(c->rank);
      if (!put(c, up, sendbuf, bytes, type)) return hold(c);
      if (!await(c, 0, [&] { return exists(down); })) return;
      if (!take(c, down, recvbuf, bytes, type, "ncclAllReduce")) hold(c);
      return;
    }
    std::vector<char> acc(bytes), part(bytes);
    if (bytes) std::memcpy(acc.data(), sendbuf, bytes);
    for (int r = 1; r < c->nranks; r++) {
      const std::string up = tag + std::to_string(r);
      if (!await(c, r, [&] { return exists(up); })) return;
      if (!take(c, up, part.data(), bytes, type, "ncclAllReduce")) return hold(c);
      for (size_t i = 0; i < count; i++) {
        if (type == ncclFloat64)
          reinterpret_cast<double*>(acc.data())[i] += reinterpret_cast<const double*>(part.data())[i];
        else
          reinterpret_cast<float*>(acc.data())[i] += reinterpret_cast<const float*>(part.data())[i];
      }
    }
    for (int r = 1; r < c->nranks; r++)
      if (!put(c, tag + "sum." + std::to_string(r), acc.data(), bytes, type)) return hold(c);
    if (bytes) std::memcpy(recvbuf, acc.data(), bytes);
  });
  return ncclSuccess;
}

}  // extern "C"
