#!/usr/bin/env bash
# The test command: installs what is missing (Debian 12), builds, and runs the whole CTest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
cd build
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
