#!/usr/bin/env bash
# Installs every Debian 12 package multiref needs to build, test and run. Idempotent: does nothing
# (and needs no network) when everything is already installed.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build ccache pkg-config git bc time
  libtorch-dev            # LibTorch 1.13 (CPU)
  libopenblas0-openmp     # fast BLAS for torch; the pthread variant fights torch's OpenMP pool
  nlohmann-json3-dev libpcre2-dev libutf8proc-dev libgtest-dev npm
  python3-torch python3-numpy python3-protobuf   # independent golden-value scripts under tests/ (/usr/bin/python3)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian's libtorch links the reference BLAS by default; make sure OpenBLAS (OpenMP) is the alternative.
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  path=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas | head -1 || true)
  [ -n "$path" ] && $SUDO update-alternatives --set "$alt" "$path" >/dev/null || true
done
echo "setup: done"
