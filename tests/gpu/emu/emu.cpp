// emu.cpp: the CPU side of cuda_emu.hpp: the block scheduler (one Boost.Context fiber per GPU thread), the subset of the
// CUDA runtime, cuBLAS and cuBLASLt that src/backend/cuda calls, with the checks a GPU makes (device pointers,
// copy directions, launch limits). Linked instead of libcudart, libcublas and libcublasLt into the *_emu test
// binaries.
#include "cuda_emu.hpp"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <sys/mman.h>

#include <boost/context/fiber.hpp>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "streams.hpp"

namespace emu {

// ---- device memory ----
namespace {
std::mutex mem_mu;
std::map<const char*, size_t>& allocations() {  // start → bytes
  static std::map<const char*, size_t> m;
  return m;
}
}  // namespace

bool is_device_pointer(const void* p) {
  std::lock_guard<std::mutex> lock(mem_mu);
  auto& m = allocations();
  auto it = m.upper_bound(static_cast<const char*>(p));
  if (it == m.begin()) return false;
  --it;
  return static_cast<const char*>(p) < it->first + std::max<size_t>(it->second, 1);
}

[[noreturn]] void host_pointer_passed(const void* p, const char* kernel) {
  std::fprintf(stderr, "cuda emulator: kernel %s was passed %p, which is not device memory (a GPU would fault)\n",
               kernel, p);
  std::abort();
}

[[noreturn]] void fail_wmma_alignment(const void* p) {
  std::fprintf(stderr, "cuda emulator: wmma load/store at %p, not 32-byte aligned (undefined on a GPU)\n", p);
  std::abort();
}

// ---- the scheduler ----
namespace {

enum class State { ready, at_block_barrier, at_warp_barrier, done };

namespace ctx = boost::context;

struct Fiber {
  ctx::fiber self;  // where the scheduler resumes this thread
  ctx::fiber sink;  // where this thread parks: the scheduler
  uint3 tid{};
  int lane = 0, warp = 0;
  State state = State::ready;
  unsigned shuffles = 0;  // this thread's shuffle count: picks the buffer half (see shuffle())
};

constexpr size_t kStack = 256 * 1024;

// Stacks for the fibers, mapped once per host thread and reused by every block and launch.
std::vector<char*>& stack_pool() {
  thread_local std::vector<char*> pool;
  return pool;
}
struct PoolStack {
  char* base;
  ctx::stack_context allocate() {
    ctx::stack_context sc;
    sc.size = kStack;
    sc.sp = base + kStack;  // the stack grows down
    return sc;
  }
  void deallocate(ctx::stack_context&) noexcept {}
};

struct Grid {
  Config cfg;
  const char* kernel = "";
  void (*body)(void*) = nullptr;
  void* arg = nullptr;  // body's argument
  uint3 block{};
  std::vector<Fiber> fibers;
  Fiber* current = nullptr;
  std::vector<unsigned char> smem_bytes;  // 128 bytes of slack: smem() is 128-byte aligned
  unsigned char* smem() { return smem_bytes.data() + (-reinterpret_cast<uintptr_t>(smem_bytes.data()) & 127); }
  std::vector<unsigned long long> shuffle_buf[2];  // [warp · 32 + lane]
};

thread_local Grid* grid_ = nullptr;

Grid& g() {
  if (!grid_) {
    std::fprintf(stderr, "cuda emulator: a device function was called outside a kernel launch\n");
    std::abort();
  }
  return *grid_;
}

void park(State s) {
  Fiber* f = g().current;
  f->state = s;
  f->sink = std::move(f->sink).resume();
}

cudaError_t& last_error() {
  thread_local cudaError_t e = cudaSuccess;
  return e;
}

}  // namespace

uint3& thread_idx() { return g().current->tid; }
uint3& block_idx() { return g().block; }
dim3& block_dim() { return g().cfg.block; }
dim3& grid_dim() { return g().cfg.grid; }
int lane() { return g().current->lane; }
void* dynamic_smem() { return g().smem(); }
void syncthreads() { park(State::at_block_barrier); }
void syncwarp() { park(State::at_warp_barrier); }

// Every live lane of the warp writes its value into this shuffle's half of the buffer, waits for the others,
// then reads its source lane's. Alternating halves: a lane that runs ahead to its next shuffle writes the other
// half, and cannot run two ahead (the next barrier holds it until every lane has read this one).
unsigned long long shuffle(unsigned long long bits, int src_lane, int lane_xor, int delta, int width) {
  Grid& gr = g();
  Fiber* f = gr.current;
  auto& buf = gr.shuffle_buf[f->shuffles++ & 1];
  const int base = f->warp * 32, lane = f->lane;
  buf[base + lane] = bits;
  park(State::at_warp_barrier);
  const int seg = lane / width * width;  // the lane's width-wide segment
  int src = src_lane >= 0 ? seg + src_lane % width : delta ? lane + delta : lane ^ lane_xor;
  if (src < seg || src >= seg + width) src = lane;  // out of the segment: the lane's own value, as on a GPU
  const int block_threads = int(gr.cfg.block.x * gr.cfg.block.y * gr.cfg.block.z);
  if (base + src >= block_threads) src = lane;  // past the end of a partial warp
  return buf[base + src];
}

// STRATA_EMU_COUNTS=1: at exit, how often the host launched kernels and waited for the device (the emulator
// runs each call to completion; the counts are what the code asks of a GPU).
struct Counts {
  long long launches = 0, waits = 0, d2h = 0;
  ~Counts() {
    const char* e = std::getenv("STRATA_EMU_COUNTS");
    if (e && std::strcmp(e, "1") == 0)
      std::fprintf(stderr, "cuda emulator: %lld kernel launches, %lld host waits (stream/device/event synchronise), "
                   "%lld device-to-host copies\n", launches, waits, d2h);
  }
};
Counts& counts() {
  static Counts c;
  return c;
}

// ---- streams (streams.hpp) ----
// The host waits on cv until done() for at most STRATA_EMU_HANG_S seconds (default 300); longer is a hang on a GPU,
// reported with `what` and ended.
template <class Done>
void bounded_wait(std::condition_variable& cv, std::unique_lock<std::mutex>& l, Done done, const char* what) {
  const char* e = std::getenv("STRATA_EMU_HANG_S");
  const double limit = e ? std::atof(e) : 300.0;
  if (!cv.wait_for(l, std::chrono::duration<double>(limit), done)) {
    std::fprintf(stderr, "cuda emulator: the host waited %.0f s (STRATA_EMU_HANG_S) for %s: a hang on a GPU\n", limit, what);
    std::abort();
  }
}
namespace {
struct Stream {
  explicit Stream(bool blocking) : blocking(blocking) {}
  ~Stream() {  // the worker finishes what is queued, then ends
    {
      std::lock_guard<std::mutex> l(mu);
      stop = true;
    }
    cv.notify_all();
    if (worker.joinable()) worker.join();
  }
  const bool blocking;  // not cudaStreamNonBlocking: the legacy default stream waits for it
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> queue;
  bool running = false, stop = false;
  std::thread worker;  // started by the first task

