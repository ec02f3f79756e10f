#!/usr/bin/env bash
# Applies the repository's .clang-format to every C++ file (Debian 12's clang-format 14), or with --check lists
# the files that differ and fails (CI runs this: style is not a review topic).
set -euo pipefail
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format}
command -v "$CF" >/dev/null || { echo "format: $CF not found (apt install clang-format; scripts/setup.sh does)"; exit 2; }
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cpp' '*.h')
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in "${files[@]}"; do
    "$CF" --style=file "$f" | cmp -s - "$f" || bad+=("$f")
  done
  if [ ${#bad[@]} -gt 0 ]; then
    echo "format: ${#bad[@]} file(s) differ from .clang-format; run scripts/format.sh to fix:"
    printf '  %s\n' "${bad[@]}"
    exit 1
  fi
  echo "format: ${#files[@]} files match .clang-format ($("$CF" --version))"
else
  "$CF" --style=file -i "${files[@]}"
  echo "format: applied to ${#files[@]} files"
fi
