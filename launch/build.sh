#!/usr/bin/env bash
# Usage: bash launch/build.sh [extra cmake arguments]
# Configures and builds Strata into build/ (Release, every core).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" > build.log 2>&1 || { cat build.log; exit 1; }
cmake --build build -j"$(nproc)" >> build.log 2>&1 || { tail -50 build.log; exit 1; }
echo "build.sh: built build/strata (log in build.log)"
