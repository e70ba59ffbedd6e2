"""Baseline for `npm run bench`: the same random T5 checkpoint decoded with PyTorch on the same CPU.

transformers is not installable here, so this is a plain PyTorch T5 with the work transformers does per
token (KV cache for self-attention, cross-attention K/V computed once, last-position lm_head). It has no
generate() bookkeeping, so it is a lean (favourable) stand-in for transformers + torch.
Usage: torch_t5.py MODEL_DIR BATCH NEW_TOKENS  -> one JSON line on stdout.
"""
import json, math, struct, sys, time

t_start = time.perf_counter()
import numpy as np
import torch

torch.set_grad_enabled(False)
import os
torch.set_num_threads(os.cpu_count() or 1)  # the notes measured torch on both cores
model_dir, batch, new_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg = json.load(open(f"{model_dir}/config.json"))

def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data, dtype=np.float32, count=(end - b) // 4, offset=b).reshape(e["shape"]).copy())
    return out

W = load_safetensors(f"{model_dir}/model.safetensors")
H, dkv, d = cfg["num_heads"], cfg["d_kv"], cfg["d_model"]
eps = cfg.get("layer_norm_epsilon", 1e-6)
nb, maxd = cfg["relative_attention_num_buckets"], cfg["relative_attention_max_distance"]
gated = cfg["feed_forward_proj"].startswith("gated")

def rms(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

def bucket(rel, bidirectional):
    n = nb
    ret = torch.zeros_like(rel)
    if bidirectional:
        n //= 2
        ret += (rel > 0).long() * n
        rel = rel.abs()
    else:
        rel = -torch.clamp(rel, max=0)
    exact = n // 2
    large = exact + (torch.log(rel.float() / exact) / math.log(maxd / exact) * (n - exact)).long()
    large = torch.clamp(large, max=n - 1)
    return ret + torch.where(rel < exact, rel, large)

def bias(prefix, q, k, bidirectional, offset=0):
    ctx = torch.arange(q)[:, None] + offset
    mem = torch.arange(k)[None, :]
    return W[f"{prefix}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"][bucket(mem - ctx, bidirectional)].permute(2, 0, 1)[None]

def proj(x, name):
    return x @ W[name].T

def heads(x):
    return x.view(x.shape[0], -1, H, dkv).transpose(1, 2)

def attend(q, k, v, b):
    s = q @ k.transpose(-1, -2) + b
    return (s.softmax(-1) @ v).transpose(1, 2).reshape(q.shape[0], -1, H * dkv)

def ff(x, p):
    if gated:
        h = torch.nn.functional.gelu(proj(x, f"{p}.DenseReluDense.wi_0.weight"), approximate="tanh") * proj(x, f"{p}.DenseReluDense.wi_1.weight")
    else:
        h = torch.relu(proj(x, f"{p}.DenseReluDense.wi.weight"))
    return proj(h, f"{p}.DenseReluDense.wo.weight")

def encode(ids):
    x = W["shared.weight"][ids]
    b = bias("encoder", ids.shape[1], ids.shape[1], True)
    for i in range(cfg["num_layers"]):
        p = f"encoder.block.{i}.layer"
        h = rms(x, W[f"{p}.0.layer_norm.weight"])
        a = f"{p}.0.SelfAttention"
        x = x + proj(attend(heads(proj(h, f"{a}.q.weight")), heads(proj(h, f"{a}.k.weight")), heads(proj(h, f"{a}.v.weight")), b), f"{a}.o.weight")
        x = x + ff(rms(x, W[f"{p}.1.layer_norm.weight"]), f"{p}.1")
    return rms(x, W["encoder.final_layer_norm.weight"])

L = cfg.get("num_decoder_layers") or cfg["num_layers"]
lm = W["lm_head.weight"] if "lm_head.weight" in W else W["shared.weight"]

def generate(ids, n):
    enc = encode(ids)
    cross = []
    for i in range(L):
        a = f"decoder.block.{i}.layer.1.EncDecAttention"
        cross.append((heads(proj(enc, f"{a}.k.weight")), heads(proj(enc, f"{a}.v.weight"))))
    cache = [None] * L
    tok = torch.zeros(ids.shape[0], 1, dtype=torch.long)
    first = None
    for t in range(n):
        x = W["shared.weight"][tok]
        b = bias("decoder", 1, t + 1, False, offset=t)
        for i in range(L):
            p = f"decoder.block.{i}.layer"
            h = rms(x, W[f"{p}.0.layer_norm.weight"])
            a = f"{p}.0.SelfAttention"
            k, v = heads(proj(h, f"{a}.k.weight")), heads(proj(h, f"{a}.v.weight"))
            if cache[i] is not None:
                k, v = torch.cat([cache[i][0], k], 2), torch.cat([cache[i][1], v], 2)
            cache[i] = (k, v)
            x = x + proj(attend(heads(proj(h, f"{a}.q.weight")), k, v, b), f"{a}.o.weight")
            h = rms(x, W[f"{p}.1.layer_norm.weight"])
            c = f"{p}.1.EncDecAttention"
            x = x + proj(attend(heads(proj(h, f"{c}.q.weight")), cross[i][0], cross[i][1], 0), f"{c}.o.weight")
            x = x + ff(rms(x, W[f"{p}.2.layer_norm.weight"]), f"{p}.2")
        x = rms(x, W["decoder.final_layer_norm.weight"])
        if cfg.get("tie_word_embeddings", True):
            x = x * d ** -0.5
        logits = x[:, -1] @ lm.T
        logits[:, cfg.get("eos_token_id", 1)] = -math.inf  # min_new_tokens: never stop early
        tok = logits.argmax(-1, keepdim=True)
        if first is None:
            first = time.perf_counter()
    return first

ids = torch.tensor([[(7 * i + 13 * r) % 1000 + 3 for i in range(31)] + [1] for r in range(batch)])
t_loaded = time.perf_counter()
generate(ids, 2)  # warm-up, as the tfhf side warms up at load
t0 = time.perf_counter()
t_first = generate(ids, new_tokens)
t1 = time.perf_counter()
import resource
print(json.dumps({
    "startup_s": t_loaded - t_start,
    "first_token_s": t_first - t0,
    "ms_per_token": (t1 - t_first) * 1000 / max(1, new_tokens - 1),
    "tokens_per_s": batch * new_tokens / (t1 - t0),
    "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "threads": torch.get_num_threads(),
}))
