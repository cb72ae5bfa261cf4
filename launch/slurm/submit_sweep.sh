#!/usr/bin/env bash
# Usage: launch/slurm/submit_sweep.sh SWEEP [sbatch options …] -- --config FILE [--set section.key=value …]
# Submits launch/slurm/sweep.sbatch as a job array with one task per line of SWEEP (blank lines and # comments
# skipped) and prints the job id. Example, norm placement at three depths is one line per cell:
#   launch/slurm/submit_sweep.sh configs/sweeps/norm-placement.txt --nodes=1 --ntasks-per-node=2 -- \
#       --config configs/tiny.toml
set -euo pipefail
cd "$(dirname "$0")/../.."
sweep=${1:?usage: submit_sweep.sh SWEEP [sbatch options] -- --config FILE [--set ...]}
shift
[ -f "$sweep" ] || { echo "submit_sweep.sh: error: sweep file $sweep: no such file" >&2; exit 1; }
opts=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
n=$(grep -c -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$sweep" || true)
[ "$n" -gt 0 ] || { echo "submit_sweep.sh: error: sweep file $sweep: no lines" >&2; exit 1; }
sbatch --parsable --array="0-$((n - 1))" "${opts[@]}" launch/slurm/sweep.sbatch "$sweep" "$@"
