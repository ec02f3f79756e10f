#!/usr/bin/env bash
# dpo_training at the real models' shapes (issue 7 benchmark): a Qwen2.5-0.5B-shaped policy, references shaped
# as Qwen2.5-0.5B and Qwen2.5-1.5B (random weights, the Qwen tokenizer), bf16 on CPU, on the first PAIRS pairs of
# the UltraFeedback sample, micro-batch 2 as in the seed command. Runs twice: the first run scores the references
# (the pre-pass), the second finds them in the cache. Prints the pre-pass lines, each run's metrics and peak RSS.
#   PAIRS=4 MAX_LENGTH=512 bench/bench_dpo.sh [extra dpo_training flags]
set -euo pipefail
cd "$(dirname "$0")/.."
B=./build
S=../shared/data
WORK=${WORK:-/tmp/multiref-bench-grpo}   # shares the models of bench_grpo_step.sh
PAIRS=${PAIRS:-4}
MAX_LENGTH=${MAX_LENGTH:-512}
mkdir -p "$WORK"
if [ ! -f "$WORK/ref_b/model.safetensors" ]; then
  mkdir -p "$WORK/tok"
  cp "$S/tokenizers/qwen2/vocab.json" "$S/tokenizers/qwen2/merges.txt" "$S/tokenizers/qwen2.5/tokenizer_config.json" "$WORK/tok/"
  $B/multiref init --arch qwen2 --preset qwen2.5-0.5b --vocab_size 151936 --seed 1 --dtype bfloat16 \
    --tokenizer "$WORK/tok" --output_dir "$WORK/ref_a" >/dev/null
  $B/multiref init --arch qwen2 --preset qwen2.5-1.5b --vocab_size 151936 --seed 2 --dtype bfloat16 \
    --tokenizer "$WORK/tok" --output_dir "$WORK/ref_b" >/dev/null
fi
head -n "$PAIRS" "$S/ultrafeedback/sample.jsonl" > "$WORK/pairs.jsonl"
rm -rf "$WORK/dpo_cache"
for run in prepass cached; do
  rm -rf "$WORK/dpo_out"
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/rss" $B/dpo_training --dataset "$WORK/pairs.jsonl" --ref_a "$WORK/ref_a" \
    --ref_b "$WORK/ref_b" --kl_type rkl --alpha 0.5 --gamma 1.0 --output_dir "$WORK/dpo_out" \
    --per_device_train_batch_size 2 --gradient_accumulation_steps $(( PAIRS / 2 )) --max_steps 1 --save_steps 0 \
    --max_length "$MAX_LENGTH" --max_prompt_length $(( MAX_LENGTH / 2 )) --cache_dir "$WORK/dpo_cache" --bf16 "$@" 2> "$WORK/err.txt" >&2
  end=$(date +%s.%N)
  grep -E "reference pass|ready in" "$WORK/err.txt" || true
  echo "{\"run\":\"$run\",\"wall_s\":$(echo "$end - $start" | bc),\"peak_rss_mib\":$(( $(cat "$WORK/rss") / 1024 )),\"metrics\":$(tail -n 1 "$WORK/dpo_out/metrics.jsonl")}"
done
rm -rf "$WORK/dpo_out"
