#!/usr/bin/env bash
# tests/gpu/check.sh [--phase P] [BUILD_DIR]: the GPU checks of issue 6, one command for a machine with a CUDA device
# (budget: 10 minutes on one GPU). It
#   1. builds Strata with the CUDA backend and checks the sm_80/sm_90 objects;
#   2. runs every GPU test: each CUDA op against its CPU twin (test_gpu_ops), the whole model on the GPU
#      against the CPU for every norm placement (test_gpu_model), the NCCL transport (two GPUs);
#   3. bench_gpu_ops: GEMM TFLOP/s in fp32 and bf16 against the bf16 peak, fused attention (fp32, and bf16
#      tensor cores: WMMA and the register-resident mma.sync kernels) against unfused;
#   4. trains a 12-layer model (bench-12L) 5 steps on the CPU, then 20 more from that checkpoint on the CPU, on
#      the GPU in fp32 and in bf16 (WMMA, and mma.sync attention), as two pipeline stages and as two data-parallel replicas sharing the GPU
#      over MPI (two GPUs: also over NCCL, ncclAllReduce for the replicas), and compares the per-step losses:
#      GPU fp32 vs CPU within 1e-4 relative, bf16 vs fp32 within 2%, the MPI runs vs CPU within 1e-4, NCCL
#      vs MPI the same (1e-7);
#   5. prints tokens/s and MFU (against the GPU's dense bf16 peak) of bench-12L and of d = 1024, L = 24,
#      T = 1024 in fp32 and bf16 with fused attention (bf16: on tensor cores), and bf16 with unfused (cuBLAS,
#      TF32) attention
#      (steady window: steps 11-20); d = 1024 bf16 once more without the bf16 operand cache, once with the mma.sync
#      attention (train.attention_kernel = "mma"), and 6 steps with log.gpu_profile (device time, calls, TFLOP/s and
#      GB/s per op kind).
# Its summary goes to $OUT/gpu-check.txt when OUT is set (for docs/gpu.md). Exit 0 only if everything passed.
# STRATA_CHECK_SET="--set k=v ..." adds overrides to every training run.
#
# Usage: tests/gpu/check.sh [--phase all|build|tests|train|speed] [BUILD_DIR]. The phases can run as separate
# commands on one machine (the build stays in BUILD_DIR, default build-gpu): "build" (with 1-3) truncates the
# summary, the others append to it.
set -uo pipefail
cd "$(dirname "$0")/../.."
usage() { echo "usage: tests/gpu/check.sh [--phase all|build|tests|train|speed] [BUILD_DIR]" >&2; exit 2; }
PHASE=all
BUILD=build-gpu
while [ $# -gt 0 ]; do
  case $1 in
    --phase) [ $# -ge 2 ] || usage; PHASE=$2; shift 2 ;;
    --phase=*) PHASE=${1#--phase=}; shift ;;
    -*) usage ;;
    *) BUILD=$1; shift ;;
  esac
done
case $PHASE in all | build | tests | train | speed) ;; *) usage ;; esac
LOG=${OUT:-/tmp}/gpu-check.txt
mkdir -p "$(dirname "$LOG")"
WORK=${STRATA_GPU_WORK:-/tmp/strata-gpu-check}
PY=$(command -v /usr/bin/python3 || command -v python3)
want() { [ "$PHASE" = all ] || [ "$PHASE" = "$1" ]; }
say() { echo "$*" | tee -a "$LOG"; }
rc=0
t0=$(date +%s)
if want build; then
: > "$LOG"
say "gpu check: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/device: /' | tee -a "$LOG"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release > "$BUILD.cmake.log" 2>&1 ||
  { say "configure failed: $(tail -5 "$BUILD.cmake.log")"; exit 1; }
grep -q "Strata: CUDA backend" "$BUILD.cmake.log" || { say "no CUDA toolkit found by CMake"; exit 1; }
targets="strata strata_cuda test_gpu_ops test_gpu_model bench_gpu_ops"
grep -q "Strata: NCCL /" "$BUILD.cmake.log" && targets="$targets test_nccl_transport"
cmake --build "$BUILD" -j "$(nproc)" --target $targets > "$BUILD.build.log" 2>&1 ||
  { say "build failed: $(grep -m3 error "$BUILD.build.log")"; exit 1; }
say "build: $(( $(date +%s) - t0 )) s"
fi
[ -x "$BUILD/strata" ] || { say "no build in $BUILD: run the build phase first"; exit 1; }
# GPUs this process may use: CUDA_VISIBLE_DEVICES where it is set (nvidia-smi ignores it), else nvidia-smi's list.
if [ -n "${CUDA_VISIBLE_DEVICES+x}" ]; then
  NGPU=$(echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)
else
  NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi

# ---- 2. GPU tests ----
if want tests || want build; then
for t in test_cuda_build test_gpu_ops test_gpu_model test_nccl_transport; do
  out=$(ctest --test-dir "$BUILD" -R "^$t\$" --output-on-failure 2>&1)
  r=$?
  say "$t: $(echo "$out" | grep -E 'Passed|Failed|Skipped|\*\*\*|No tests' | head -3 | tr -s ' ' | paste -sd ' ')"
  [ $r -eq 0 ] || { rc=1; echo "$out" | tail -40 | tee -a "$LOG"; }
  echo "$out" | grep -E "test_(gpu_ops|gpu_model|nccl_transport): (on|skipped)" | tee -a "$LOG"
done

# ---- 3. op benchmark ----
timeout 300 "$BUILD/tests/bench_gpu_ops" 2>&1 | tee -a "$LOG" || rc=1
fi

# ---- 4. training: GPU against CPU from one checkpoint ----
BIN=$(cd "$BUILD" && pwd)/strata
mkdir -p "$WORK"
DATA=data/kjv
if { want train || want speed; } && [ ! -f $DATA/train.bin ]; then  # no corpus in this tree: the sources as bytes
  DATA=$WORK/data
  "$BIN" prepare --text README.md docs/*.md src/*/*.cpp src/*/*.hpp src/backend/*/*.cpp src/backend/cuda/*.cu \
    --out "$DATA" > "$WORK/prepare.log" 2>&1 || { say "prepare failed: $(tail -2 "$WORK/prepare.log")"; exit 1; }
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
  OMPI_MCA_btl_vader_single_copy_mechanism=none
COMMON="--config configs/bench-12L.toml --set data.train=$DATA/train.bin --set data.val=$DATA/val.bin
  --set train.steps=25 --set log.interval=1 --set train.eval_batches=0"
# STRATA_CHECK_SET: extra "--set key=value" arguments for every training run (for example
# "--set train.bf16_activations=false" to measure the speed phase with the hidden activations stored in fp32).
EXTRA=${STRATA_CHECK_SET:-}
train() {  # DIR LOGNAME ARGS...: one run, its output in $WORK/LOGNAME.log
  local dir=$1 name=$2
  shift 2
  timeout 300 "$@" $EXTRA --set checkpoint.dir="$dir" > "$WORK/$name.log" 2>&1 ||
    { say "$name: run failed ($?): $(grep -m1 -i error "$WORK/$name.log" || tail -1 "$WORK/$name.log")"; rc=1; return 1; }
}
compare() { "$PY" tests/gpu/compare_losses.py "$@" 6 | tee -a "$LOG"; [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1; }
if want train && rm -rf "$WORK"/start "$WORK"/cpu "$WORK"/gpu* "$WORK"/rc* "$WORK"/mpi2 "$WORK"/nccl2 "$WORK"/dp2* &&
  train "$WORK/start" start "$BIN" train $COMMON --set train.exit_interval=5; then
  for r in cpu gpu32 gpu16 gpu16mma rcfull mpi2 nccl2 dp2mpi dp2nccl; do cp -r "$WORK/start" "$WORK/$r"; done
  R="--set checkpoint.resume=auto"
  train "$WORK/cpu" cpu "$BIN" train $COMMON $R
  train "$WORK/gpu32" gpu32 "$BIN" train $COMMON $R --set train.device=cuda
  train "$WORK/gpu16" gpu16 "$BIN" train $COMMON $R --set train.device=cuda --set train.precision=bf16
  train "$WORK/mpi2" mpi2 mpirun -np 2 --bind-to none "$BIN" train $COMMON $R --set train.device=cuda \
    --set parallel.pipeline=2 --set parallel.transport=mpi
  compare "GPU fp32 vs CPU (20 steps)" "$WORK/cpu/metrics.jsonl" "$WORK/gpu32/metrics.jsonl" 1e-4
  compare "GPU bf16 vs GPU fp32 (20 steps)" "$WORK/gpu32/metrics.jsonl" "$WORK/gpu16/metrics.jsonl" 2e-2
  # The register-resident mma.sync attention (train.attention_kernel = "mma"; WMMA is the default until it is timed).
  train "$WORK/gpu16mma" gpu16mma "$BIN" train $COMMON $R --set train.device=cuda \
    --set train.precision=bf16 --set train.attention_kernel=mma
  compare "GPU bf16 with mma attention vs GPU fp32 (20 steps)" "$WORK/gpu32/metrics.jsonl" \
    "$WORK/gpu16mma/metrics.jsonl" 2e-2
  # Full activation recomputation (issue 19) reruns each block's forward on the GPU: the same bits as none.
  train "$WORK/rcfull" rcfull "$BIN" train $COMMON $R --set train.device=cuda --set train.precision=bf16 \
    --set train.recompute=full
  compare "GPU bf16 with train.recompute = full vs none (20 steps)" "$WORK/gpu16/metrics.jsonl" \
    "$WORK/rcfull/metrics.jsonl" 0
  compare "2 stages, MPI transport (GPUs shared if fewer than 2), vs CPU" "$WORK/cpu/metrics.jsonl" "$WORK/mpi2/metrics.jsonl" 1e-4
  train "$WORK/dp2mpi" dp2mpi mpirun -np 2 --bind-to none "$BIN" train $COMMON $R --set train.device=cuda \
    --set parallel.data=2 --set train.micro_batch_size=4 --set parallel.transport=mpi
  compare "2 data-parallel replicas, MPI sums (GPUs shared if fewer than 2), vs CPU" "$WORK/cpu/metrics.jsonl" \
    "$WORK/dp2mpi/metrics.jsonl" 1e-4
  if [ "$NGPU" -ge 2 ]; then
    train "$WORK/nccl2" nccl2 mpirun -np 2 --bind-to none "$BIN" train $COMMON $R --set train.device=cuda \
      --set parallel.pipeline=2 --set parallel.transport=nccl
    compare "2 stages on two GPUs, NCCL vs MPI transport" "$WORK/mpi2/metrics.jsonl" "$WORK/nccl2/metrics.jsonl" 1e-7
    train "$WORK/dp2nccl" dp2nccl mpirun -np 2 --bind-to none "$BIN" train $COMMON $R --set train.device=cuda \
      --set parallel.data=2 --set train.micro_batch_size=4 --set parallel.transport=nccl
    compare "2 replicas on two GPUs, ncclAllReduce vs MPI sums" "$WORK/dp2mpi/metrics.jsonl" \
      "$WORK/dp2nccl/metrics.jsonl" 1e-7
  else
    say "NCCL vs MPI transport: skipped ($NGPU GPU; needs 2)"
  fi
  grep -h "^.*device:" -A2 "$WORK/gpu32.log" | head -3 | tee -a "$LOG"
fi

# ---- 5. throughput and MFU ----
BIG="--set model.layers=24 --set model.d_model=1024 --set model.heads=16 --set model.d_ffn=4096
  --set model.seq_len=1024 --set train.batch_size=8 --set train.micro_batch_size=8"
for model in bench-12L d1024-L24-T1024; do
  want speed || break
  for prec in fp32 bf16 bf16-unfused; do
    extra="--set train.attention=fused"
    [ $prec = bf16-unfused ] && extra="--set train.attention=unfused"
    [ $model = bench-12L ] || extra="$extra $BIG"
    name=speed-$model-$prec
    if train "$WORK/$name" "$name" "$BIN" train --config configs/bench-12L.toml --set data.train=$DATA/train.bin \
      --set data.val=$DATA/val.bin --set train.steps=20 --set log.interval=10 --set train.eval_batches=0 \
      --set train.device=cuda --set train.precision=${prec%-unfused} --set checkpoint.at_end=false $extra; then
      line=$(grep "step     20/20" "$WORK/$name.log" | tail -1)
      say "$model $prec: $(echo "$line" | sed 's/.*| *\([0-9.]* ms\/step\)/\1/')"
    fi
  done
done
if want speed; then
  # d1024 bf16 again: without the bf16 operand cache (what it saves), and 6 steps with every op timed on the
  # device (log.gpu_profile: where a step's time goes, per op kind, with TFLOP/s and GB/s).
  SPEED="--config configs/bench-12L.toml --set data.train=$DATA/train.bin --set data.val=$DATA/val.bin
    --set log.interval=10 --set train.eval_batches=0 --set train.device=cuda --set train.precision=bf16
    --set checkpoint.at_end=false --set train.attention=fused $BIG"
  name=speed-d1024-L24-T1024-bf16-nocache
  if STRATA_CUDA_OPERAND_CACHE=0 train "$WORK/$name" "$name" "$BIN" train $SPEED --set train.steps=20; then
    line=$(grep "step     20/20" "$WORK/$name.log" | tail -1)
    say "d1024-L24-T1024 bf16, operand cache off: $(echo "$line" | sed 's/.*| *\([0-9.]* ms\/step\)/\1/')"
  fi
  name=speed-d1024-L24-T1024-bf16-mma
  if train "$WORK/$name" "$name" "$BIN" train $SPEED --set train.steps=20 --set train.attention_kernel=mma; then
    line=$(grep "step     20/20" "$WORK/$name.log" | tail -1)
    say "d1024-L24-T1024 bf16, mma attention: $(echo "$line" | sed 's/.*| *\([0-9.]* ms\/step\)/\1/')"
  fi
  name=profile-d1024-L24-T1024-bf16
  if train "$WORK/$name" "$name" "$BIN" train $SPEED --set train.steps=6 --set log.gpu_profile=true; then
    grep -A25 "gpu profile" "$WORK/$name.log" | grep -E "gpu profile|calls" | tee -a "$LOG"
  fi
fi
cp "$WORK"/*.log "${OUT:-$WORK}/" 2>/dev/null || true
say "gpu check: $(( $(date +%s) - t0 )) s in all, $([ $rc -eq 0 ] && echo PASS || echo FAIL)"
exit $rc
