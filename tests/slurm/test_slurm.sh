#!/usr/bin/env bash
# test_slurm.sh: the SLURM launch scripts on a real single-node SLURM (tests/slurm/cluster.sh) on loopback.
# Usage: tests/slurm/test_slurm.sh BUILD_DIR   (root; exit 77 = skipped when not root or SLURM is missing)
#  1. launch/slurm/train.sbatch (2 tasks, srun --mpi=pmix) is sent USR1 mid-run (`scancel --signal=USR1
#     --batch`, as SLURM's --signal=B:USR1@… does): it must save, requeue itself, resume from its checkpoint and
#     finish, with every training step logged exactly once and final weights and moments equal to an
#     uninterrupted run's; run.json/runs.jsonl must record both starts.
#  2. launch/slurm/submit_sweep.sh: a job array of 3 tasks over norm placements (mpirun inside SLURM), each
#     finishing in its own checkpoint directory with its stats file and the placement it was given.
#  3. launch/study.sh --slurm on a tiny study (--base, --cells): one array per cell list and a report job after
#     them, which marks every cell finished and writes the report with its tables and the Xiong figure.
# Every daemon started is stopped on exit, pass or fail.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: test_slurm.sh BUILD_DIR}" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the local SLURM cluster needs root (SlurmUser=root)"; exit 77; }
for b in munged slurmctld slurmd sbatch h5diff; do
  command -v "$b" >/dev/null || { echo "SKIP: $b not installed (launch/install.sh installs it)"; exit 77; }
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
export STRATA_BIN=$build/strata STRATA_HOME=$src

work=$(mktemp -d /tmp/strata-slurm-test.XXXXXX)
cleanup() {
  local rc=$?
  "$src/tests/slurm/cluster.sh" down "$work/cluster" || true
  if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "kept $work for inspection" >&2; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# wait_state JOB STATE SECONDS: until `scontrol show job` shows the state (for an array: every task).
job_states() { squeue -h -j "$1" -o %T 2>/dev/null; scontrol -o show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
wait_done() {
  local job=$1 limit=$2 t=0
  while [ $t -lt $((limit * 2)) ]; do
    local s
    s=$(scontrol -o show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 | sort -u | tr '\n' ' ')
    case "$s" in
      "COMPLETED ") return 0 ;;
      *FAILED*|*CANCELLED*|*TIMEOUT*|*NODE_FAIL*)
        scontrol show job "$job" >&2; tail -20 "$work/cluster/log/slurmctld.log" >&2; fail "job $job ended as $s" ;;
    esac
    sleep 0.5
    t=$((t + 1))
  done
  fail "job $job not complete after ${limit}s (states: $(job_states "$job" | tr '\n' ' '))"
}

# Data: a few books of the King James Bible, byte-tokenised.
bible "Genesis 1:1-Exodus 40:38" > "$work/kjv.txt"
"$STRATA_BIN" prepare --text "$work/kjv.txt" --out "$work/data" >/dev/null
cfg=(--config "$src/configs/tiny.toml" --set "data.train=$work/data/train.bin" --set "data.val=$work/data/val.bin"
     --set parallel.pipeline=2 --set train.steps=400 --set log.interval=1 --set checkpoint.interval=100
     --set train.eval_interval=100)

eval "$("$src/tests/slurm/cluster.sh" up "$work/cluster")"
echo "cluster up: $(sinfo -h -o '%P %a %D %t %N')"

# 1. The uninterrupted run, straight through mpirun (same ranks and threads).
mpirun -np 2 --bind-to none "$STRATA_BIN" train "${cfg[@]}" --set "checkpoint.dir=$work/ref" > "$work/ref.log" 2>&1 ||
  { tail -20 "$work/ref.log"; fail "the uninterrupted run failed"; }

cd "$src"
job=$(sbatch --parsable -n 2 --ntasks-per-node=2 -o "$work/job-%j.out" launch/slurm/train.sbatch "${cfg[@]}" \
        --set "checkpoint.dir=$work/job")
