#!/usr/bin/python3
"""Independent float64 PyTorch reference for the C++ Qwen2/Llama port.

  /usr/bin/python3 tests/golden/make_golden.py --out DIR    # write golden models
  /usr/bin/python3 tests/golden/make_golden.py --check DIR  # re-read + recompute, exit 1 on mismatch

Everything here is written from the Hugging Face transformers (4.46) semantics of
modeling_llama.py / modeling_qwen2.py / modeling_rope_utils.py; neither
transformers nor safetensors is needed.  Each model directory gets config.json,
model.safetensors (float32 weights) and golden.json (float64 reference outputs
computed from exactly those float32 weights upcast to float64).
"""
import argparse
import json
import math
import os
import struct
import sys

import torch

TRANSFORMERS_VERSION = "4.46.0"
TOL = 1e-6

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64}

# name -> (architecture, hyper-parameters, sequence lengths, seed)
MODELS = {
    "qwen2_tied": ("Qwen2ForCausalLM", dict(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
        rope_theta=10000.0, rope_scaling=None, tie_word_embeddings=True,
        max_position_embeddings=128), [1, 7, 13, 24], 1001),
    "qwen2_untied": ("Qwen2ForCausalLM", dict(
        vocab_size=100, hidden_size=48, intermediate_size=80, num_hidden_layers=3,
        num_attention_heads=6, num_key_value_heads=1, rms_norm_eps=1e-6,
        rope_theta=1000000.0, rope_scaling=None, tie_word_embeddings=False,
        max_position_embeddings=128), [1, 7, 13, 20], 1002),
    # llama3 bands for head_dim 16, theta 5e5, original window 64, low/high factor 1/4:
    #   low_freq_wavelen = 64/1 = 64, high_freq_wavelen = 64/4 = 16,
    #   wavelen_i = 2*pi*theta^(2i/16):  i=0 -> 6.28  (< 16: high band, unchanged)
    #                                    i=1 -> 32.4  (16..64: medium band, smoothed)
    #                                    i>=2 -> 167.. (> 64: low band, inv_freq / 8)
    # so all three branches of _compute_llama3_parameters are exercised, and the
    # 90-token sequence runs past original_max_position_embeddings (positions 64..89).
    "llama_rope3": ("LlamaForCausalLM", dict(
        vocab_size=80, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling=LLAMA3_SCALING, tie_word_embeddings=False,
        max_position_embeddings=256), [1, 7, 13, 90], 1003),
    "llama_tied_mha": ("LlamaForCausalLM", dict(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, head_dim=8, rms_norm_eps=1e-6,
        rope_theta=10000.0, rope_scaling=None, tie_word_embeddings=True,
        max_position_embeddings=128), [1, 7, 13, 16], 1004),
    "llama_seqcls": ("LlamaForSequenceClassification", dict(
        vocab_size=72, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5,
        rope_theta=10000.0, rope_scaling=None, tie_word_embeddings=False,
        max_position_embeddings=128, pad_token_id=0), [1, 5, 9, 12], 1005),
}


# ----------------------------------------------------------------------------- config.json
def make_config(arch, hp):
    """The dict PretrainedConfig.save_pretrained writes (to_diff_dict): every
    model-specific key, plus base keys that differ from PretrainedConfig defaults
    (architectures, torch_dtype, bos/eos ids, pad id when set, id2label/label2id
    when num_labels != 2, tie_word_embeddings since it differs from the class default
    or the base default).  num_labels itself is a property and is NOT serialized."""
    is_llama = arch.startswith("Llama")
    c = {
        "architectures": [arch],
        "model_type": "llama" if is_llama else "qwen2",
        "vocab_size": hp["vocab_size"],
        "hidden_size": hp["hidden_size"],
        "intermediate_size": hp["intermediate_size"],
        "num_hidden_layers": hp["num_hidden_layers"],
        "num_attention_heads": hp["num_attention_heads"],
        "num_key_value_heads": hp["num_key_value_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": hp["max_position_embeddings"],
        "rms_norm_eps": hp["rms_norm_eps"],
        "rope_theta": hp["rope_theta"],
        "rope_scaling": hp["rope_scaling"],
        "tie_word_embeddings": hp["tie_word_embeddings"],
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "transformers_version": TRANSFORMERS_VERSION,
    }
    if is_llama:  # LlamaConfig (4.46) extra keys
        c.update(head_dim=hp["head_dim"], attention_bias=False, mlp_bias=False, pretraining_tp=1)
    else:         # Qwen2Config (4.46) extra keys; no head_dim (= hidden/heads)
        c.update(use_sliding_window=False, sliding_window=4096,
                 max_window_layers=hp["num_hidden_layers"])
    if "pad_token_id" in hp:
        c["pad_token_id"] = hp["pad_token_id"]
    if arch.endswith("ForSequenceClassification"):  # num_labels = 1
        c["id2label"] = {"0": "LABEL_0"}
        c["label2id"] = {"LABEL_0": 0}
    return c


def config_text(cfg):
    # PretrainedConfig.to_json_string: json.dumps(d, indent=2, sort_keys=True) + "\n"
    return json.dumps(cfg, indent=2, sort_keys=True) + "\n"


def head_dim_of(cfg):
    # Llama: config.head_dim; Qwen2 (4.46): hidden_size // num_attention_heads
    return cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])


