#!/bin/sh
# loopback_rsh.sh: Open MPI's rsh agent for the launcher test (OMPI_MCA_plm_rsh_agent). It stands in for ssh
# to the loopback "nodes" of the test hostfile (127.0.0.2, 127.0.0.3: this host named twice) and runs the
# daemon command here, so mpirun's multi-node path (one orted per node, ppr:N:node mapping) runs on one machine.
# Each "node" gets its own TMPDIR, so the daemons' session directories and shared-memory files stay apart as
# they would on separate machines.
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
host=$1
shift
TMPDIR=${TMPDIR:-/tmp}/strata-node-$host
mkdir -p "$TMPDIR"
export TMPDIR
exec /bin/sh -c "$*"
