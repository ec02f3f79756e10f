# A reward program for `multiref grpo --reward_program "python3 examples/last_number_reward.py"`:
# 1.0 when the last number in the completion equals the row's "answer", else 0.0.
import json, re, sys

for line in sys.stdin:                       # one request per line, answered in order
    q = json.loads(line)                     # prompt_ids, completion_ids, prompt, completion, row
    numbers = re.findall(r"-?\d+(?:\.\d+)?", q.get("completion", "").replace(",", ""))
    ok = bool(numbers) and float(numbers[-1]) == float(q["row"]["answer"])
    print(json.dumps({"reward": 1.0 if ok else 0.0}), flush=True)