# ----------------------------------------------------------------------------- weights
def make_weights(cfg, gen):
    """Random non-trivial weights (not HF's init), float32, keyed by HF names."""
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim_of(cfg)
    qwen2 = cfg["model_type"] == "qwen2"
    w = {}

    def normal(shape, std):
        return (torch.randn(shape, generator=gen, dtype=torch.float64) * std).float()

    def linear(name, out_f, in_f, bias=False):  # nn.Linear weight is [out, in]
        w[name + ".weight"] = normal((out_f, in_f), 1.0 / math.sqrt(in_f))
        if bias:
            w[name + ".bias"] = normal((out_f,), 0.1)

    def rmsnorm(name):
        w[name + ".weight"] = (1.0 + 0.1 * torch.randn(H, generator=gen, dtype=torch.float64)).float()

    w["model.embed_tokens.weight"] = normal((V, H), 1.0)
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        # Qwen2Attention: q/k/v with bias, o_proj without; Llama: attention_bias=False
        linear(p + "self_attn.q_proj", nh * hd, H, bias=qwen2)
        linear(p + "self_attn.k_proj", nkv * hd, H, bias=qwen2)
        linear(p + "self_attn.v_proj", nkv * hd, H, bias=qwen2)
        linear(p + "self_attn.o_proj", H, nh * hd)
        linear(p + "mlp.gate_proj", I, H)
        linear(p + "mlp.up_proj", I, H)
        linear(p + "mlp.down_proj", H, I)
        rmsnorm(p + "input_layernorm")
        rmsnorm(p + "post_attention_layernorm")
    rmsnorm("model.norm")
    if cfg["architectures"][0].endswith("ForSequenceClassification"):
        linear("score", len(cfg["id2label"]), H)  # nn.Linear(hidden, num_labels, bias=False)
    elif not cfg["tie_word_embeddings"]:
        linear("lm_head", V, H)  # tied models: save_pretrained drops lm_head.weight
    return w


# ----------------------------------------------------------------------------- safetensors I/O
def write_safetensors(path, tensors):
    header = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous()
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)  # pad with spaces so the data section is 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = buf[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