  void push(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> l(mu);
      queue.push_back(std::move(task));
      if (!worker.joinable()) worker = std::thread([this] { loop(); });
    }
    cv.notify_all();
  }
  void loop() {
    std::unique_lock<std::mutex> l(mu);
    for (;;) {
      cv.wait(l, [&] { return !queue.empty() || stop; });
      if (queue.empty()) return;
      std::function<void()> task = std::move(queue.front());
      queue.pop_front();
      running = true;
      l.unlock();
      task();
      l.lock();
      running = false;
      cv.notify_all();
    }
  }
  bool idle() {
    std::lock_guard<std::mutex> l(mu);
    return queue.empty() && !running;
  }
  void settle() {
    std::unique_lock<std::mutex> l(mu);
    bounded_wait(cv, l, [&] { return queue.empty() && !running; },
                 "a stream's queued work (an NCCL transfer whose peer never posts its half?)");
  }
};
std::mutex streams_mu;
std::set<Stream*>& streams() {  // every stream created and not destroyed
  static std::set<Stream*> s;
  return s;
}
Stream& legacy_stream() {
  static Stream* s = new Stream(true);  // never destroyed: its worker may outlive static destruction
  return *s;
}
// cudaStreamLegacy (1) and cudaStreamPerThread (2) are the default stream here too (one host thread).
Stream& stream_of(cudaStream_t s) {
  const auto v = reinterpret_cast<uintptr_t>(s);
  return v <= 2 ? legacy_stream() : *reinterpret_cast<Stream*>(s);
}
bool is_default(cudaStream_t s) { return reinterpret_cast<uintptr_t>(s) <= 2; }
}  // namespace

void enqueue(cudaStream_t s, std::function<void()> task) { stream_of(s).push(std::move(task)); }

namespace {
void settle_registered(bool blocking_only) {  // every stream created (the blocking ones only), outside the lock
  std::vector<Stream*> all;
  {
    std::lock_guard<std::mutex> l(streams_mu);
    for (Stream* x : streams())
      if (x->blocking || !blocking_only) all.push_back(x);
  }
  for (Stream* x : all) x->settle();
}
}  // namespace

void settle(cudaStream_t s) {
  Stream& st = stream_of(s);
  if (is_default(s))
    settle_registered(true);
  else if (st.blocking)
    legacy_stream().settle();
  st.settle();
}

void settle_all() {
  settle_registered(false);
  legacy_stream().settle();
}

