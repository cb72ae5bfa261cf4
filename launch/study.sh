#!/usr/bin/env bash
# Usage: launch/study.sh [--quick] [--slurm [sbatch options …] --] [--runs DIR] [--out DIR] [--threads T]
#                        [--base FILE] [--cells DIR]
# The norm-placement study: every cell of CELLS/xiong.txt and CELLS/grid.txt (CELLS = configs/study; base
# config BASE = configs/study/base.toml plus the line's overrides), each into its own checkpoint directory
# RUNS/<xiong|grid>/<cell> with its stats.h5 and metrics.jsonl, then tools/study_report.py writes OUT
# (docs/study by default). Locally the cells run one after another as single processes with all cores;
# a cell already finished (RUNS/…/<cell>/study.json) is skipped and an interrupted one resumes from its
# checkpoint, so rerunning the command continues the study. A cell that stops on a non-finite loss counts as
# diverged and the study goes on; any other failure stops the study.
#   --quick   configs/study/base.toml's steps / 20, warmups scaled alike, a quarter of the evaluation, into
#             checkpoints/study-quick: the whole grid in about 15 minutes on 2 cores.
#   --slurm   one SLURM job array per cell list (launch/slurm/submit_sweep.sh, one task per cell, 1 rank with
#             T threads each, requeued after USR1 like any sweep) and a job that, when the arrays are done,
#             marks the finished cells (--mark) and writes the report; options up to `--` go to sbatch.
#   --base, --cells   another base config and directory of cell lists (a study of your own, or a tiny test).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/lib.sh
QUICK=0 SLURM=0 MARK=0 RUNS="" OUT=docs/study THREADS=0 SBATCH_OPTS=() BASE=configs/study/base.toml CELLS=configs/study
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --slurm) SLURM=1; shift
             while [ $# -gt 0 ] && [ "$1" != -- ]; do SBATCH_OPTS+=("$1"); shift; done
             [ $# -gt 0 ] && shift ;;
    --mark) MARK=1; shift ;;
    --runs) RUNS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --base) BASE=$2; shift 2 ;;
    --cells) CELLS=$2; shift 2 ;;
    *) die "unknown argument $1 (usage: see the top of $0)" ;;
  esac
done
[ -n "$RUNS" ] || RUNS=$([ $QUICK = 1 ] && echo checkpoints/study-quick || echo checkpoints/study)
[ -x "$STRATA_BIN" ] || bash launch/build.sh
[ -f "$BASE" ] || die "base config $BASE: no such file"
for kind in xiong grid; do [ -f "$CELLS/$kind.txt" ] || die "cell list $CELLS/$kind.txt: no such file"; done
if [ $MARK = 0 ]; then  # the data of the base config; the study's own (the KJV) is prepared when missing
  for split in train val; do
    f=$("$STRATA_BIN" config --config "$BASE" --get "data.$split")
    [ -f "$f" ] && continue
    [ "$f" = "data/kjv/$split.bin" ] || die "$BASE: data.$split = $f: no such file"
    mkdir -p data/kjv
    bible "Genesis 1:1-Revelation 22:21" > data/kjv/kjv.txt
    "$STRATA_BIN" prepare --text data/kjv/kjv.txt --out data/kjv
  done
fi
full_steps=$("$STRATA_BIN" config --config "$BASE" --get train.steps)
base_warmup=$("$STRATA_BIN" config --config "$BASE" --get train.warmup_steps)
quick_steps=$((full_steps / 20))

# cells FILE: "name overrides…" per line, with --quick's scaling applied to steps and warmups.
cells() {
  grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$1" | while read -r name rest; do
    if [ $QUICK = 1 ]; then
      rest=$(echo "$rest" | awk -v q=$quick_steps -v f=$full_steps '{
        for (i = 1; i <= NF; i++) if ($i ~ /^train\.(warmup_steps|steps)=/ && $i != "train.steps=1") {
          split($i, a, "="); $i = a[1] "=" int(a[2] * q / f) }
        print }')
      [[ "$rest" == *train.steps=* ]] || rest="$rest train.steps=$quick_steps"
      [[ "$rest" == *train.warmup_steps=* ]] || rest="$rest train.warmup_steps=$((base_warmup * quick_steps / full_steps))"
      rest="$rest train.eval_interval=0 train.eval_batches=4 checkpoint.interval=0"
    fi
    echo "$name $rest"
  done
}