# ----------------------------------------------------------------------------- reference model
def rope_inv_freq(cfg):
    """modeling_rope_utils: _compute_default_rope_parameters / _compute_llama3_parameters."""
    hd = head_dim_of(cfg)
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg["rope_scaling"]
    if rs is None:
        return inv_freq
    assert rs["rope_type"] == "llama3"
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_ctx = rs["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    # wavelen > low_freq_wavelen: divide by factor; wavelen < high_freq_wavelen: keep
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return torch.where(medium, smoothed, scaled)  # attention_factor is 1.0 for llama3


def llama3_bands(cfg):
    """Which llama3 frequency bands the head dimensions fall into (for the sanity assert)."""
    hd, rs = head_dim_of(cfg), cfg["rope_scaling"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ctx = rs["original_max_position_embeddings"]
    return {"high" if wl < ctx / rs["high_freq_factor"] else
            "low" if wl > ctx / rs["low_freq_factor"] else "medium"
            for wl in (2 * math.pi / inv).tolist()}


def rotate_half(x):  # HF rotate_half: non-interleaved halves
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rms_norm(x, weight, eps):  # LlamaRMSNorm / Qwen2RMSNorm
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def linear(x, w, name, bias=False):
    y = x @ w[name + ".weight"].T
    return y + w[name + ".bias"] if bias else y


def final_hidden(cfg, w, ids):
    """Decoder stack for one unpadded sequence at positions 0..T-1 -> [T, H] after model.norm."""
    T, H = len(ids), cfg["hidden_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim_of(cfg)
    n_rep, eps, qwen2 = nh // nkv, cfg["rms_norm_eps"], cfg["model_type"] == "qwen2"

    # LlamaRotaryEmbedding: emb = cat(freqs, freqs); cos/sin per position
    freqs = torch.arange(T, dtype=torch.float64)[:, None] * rope_inv_freq(cfg)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()  # [T, hd]
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)

    x = w["model.embed_tokens.weight"][torch.tensor(ids, dtype=torch.long)]
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(h, w, p + "self_attn.q_proj", qwen2).view(T, nh, hd).transpose(0, 1)
        k = linear(h, w, p + "self_attn.k_proj", qwen2).view(T, nkv, hd).transpose(0, 1)
        v = linear(h, w, p + "self_attn.v_proj", qwen2).view(T, nkv, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin  # apply_rotary_pos_emb
        k = k * cos + rotate_half(k) * sin
        # repeat_kv: kv head j serves query heads j*n_rep .. j*n_rep+n_rep-1
        k = k.repeat_interleave(n_rep, dim=0)
        v = v.repeat_interleave(n_rep, dim=0)
        scores = (q @ k.transpose(1, 2)) / math.sqrt(hd)
        scores = scores.masked_fill(causal, float("-inf"))
        attn = torch.softmax(scores, dim=-1) @ v  # [nh, T, hd]
        x = x + linear(attn.transpose(0, 1).reshape(T, nh * hd), w, p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = linear(h, w, p + "mlp.gate_proj")
        mlp = linear(g * torch.sigmoid(g) * linear(h, w, p + "mlp.up_proj"), w, p + "mlp.down_proj")
        x = x + mlp
    return rms_norm(x, w["model.norm.weight"], eps)


def compute_golden(cfg, weights32, sequences):
    w = {k: v.to(torch.float64) for k, v in weights32.items()}  # exact upcast of stored f32
    arch = cfg["architectures"][0]
    if arch.endswith("ForSequenceClassification"):
        rewards = []
        for ids in sequences:
            hs = final_hidden(cfg, w, ids)
            logits = hs @ w["score.weight"].T  # [T, num_labels]
            # HF: sequence_lengths = argmax(input_ids == pad) - 1, mod T -> last token when no pad
            rewards.append(float(logits[len(ids) - 1, 0]))
        return {"sequences": sequences, "pad_token_id": cfg["pad_token_id"], "rewards": rewards}
    head = w["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else w["lm_head.weight"]
    logits = [(final_hidden(cfg, w, ids) @ head.T).tolist() for ids in sequences]
    return {"sequences": sequences, "logits": logits}


# ----------------------------------------------------------------------------- driver
def make_sequences(cfg, lengths, gen):
    lo = 1 if "pad_token_id" in cfg else 0  # seq-cls sequences never contain the pad id
    return [torch.randint(lo, cfg["vocab_size"], (n,), generator=gen).tolist() for n in lengths]


def write_all(out):
    for name, (arch, hp, lengths, seed) in MODELS.items():
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        cfg = make_config(arch, hp)
        if cfg["rope_scaling"]:  # guard the claim in the MODELS comment: all 3 llama3 bands used
            assert llama3_bands(cfg) == {"high", "medium", "low"}, llama3_bands(cfg)
            assert max(lengths) > cfg["rope_scaling"]["original_max_position_embeddings"]
        weights = make_weights(cfg, gen)
        seqs = make_sequences(cfg, lengths, gen)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            f.write(config_text(cfg))
        write_safetensors(os.path.join(d, "model.safetensors"), weights)
        with open(os.path.join(d, "golden.json"), "w") as f:
            json.dump(compute_golden(cfg, weights, seqs), f, separators=(",", ":"))
            f.write("\n")
        print("wrote", d)


def max_diff(a, b):
    """Max |a-b| over (possibly ragged: one [T, V] block per sequence) nested lists."""
    if isinstance(a, list) and a and isinstance(a[0], list) and isinstance(a[0][0], list):
        if not isinstance(b, list) or len(a) != len(b):
            return float("inf")
        return max(max_diff(x, y) for x, y in zip(a, b))
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    if ta.shape != tb.shape:
        return float("inf")
    return float((ta - tb).abs().max()) if ta.numel() else 0.0


def check_all(out):
    ok = True
    for name, (arch, hp, lengths, seed) in MODELS.items():
        try:
            ok = check_one(out, name, arch, hp, lengths, seed) and ok
        except (OSError, ValueError, KeyError, AssertionError, RuntimeError) as e:
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
            ok = False
    return ok


def check_one(out, name, arch, hp, lengths, seed):
    d = os.path.join(out, name)
    cfg = make_config(arch, hp)
    with open(os.path.join(d, "config.json")) as f:
        if f.read() != config_text(cfg):
            print("FAIL %s: config.json differs from expected" % name)
            return False
    with open(os.path.join(d, "golden.json")) as f:
        gold = json.load(f)
    weights = read_safetensors(os.path.join(d, "model.safetensors"))
    expected = set(make_weights(cfg, torch.Generator().manual_seed(seed)))
    if set(weights) != expected:
        print("FAIL %s: tensor names differ: %s" % (name, sorted(set(weights) ^ expected)))
        return False
    seqs = gold["sequences"]
    if [len(s) for s in seqs] != lengths:
        print("FAIL %s: sequence lengths %s" % (name, [len(s) for s in seqs]))
        return False
    new = compute_golden(cfg, weights, seqs)
    key = "rewards" if "rewards" in new else "logits"
    diff = max_diff(new[key], gold[key])
    if "pad_token_id" in new and (gold.get("pad_token_id") != new["pad_token_id"] or
                                  any(new["pad_token_id"] in s for s in seqs)):
        print("FAIL %s: pad_token_id missing/wrong or present in a sequence" % name)
        return False
    ok = diff <= TOL  # False for NaN too
    print("%s %s: max |diff| of %s = %.3g" % ("ok  " if ok else "FAIL", name, key, diff))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="write golden models into this directory")
    g.add_argument("--check", help="verify golden models in this directory")
    args = ap.parse_args()
    if args.out:
        write_all(args.out)
        return 0
    return 0 if check_all(args.check) else 1


if __name__ == "__main__":
    sys.exit(main())
