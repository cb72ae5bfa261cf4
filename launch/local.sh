#!/usr/bin/env bash
# Usage: launch/local.sh [-p P] [-d D] [-t THREADS] --config FILE [--set section.key=value ...]
# Trains on this host with P×D ranks (P pipeline stages × D data-parallel replicas; default: the config's
# parallel.pipeline and parallel.data) and THREADS OpenMP/OpenBLAS threads per rank (default: cores / ranks,
# at least 1). Ranks are bound to their cores when they fit, and oversubscribe (unbound) when they do not.
# Example: launch/local.sh -p 4 -d 1 -t 1 --config configs/kjv-small.toml --set train.steps=100
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_common "$@"
[ ${#REST[@]} -eq 0 ] || die "unknown argument ${REST[0]} (usage: see the top of $0)"
resolve_run
cores=$(nproc)
if [ -z "$THREADS" ]; then
  THREADS=$(( cores / RANKS > 0 ? cores / RANKS : 1 ))
  SETS+=(--set "train.threads=$THREADS")
fi
export OMP_NUM_THREADS=$THREADS
mpirun_common
if [ $((RANKS * THREADS)) -le "$cores" ]; then
  MPIRUN+=(--map-by "slot:PE=$THREADS" --bind-to core)
else
  echo "local.sh: $RANKS ranks × $THREADS threads > $cores cores: oversubscribing, unbound" >&2
  MPIRUN+=(--oversubscribe --bind-to none)
fi
forward_env
echo "local.sh: $RANKS ranks (pipeline $P × data $D) × $THREADS threads on $(hostname), checkpoints in $CKPT_DIR" >&2
run_saving "${MPIRUN[@]}" -np "$RANKS" "$STRATA_BIN" train --config "$CONFIG" "${SETS[@]}"
