#!/usr/bin/env bash
# Usage: bash launch/quickstart.sh [--set section.key=value ...]
# The main job on a fresh Debian 12 machine: installs the dependencies, builds, prepares the King James Bible
# corpus when missing, trains configs/kjv-small.toml (extra --set overrides pass through) and samples from it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install.sh
bash launch/build.sh
if [ ! -f data/kjv/train.bin ] || [ ! -f data/kjv/val.bin ]; then
  mkdir -p data/kjv
  bible "Genesis 1:1-Revelation 22:21" > data/kjv/kjv.txt
  build/strata prepare --text data/kjv/kjv.txt --out data/kjv
fi
build/strata train --config configs/kjv-small.toml "$@"
dir=$(sed -n 's/^dir = "\(.*\)"/\1/p' configs/kjv-small.toml)
for a in "$@"; do case "$a" in checkpoint.dir=*) dir=${a#checkpoint.dir=} ;; esac; done
echo
echo "--- sample from $dir/$(cat "$dir/latest") ---"
build/strata sample --checkpoint "$dir/$(cat "$dir/latest")" --prompt "And God said" --tokens 400 \
  --temperature 0.8 --top-k 40 --seed 1