void run_grid(const Config& c, void (*body)(void*), void* arg, const char* kernel) {
  counts().launches++;
  settle(c.stream);  // stream order: the kernel runs after the stream's queued work
  const long long threads = (long long)c.block.x * c.block.y * c.block.z;
  if (threads <= 0 || threads > 1024 || c.block.z > 64 || c.grid.y > 65535 || c.grid.z > 65535 || c.grid.x == 0 ||
      c.grid.y == 0 || c.grid.z == 0) {
    last_error() = cudaErrorInvalidConfiguration;
    return;
  }
  if (c.smem > 232448) {  // H100's opt-in maximum (227 KiB)
    last_error() = cudaErrorInvalidValue;
    return;
  }
  if (grid_) {
    std::fprintf(stderr, "cuda emulator: kernel %s launched from device code\n", kernel);
    std::abort();
  }
  Grid gr;
  gr.cfg = c, gr.kernel = kernel, gr.body = body, gr.arg = arg;
  gr.fibers.resize(size_t(threads));
  auto& pool = stack_pool();
  while (pool.size() < size_t(threads)) {
    void* p = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("cuda emulator: no memory for fiber stacks");
    pool.push_back(static_cast<char*>(p));
  }
  gr.smem_bytes.resize(c.smem + 128);
  const int warps = int((threads + 31) / 32);
  for (auto& b : gr.shuffle_buf) b.assign(size_t(warps) * 32, 0);
  grid_ = &gr;
  for (unsigned bz = 0; bz < c.grid.z; bz++)
    for (unsigned by = 0; by < c.grid.y; by++)
      for (unsigned bx = 0; bx < c.grid.x; bx++) {
        gr.block = make_uint3(bx, by, bz);
        std::memset(gr.smem(), 0xff, c.smem);  // NaN until written
        for (long long t = 0; t < threads; t++) {
          Fiber& f = gr.fibers[size_t(t)];
          f = Fiber{};
          f.tid = make_uint3(unsigned(t % c.block.x), unsigned(t / c.block.x % c.block.y),
                             unsigned(t / (c.block.x * c.block.y)));
          f.lane = int(t % 32), f.warp = int(t / 32);
          Fiber* fp = &f;
          f.self = ctx::fiber(std::allocator_arg, PoolStack{pool[size_t(t)]}, [fp](ctx::fiber&& sink) {
            fp->sink = std::move(sink);
            Grid& gr = g();
            gr.body(gr.arg);
            fp->state = State::done;
            return std::move(fp->sink);
          });
        }
        for (;;) {
          bool ran = false;
          for (auto& f : gr.fibers)
            if (f.state == State::ready) {
              gr.current = &f;
              ran = true;
              f.self = std::move(f.self).resume();
            }
          // Release the barriers everyone live has reached: a warp's when all its live lanes wait there, the
          // block's when every live thread does.
          bool live = false, all_block = true;
          for (auto& f : gr.fibers)
            if (f.state != State::done) live = true, all_block &= f.state == State::at_block_barrier;
          if (!live) break;
          if (all_block) {
            for (auto& f : gr.fibers)
              if (f.state != State::done) f.state = State::ready;
            continue;
          }
          bool released = false;
          for (int w = 0; w < warps; w++) {
            bool any = false, all = true;
            for (long long t = w * 32LL; t < std::min<long long>(threads, (w + 1) * 32LL); t++) {
              State s = gr.fibers[size_t(t)].state;
              if (s == State::done) continue;
              any = true, all &= s == State::at_warp_barrier;
            }
            if (any && all) {
              released = true;
              for (long long t = w * 32LL; t < std::min<long long>(threads, (w + 1) * 32LL); t++)
                if (gr.fibers[size_t(t)].state == State::at_warp_barrier) gr.fibers[size_t(t)].state = State::ready;
            }
          }
          if (!released && !ran) {
            std::fprintf(stderr,
                         "cuda emulator: kernel %s deadlocks in block (%u,%u,%u): some threads wait at "
                         "__syncthreads, others at a warp barrier (divergent barrier)\n",
                         kernel, bx, by, bz);
            std::abort();
          }
        }
      }
  grid_ = nullptr;
}

}  // namespace emu

// ---- the CUDA runtime subset ----
using emu::last_error;

