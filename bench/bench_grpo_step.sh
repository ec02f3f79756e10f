#!/usr/bin/env bash
# One gsm8k_grpo optimizer step at the real models' shapes (issue 6 benchmark): a Qwen2.5-0.5B-shaped policy,
# references shaped as Qwen2.5-0.5B and Qwen2.5-1.5B (random weights, the Qwen tokenizer), bf16 on CPU, the
# seed command's batch (--per_device_train_batch_size 4 --gradient_accumulation_steps 8: 32 completions, 4 groups
# of 8) and lengths. ACCUM=2 makes it a quarter of the seed's step (8 completions), as before 2026-12-02.
# Random weights never emit EOS, so every completion runs the full --max_completion_length.
#   bench/bench_grpo_step.sh [extra gsm8k_grpo flags...]     (e.g. --gradient_checkpointing, --kl_type fkl)
# Prints the step's metrics row (seconds per phase, tokens/s) and the process's peak RSS. Needs ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-./build}
S=../shared/data
WORK=${WORK:-/tmp/multiref-bench-grpo}
mkdir -p "$WORK"
if [ ! -f "$WORK/ref_b/model.safetensors" ]; then
  mkdir -p "$WORK/tok"
  cp "$S/tokenizers/qwen2/vocab.json" "$S/tokenizers/qwen2/merges.txt" "$S/tokenizers/qwen2.5/tokenizer_config.json" "$WORK/tok/"
  $B/multiref init --arch qwen2 --preset qwen2.5-0.5b --vocab_size 151936 --seed 1 --dtype bfloat16 \
    --tokenizer "$WORK/tok" --output_dir "$WORK/ref_a" >/dev/null
  $B/multiref init --arch qwen2 --preset qwen2.5-1.5b --vocab_size 151936 --seed 2 --dtype bfloat16 \
    --tokenizer "$WORK/tok" --output_dir "$WORK/ref_b" >/dev/null
fi
rm -rf "$WORK/out"
/usr/bin/time -f "%M" -o "$WORK/rss" $B/gsm8k_grpo --dataset gsm8k --data_dir "$S" --ref_a "$WORK/ref_a" \
  --ref_b "$WORK/ref_b" --alpha 0.5 --beta 0.5 --gamma 0.1 --model_out "$WORK/out" --per_device_train_batch_size 4 \
  --gradient_accumulation_steps ${ACCUM:-8} --num_generations 8 --max_steps 1 --save_steps 0 --bf16 "$@" >&2
tail -n 1 "$WORK/out/metrics.jsonl"
echo "{\"peak_rss_mib\":$(( $(cat "$WORK/rss") / 1024 ))}"
rm -rf "$WORK/out"
