"""A Llama forward pass in numpy with a KV cache, and the sampler of docs/protocol.md section 10.2.

The architecture is Hugging Face's LlamaForCausalLM (RunSpec.model is its config.json, the weights
its parameter names): RMSNorm, rotary embeddings in the "rotate_half" convention, grouped-query
attention, a SwiGLU MLP, and a tied or separate lm_head. Everything is float32.
"""
import numpy as np


class Llama:
    def __init__(self, config, tensors):
        c = config
        self.n_layers = c["num_hidden_layers"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads") or self.n_heads
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.n_heads
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        self.max_positions = c["max_position_embeddings"]
        # HF Linear weights are [out, in]; keep them transposed for x @ W
        t = lambda name: np.ascontiguousarray(tensors[name].T)  # noqa: E731
        self.embed = tensors["model.embed_tokens.weight"]  # [V, d]
        self.layers = []
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            self.layers.append({
                "in_norm": tensors[p + "input_layernorm.weight"],
                "post_norm": tensors[p + "post_attention_layernorm.weight"],
                "q": t(p + "self_attn.q_proj.weight"),
                "k": t(p + "self_attn.k_proj.weight"),
                "v": t(p + "self_attn.v_proj.weight"),
                "o": t(p + "self_attn.o_proj.weight"),
                "gate": t(p + "mlp.gate_proj.weight"),
                "up": t(p + "mlp.up_proj.weight"),
                "down": t(p + "mlp.down_proj.weight"),
            })
        self.norm = tensors["model.norm.weight"]
        head = tensors.get("lm_head.weight")
        self.lm_head = np.ascontiguousarray((self.embed if head is None or c.get("tie_word_embeddings") else head).T)  # [d, V]
        # rotary tables, float32 as HF computes them: inv_freq[i] = 1 / theta^(2i / hd)
        inv = 1.0 / (float(c.get("rope_theta", 10000.0)) ** (np.arange(0, self.head_dim, 2, dtype=np.float32) / self.head_dim))
        ang = np.arange(self.max_positions, dtype=np.float32)[:, None] * inv[None, :].astype(np.float32)
        emb = np.concatenate([ang, ang], axis=-1)
        self.cos, self.sin = np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)  # [P, hd]

    def _rms(self, x, w):
        return (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps)) * w

    def _rope(self, x, pos):  # x [B, T, H, hd], positions pos..pos+T-1
        T, half = x.shape[1], self.head_dim // 2
        cos, sin = self.cos[pos : pos + T][None, :, None, :], self.sin[pos : pos + T][None, :, None, :]
        rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    def start(self, batch):
        """A KV cache for `batch` rows: per layer keys and values [B, H_kv, T, hd], grown per step."""
        return {"pos": 0, "k": [None] * self.n_layers, "v": [None] * self.n_layers, "batch": batch}

    def step(self, cache, ids):
        """Feeds ids [B, T] (every row at the same positions) and returns the last logits [B, V]."""
        B, T = ids.shape
        pos = cache["pos"]
        if pos + T > self.max_positions:
            raise ValueError(f"sequence of {pos + T} tokens exceeds max_position_embeddings {self.max_positions}")
        x = self.embed[ids]  # [B, T, d]
        group = self.n_heads // self.n_kv
        for i, L in enumerate(self.layers):
            h = self._rms(x, L["in_norm"])
            q = self._rope((h @ L["q"]).reshape(B, T, self.n_heads, self.head_dim), pos)
            k = self._rope((h @ L["k"]).reshape(B, T, self.n_kv, self.head_dim), pos)
            v = (h @ L["v"]).reshape(B, T, self.n_kv, self.head_dim)
            k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, H_kv, T, hd]
            if cache["k"][i] is not None:
                k = np.concatenate([cache["k"][i], k], axis=2)
                v = np.concatenate([cache["v"][i], v], axis=2)
            cache["k"][i], cache["v"][i] = k, v
            kk, vv = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # [B, H, S, hd]
            qq = q.transpose(0, 2, 1, 3)  # [B, H, T, hd]
            scores = qq @ kk.transpose(0, 1, 3, 2) / np.sqrt(self.head_dim)  # [B, H, T, S]
            S = kk.shape[2]
            causal = np.arange(S)[None, :] > (pos + np.arange(T))[:, None]  # key after query
            scores = np.where(causal[None, None], -np.inf, scores)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            attn = (scores / scores.sum(axis=-1, keepdims=True)) @ vv  # [B, H, T, hd]
            x = x + attn.transpose(0, 2, 1, 3).reshape(B, T, -1) @ L["o"]
            h = self._rms(x, L["post_norm"])
            g = h @ L["gate"]
            x = x + ((g / (1.0 + np.exp(-g))) * (h @ L["up"])) @ L["down"]  # SwiGLU
        cache["pos"] = pos + T
        return (self._rms(x[:, -1], self.norm) @ self.lm_head).astype(np.float32)  # [B, V]


def log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def choose(logp, sampling, rng):
    """One token from one row's log-probabilities (section 10.2, step 3)."""
    if sampling["temperature"] == 0:
        return int(np.argmax(logp))  # the first maximum: ties go to the lowest id
    cand = np.arange(logp.shape[0])
    top_k, top_p = sampling["topK"], sampling["topP"]
    if (0 < top_k < cand.shape[0]) or top_p < 1:
        cand = np.lexsort((cand, -logp))  # by logp descending, ties by id
        if 0 < top_k < cand.shape[0]:
            cand = cand[:top_k]
    w = np.exp(logp[cand] - logp[cand].max()).astype(np.float64)
    if top_p < 1:
        cum = np.cumsum(w)
        n = int(np.searchsorted(cum, top_p * cum[-1])) + 1  # shortest prefix holding topP of the mass
        cand, w = cand[:n], w[:n]
    return int(cand[rng.choice(cand.shape[0], p=w / w.sum())])


def sample_group(model, prompt_ids, n, sampling, stop_ids, rng):
    """`n` completions of one prompt: per row the tokens (the stop token included when drawn), their
    log-probabilities and the finish reason. All rows share the prompt, so one cache serves them."""
    temperature = sampling["temperature"] or 1.0  # temperature 0 reports temperature-1 log-probs
    cache = model.start(n)
    logits = model.step(cache, np.tile(np.asarray(prompt_ids, dtype=np.int64), (n, 1)))
    tokens, logprobs, finish = [[] for _ in range(n)], [[] for _ in range(n)], ["length"] * n
    live = list(range(n))
    for _ in range(sampling["maxNewTokens"]):
        logp = log_softmax(logits / temperature)
        nxt = np.zeros(n, dtype=np.int64)
        for r in list(live):
            tok = choose(logp[r], sampling, rng[r])
            tokens[r].append(tok)
            logprobs[r].append(float(logp[r, tok]))
            nxt[r] = tok
            if tok in stop_ids:
                finish[r] = "stop"
                live.remove(r)
        if not live:
            break
        logits = model.step(cache, nxt[:, None])  # finished rows are fed too, their output unused
    return tokens, logprobs, finish