namespace {
void* dev_alloc(size_t bytes) {
  void* p = std::aligned_alloc(256, (std::max<size_t>(bytes, 1) + 255) / 256 * 256);
  if (!p) return nullptr;
  std::lock_guard<std::mutex> lock(emu::mem_mu);
  emu::allocations()[static_cast<const char*>(p)] = bytes;
  return p;
}
cudaError_t dev_free(void* p) {
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(emu::mem_mu);
    auto& m = emu::allocations();
    auto it = m.find(static_cast<const char*>(p));
    if (it == m.end()) return cudaErrorInvalidValue;
    m.erase(it);
  }
  std::free(p);
  return cudaSuccess;
}
std::set<const void*>& queued_frees() {  // cudaFreeAsync calls queued behind a stream's work (under mem_mu)
  static std::set<const void*> s;
  return s;
}
// The copy's kind must match where its pointers are (cudaMemcpyDefault accepts any).
cudaError_t copy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  if (n == 0) return cudaSuccess;
  const bool dd = emu::is_device_pointer(dst), sd = emu::is_device_pointer(src);
  const bool ok = kind == cudaMemcpyDefault || (kind == cudaMemcpyHostToDevice && dd && !sd) ||
                  (kind == cudaMemcpyDeviceToHost && !dd && sd) || (kind == cudaMemcpyDeviceToDevice && dd && sd) ||
                  (kind == cudaMemcpyHostToHost && !dd && !sd);
  if (!ok) {
    std::fprintf(stderr, "cuda emulator: cudaMemcpy kind %d from %s to %s memory\n", int(kind),
                 sd ? "device" : "host", dd ? "device" : "host");
    return cudaErrorInvalidValue;
  }
  if (dd && !emu::is_device_pointer(static_cast<char*>(dst) + n - 1)) return cudaErrorInvalidValue;
  if (sd && !emu::is_device_pointer(static_cast<const char*>(src) + n - 1)) return cudaErrorInvalidValue;
  if (sd && !dd) emu::counts().d2h++;
  std::memmove(dst, src, n);
  return cudaSuccess;
}
int current_device = 0;
// STRATA_EMU_DEVICES=N (1 to 8, default 1): the process sees N emulated GPUs, each with its own PCI bus id, as
// a node with N GPUs shows them to each of its ranks. They share one memory and run nothing concurrently; the
// count is for code that picks a device by local rank and for the NCCL emulation (nccl_emu.cpp).
int device_count() {  // read at every call: a test may set it before it forks its ranks
  const char* e = std::getenv("STRATA_EMU_DEVICES");
  if (!e) return 1;
  char* end = nullptr;
  const long v = std::strtol(e, &end, 10);
  if (end == e || *end || v < 1 || v > 8) {
    std::fprintf(stderr, "cuda emulator: STRATA_EMU_DEVICES = '%s' is not a count from 1 to 8\n", e);
    std::exit(2);
  }
  return int(v);
}
bool bad_device(int d) { return d < 0 || d >= device_count(); }
// As the CUDA runtime does, a failing call also becomes the thread's last error (cudaGetLastError).
cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) last_error() = e;
  return e;
}
}  // namespace

extern "C" {

cudaError_t cudaGetDeviceCount(int* n) {
  *n = device_count();
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (bad_device(d)) return record(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "CUDA emulator on the CPU (tests/gpu/emu)");
  p->major = 9, p->minor = 0, p->multiProcessorCount = 1, p->warpSize = 32, p->maxThreadsPerBlock = 1024;
  p->sharedMemPerBlock = 48 * 1024, p->sharedMemPerBlockOptin = 232448, p->totalGlobalMem = size_t(1) << 34;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetPCIBusId(char* id, int len, int d) {
  if (bad_device(d)) return record(cudaErrorInvalidDevice);
  std::snprintf(id, size_t(len), "0000:%02x:00.0", d);
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  if (bad_device(d)) return record(cudaErrorInvalidDevice);
  switch (a) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = 232448; return cudaSuccess;
    case cudaDevAttrMemoryPoolsSupported: *v = 1; return cudaSuccess;
    default: return record(cudaErrorInvalidValue);
  }
}
cudaError_t cudaSetDevice(int d) {
  if (bad_device(d)) return record(cudaErrorInvalidDevice);
  current_device = d;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = current_device;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  emu::counts().waits++;
  emu::settle_all();
  return cudaSuccess;
}
cudaError_t cudaGetLastError(void) {
  cudaError_t e = last_error();
  last_error() = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return last_error(); }
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (emulator)";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulator)";
    case cudaErrorInvalidDevice: return "invalid device ordinal (emulator)";
    case cudaErrorMemoryAllocation: return "out of memory (emulator)";
    default: return "error (emulator)";
  }
}
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute a, int v) {
  if (a == cudaFuncAttributeMaxDynamicSharedMemorySize && v > 232448) return record(cudaErrorInvalidValue);
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t n) {
  *p = dev_alloc(n);
  return record(*p ? cudaSuccess : cudaErrorMemoryAllocation);
}
// cudaFree synchronises the device; the stream-ordered calls wait for their stream's queued work (streams.hpp).
cudaError_t cudaFree(void* p) {
  emu::settle_all();
  return record(dev_free(p));
}
cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { return record(cudaMalloc(p, n)); }
// Behind queued work the free is queued too (a GPU frees in stream order without blocking the host), so code that
// unwinds an error while a transfer hangs is not held here.
cudaError_t cudaFreeAsync(void* p, cudaStream_t s) {
  emu::Stream& st = emu::stream_of(s);
  if (!p) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(emu::mem_mu);
    // Only an allocation's start, and not one already queued for freeing (a double free).
    if (!emu::allocations().count(static_cast<const char*>(p)) || !queued_frees().insert(p).second)
      return record(cudaErrorInvalidValue);
  }
  auto run = [p] {
    {
      std::lock_guard<std::mutex> lock(emu::mem_mu);
      queued_frees().erase(p);
    }
    dev_free(p);
  };
  if (st.idle()) return run(), cudaSuccess;
  st.push(run);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind k) {
  emu::settle(nullptr);
  return record(copy(d, s, n, k));
}
// A device-to-device copy behind queued work is queued too (it touches no host memory); any other copy waits.
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t st) {
  emu::Stream& stream = emu::stream_of(st);
  const bool d2d = n && emu::is_device_pointer(d) && emu::is_device_pointer(s) &&
                   (k == cudaMemcpyDeviceToDevice || k == cudaMemcpyDefault);
  if (!d2d || stream.idle()) {
    emu::settle(st);
    return record(copy(d, s, n, k));
  }
  if (!emu::is_device_pointer(static_cast<char*>(d) + n - 1) || !emu::is_device_pointer(static_cast<const char*>(s) + n - 1))
    return record(cudaErrorInvalidValue);
  stream.push([d, s, n] { std::memmove(d, s, n); });
  return cudaSuccess;
}
namespace {
cudaError_t set_bytes(void* p, int v, size_t n) {
  if (n && !(emu::is_device_pointer(p) && emu::is_device_pointer(static_cast<char*>(p) + n - 1)))
    return record(cudaErrorInvalidValue);
  std::memset(p, v, n);
  return cudaSuccess;
}
}  // namespace
cudaError_t cudaMemset(void* p, int v, size_t n) {
  emu::settle(nullptr);
  return set_bytes(p, v, n);
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t s) {
  emu::settle(s);
  return set_bytes(p, v, n);
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  auto* st = new emu::Stream(!(flags & cudaStreamNonBlocking));
  {
    std::lock_guard<std::mutex> l(emu::streams_mu);
    emu::streams().insert(st);
  }
  *s = reinterpret_cast<cudaStream_t>(st);
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (emu::is_default(s)) return record(cudaErrorInvalidResourceHandle);
  auto* st = reinterpret_cast<emu::Stream*>(s);
  {
    std::lock_guard<std::mutex> l(emu::streams_mu);
    if (!emu::streams().erase(st)) return record(cudaErrorInvalidResourceHandle);
  }
  // As on a GPU the call does not wait: an idle stream goes now, a busy one when its worker has run the queue
  // (left allocated: a stream whose transfer never completes keeps its worker until the process ends).
  if (st->idle()) {
    delete st;
  } else {
    std::lock_guard<std::mutex> l(st->mu);
    st->stop = true;
    st->worker.detach();
    st->cv.notify_all();
  }
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  emu::counts().waits++;
  emu::settle(s);
  return cudaSuccess;
}
// cudaErrorNotReady is also left as the last error, as the CUDA runtime does: callers must clear it.
cudaError_t cudaStreamQuery(cudaStream_t s) {
  return emu::stream_of(s).idle() ? cudaSuccess : record(cudaErrorNotReady);
}

