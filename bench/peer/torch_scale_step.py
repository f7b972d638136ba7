"""Peer reference: one GRPO-shaped training step of a Llama-family model of any shape in PyTorch (CPU), from a
Hugging Face config.json (random weights; shapes only). Qwen2's q/k/v biases are included when model_type is qwen2.

    /usr/bin/python3 bench/peer/torch_scale_step.py shapes/smollm2-360m.json --batch 2 --seq 128 [--threads 1] [--steps 3]
        [--checkpoint]

The shared peer (/work/shared/bench/torch_scale_step.py) plus --checkpoint: activation (gradient) checkpointing per
decoder layer with torch.utils.checkpoint, as `grpo bench step --gradient-checkpointing` does: the forward keeps
each layer's input only and the backward recomputes the layer. Without --checkpoint the step is the shared one.

The step: forward, log-softmax gather of the next tokens, loss -(mean_t logp * adv).mean(), backward, AdamW.
Prints one JSON line: parameters, best ms per step after a warm-up step, tokens/s, peak RSS in MB.
"""
import argparse, json, resource, time
import torch, torch.nn as nn, torch.nn.functional as F, torch.utils.checkpoint

p = argparse.ArgumentParser()
p.add_argument('config'); p.add_argument('--batch', type=int, default=4); p.add_argument('--seq', type=int, default=128)
p.add_argument('--threads', type=int, default=1); p.add_argument('--steps', type=int, default=3)
p.add_argument('--checkpoint', action='store_true', help='recompute each decoder layer in backward (torch.utils.checkpoint)')
a = p.parse_args()
torch.set_num_threads(a.threads)
c = json.load(open(a.config))
V, D, I, L, H = c['vocab_size'], c['hidden_size'], c['intermediate_size'], c['num_hidden_layers'], c['num_attention_heads']
KV = c.get('num_key_value_heads', H); hd = c.get('head_dim', D // H); B, T = a.batch, a.seq
bias = c.get('model_type') == 'qwen2'
inv = 1.0 / (c.get('rope_theta', 10000.0) ** (torch.arange(0, hd, 2).float() / hd))
fr = torch.outer(torch.arange(T).float(), inv); emb = torch.cat((fr, fr), -1)
COS, SIN, MASK = emb.cos(), emb.sin(), torch.full((T, T), float('-inf')).triu(1)
def rot(x): h = x.shape[-1] // 2; return torch.cat((-x[..., h:], x[..., :h]), -1)
class RMS(nn.Module):
    def __init__(s): super().__init__(); s.w = nn.Parameter(torch.ones(D))
    def forward(s, x): return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c.get('rms_norm_eps', 1e-6)) * s.w
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.n1, s.n2 = RMS(), RMS()
        s.q, s.k, s.v = nn.Linear(D, H * hd, bias=bias), nn.Linear(D, KV * hd, bias=bias), nn.Linear(D, KV * hd, bias=bias)
        s.o = nn.Linear(H * hd, D, bias=False)
        s.g, s.u, s.d = nn.Linear(D, I, bias=False), nn.Linear(D, I, bias=False), nn.Linear(I, D, bias=False)
    def forward(s, x):
        h = s.n1(x)
        q = s.q(h).view(B, T, H, hd).transpose(1, 2)
        k = s.k(h).view(B, T, KV, hd).transpose(1, 2).repeat_interleave(H // KV, 1)
        v = s.v(h).view(B, T, KV, hd).transpose(1, 2).repeat_interleave(H // KV, 1)
        q, k = q * COS + rot(q) * SIN, k * COS + rot(k) * SIN
        att = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5 + MASK, -1) @ v          # [B, H, T, hd]
        x = x + s.o(att.transpose(1, 2).reshape(B, T, H * hd)); h = s.n2(x)
        return x + s.d(F.silu(s.g(h)) * s.u(h))
class Model(nn.Module):
    def __init__(s):
        super().__init__(); s.e = nn.Embedding(V, D); s.blocks = nn.ModuleList(Block() for _ in range(L)); s.n = RMS()
        s.head = None if c.get('tie_word_embeddings', False) else nn.Linear(D, V, bias=False)
    def forward(s, ids):
        x = s.e(ids)
        for b in s.blocks: x = torch.utils.checkpoint.checkpoint(b, x, use_reentrant=False) if a.checkpoint else b(x)
        x = s.n(x)
        return x @ s.e.weight.T if s.head is None else s.head(x)
torch.manual_seed(0)
m = Model(); opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
ids = torch.randint(0, V, (B, T)); adv = torch.randn(B)
def step():
    lp = torch.log_softmax(m(ids), -1)[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)    # [B, T-1]
    loss = -(lp.mean(-1) * adv).mean(); opt.zero_grad(); loss.backward(); opt.step()
ts = []
for _ in range(1 + a.steps):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
ms = min(ts[1:]) * 1000
print(json.dumps({'peer': 'pytorch', 'torch': torch.__version__, 'threads': a.threads, 'config': a.config,
                  'params': sum(q.numel() for q in m.parameters()), 'batch': B, 'seq': T, 'checkpoint': a.checkpoint, 'ms_per_step': round(ms),
                  'tokens_per_s': round(B * T / ms * 1000), 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
