#!/usr/bin/env bash
# One GRPO step side by side with the Python peer at the peer's own shape (../shared/bench/peer_py.py grpo_step):
# 2 prompts of 64 random token ids x 4 completions x 32 new tokens, a Qwen2.5-0.5B-shaped policy and two 0.5B
# references (random weights), k3 in the loss, bf16, 2 threads. ../shared/bench/side_by_side.sh's grpo row feeds
# multiref GSM8K prompts under the chat template instead (about twice the peer's tokens per sequence); this one
# gives both programs the same work. Prints one JSON line per estimator with ratio = peer seconds / multiref seconds.
#   bench/side_by_side_grpo.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-./build}
PEER=${PEER:-../shared/bench/peer_py.py}
PY=/usr/bin/python3
export OMP_NUM_THREADS=2
PEER_ENV="ATEN_CPU_CAPABILITY=avx512"
grep -q avx512 /proc/cpuinfo || PEER_ENV=""
W=${W:-${TMPDIR:-/tmp}/multiref-sbs-grpo}
mkdir -p "$W"
for r in a b; do
  [ -f "$W/ref_$r/model.safetensors" ] ||
    "$B/multiref" init --arch qwen2 --preset qwen2.5-0.5b --vocab_size 151936 --seed $([ $r = a ] && echo 1 || echo 2) \
      --dtype bfloat16 --output_dir "$W/ref_$r" >/dev/null
done
$PY -c "
import json, random
random.seed(0)
with open('$W/prompts.jsonl', 'w') as f:
    for _ in range(2): f.write(json.dumps({'prompt_ids': [random.randrange(151936) for _ in range(64)]}) + '\n')"
p=$(env $PEER_ENV $PY "$PEER" grpo_step --batch 2 --group 4 --prompt_len 64 --new_tokens 32 --dtype bf16 --threads 2 | tail -1)
for est in k3 exact; do
  rm -rf "$W/out"
  /usr/bin/time -f "%M" -o "$W/rss" "$B/gsm8k_grpo" --dataset "$W/prompts.jsonl" --ref_a "$W/ref_a" --ref_b "$W/ref_b" \
    --alpha 0.5 --gamma 0.04 --model_out "$W/out" --per_device_train_batch_size 4 --gradient_accumulation_steps 2 \
    --num_generations 4 --max_completion_length 32 --max_steps 2 --save_steps 0 --bf16 --kl_estimator $est \
    --reward length_penalty >"$W/grpo.log" 2>&1 || { tail -3 "$W/grpo.log"; exit 1; }
  $PY - "$p" "$W/out/metrics.jsonl" "$est" "$(cat "$W/rss")" <<'PYEOF'
import json, sys
p, rows, est, rss = json.loads(sys.argv[1]), [json.loads(l) for l in open(sys.argv[2])], sys.argv[3], int(sys.argv[4])
# The ratio is of the first steps (the peer's one step also creates its optimizer state); the second step, without
# that one-off cost, is shown next to it.
phases = [{k: round(m[k], 2) for k in ("time/generate", "time/reward", "time/score", "time/update") if k in m} for m in rows]
ph, tot, tot2 = phases[0], sum(phases[0].values()), sum(phases[-1].values())
print(json.dumps({"pair": f"GRPO step, peer shape (2 prompts x 64 ids, G 4, 32 new, two 0.5B refs), multiref {est}",
                  "peer_s": round(p["step_s"], 2), "peer_phases": [round(p[k], 2) for k in ("generate_s", "score_s", "update_s")],
                  "multiref_s": round(tot, 2), "multiref_phases": ph, "ratio": round(p["step_s"] / tot, 2),
                  "multiref_second_step_s": round(tot2, 2), "multiref_second_step_phases": phases[-1],
                  "peer_rss_gb": round(p["peak_rss_gb"], 2), "multiref_rss_gb": round(rss / 1e6, 2)}))
PYEOF
done