// Events: recorded on a stream with no queued work, an event has happened (everything else ran at its call), and
// its time is the host's steady clock at the record (elapsed times are the emulated work's CPU time); behind
// queued work it completes when the stream's worker reaches it. Each record makes a new completion state, which
// the waits queued before it keep (a re-record does not move an earlier wait).
namespace {
struct EventState {
  std::mutex mu;
  std::condition_variable cv;
  bool done = true;
  std::chrono::steady_clock::time_point at = std::chrono::steady_clock::now();
  void complete() {
    {
      std::lock_guard<std::mutex> l(mu);
      done = true;
      at = std::chrono::steady_clock::now();
    }
    cv.notify_all();
  }
  bool is_done() {
    std::lock_guard<std::mutex> l(mu);
    return done;
  }
  void wait() {  // the host's wait (cudaEventSynchronize)
    std::unique_lock<std::mutex> l(mu);
    emu::bounded_wait(cv, l, [&] { return done; }, "an event behind queued work (cudaEventSynchronize)");
  }
  void wait_queued() {  // a stream's queued wait: its worker waits as long as it takes (the host's settle reports it)
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return done; });
  }
};
struct Event {
  bool recorded = false;
  bool timing = true;
  std::shared_ptr<EventState> st = std::make_shared<EventState>();
};
}  // namespace
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags) {
  auto* ev = new Event;
  ev->timing = !(flags & cudaEventDisableTiming);
  *e = reinterpret_cast<cudaEvent_t>(ev);
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<Event*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e) return record(cudaErrorInvalidResourceHandle);
  auto* ev = reinterpret_cast<Event*>(e);
  ev->recorded = true;
  auto st = std::make_shared<EventState>();
  ev->st = st;
  emu::Stream& stream = emu::stream_of(s);
  if (!stream.idle()) {  // only this host thread queues work: idle stays idle until the push below
    st->done = false;
    stream.push([st] { st->complete(); });
  }
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  if (!e) return record(cudaErrorInvalidResourceHandle);
  return reinterpret_cast<Event*>(e)->st->is_done() ? cudaSuccess : record(cudaErrorNotReady);
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  emu::counts().waits++;
  if (!e) return record(cudaErrorInvalidResourceHandle);
  reinterpret_cast<Event*>(e)->st->wait();
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  if (!e) return record(cudaErrorInvalidResourceHandle);
  std::shared_ptr<EventState> st = reinterpret_cast<Event*>(e)->st;
  if (!st->is_done()) emu::stream_of(s).push([st] { st->wait_queued(); });
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  auto *x = reinterpret_cast<Event*>(a), *y = reinterpret_cast<Event*>(b);
  if (!x || !y || !ms) return record(cudaErrorInvalidResourceHandle);
  if (!x->timing || !y->timing) return record(cudaErrorInvalidResourceHandle);
  if (!x->recorded || !y->recorded) return record(cudaErrorInvalidResourceHandle);
  if (!x->st->is_done() || !y->st->is_done()) return record(cudaErrorNotReady);
  *ms = std::chrono::duration<float, std::milli>(y->st->at - x->st->at).count();
  return cudaSuccess;
}

}  // extern "C"

