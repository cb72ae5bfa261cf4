#!/usr/bin/env bash
# Usage: bash launch/test.sh [ctest arguments]
# Every test on a fresh Debian 12 machine: installs the dependencies, builds, runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install.sh
bash launch/build.sh
# Open MPI as root, oversubscribed, inside containers (the MPI tests launch mpirun themselves).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
ctest --test-dir build --output-on-failure "$@"
