#!/usr/bin/env bash
# The test command: installs what is missing (Debian 12), builds, and runs the whole CTest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
./scripts/fetch_test_tokenizers.sh build/test-tokenizers
cd build
ctest --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
