# lib.sh: shared by the launch scripts (sourced, not run). Parses the common options, resolves the run's config
# through `strata config`, and checks what a launch needs before any rank starts; every failure is one line.
# Sets: STRATA_HOME, STRATA_BIN, CONFIG, SETS (array), P, D, RANKS, THREADS (if -t given), CKPT_DIR.

STRATA_HOME=${STRATA_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
STRATA_BIN=${STRATA_BIN:-$STRATA_HOME/build/strata}

die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }

# parse_common ARGS...: -p P, -d D, -t THREADS, --config FILE, --set k=v (repeatable); anything else lands in REST.
parse_common() {
  CONFIG="" SETS=() REST=() THREADS="" local_p="" local_d=""
  while [ $# -gt 0 ]; do
    case "$1" in
      -p|--pipeline) local_p=$2; shift 2 ;;
      -d|--data) local_d=$2; shift 2 ;;
      -t|--threads) THREADS=$2; shift 2 ;;
      --config) CONFIG=$2; shift 2 ;;
      --set) SETS+=(--set "$2"); shift 2 ;;
      *) REST+=("$1"); shift ;;
    esac
  done
  [ -n "$local_p" ] && SETS+=(--set "parallel.pipeline=$local_p")
  [ -n "$local_d" ] && SETS+=(--set "parallel.data=$local_d")
  [ -n "$THREADS" ] && SETS+=(--set "train.threads=$THREADS")
  return 0
}

# resolve_run: checks the binary and the config, reads P, D and checkpoint.dir, checks that directory is writable.
resolve_run() {
  [ -n "$CONFIG" ] || die "--config FILE is required"
  [ -f "$CONFIG" ] || die "config $CONFIG: no such file"
  [ -x "$STRATA_BIN" ] || die "$STRATA_BIN: not built (run launch/build.sh, or set STRATA_BIN)"
  local out
  out=$("$STRATA_BIN" config --config "$CONFIG" "${SETS[@]}" --get parallel.pipeline 2>&1) || die "${out#strata: error: }"
  P=$out
  D=$("$STRATA_BIN" config --config "$CONFIG" "${SETS[@]}" --get parallel.data)
  CKPT_DIR=$("$STRATA_BIN" config --config "$CONFIG" "${SETS[@]}" --get checkpoint.dir)
  RANKS=$((P * D))
  mkdir -p "$CKPT_DIR" 2>/dev/null && [ -w "$CKPT_DIR" ] ||
    die "checkpoint.dir $CKPT_DIR (config $CONFIG): not writable"
}

# mpirun_common: the mpirun options every launcher passes (root needs Open MPI's explicit consent).
mpirun_common() {
  MPIRUN=(mpirun)
  [ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
  return 0
}

# forward_env: -x for each variable a rank needs on every node (threads, NCCL, UCX, CUDA, Strata's own).
forward_env() {
  local v
  for v in $(compgen -e); do
    case "$v" in
      OMP_*|OPENBLAS_*|NCCL_*|UCX_*|CUDA_*|STRATA_*|LD_LIBRARY_PATH|PATH) MPIRUN+=(-x "$v") ;;
    esac
  done
}

# run_saving CMD...: runs mpirun (CMD) with SIGTERM and SIGINT sent on to it as SIGUSR1, which mpirun forwards to
# every rank: each saves at the next step boundary and exits 0, however long the save takes. (mpirun's own SIGTERM
# handling kills the ranks odls_base_sigkill_timeout = 1 s after forwarding it: mid-save for any real model.)
# mpirun runs in a session of its own (setsid), so that a Ctrl-C or a signal to this script's process group reaches
# it only as that USR1. Returns mpirun's exit code.
run_saving() {
  local child rc
  local on='every rank saves at the next step boundary and exits (SIGUSR1 to mpirun)'
  trap 'echo "$(basename "$0"): SIGTERM: $on" >&2; kill -USR1 "$child" 2>/dev/null' TERM
  trap 'echo "$(basename "$0"): SIGINT: $on" >&2; kill -USR1 "$child" 2>/dev/null' INT
  trap 'kill -USR1 "$child" 2>/dev/null' USR1
  setsid "$@" &
  child=$!
  while true; do  # `wait` returns early when a trapped signal arrives; wait again until mpirun is gone
    rc=0
    wait "$child" || rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  trap - TERM INT USR1
  return "$rc"
}
