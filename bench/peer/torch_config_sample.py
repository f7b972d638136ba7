"""Peer reference: batched greedy decoding with a KV cache in PyTorch (CPU) for any Llama or Qwen2 shape given as a
Hugging Face config.json (random weights; shapes only), the peer of `grpo bench sample --model-config`.

    /usr/bin/python3 bench/peer/torch_config_sample.py shapes/smollm2-135m.json --batch 8 --prompt 64 --new 64 \
        [--threads 1] [--runs 3]

The idea of /work/shared/bench/torch_llama_sample.py (reference config only) from a config file: grouped-query
attention (num_key_value_heads), Qwen2's q/k/v biases, tied or separate lm_head, rope_theta, rms_norm_eps. One
prefill of the prompts (logits of the last position only), then one token per step against a preallocated cache,
greedy, under torch.inference_mode(). Prints one JSON line: median ms per run (prefill + decode) and new tokens
per second (batch x new / time), peak RSS in MB.
"""
import argparse, json, resource, statistics, time
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument('config'); p.add_argument('--batch', type=int, default=8); p.add_argument('--prompt', type=int, default=64)
p.add_argument('--new', type=int, default=64); p.add_argument('--threads', type=int, default=1); p.add_argument('--runs', type=int, default=3)
a = p.parse_args()
torch.set_num_threads(a.threads)
c = json.load(open(a.config))
if c.get('model_type', 'llama') not in ('llama', 'qwen2'):
    raise SystemExit(f"model_type {c.get('model_type')!r}: this peer knows llama and qwen2")
V, D, I, L, H = c['vocab_size'], c['hidden_size'], c['intermediate_size'], c['num_hidden_layers'], c['num_attention_heads']
KV = c.get('num_key_value_heads', H); hd = c.get('head_dim', D // H); G = H // KV
bias = c.get('model_type') == 'qwen2'; eps = c.get('rms_norm_eps', 1e-6)
TMAX = a.prompt + a.new
inv = 1.0 / (c.get('rope_theta', 10000.0) ** (torch.arange(0, hd, 2).float() / hd))
fr = torch.outer(torch.arange(TMAX).float(), inv); emb = torch.cat((fr, fr), -1)
COS, SIN = emb.cos(), emb.sin()

def rot(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)

class RMS(nn.Module):
    def __init__(s): super().__init__(); s.w = nn.Parameter(torch.ones(D))
    def forward(s, x): return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * s.w

class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.n1, s.n2 = RMS(), RMS()
        s.q, s.k, s.v = nn.Linear(D, H * hd, bias=bias), nn.Linear(D, KV * hd, bias=bias), nn.Linear(D, KV * hd, bias=bias)
        s.o = nn.Linear(H * hd, D, bias=False)
        s.g, s.u, s.d = nn.Linear(D, I, bias=False), nn.Linear(D, I, bias=False), nn.Linear(I, D, bias=False)
    def forward(s, x, cache, pos):
        B, T, _ = x.shape
        h = s.n1(x)
        q = s.q(h).view(B, T, H, hd).transpose(1, 2)                                   # [B, H, T, hd]
        k = s.k(h).view(B, T, KV, hd).transpose(1, 2)                                  # [B, KV, T, hd]
        v = s.v(h).view(B, T, KV, hd).transpose(1, 2)
        cs, sn = COS[pos:pos + T], SIN[pos:pos + T]
        q, k = q * cs + rot(q) * sn, k * cs + rot(k) * sn
        cache[0][:, :, pos:pos + T], cache[1][:, :, pos:pos + T] = k, v
        K = cache[0][:, :, :pos + T].repeat_interleave(G, 1)                           # [B, H, pos+T, hd]
        Vv = cache[1][:, :, :pos + T].repeat_interleave(G, 1)
        sc = q @ K.transpose(-1, -2) / hd ** 0.5                                       # [B, H, T, pos+T]
        if T > 1: sc = sc + torch.full((T, pos + T), float('-inf')).triu(pos + 1)
        att = torch.softmax(sc, -1) @ Vv
        x = x + s.o(att.transpose(1, 2).reshape(B, T, H * hd))
        h = s.n2(x)
        return x + s.d(F.silu(s.g(h)) * s.u(h))

class Model(nn.Module):
    def __init__(s):
        super().__init__()
        s.e = nn.Embedding(V, D); s.blocks = nn.ModuleList(Block() for _ in range(L)); s.n = RMS()
        s.head = None if c.get('tie_word_embeddings', False) else nn.Linear(D, V, bias=False)
    def forward(s, ids, caches, pos):
        x = s.e(ids)
        for b, cache in zip(s.blocks, caches): x = b(x, cache, pos)
        h = s.n(x[:, -1])                                                              # [B, D]: last position only
        return h @ s.e.weight.T if s.head is None else s.head(h)

torch.manual_seed(0)
m = Model().eval()
prompts = torch.randint(0, V, (a.batch, a.prompt))

def run():
    caches = [(torch.zeros(a.batch, KV, TMAX, hd), torch.zeros(a.batch, KV, TMAX, hd)) for _ in range(L)]
    logits = m(prompts, caches, 0); pos = a.prompt
    for _ in range(a.new):
        tok = logits.argmax(-1, keepdim=True)                                          # greedy
        logits = m(tok, caches, pos); pos += 1

with torch.inference_mode():
    run()                                                                              # warm-up
    ts = []
    for _ in range(a.runs):
        t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
ms = statistics.median(ts) * 1000
print(json.dumps({'peer': 'pytorch', 'torch': torch.__version__, 'threads': torch.get_num_threads(), 'config': a.config,
                  'params': sum(q.numel() for q in m.parameters()), 'batch': a.batch, 'prompt': a.prompt, 'new': a.new,
                  'median_ms': round(ms, 1), 'new_tokens_per_s': round(a.batch * a.new / ms * 1000),
                  'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
