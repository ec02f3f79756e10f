#!/usr/bin/env bash
# Configures and builds multiref into ./build (Release-with-debug-info, Ninja, ccache, 2 jobs by default:
# each torch translation unit needs about 1 GB of RAM).
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
JOBS=${JOBS:-$(nproc)}
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build -j "$JOBS" "$@"
