#!/usr/bin/env bash
# Benchmarks of the foundation (issue 2): forward and forward+backward of a Qwen2.5-0.5B-shaped model
# (random weights) at batch 4 x 256 in fp32 and bf16, and `multiref score` end to end. Prints JSON lines.
# Takes a few minutes and ~14 GB of RAM on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
B=./build
WORK=${WORK:-$(mktemp -d)}
for dt in float32 bfloat16; do
  $B/bench_forward --preset qwen2.5-0.5b --dtype $dt --batch 4 --seq 256 --iters 2
done
$B/multiref init --arch qwen2 --preset qwen2.5-0.5b --dtype bfloat16 --output_dir "$WORK/qwen0.5b" 2>/dev/null
/usr/bin/python3 - "$WORK/in.jsonl" <<'PY'
import json, random, sys
random.seed(0)
with open(sys.argv[1], "w") as f:
    for i in range(32):
        n = random.randint(128, 256)
        f.write(json.dumps({"input_ids": [random.randrange(151936) for _ in range(n)]}) + "\n")
PY
ntok=$(/usr/bin/python3 -c "import json,sys;print(sum(len(json.loads(l)['input_ids']) for l in open(sys.argv[1])))" "$WORK/in.jsonl")
for dt in float32 bfloat16; do
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/rss" $B/multiref score --model "$WORK/qwen0.5b" --input "$WORK/in.jsonl" \
    --output "$WORK/out.jsonl" --dtype $dt --batch_size 4 2>/dev/null
  end=$(date +%s.%N)
  echo "{\"bench\":\"score\",\"dtype\":\"$dt\",\"tokens\":$ntok,\"seconds\":$(echo "$end - $start" | bc),\"tok_s\":$(echo "$ntok / ($end - $start)" | bc -l | cut -c1-7),\"peak_rss_mib\":$(( $(cat "$WORK/rss") / 1024 ))}"
done
rm -rf "$WORK"
