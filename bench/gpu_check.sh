#!/usr/bin/env bash
# Builds multiref against a CUDA LibTorch 2.x (python3's torch wheel: torch.utils.cmake_prefix_path) and checks
# the CUDA paths on a GPU machine: score and greedy generation on CUDA equal the CPU's, GRPO (RKL and FKL) and DPO
# steps run on CUDA, data parallel on NCCL (2 ranks x B against 1 rank x 2B), decode throughput at batch 1/32/256
# (compacting and static loops), one GRPO step at the seed's shapes is timed (and on every GPU when there are several),
# then the unit tests run (on CPU, LibTorch 2.x).
#   bench/gpu_check.sh OUTDIR
# Dependencies come from the system, else from the prefix $DEPS (nlohmann-json, pcre2, utf8proc, gtest, pkgconf:
# see the "device" notes in the README). Data: ../shared/data, else $DATA.
set -uo pipefail
cd "$(dirname "$0")/.."
O=${1:-/tmp/gpu_check}
mkdir -p "$O"
DEPS=${DEPS:-}
log() { echo "== $(date +%T) $*"; }

log "machine"
nvidia-smi -L; g++ --version | head -1; cmake --version | head -1
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())'
if [ -n "$DEPS" ]; then
  DEPS=$(cd "$DEPS" && pwd)
  sed -i "s|@PREFIX@|$DEPS|" "$DEPS"/lib/x86_64-linux-gnu/pkgconfig/*.pc
  command -v pkg-config >/dev/null || ln -sf "$DEPS/bin/pkgconf" "$DEPS/bin/pkg-config"
  export PATH="$PATH:$DEPS/bin" PKG_CONFIG_PATH="$DEPS/lib/x86_64-linux-gnu/pkgconfig"
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}:$DEPS/lib/x86_64-linux-gnu"
fi
if [ ! -d ../shared/data ] && [ -n "${DATA:-}" ]; then mkdir -p ../shared && ln -sfn "$(cd "$DATA" && pwd)" ../shared/data; fi

DEV=${DEV:-cuda}
B=${BUILD:-build-cuda}
if [ -n "${BUILD:-}" ]; then log "using the existing build $B"; else
log "configure + build"
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$DEPS" \
  >"$O/configure.log" 2>&1 || { tail -40 "$O/configure.log"; exit 1; }
grep -iE "warning|torch|cuda" "$O/configure.log" | head -20
ninja -C $B -k 0 -j"$(nproc)" >"$O/build.log" 2>&1
rc=$?
grep -E "error|FAILED" "$O/build.log" | head -60
[ $rc -eq 0 ] || { log "build failed"; exit 1; }
log "built"
fi

W=/tmp/gpu_check_work; rm -rf $W; mkdir -p $W/tok
S=../shared/data
cp $S/tokenizers/qwen2/vocab.json $S/tokenizers/qwen2/merges.txt $S/tokenizers/qwen2.5/tokenizer_config.json $W/tok/
M=$B/multiref
$M init --preset small --seed 1 --tokenizer $W/tok --output_dir $W/small_a >/dev/null
$M init --preset small --seed 2 --tokenizer $W/tok --output_dir $W/small_b >/dev/null

log "score and greedy generation: CPU vs CUDA (float32)"
python3 - "$W" <<'EOF'
import json, random, sys
w = sys.argv[1]; random.seed(0)
with open(f"{w}/ids.jsonl", "w") as f:
    for n in (5, 17, 40, 64):
        f.write(json.dumps({"input_ids": [random.randrange(151000) for _ in range(n)], "completion_start": 2}) + "\n")
with open(f"{w}/prompts.jsonl", "w") as f:
    for n in (3, 11, 30):
        f.write(json.dumps({"prompt_ids": [random.randrange(151000) for _ in range(n)]}) + "\n")
EOF
for d in cpu $DEV; do
  $M score --model $W/small_a --ref $W/small_b --input $W/ids.jsonl --output $W/score_$d.jsonl --device $d --dtype float32
  $M generate --model $W/small_a --input $W/prompts.jsonl --output $W/gen_$d.jsonl --device $d --dtype float32 \
    --max_new_tokens 24 --temperature 0 --batch_size 3
done
$M generate --model $W/small_a --input $W/prompts.jsonl --output $W/gen_cuda_bf16.jsonl --device $DEV --dtype bfloat16 \
  --max_new_tokens 24 --temperature 0.8 --num_return_sequences 4 --batch_size 3 || echo "FAILED bf16 sampling"
python3 - "$W" "$DEV" <<'EOF'
import json, sys
w, dev = sys.argv[1], sys.argv[2]
rd = lambda p: [json.loads(l) for l in open(p)]
a, b = rd(f"{w}/score_cpu.jsonl"), rd(f"{w}/score_{dev}.jsonl")
worst = 0.0
for x, y in zip(a, b):
    for k in x:
        if isinstance(x[k], list) and x[k] and isinstance(x[k][0], (int, float)):
            worst = max(worst, max(abs(p - q) for p, q in zip(x[k], y[k])))
print(f"score: max |cpu - cuda| over every output = {worst:.2e}", "OK" if worst < 2e-3 else "MISMATCH")
g1, g2 = rd(f"{w}/gen_cpu.jsonl"), rd(f"{w}/gen_{dev}.jsonl")
same = sum(x["completion_ids"] == y["completion_ids"] for x, y in zip(g1, g2))
print(f"greedy generation: {same}/{len(g1)} sequences identical on CPU and CUDA")
EOF

log "gsm8k_grpo on CUDA, tiny models: rkl, fkl (exact), then resume"
G=$B/gsm8k_grpo
for kl in rkl fkl; do
  $G --dataset gsm8k --data_dir $S --ref_a $W/small_a --ref_b $W/small_b --kl_type $kl --gamma 0.1 \
    --model_out $W/grpo_$kl --per_device_train_batch_size 4 --gradient_accumulation_steps 2 --num_generations 4 \
    --max_steps 2 --max_completion_length 32 --save_steps 1 --bf16 --device $DEV --logging_steps 1 2>&1 | tail -3
  tail -n 1 $W/grpo_$kl/metrics.jsonl | cut -c1-400
done
log "dpo_training on CUDA, tiny models: rkl, fkl"
head -64 $S/ultrafeedback/sample.jsonl >$W/pairs.jsonl
for kl in rkl fkl; do
  $B/dpo_training --dataset $W/pairs.jsonl --eval_samples 8 --ref_a $W/small_a --ref_b $W/small_b --kl_type $kl \
    --gamma 1.0 --output_dir $W/dpo_$kl --per_device_train_batch_size 2 --gradient_accumulation_steps 2 \
    --max_steps 3 --max_length 256 --max_prompt_length 128 --bf16 --device $DEV --logging_steps 1 2>&1 | tail -3
  tail -n 1 $W/dpo_$kl/metrics.jsonl | cut -c1-400
done

log "data parallel on NCCL (issue 19): 2 ranks x B against 1 rank x 2B, GRPO exact RKL, float32, 3 steps"
NGPU=$(nvidia-smi -L | wc -l)
DP="--dataset gsm8k --data_dir $S --ref_a $W/small_a --ref_b $W/small_b --kl_type rkl --gamma 0.1 --num_generations 4 \
  --gradient_accumulation_steps 2 --max_steps 3 --max_completion_length 32 --save_steps 0 --learning_rate 1e-4 \
  --dtype float32 --device $DEV --logging_steps 1"
$G $DP --model_out $W/dp1 --per_device_train_batch_size 8 2>&1 | tail -1
$M launch --nproc_per_node 2 --master_port 29511 -- $G $DP --model_out $W/dp2 --per_device_train_batch_size 4 2>&1 \
  | grep -E "data parallel|rror" | head -5
python3 - "$W" <<'EOF2'
import json, sys
w = sys.argv[1]
rd = lambda p: [json.loads(l) for l in open(p)]
try:
    a, b = rd(f"{w}/dp1/metrics.jsonl"), rd(f"{w}/dp2/metrics.jsonl")
    worst = max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in ("loss", "kl", "reward"))
    print(f"NCCL 2 ranks vs 1 rank: {len(b)} steps, max |metric difference| = {worst:.2e}", "OK" if worst < 1e-4 and len(b) == 3 else "MISMATCH")
except Exception as e:
    print("NCCL data-parallel check FAILED:", e)
EOF2

log "decode throughput (issue 20): 0.5B shape, bf16, 128-token prompts, 256 new tokens, batch 1 / 32 / 256"
for loop in compacting static; do
  $B/bench_generate --mode decode --device $DEV --dtype bfloat16 --batch 1,32,256 --uncached false \
    --decode_loop $loop 2>&1 | tail -3
done

TIME=""; [ -x /usr/bin/time ] && TIME="/usr/bin/time -f peak_RSS_KiB=%M"
[ "${BIG:-1}" = 1 ] || { log "skipping the seed-shaped steps (BIG=0)"; DEV=skip; }
[ "$DEV" = skip ] || log "one GRPO step at the seed's shapes on CUDA (0.5B policy, 0.5B + 1.5B references, bf16, 256 tokens)"
[ "$DEV" = skip ] || $M init --preset qwen2.5-0.5b --vocab_size 151936 --seed 1 --dtype bfloat16 --tokenizer $W/tok --output_dir $W/ref_a >/dev/null
[ "$DEV" = skip ] || $M init --preset qwen2.5-1.5b --vocab_size 151936 --seed 2 --dtype bfloat16 --tokenizer $W/tok --output_dir $W/ref_b >/dev/null
for kl in $([ "$DEV" = skip ] || echo rkl fkl); do
  $TIME $G --dataset gsm8k --data_dir $S --ref_a $W/ref_a --ref_b $W/ref_b --kl_type $kl \
    --gamma 0.1 --model_out $W/big_$kl --per_device_train_batch_size 4 --gradient_accumulation_steps 8 \
    --max_steps 2 --save_steps 0 --bf16 --device $DEV --logging_steps 1 2>&1 | tail -2
  cat $W/big_$kl/metrics.jsonl | cut -c1-600
done
if [ "$DEV" != skip ] && [ "$NGPU" -gt 1 ]; then
  log "the seed-shaped GRPO step on $NGPU ranks (one GPU each; $NGPU x the completions of the 1-rank step above)"
  $M launch --nproc_per_node $NGPU --master_port 29512 -- $G --dataset gsm8k --data_dir $S --ref_a $W/ref_a \
    --ref_b $W/ref_b --kl_type rkl --gamma 0.1 --model_out $W/big_dp --per_device_train_batch_size 4 \
    --gradient_accumulation_steps 8 --max_steps 2 --save_steps 0 --bf16 --device $DEV --logging_steps 1 2>&1 | tail -2
  cat $W/big_dp/metrics.jsonl | cut -c1-600
fi
nvidia-smi --query-gpu=memory.used,memory.total --format=csv

[ "${TESTS:-1}" = 1 ] && { log "unit tests (CPU, this LibTorch)"
(cd $B && timeout 240 ctest -j"$(nproc)" --timeout 200 2>&1 | tail -25); }
log "done"
