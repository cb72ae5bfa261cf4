#!/usr/bin/env bash
# run_test.sh: tools/study_report.py on a tiny instance of the norm-placement study.
# Usage: tests/study/run_test.sh BUILD_DIR
# Trains with the real binary, one thread, a few seconds in all, the layout launch/study.sh writes:
#   grid/L2-post, L2-pre, L4-post, L4-pre   30 steps, stats every step, validation at steps 15 and 30
#   grid/L4-post-lr1e4                      lr 1e4 without clipping: a non-finite loss stops it with exit 1
#   grid/L2-post-lr1                        lr 1: the loss blows up above its step-1 value but stays finite
#   grid/L4-mix                             an empty directory without study.json: a cell that has not run
#   xiong/L{2,4,8}-{post,pre}               init.scheme = "xavier", 1 step
# and each finished cell's study.json ({"cell", "exit_code", "seconds"}); then tests/study/test_study_report.py
# runs the report on it and checks every number, the README tables, the PNGs and the Xiong fit.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: run_test.sh BUILD_DIR}" && pwd)
python=${STRATA_PYTHON:-/usr/bin/python3}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
work=$(mktemp -d /tmp/strata-study-test.XXXXXX)
trap 'rc=$?; [ $rc -eq 0 ] && rm -rf "$work" || echo "kept $work" >&2' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A fixed text (random words, seeded), so every run of the test trains the same bits: the divergence rule
# compares losses of different batches, and the test must not depend on which batches it drew.
"$python" -c '
import random, sys
r = random.Random(1)
words = ["".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 8))) for _ in range(300)]
sys.stdout.write(" ".join(r.choice(words) for _ in range(40000)))' > "$work/text.txt"
"$build/strata" prepare --text "$work/text.txt" --out "$work/data" >/dev/null
cat > "$work/study.toml" <<EOF
# The tiny model of tests/study/run_test.sh; each cell overrides model.layers, model.norm and checkpoint.dir.
[model]
d_model = 32
heads = 2
d_ffn = 64
seq_len = 16
vocab = 256

[init]
scheme = ""

[train]
steps = 30
batch_size = 4
micro_batch_size = 4
lr = 3e-3
min_lr = 3e-4
warmup_steps = 2
threads = 1
eval_interval = 15
eval_batches = 2
on_nonfinite = "abort"

[data]
train = "$work/data/train.bin"
val = "$work/data/val.bin"

[checkpoint]
dir = "$work/unused"
resume = "none"

[log]
interval = 1
peak_gflops = 100

[stats]
interval = 1
EOF

# run_cell GROUP CELL WANT_EXIT [--set key=value]...: one run into runs/GROUP/CELL, then its study.json.
run_cell() {
  local group=$1 cell=$2 want=$3 dir=$work/runs/$1/$2 rc=0 t0
  shift 3
  local layers=${cell#L} rest=${cell#*-}
  t0=$(date +%s.%N)
  timeout 60 "$build/strata" train --config "$work/study.toml" --set "model.layers=${layers%%-*}" \
    --set "model.norm=${rest%%-*}" --set "checkpoint.dir=$dir" "$@" > "$work/$group-$cell.log" 2>&1 || rc=$?
  [ "$rc" -eq "$want" ] || { tail -5 "$work/$group-$cell.log" >&2; fail "$group/$cell: exit $rc, want $want"; }
  printf '{"cell": "%s", "exit_code": %d, "seconds": %s}\n' "$cell" "$rc" \
    "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')" > "$dir/study.json"
}

for cell in L2-post L2-pre L4-post L4-pre; do run_cell grid $cell 0; done
run_cell grid L4-post-lr1e4 1 --set train.lr=1e4 --set train.grad_clip=0
grep -q "non-finite" "$work/grid-L4-post-lr1e4.log" || fail "grid/L4-post-lr1e4 did not stop on a non-finite value"
run_cell grid L2-post-lr1 0 --set train.lr=1
mkdir -p "$work/runs/grid/L4-mix"
for cell in L2-post L2-pre L4-post L4-pre L8-post L8-pre; do
  run_cell xiong $cell 0 --set init.scheme=xavier --set train.steps=1 --set train.eval_interval=0
done
echo "trained the cells of $work/runs"

"$python" "$src/tests/study/test_study_report.py" "$work/runs" "$work/docs"