// ---- cuBLAS: column-major reference GEMMs ----
namespace {
struct Handle {
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  cudaStream_t stream = nullptr;  // cublasSetStream: the GEMMs wait for its queued work
};
Handle& handle(cublasHandle_t h) {
  Handle& x = *reinterpret_cast<Handle*>(h);
  emu::settle(x.stream);
  return x;
}
float tf32(float x) {  // round to nearest even at 10 explicit mantissa bits
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;
  std::memcpy(&x, &u, 4);
  return x;
}
float load(const void* p, cudaDataType t, size_t i, bool round_tf32) {
  if (t == CUDA_R_16BF) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  const float v = static_cast<const float*>(p)[i];
  return round_tf32 ? tf32(v) : v;
}
bool spans_device(const void* p, size_t elems, size_t bytes_per) {
  return p && emu::is_device_pointer(p) && emu::is_device_pointer(static_cast<const char*>(p) + elems * bytes_per - 1);
}
// C[m,n] = alpha·op(A)·op(B) + beta·C (+ bias[i] on row i), all column-major; sums in double, the result
// rounded to float, then to bf16 where C is bf16 (ct).
cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const float* alpha, const void* A,
                    cudaDataType at, int lda, long long sa, const void* B, cudaDataType bt, int ldb, long long sb,
                    const float* beta, void* C, int ldc, long long sc, int batch, bool round_tf32,
                    const void* bias = nullptr, cudaDataType ct = CUDA_R_32F, cudaDataType bias_t = CUDA_R_32F) {
  if (m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  const int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
  const int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;
  if (lda < std::max(1, arows) || ldb < std::max(1, brows) || ldc < std::max(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
  const size_t ab = at == CUDA_R_16BF ? 2 : 4, bb = bt == CUDA_R_16BF ? 2 : 4, cb = ct == CUDA_R_16BF ? 2 : 4;
  for (int z = 0; z < batch; z++) {
    const char* a = static_cast<const char*>(A) + size_t(z) * sa * ab;
    const char* b = static_cast<const char*>(B) + size_t(z) * sb * bb;
    char* c = static_cast<char*>(C) + size_t(z) * sc * cb;
    if ((k > 0 && (!spans_device(a, size_t(lda) * (acols - 1) + arows, ab) ||
                   !spans_device(b, size_t(ldb) * (bcols - 1) + brows, bb))) ||
        !spans_device(c, size_t(ldc) * (n - 1) + m, cb) ||
        (bias && !spans_device(bias, size_t(m), bias_t == CUDA_R_16BF ? 2 : 4))) {
      std::fprintf(stderr, "cuda emulator: cuBLAS GEMM operand outside device memory\n");
      return CUBLAS_STATUS_INVALID_VALUE;
    }
    // op(A) as rows i of k values, op(B) as columns j of k values: both dot products run along memory.
    std::vector<double> ar(size_t(m) * k), bc(size_t(n) * k);
    for (int i = 0; i < m; i++)
      for (int l = 0; l < k; l++)
        ar[size_t(i) * k + l] = load(a, at, ta == CUBLAS_OP_N ? size_t(l) * lda + i : size_t(i) * lda + l, round_tf32);
    for (int j = 0; j < n; j++)
      for (int l = 0; l < k; l++)
        bc[size_t(j) * k + l] = load(b, bt, tb == CUBLAS_OP_N ? size_t(j) * ldb + l : size_t(l) * ldb + j, round_tf32);
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++) {
        const double *x = &ar[size_t(i) * k], *y = &bc[size_t(j) * k];
        double s = 0;
        for (int l = 0; l < k; l++) s += x[l] * y[l];
        const size_t at_c = size_t(j) * ldc + i;
        const double old = *beta != 0.0f ? double(*beta) * load(c, ct, at_c, false) : 0.0;
        const float v = float(*alpha * s + old + (bias ? double(load(bias, bias_t, i, false)) : 0.0));
        if (ct == CUDA_R_16BF)
          reinterpret_cast<__nv_bfloat16*>(c)[at_c] = __float2bfloat16_rn(v);
        else
          reinterpret_cast<float*>(c)[at_c] = v;
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}
// The library's opaque handles and descriptors are the emulator's objects.
template <class Opaque, class T>
cublasStatus_t create(Opaque* out, T* object) {
  *out = reinterpret_cast<Opaque>(object);
  return CUBLAS_STATUS_SUCCESS;
}
template <class T, class Opaque>
cublasStatus_t destroy(Opaque h) {
  delete reinterpret_cast<T*>(h);
  return CUBLAS_STATUS_SUCCESS;
}
}  // namespace

extern "C" {

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) { return create(h, new Handle); }
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) { return destroy<Handle>(h); }
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
  reinterpret_cast<Handle*>(h)->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
  reinterpret_cast<Handle*>(h)->math = m;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_INVALID_VALUE (emulator)";
}
cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc) {
  const bool tf = handle(h).math == CUBLAS_TF32_TENSOR_OP_MATH;
  return gemm(ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, 0, B, CUDA_R_32F, ldb, 0, beta, C, ldc, 0, 1, tf);
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long sa,
                                         const float* B, int ldb, long long sb, const float* beta, float* C, int ldc,
                                         long long sc, int batch) {
  const bool tf = handle(h).math == CUBLAS_TF32_TENSOR_OP_MATH;
  return gemm(ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, sa, B, CUDA_R_32F, ldb, sb, beta, C, ldc, sc, batch, tf);
}
static cublasStatus_t gemm_ex(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void* alpha,
                              const void* A, cudaDataType at, int lda, long long sa, const void* B, cudaDataType bt,
                              int ldb, long long sb, const void* beta, void* C, cudaDataType ct, int ldc, long long sc,
                              int batch, cublasComputeType_t compute) {
  if ((ct != CUDA_R_32F && ct != CUDA_R_16BF) || (at != CUDA_R_32F && at != CUDA_R_16BF) ||
      (bt != CUDA_R_32F && bt != CUDA_R_16BF))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_TF32) return CUBLAS_STATUS_NOT_SUPPORTED;
  return gemm(ta, tb, m, n, k, static_cast<const float*>(alpha), A, at, lda, sa, B, bt, ldb, sb,
              static_cast<const float*>(beta), C, ldc, sc, batch, compute == CUBLAS_COMPUTE_32F_FAST_TF32, nullptr, ct);
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B, cudaDataType bt,
                            int ldb, const void* beta, void* C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
  handle(h);
  return gemm_ex(ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1, compute);
}
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType at, int lda,
                                          long long sa, const void* B, cudaDataType bt, int ldb, long long sb,
                                          const void* beta, void* C, cudaDataType ct, int ldc, long long sc,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
  handle(h);
  return gemm_ex(ta, tb, m, n, k, alpha, A, at, lda, sa, B, bt, ldb, sb, beta, C, ct, ldc, sc, batch, compute);
}

}  // extern "C"

