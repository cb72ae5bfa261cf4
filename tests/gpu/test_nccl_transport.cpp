// test_nccl_transport.cpp: the NCCL transport on two GPUs, one rank each, running the transfers of every
// schedule (gpipe, 1f1b, interleaved, zb-h1; several micro-batch counts) in each stage's action order: every
// message must arrive whole, with the contents its sender wrote (order-matching by edge is exact), and no
// ordering may hang. Started without MPI it checks for two CUDA devices (exit 77 = skipped, with the reason)
// and starts itself under mpirun -np 2. Built against the CUDA emulator as test_nccl_transport_emu (two emulated
// GPUs, the emulated NCCL), and run there again with STRATA_EMU_NCCL_SERIAL=1, where no two NCCL operations of a
// rank progress at once: the transport's one global order must still complete every schedule.
#include <mpi.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/cuda/ops.hpp"
#include "backend/cuda/runtime.hpp"
#include "parallel/nccl_transport.hpp"
#include "parallel/schedule.hpp"

using namespace strata;

namespace {

float value(int mb, int vs, bool grad, size_t i) { return float(mb * 1000 + vs * 10 + (grad ? 5 : 0)) + 1e-3f * float(i % 97); }

int run(int rank) {
  // Buffers from the CUDA backend (stream-ordered pool memory, as the trainer's slots) on its stream.
  auto be = make_cuda_backend(rank, Precision::fp32);
  cudaStream_t compute = static_cast<cudaStream_t>(be->stream());
  const size_t n = 4096 + 3;
  int failures = 0, checked = 0;
  for (auto kind : {ScheduleKind::gpipe, ScheduleKind::one_f_one_b, ScheduleKind::interleaved, ScheduleKind::zb_h1})
    for (int M : {2, 4, 8}) {
      const ScheduleSpec spec{kind, 2, M, kind == ScheduleKind::interleaved ? 2 : 1};
      const auto actions = schedule_build(spec, rank);
      NcclTransport tr(MPI_COMM_WORLD, spec, compute, 120);
      tr.begin_step(true, n);
      struct Recv {
        Array<float> buf;
        int mb, vs;
        bool grad;
        Transport::Handle h;
      };
      std::vector<Array<float>> sent;
      std::vector<Recv> recvs;
      for (const Action& a : actions) {
        const int vs = a.chunk * spec.P + rank;
        const bool grad = a.op == Op::send_grad || a.op == Op::recv_grad;
        const int tag = (a.mb * spec.P * spec.v + vs) * 2 + (grad ? 1 : 0);
        if (a.op == Op::send_act || a.op == Op::send_grad) {
          const int to_vs = grad ? vs - 1 : vs + 1;
          std::vector<float> h(n);
          for (size_t i = 0; i < n; i++) h[i] = value(a.mb, to_vs, grad, i);
          Array<float> b(*be, n);
          be->upload(b.data(), h.data(), n * sizeof(float));
          tr.isend(b.data(), n, a.peer, tag);
          sent.push_back(std::move(b));
        } else if (a.op == Op::recv_act || a.op == Op::recv_grad) {
          Recv r{Array<float>(*be, n), a.mb, vs, grad, -1};
          cudaMemsetAsync(r.buf.data(), 0xff, n * sizeof(float), compute);  // poison, ordered before the receive
          r.h = tr.irecv(r.buf.data(), n, a.peer, tag);
          recvs.push_back(std::move(r));
        }
        tr.progress();
      }
      for (Recv& r : recvs) tr.wait(r.h);
      tr.finish();
      cudaStreamSynchronize(compute);
      for (Recv& r : recvs) {
        std::vector<float> h(n);
        be->download(h.data(), r.buf.data(), n * sizeof(float));
        for (size_t i = 0; i < n; i++)
          if (h[i] != value(r.mb, r.vs, r.grad, i)) {
            std::printf("rank %d: %s M=%d: message mb %d vs %d %s element %zu is %g, want %g\n", rank,
                        schedule_kind_name(kind), M, r.mb, r.vs, r.grad ? "grad" : "act", i, h[i],
                        value(r.mb, r.vs, r.grad, i));
            failures++;
            break;
          }
        checked++;
      }
    }
  std::printf("rank %d: %d messages checked, %d wrong\n", rank, checked, failures);
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMIX_RANK")) {
    const int n = cuda::device_count();
    if (n < 2) {
      std::printf("test_nccl_transport: skipped: %d CUDA device(s), the test needs 2 (%s)\n", n,
                  n ? "one GPU per rank" : cuda::no_device_reason().c_str());
      return 77;
    }
    const std::string cmd = std::string(STRATA_MPIEXEC) + " -np 2 --bind-to none " + argv[0];
    const int s = std::system(cmd.c_str());
    return WIFEXITED(s) ? WEXITSTATUS(s) : 1;
  }
  MPI_Init(&argc, &argv);
  int rank = 0, rc = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  try {
    rc = run(rank);
  } catch (const std::exception& e) {
    std::printf("rank %d: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int any = 0;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}
