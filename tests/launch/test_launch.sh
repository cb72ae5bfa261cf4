#!/usr/bin/env bash
# test_launch.sh: launch/local.sh and launch/mpirun.sh run a 4-rank pipeline to completion, and each launch
# error is one line with a non-zero exit. Usage: tests/launch/test_launch.sh BUILD_DIR
# The multi-node launcher gets a hostfile naming this host twice (127.0.0.2 and 127.0.0.3, 2 slots each); Open
# MPI reaches those "nodes" through tests/launch/loopback_rsh.sh instead of ssh, so one orted runs per node and
# --ranks-per-node 2 puts ranks 0-1 on the first and 2-3 on the second, exactly as on two machines. The two
# nodes talk over TCP (btl self,tcp) as separate machines would.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: test_launch.sh BUILD_DIR}" && pwd)
export STRATA_BIN=$build/strata
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d /tmp/strata-launch-test.XXXXXX)
trap 'rc=$?; [ $rc -eq 0 ] && rm -rf "$work" || echo "kept $work" >&2' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cd "$src"

head -c 200000 /dev/urandom | base64 > "$work/text.txt"
"$STRATA_BIN" prepare --text "$work/text.txt" --out "$work/data" >/dev/null
cfg=(--config configs/tiny.toml --set "data.train=$work/data/train.bin" --set "data.val=$work/data/val.bin"
     --set train.steps=30)

# The local launcher: 4 pipeline stages, 1 thread each, on this host.
timeout 120 launch/local.sh -p 4 -d 1 -t 1 "${cfg[@]}" --set "checkpoint.dir=$work/local" > "$work/local.log" 2>&1 ||
  { tail -20 "$work/local.log"; fail "launch/local.sh failed"; }
grep -q "step     30/30" "$work/local.log" || fail "local.sh: no step 30 in the log"
[ "$(wc -l < "$work/local/ranks.txt")" -eq 4 ] || fail "local.sh: ranks.txt should list 4 ranks"
echo "PASS: launch/local.sh ran 4 ranks to step 30"

# The multi-node launcher on two loopback "nodes".
printf '# this host, twice\n127.0.0.2 slots=2\n127.0.0.3 slots=2\n' > "$work/hosts"
OMPI_MCA_plm_rsh_agent=$src/tests/launch/loopback_rsh.sh OMPI_MCA_rtc='^hwloc' PMIX_MCA_gds=hash OMPI_MCA_btl=self,tcp \
  timeout 300 launch/mpirun.sh --hostfile "$work/hosts" --ranks-per-node 2 -p 4 -t 1 "${cfg[@]}" \
  --set "checkpoint.dir=$work/multi" > "$work/multi.log" 2>&1 || { tail -20 "$work/multi.log"; fail "launch/mpirun.sh failed"; }
grep -q "step     30/30" "$work/multi.log" || fail "mpirun.sh: no step 30 in the log"
# ranks.txt: rank stage replica host local_rank pid — two ranks per node, local ranks 0 and 1 on each.
[ "$(awk '{print $5}' "$work/multi/ranks.txt" | tr '\n' ' ')" = "0 1 0 1 " ] ||
  fail "mpirun.sh: local ranks $(awk '{print $5}' "$work/multi/ranks.txt" | tr '\n' ' '), want 0 1 0 1"
h5diff "$work/local/step-00000030.h5" "$work/multi/step-00000030.h5" /model /model ||
  fail "the two launchers trained different weights"
echo "PASS: launch/mpirun.sh ran 4 ranks on 2 nodes (local ranks 0 1 0 1) to the same weights"

# Launch errors: one line each, exit non-zero, before any rank starts.
expect_error() {  # expect_error "substring" command...
  local want=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  [ $rc -ne 0 ] || fail "$* should fail"
  [ "$(echo "$out" | wc -l)" -eq 1 ] || fail "$* printed more than one line: $out"
  [[ "$out" == *"$want"* ]] || fail "$*: '$out' does not name '$want'"
  echo "  ok: $out"
}
expect_error "hostfile $work/none: no such file" \
  launch/mpirun.sh --hostfile "$work/none" --ranks-per-node 2 -p 4 "${cfg[@]}"
printf '127.0.0.2 slots=1\n' > "$work/small"
expect_error "1 usable slots (1 host(s), at most 2 ranks each) < 4 ranks (pipeline 4 × data 1)" \
  launch/mpirun.sh --hostfile "$work/small" --ranks-per-node 2 -p 4 "${cfg[@]}"
expect_error "config $work/none.toml: no such file" launch/local.sh -p 4 --config "$work/none.toml"
mkdir -p "$work/ro" && chmod 500 "$work/ro"
if [ "$(id -u)" -eq 0 ]; then ro=/proc/strata-checkpoints; else ro=$work/ro/ck; fi
expect_error "checkpoint.dir $ro (config configs/tiny.toml): not writable" \
  launch/local.sh -p 4 "${cfg[@]}" --set "checkpoint.dir=$ro"
expect_error "model.heads = 5" launch/local.sh -p 4 "${cfg[@]}" --set model.heads=5
echo "PASS: launch errors are one line each"