// ---- cuBLASLt: the descriptors src/backend/cuda sets, cublasLtMatmul through the reference GEMM ----
// Supported: bf16 A and B, fp32 or bf16 C = D (in place), fp32 compute and scale, transposes, the DEFAULT and BIAS
// epilogues with a bias of D's type (cublasLt.h: other bias types only for IMMA and fp8 kernels). Anything else is CUBLAS_STATUS_NOT_SUPPORTED or INVALID_VALUE, so an attribute the emulator does not
// model cannot be ignored silently. The heuristic's policy (the emulator's, to make the callers' fallback
// testable): no algorithm where A, B, C or D is declared aligned to less than 16 bytes. Like the real heuristic it
// is not told the bias's alignment; the algorithm it returns needs 16-byte aligned pointers, the bias included,
// and fails the call otherwise (where a GPU kernel would fault on a misaligned address).
namespace {
constexpr uint64_t kLtMagic = 0x5354524154414c54ull;  // "STRATALT"
struct LtDesc {
  cublasComputeType_t compute;
  cudaDataType scale;
  int32_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
  int32_t bias_type = -1;  // CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: −1 = D's type
};
struct LtLayout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};
struct LtPref {
  uint64_t workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D
};
uint32_t align_of(const void* p) {
  uint32_t r = 1;
  while (r < 256 && reinterpret_cast<uintptr_t>(p) % (2 * r) == 0) r *= 2;
  return r;
}
// The GEMM a descriptor and its layouts describe: (m, n, k), or false where they do not fit together.
bool lt_shape(const LtDesc& d, const LtLayout& a, const LtLayout& b, const LtLayout& c, int& m, int& n, int& k) {
  if (a.type != CUDA_R_16BF || b.type != CUDA_R_16BF || (c.type != CUDA_R_32F && c.type != CUDA_R_16BF)) return false;
  if (d.compute != CUBLAS_COMPUTE_32F || d.scale != CUDA_R_32F) return false;
  if (d.epilogue != CUBLASLT_EPILOGUE_DEFAULT && d.epilogue != CUBLASLT_EPILOGUE_BIAS) return false;
  if (d.epilogue == CUBLASLT_EPILOGUE_BIAS && d.bias_type != -1 && d.bias_type != int32_t(c.type))
    return false;  // a bias of D's type only
  m = int(c.rows), n = int(c.cols);
  k = int(d.ta == CUBLAS_OP_N ? a.cols : a.rows);
  const uint64_t am = d.ta == CUBLAS_OP_N ? a.rows : a.cols;
  const uint64_t bk = d.tb == CUBLAS_OP_N ? b.rows : b.cols, bn = d.tb == CUBLAS_OP_N ? b.cols : b.rows;
  return am == uint64_t(m) && bk == uint64_t(k) && bn == uint64_t(n) && a.ld >= int64_t(a.rows) &&
         b.ld >= int64_t(b.rows) && c.ld >= int64_t(c.rows);
}
template <class T>
bool set_value(T& field, const void* buf, size_t size) {
  if (size != sizeof(T)) return false;
  std::memcpy(&field, buf, sizeof(T));
  return true;
}
}  // namespace

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) { return create(h, new char(0)); }
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) { return destroy<char>(h); }
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  return create(d, new LtDesc{compute, scale});
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) { return destroy<LtDesc>(d); }
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
  auto& d = *reinterpret_cast<LtDesc*>(desc);
  bool ok = false;
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA: ok = set_value(d.ta, buf, size); break;
    case CUBLASLT_MATMUL_DESC_TRANSB: ok = set_value(d.tb, buf, size); break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: ok = set_value(d.epilogue, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: ok = set_value(d.bias, buf, size); break;
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: ok = set_value(d.bias_type, buf, size); break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
  return create(l, new LtLayout{type, rows, cols, ld});
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) { return destroy<LtLayout>(l); }
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) { return create(p, new LtPref); }
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) { return destroy<LtPref>(p); }
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t size) {
  auto& p = *reinterpret_cast<LtPref*>(pref);
  bool ok = false;
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES: ok = set_value(p.workspace, buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: ok = set_value(p.align[0], buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: ok = set_value(p.align[1], buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: ok = set_value(p.align[2], buf, size); break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: ok = set_value(p.align[3], buf, size); break;
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                                              cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t pref,
                                              int requested, cublasLtMatmulHeuristicResult_t results[], int* count) {
  const auto& d = *reinterpret_cast<const LtDesc*>(desc);
  const auto& p = *reinterpret_cast<const LtPref*>(pref);
  int m, n, k;
  *count = 0;
  if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
  if (c != dl) return CUBLAS_STATUS_NOT_SUPPORTED;  // the emulator runs C = D in place only
  if (!lt_shape(d, *reinterpret_cast<const LtLayout*>(a), *reinterpret_cast<const LtLayout*>(b),
                *reinterpret_cast<const LtLayout*>(c), m, n, k))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  for (uint32_t al : p.align)
    if (al < 16) return CUBLAS_STATUS_SUCCESS;  // no algorithm (the emulator's policy)
  results[0] = cublasLtMatmulHeuristicResult_t{};
  results[0].algo.data[0] = kLtMagic;
  results[0].algo.data[1] = 16;  // the alignment the algorithm needs
  results[0].workspaceSize = 0;
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *count = 1;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t al, const void* B, cublasLtMatrixLayout_t bl, const void* beta,
                              const void* C, cublasLtMatrixLayout_t cl, void* D, cublasLtMatrixLayout_t dl,
                              const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream) {
  emu::settle(stream);
  const auto& d = *reinterpret_cast<const LtDesc*>(desc);
  const auto& a = *reinterpret_cast<const LtLayout*>(al);
  const auto& b = *reinterpret_cast<const LtLayout*>(bl);
  const auto& c = *reinterpret_cast<const LtLayout*>(cl);
  int m, n, k;
  if (!algo || algo->data[0] != kLtMagic) return CUBLAS_STATUS_INVALID_VALUE;  // only the heuristic's algorithms
  if (C != D || cl != dl) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!lt_shape(d, a, b, c, m, n, k)) return CUBLAS_STATUS_INVALID_VALUE;
  const uint32_t need = uint32_t(algo->data[1]);
  const void* bias = d.epilogue == CUBLASLT_EPILOGUE_BIAS ? d.bias : nullptr;
  if (align_of(A) < need || align_of(B) < need || align_of(D) < need || (bias && align_of(bias) < need)) {
    std::fprintf(stderr, "cuda emulator: cublasLtMatmul operand aligned below what its algorithm needs\n");
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (d.epilogue == CUBLASLT_EPILOGUE_BIAS && !bias) return CUBLAS_STATUS_INVALID_VALUE;
  if (workspace_bytes && !spans_device(workspace, workspace_bytes, 1)) return CUBLAS_STATUS_INVALID_VALUE;
  return gemm(cublasOperation_t(d.ta), cublasOperation_t(d.tb), m, n, k, static_cast<const float*>(alpha), A,
              CUDA_R_16BF, int(a.ld), 0, B, CUDA_R_16BF, int(b.ld), 0, static_cast<const float*>(beta), D, int(c.ld),
              0, 1, false, bias, c.type, c.type);
}

}  // extern "C"
