# common.sh: the body of train.sbatch and sweep.sbatch (sourced inside the batch job, not run on its own).
# strata_slurm_run [strata train arguments]: starts the job's ranks (srun with PMIx where SLURM has it, else
# Open MPI's mpirun, which reads the allocation from SLURM; STRATA_SLURM_LAUNCHER=srun|mpirun forces one),
# always with checkpoint.resume = auto so a requeued job continues from <checkpoint.dir>/latest.
#   USR1 (SLURM's warning before the time limit, --signal=B:USR1@…, or `scancel --signal=USR1 --batch`):
#        forwarded to every rank, which save at the next step boundary and exit 0; the job then requeues itself
#        unless training is complete.
#   TERM (scancel, or preemption with PreemptMode=REQUEUE, where SLURM requeues): forwarded as USR1 the same way,
#        the ranks save and exit, and the job does not requeue itself.
source "$STRATA_HOME/launch/lib.sh"

strata_slurm_run() {
  parse_common "$@"
  [ ${#REST[@]} -eq 0 ] || die "unknown argument ${REST[0]}"
  SETS+=(--set checkpoint.resume=auto)
  resolve_run
  local ntasks=${SLURM_NTASKS:-1}
  [ "$RANKS" -eq "$ntasks" ] ||
    die "parallel.pipeline ($P) × parallel.data ($D) = $RANKS ranks ≠ SLURM_NTASKS $ntasks (job $SLURM_JOB_ID)"
  if [ -z "$THREADS" ]; then
    THREADS=${SLURM_CPUS_PER_TASK:-1}
    SETS+=(--set "train.threads=$THREADS")
  fi
  export OMP_NUM_THREADS=$THREADS
  local launcher=${STRATA_SLURM_LAUNCHER:-}
  if [ -z "$launcher" ]; then
    launcher=mpirun
    srun --mpi=list 2>&1 | grep -qw pmix && launcher=srun
  fi
  local cmd
  case "$launcher" in
    srun) cmd=(srun --mpi=pmix --kill-on-bad-exit=1 --ntasks="$RANKS" --cpus-per-task="$THREADS") ;;
    mpirun) mpirun_common; forward_env; cmd=("${MPIRUN[@]}" -np "$RANKS" --bind-to none) ;;
    *) die "STRATA_SLURM_LAUNCHER=$launcher: use srun or mpirun" ;;
  esac
  local job=$SLURM_JOB_ID
  [ -n "${SLURM_ARRAY_JOB_ID:-}" ] && job=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}
  echo "strata-slurm: job $job start $((${SLURM_RESTART_COUNT:-0} + 1)) on $SLURM_JOB_NODELIST: $RANKS ranks" \
       "(pipeline $P × data $D) × $THREADS threads via $launcher, checkpoints in $CKPT_DIR"

  local signal="" child rc
  trap 'signal=USR1; kill -USR1 "$child" 2>/dev/null' USR1
  # TERM goes on as USR1: mpirun kills its ranks 1 s after forwarding a TERM of its own (mid-save), srun forwards
  # USR1 alike. (SLURM's TERM to the whole job reaches the ranks directly too, and they save within KillWait.)
  trap 'signal=TERM; kill -USR1 "$child" 2>/dev/null' TERM
  "${cmd[@]}" "$STRATA_BIN" train --config "$CONFIG" "${SETS[@]}" &
  child=$!
  # `wait` returns early when a trapped signal arrives; wait again until the ranks are gone.
  while true; do
    rc=0
    wait "$child" || rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  trap - USR1 TERM
  echo "strata-slurm: job $job ranks exited with $rc${signal:+ after SIG$signal}"
  [ "$rc" -eq 0 ] || exit "$rc"
  if [ "$signal" = USR1 ]; then
    local steps latest
    steps=$("$STRATA_BIN" config --config "$CONFIG" "${SETS[@]}" --get train.steps)
    latest=$(cat "$CKPT_DIR/latest" 2>/dev/null || echo step-00000000.h5)
    latest=${latest#step-}
    latest=$((10#${latest%.h5}))
    if [ "$latest" -lt "$steps" ]; then
      echo "strata-slurm: job $job saved at step $latest of $steps; requeueing"
      scontrol requeue "$job"
      sleep 60  # the requeue ends this batch step; never fall through to a normal exit
    fi
  fi
}
