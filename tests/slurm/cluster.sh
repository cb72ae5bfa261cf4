#!/usr/bin/env bash
# cluster.sh: a single-node SLURM cluster on loopback for the tests (Debian's slurm-wlm 22.05 and munge).
# Usage: tests/slurm/cluster.sh up DIR | down DIR
#   up:   a fresh munge key, munged, slurmctld and slurmd, all with their state, sockets, logs and ports under
#         DIR (nothing in /etc is touched); a requeued job may start again after 11 s (cred_expire=10,
#         SLURM's default is 120 s). Prints the `export SLURM_CONF=...` line clients need. Run as root.
#   down: stops every daemon `up` started in DIR (by the pid files there) and waits until they are gone.
set -euo pipefail
cmd=${1:?usage: cluster.sh up DIR | down DIR}
dir=$(mkdir -p "${2:?usage: cluster.sh up DIR | down DIR}" && cd "$2" && pwd)

stop() {
  local f pid
  for f in slurmd.pid slurmctld.pid munged.pid; do
    [ -f "$dir/$f" ] || continue
    pid=$(cat "$dir/$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/$f"
  done
}

if [ "$cmd" = down ]; then
  # Jobs first (slurmstepd and their tasks outlive slurmd otherwise).
  if [ -f "$dir/slurm.conf" ]; then
    SLURM_CONF=$dir/slurm.conf scancel --quiet --full -u root 2>/dev/null || true
    sleep 1
  fi
  pkill -f "slurmstepd.*$dir" 2>/dev/null || true
  stop
  exit 0
fi
[ "$cmd" = up ] || { echo "cluster.sh: unknown command $cmd (up or down)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "cluster.sh: run as root (SlurmUser=root)" >&2; exit 1; }
for b in munged mungekey slurmctld slurmd sbatch; do
  command -v "$b" >/dev/null || { echo "cluster.sh: $b missing (apt-get install munge slurmctld slurmd slurm-client)" >&2; exit 1; }
done

mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
chmod 700 "$dir/munge"
mungekey --create --keyfile="$dir/munge/munge.key" --force 2>/dev/null || 
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"

# Free ports for the two daemons (an unused pair from a high range).
port=$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
read -r ctld_port d_port <<<"$port"
host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2/1024*0.8)}' /proc/meminfo)
cat > "$dir/slurm.conf" <<CONF
ClusterName=strata-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
JobRequeue=1
ReturnToService=2
SlurmdParameters=config_overrides
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
KillWait=10
SchedulerParameters=sched_interval=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$((cpus * 4)) RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$dir/slurm.conf
slurmctld -i -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do
  state=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
  case "$state" in idle|mix|alloc) echo "export SLURM_CONF=$SLURM_CONF"; exit 0 ;; esac
  sleep 0.2
done
echo "cluster.sh: node not ready (state '${state:-none}'); logs in $dir/log" >&2
stop
exit 1