# mark_cell KIND NAME SECONDS: writes study.json from what the cell left on disk: complete (latest checkpoint at
# train.steps: exit_code 0), diverged (the last statistics row non-finite: exit_code 1), else nothing (the cell
# was interrupted and resumes from its checkpoint next time). Returns 1 when not finished.
mark_cell() {
  local kind=$1 name=$2 secs=$3 dir="$RUNS/$1/$2" steps latest rc
  steps=$("$STRATA_BIN" config --config "$dir/config.toml" --get train.steps)
  latest=$(cat "$dir/latest" 2>/dev/null || echo step-0.h5)
  latest=${latest#step-}
  latest=$((10#${latest%.h5}))
  if [ "$latest" -eq "$steps" ]; then
    rc=0
  elif /usr/bin/python3 -c 'import h5py, math, sys
f = h5py.File(sys.argv[1], "r")
sys.exit(0 if len(f["loss"]) and not (math.isfinite(f["loss"][-1]) and math.isfinite(f["grad_norm"][-1])) else 1)' \
      "$dir/stats.h5" 2>/dev/null; then
    rc=1
  else
    return 1
  fi
  printf '{"cell": "%s", "exit_code": %d, "seconds": %.1f, "diverged": %s, "quick": %s}\n' "$name" $rc "$secs" \
    "$([ $rc = 1 ] && echo true || echo false)" "$([ $QUICK = 1 ] && echo true || echo false)" > "$dir/study.json"
}

run_cell() {  # run_cell KIND NAME OVERRIDES…
  local kind=$1 name=$2 dir="$RUNS/$1/$2"
  shift 2
  if [ -f "$dir/study.json" ]; then
    echo "study: $kind/$name done before ($(cat "$dir/study.json"))"
    return
  fi
  local sets=(--set "checkpoint.dir=$dir" --set "train.threads=$THREADS") o
  for o in "$@"; do sets+=(--set "$o"); done
  mkdir -p "$dir"
  echo "study: $kind/$name: $*"
  local t0 rc=0 secs
  t0=$(date +%s.%N)
  "$STRATA_BIN" train --config "$BASE" "${sets[@]}" >> "$dir/train.log" 2>&1 || rc=$?
  secs=$(echo "$(date +%s.%N) - $t0" | bc)
  mark_cell "$kind" "$name" "$secs" ||
    die "$kind/$name stopped before its last step (exit $rc): $(tail -1 "$dir/train.log"); rerun to resume it"
  if grep -q '"exit_code": 1' "$dir/study.json"; then
    echo "study: $kind/$name diverged: $(grep -o 'step [0-9]*: non-finite[^;]*' "$dir/train.log" | tail -1)"
  else
    echo "study: $kind/$name: $(grep -o 'val_loss [0-9.]*' "$dir/train.log" | tail -1) in $(printf %.0f "$secs") s"
  fi
}

report() {
  /usr/bin/python3 tools/study_report.py "$RUNS" --out "$OUT"
  echo "study: report in $OUT/README.md"
}

if [ $MARK = 1 ]; then  # after the SLURM arrays: study.json for every finished cell, then the report
  for d in "$RUNS"/xiong/* "$RUNS"/grid/*; do
    [ -d "$d" ] && [ ! -f "$d/study.json" ] && [ -f "$d/config.toml" ] || continue
    secs=$(( $(stat -c %Y "$d/stats.h5" 2>/dev/null || stat -c %Y "$d/config.toml") - $(stat -c %Y "$d/config.toml") ))
    mark_cell "$(basename "$(dirname "$d")")" "$(basename "$d")" "$secs" || echo "study: $d did not finish"
  done
  report
  exit 0
fi

if [ $SLURM = 1 ]; then
  ids=()
  for kind in xiong grid; do
    sweep="$RUNS/$kind.sweep"
    mkdir -p "$RUNS/$kind"
    cells "$CELLS/$kind.txt" | while read -r name rest; do
      echo "$rest checkpoint.dir=$RUNS/$kind/$name train.threads=${THREADS/#0/2}"
    done > "$sweep"
    ids+=("$(launch/slurm/submit_sweep.sh "$sweep" --ntasks=1 --cpus-per-task="${THREADS/#0/2}" \
               --output="$RUNS/$kind-%A_%a.out" "${SBATCH_OPTS[@]}" \
               -- --config "$BASE")")
  done
  dep=$(IFS=:; echo "${ids[*]}")
  rid=$(sbatch --parsable --dependency="afterany:$dep" --job-name=strata-study-report \
          --output="$RUNS/report-%j.out" "${SBATCH_OPTS[@]}" --wrap "cd '$PWD' && launch/study.sh --mark \
          --runs '$RUNS' --out '$OUT' --base '$BASE' --cells '$CELLS'$([ $QUICK = 1 ] && echo ' --quick')")
  echo "study: arrays ${ids[*]} submitted; report job $rid follows them"
  exit 0
fi

start=$(date +%s)
while read -r name rest; do run_cell xiong "$name" $rest; done < <(cells "$CELLS/xiong.txt")
while read -r name rest; do run_cell grid "$name" $rest; done < <(cells "$CELLS/grid.txt")
echo "study: all cells in $(( $(date +%s) - start )) s"
report
