#!/usr/bin/env bash
# Installs every Strata dependency from Debian 12's archive (run as root, or with sudo available).
# Usage: launch/install.sh
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
      libboost-test-dev libboost-context-dev libopenblas-dev libopenblas-openmp-dev libtomlplusplus-dev libcli11-dev
      munge slurmctld slurmd slurm-client bc procps
      python3 python3-numpy python3-torch python3-h5py python3-matplotlib
      bible-kjv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install.sh: all ${#pkgs[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