echo "submitted train.sbatch as job $job"
for _ in $(seq 1200); do
  n=$(grep -c '"loss"' "$work/job/metrics.jsonl" 2>/dev/null || true)
  [ "${n:-0}" -ge 30 ] && break
  sleep 0.05
done
[ "${n:-0}" -ge 30 ] || fail "job $job never reached step 30: $(tail -5 "$work/job-$job.out" 2>/dev/null)"
scancel --signal=USR1 --batch "$job"
echo "sent USR1 to job $job at step ≥ $n"
wait_done "$job" 240
log="$work/job-$job.out"
restarts=$(scontrol -o show job "$job" | grep -o 'Restarts=[0-9]*' | cut -d= -f2)
[ "$restarts" -ge 1 ] || fail "job $job was not requeued (Restarts=$restarts)"
grep -q "requeueing" "$log" || fail "no requeue line in $log"
resumed=$(grep -o 'resumed from [^ ]* at step [0-9]*' "$log" | head -1)
[ -n "$resumed" ] || fail "the restarted job did not resume from a checkpoint"
resume_step=${resumed##* }
[ "$resume_step" -gt 0 ] && [ "$resume_step" -lt 400 ] || fail "resumed at step $resume_step, not mid-run"
# Every step logged exactly once in the job's output (both starts) and in metrics.jsonl.
steps=$(grep -o '^\[rank 0\] step  *[0-9]*/400' "$log" | grep -o '[0-9]*/' | tr -d / )
[ "$(echo "$steps" | wc -l)" -eq 400 ] || fail "$(echo "$steps" | wc -l) step lines in $log, want 400"
[ "$(echo "$steps" | sort -n | uniq | wc -l)" -eq 400 ] || fail "a step is logged twice in $log"
[ "$(echo "$steps" | sort -n | head -1)" -eq 1 ] && [ "$(echo "$steps" | sort -n | tail -1)" -eq 400 ] ||
  fail "step lines do not run 1…400"
m=$(grep -o '"step":[0-9]*,"loss"' "$work/job/metrics.jsonl" | sort -u | wc -l)
[ "$m" -eq 400 ] && [ "$(grep -c '"loss"' "$work/job/metrics.jsonl")" -eq 400 ] || fail "metrics.jsonl: $m distinct steps"
# The losses of every step and the final weights and moments equal the uninterrupted run's.
diff <(grep -o '"step":[0-9]*,"loss":[^,]*' "$work/ref/metrics.jsonl") \
     <(grep -o '"step":[0-9]*,"loss":[^,]*' "$work/job/metrics.jsonl") > /dev/null || fail "losses differ from the uninterrupted run"
h5diff "$work/ref/step-00000400.h5" "$work/job/step-00000400.h5" /model /model || fail "final weights differ"
h5diff "$work/ref/step-00000400.h5" "$work/job/step-00000400.h5" /optimizer /optimizer || fail "final moments differ"
[ "$(wc -l < "$work/job/runs.jsonl")" -eq 2 ] || fail "runs.jsonl should record 2 starts"
grep -q "\"slurm_job\": \"$job\"" "$work/job/run.json" && grep -q '"slurm_restart_count": "1"' "$work/job/run.json" &&
  grep -q '"git_commit": "[0-9a-f]\{40\}' "$work/job/run.json" || fail "run.json lacks the job, restart or commit: $(cat "$work/job/run.json")"
echo "PASS: job $job requeued after USR1 (Restarts=$restarts), $resumed, 400 steps logged once, final weights and moments equal"

# 2. A job array over norm placements, one checkpoint directory and stats file per task (mpirun in SLURM).
array=$(STRATA_SLURM_LAUNCHER=mpirun launch/slurm/submit_sweep.sh configs/sweeps/norm-placement.txt \
          -n 2 --ntasks-per-node=2 -o "$work/array-%A_%a.out" -- --config "$src/configs/tiny.toml" \
          --set "data.train=$work/data/train.bin" --set "data.val=$work/data/val.bin" --set parallel.pipeline=2 \
          --set train.steps=40 --set stats.interval=5 --set "checkpoint.dir=$work/sweep")
echo "submitted the sweep as array job $array"
wait_done "$array" 300
for norm in post res_post pre; do
  d="$work/sweep/model.norm=$norm"
  [ -f "$d/step-00000040.h5" ] || fail "array task for $norm: no final checkpoint in $d ($(ls "$d" 2>&1))"
  [ -f "$d/stats.h5" ] || fail "array task for $norm: no stats.h5 in $d"
  h5dump -a /model/norm "$d/step-00000040.h5" | grep -q "\"$norm\"" || fail "$d: checkpoint is not $norm"
  rows=$(h5dump -H -d /step "$d/stats.h5" | grep -o 'DATASPACE  SIMPLE { ( [0-9]*' | grep -o '[0-9]*$')
  [ "$rows" -eq 8 ] || fail "$d/stats.h5: $rows rows, want 8"
done
echo "PASS: array job $array ran 3 tasks (post, res_post, pre), each with its checkpoint and 8 stats rows"

# 3. The norm-placement study as SLURM job arrays (launch/study.sh --slurm) on a tiny base and grid.
mkdir -p "$work/studycells"
cat > "$work/studycells/base.toml" <<EOF
[model]
layers = 2
d_model = 32
heads = 2
d_ffn = 64
seq_len = 16
[train]
steps = 20
batch_size = 4
micro_batch_size = 4
lr = 3e-3
warmup_steps = 2
eval_interval = 10
eval_batches = 2
[data]
train = "$work/data/train.bin"
val = "$work/data/val.bin"
[checkpoint]
interval = 10
[stats]
interval = 1
EOF
printf '%s\n' "L2-post model.layers=2 model.norm=post init.scheme=xavier train.steps=1" \
  "L4-post model.layers=4 model.norm=post init.scheme=xavier train.steps=1" \
  "L2-pre model.layers=2 model.norm=pre init.scheme=xavier train.steps=1" \
  "L4-pre model.layers=4 model.norm=pre init.scheme=xavier train.steps=1" > "$work/studycells/xiong.txt"
printf '%s\n' "L2-post model.layers=2 model.norm=post" "L2-pre model.layers=2 model.norm=pre" > "$work/studycells/grid.txt"
out=$(launch/study.sh --slurm -- --base "$work/studycells/base.toml" --cells "$work/studycells" --threads 1 \
        --runs "$work/studyruns" --out "$work/studyreport")
echo "$out"
rid=$(echo "$out" | grep -o 'report job [0-9]*' | grep -o '[0-9]*$')
[ -n "$rid" ] || fail "study.sh --slurm did not submit a report job"
wait_done "$rid" 300
for c in xiong/L2-post xiong/L4-post xiong/L2-pre xiong/L4-pre grid/L2-post grid/L2-pre; do
  grep -q '"exit_code": 0' "$work/studyruns/$c/study.json" 2>/dev/null ||
    fail "study cell $c not marked finished: $(cat "$work/studyruns/$c/study.json" 2>&1; tail -3 "$work/studyruns/$c/train.log" 2>&1)"
done
[ "$("$STRATA_BIN" config --config "$work/studyruns/grid/L2-pre/config.toml" --get train.threads)" = 1 ] ||
  fail "study cells did not get --threads 1"
[ -f "$work/studyreport/README.md" ] && [ -f "$work/studyreport/xiong.png" ] && [ -f "$work/studyreport/loss_L2.png" ] ||
  fail "no report from job $rid: $(ls "$work/studyreport" 2>&1; tail -5 "$work/studyruns"/report-*.out 2>&1)"
grep -q "L2-post" "$work/studyreport/README.md" || fail "the report has no L2-post row"
ls "$src"/slurm-*.out 2>/dev/null && fail "study.sh --slurm left job output files in the source tree"
ls "$work/studyruns"/xiong-*_0.out > /dev/null || fail "no array job output in $work/studyruns"
echo "PASS: study.sh --slurm ran 6 cells as 2 job arrays and report job $rid wrote $work/studyreport"
