#!/usr/bin/env bash
# tests/gpu/check.sh [BUILD_DIR]: the GPU checks, one command for a machine with a CUDA device (issue 6).
# Builds Strata with the CUDA backend, shows the device, checks the sm_80/sm_90 objects and runs every GPU op
# test against its CPU twin, the NCCL transport where there are two GPUs, and bench_gpu_ops (GEMM TFLOP/s in
# fp32 and bf16 against the bf16 peak, fused against unfused attention, for one block of d = 1024, T = 1024).
# Its summary (device, date, results) goes to $OUT/gpu-check.txt when OUT is set, for docs/gpu.md. Not here
# yet (printed as such): training on the GPU (20 steps GPU vs CPU from one checkpoint, bf16 within 2% of
# fp32) and tokens/s and MFU of whole models, which need the GPU trainer, the next step of issue 6.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build-gpu}
LOG=${OUT:-/tmp}/gpu-check.txt
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }
say "gpu check: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/device: /' | tee -a "$LOG"
t0=$(date +%s)
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release > "$BUILD.cmake.log" 2>&1 ||
  { say "configure failed: $(tail -5 "$BUILD.cmake.log")"; exit 1; }
grep -q "Strata: CUDA backend" "$BUILD.cmake.log" || { say "no CUDA toolkit found by CMake"; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" --target strata strata_cuda test_gpu_ops test_nccl_transport bench_gpu_ops \
  > "$BUILD.build.log" 2>&1 ||
  { say "build failed: $(grep -m3 error "$BUILD.build.log")"; exit 1; }
say "build: $(( $(date +%s) - t0 )) s"
rc=0
for t in test_cuda_build test_gpu_ops test_nccl_transport; do
  out=$(ctest --test-dir "$BUILD" -R "^$t\$" --output-on-failure 2>&1)
  r=$?
  say "$t: $(echo "$out" | grep -E 'Passed|Failed|Skipped|\*\*\*' | head -3 | tr -s ' ' | paste -sd ' ')"
  [ $r -eq 0 ] || { rc=1; echo "$out" | tail -40 | tee -a "$LOG"; }
  echo "$out" | grep -E "test_(gpu_ops|nccl_transport): (on|skipped)" | tee -a "$LOG"
done
"$BUILD/tests/bench_gpu_ops" 2>&1 | tee -a "$LOG" || rc=1
say "not yet: GPU training, GPU vs CPU losses, bf16 vs fp32, tokens/s and MFU (the GPU trainer is the next step of issue 6)"
exit $rc
