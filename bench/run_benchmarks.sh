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

# Tokenizer encode throughput (issue 3): Qwen2 vocab/merges + Qwen2.5 config from ../shared/data; English =
# GSM8K questions and answers, mixed = UltraFeedback texts plus CJK / Cyrillic / Arabic / emoji lines.
S=../shared/data
if [ -d "$S" ]; then
  T=$(mktemp -d)
  ln -s "$(realpath $S/tokenizers/qwen2/vocab.json)" "$T/vocab.json"
  ln -s "$(realpath $S/tokenizers/qwen2/merges.txt)" "$T/merges.txt"
  ln -s "$(realpath $S/tokenizers/qwen2.5/tokenizer_config.json)" "$T/tokenizer_config.json"
  /usr/bin/python3 - "$S" "$T" <<'PY'
import json, sys
s, t = sys.argv[1], sys.argv[2]
with open(f"{t}/english.txt", "w") as f:
    for line in open(f"{s}/gsm8k/train.jsonl"):
        j = json.loads(line); f.write(j["question"].replace("\n", " ") + "\n" + j["answer"].replace("\n", " ") + "\n")
extra = ["我想在apple工作1314151天～ 这是一个测试句子。", "Привет, как дела? Это тестовое предложение.",
         "مرحبا بالعالم، هذه جملة اختبار.", "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ 🦙🦙",
         "กรุงเทพมหานคร คือเมืองหลวงของประเทศไทย", "नमस्ते दुनिया, यह एक परीक्षण वाक्य है।"]
with open(f"{t}/mixed.txt", "w") as f:
    for i, line in enumerate(open(f"{s}/ultrafeedback/sample.jsonl")):
        j = json.loads(line)
        for k in ("prompt", "chosen"):
            f.write(j[k].replace("\r", " ").replace("\n", " ") + "\n")
        f.write(extra[i % len(extra)] * 4 + "\n")
PY
  $B/bench_tokenizer "$T" "$T/english.txt" "$T/mixed.txt"
  rm -rf "$T"
fi
