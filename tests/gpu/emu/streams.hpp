// streams.hpp: the emulator's queued stream work (emu.cpp), for the parts of a GPU's work that wait on another
// process: NCCL's transfers and collectives (nccl_emu.cpp) and the waits on events recorded after them.
//
// Kernels, copies, memsets and GEMMs still run on the calling host thread when they are called, but first wait
// until their stream's queued work is done (settle), so stream order holds. Queued work runs on one worker thread
// per stream, in order; cudaEventRecord behind queued work completes when the worker reaches it, and
// cudaStreamWaitEvent on an event not yet complete queues a wait. So cudaStreamQuery and cudaEventQuery answer
// cudaErrorNotReady while a transfer is outstanding, as they do on a GPU, and a stream whose transfer never
// completes keeps its later work (and the events behind it) waiting. Kernels, copies and memsets on the legacy
// default stream (0) wait for every blocking stream (not those created cudaStreamNonBlocking), as CUDA's do;
// cudaEventRecord and cudaStreamQuery on stream 0 look at its own queue only. cudaFreeAsync, device-to-device
// cudaMemcpyAsync and cudaStreamDestroy behind queued work are queued too, not waited for. What cannot be shown: the order between a kernel and a
// transfer that follows it (the kernel has run when its launch returns), so a missing event between them passes.
#pragma once
#include <cuda_runtime_api.h>

#include <functional>

namespace emu {

// Runs task on stream s's worker thread after everything queued on s before it. The task must not call the
// CUDA runtime; it may block (a transfer waiting for its peer).
void enqueue(cudaStream_t s, std::function<void()> task);
// Blocks until the work queued on s is done (s = 0: on the legacy default stream and every blocking stream).
// A wait past STRATA_EMU_HANG_S seconds (default 300) is reported as a hang and aborts the process.
void settle(cudaStream_t s);

}  // namespace emu
