#!/usr/bin/env bash
# Usage: launch/mpirun.sh --hostfile FILE --ranks-per-node N [-p P] [-d D] [-t THREADS] [--bind core|none]
#                         [--iface IF] --config FILE [--set section.key=value ...]
# Multi-node training with Open MPI: P×D ranks (default: the config's parallel.pipeline × parallel.data), N per
# node in hostfile order (pipeline stages of one replica on consecutive ranks, so neighbours share a node where
# they can), THREADS per rank (default: cores / N), bound to cores unless --bind none. OMP_*, OPENBLAS_*, NCCL_*,
# UCX_*, CUDA_*, STRATA_*, PATH and LD_LIBRARY_PATH are forwarded to every rank; each rank takes the GPU of its
# local rank (OMPI_COMM_WORLD_LOCAL_RANK). --iface keeps MPI's and NCCL's sockets on one network interface.
# The same tree (STRATA_HOME) and data paths must exist on every node (a shared file system).
# Example: launch/mpirun.sh --hostfile hosts --ranks-per-node 8 -p 8 -d 8 --config configs/bench-96L.toml
set -euo pipefail
source "$(dirname "$0")/lib.sh"
parse_common "$@"
set -- "${REST[@]+"${REST[@]}"}"
HOSTFILE="" RPN="" BIND=core IFACE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --hostfile) HOSTFILE=$2; shift 2 ;;
    --ranks-per-node) RPN=$2; shift 2 ;;
    --bind) BIND=$2; shift 2 ;;
    --iface) IFACE=$2; shift 2 ;;
    *) die "unknown argument $1 (usage: see the top of $0)" ;;
  esac
done
[ -n "$HOSTFILE" ] || die "--hostfile FILE is required"
[ -f "$HOSTFILE" ] || die "hostfile $HOSTFILE: no such file"
[[ "$RPN" =~ ^[1-9][0-9]*$ ]] || die "--ranks-per-node must be a positive integer (got '${RPN}')"
case "$BIND" in core|none) ;; *) die "--bind $BIND: use core or none" ;; esac
resolve_run

# Slots per host from the hostfile ("host slots=K", or a host listed once per slot), at most N used per host.
read -r nhosts slots < <(awk -v rpn="$RPN" '
  { sub(/#.*/, "") } NF == 0 { next }
  { n = 1; for (i = 2; i <= NF; i++) if ($i ~ /^(slots|max_slots)=/) { split($i, a, "="); n = a[2] } s[$1] += n }
  END { h = 0; t = 0; for (k in s) { h++; t += (s[k] < rpn ? s[k] : rpn) } print h, t }' "$HOSTFILE")
[ "$nhosts" -gt 0 ] || die "hostfile $HOSTFILE: names no host"
[ "$slots" -ge "$RANKS" ] ||
  die "hostfile $HOSTFILE: $slots usable slots ($nhosts host(s), at most $RPN ranks each) < $RANKS ranks (pipeline $P × data $D)"

if [ -z "$THREADS" ]; then
  THREADS=$(( $(nproc) / RPN > 0 ? $(nproc) / RPN : 1 ))
  SETS+=(--set "train.threads=$THREADS")
fi
export OMP_NUM_THREADS=$THREADS
mpirun_common
MPIRUN+=(--hostfile "$HOSTFILE" -np "$RANKS")
if [ "$BIND" = core ]; then
  MPIRUN+=(--map-by "ppr:$RPN:node:PE=$THREADS" --bind-to core)
else
  MPIRUN+=(--map-by "ppr:$RPN:node" --bind-to none)
fi
if [ -n "$IFACE" ]; then
  MPIRUN+=(--mca btl_tcp_if_include "$IFACE" --mca oob_tcp_if_include "$IFACE")
  export NCCL_SOCKET_IFNAME=$IFACE
fi
forward_env
echo "mpirun.sh: $RANKS ranks (pipeline $P × data $D), $RPN per node on $nhosts host(s) of $HOSTFILE, $THREADS threads each, checkpoints in $CKPT_DIR" >&2
run_saving "${MPIRUN[@]}" --wdir "$PWD" "$STRATA_BIN" train --config "$CONFIG" "${SETS[@]}"
