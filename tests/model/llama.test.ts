import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../src/engine/tf.js';
import { LlamaModel } from '../../src/model/llama.js';
import { rmsNorm } from '../../src/model/llama-forward.js';
import { llamaParamShapes } from '../../src/model/llama-params.js';
import type { LlamaConfig, NamedHostTensors } from '../../src/model/types.js';
import { expectCode, tinyLlamaConfig } from '../helpers.js';

const TOKENS = { vocabSize: 20, bosId: 1, eosId: 2, padId: 0 };

/** hidden 32, 2 layers, 4 query heads sharing 2 kv heads (GQA), vocab 20; large init for peaky outputs. */
function tinyConfig(overrides: Partial<LlamaConfig> = {}): LlamaConfig {
  return tinyLlamaConfig(TOKENS, { max_position_embeddings: 64, tie_word_embeddings: false, initializer_range: 0.3, ...overrides }, 'gqa');
}

/**
 * Hugging Face LlamaForCausalLM semantics written out naively on the host in float64: explicit
 * rotate_half, repeat_kv by head index, per-head loops. Returns logits [T][V] of one sequence.
 */
function referenceLogits(c: LlamaConfig, w: NamedHostTensors, ids: number[]): number[][] {
  const d = c.hidden_size;
  const nH = c.num_attention_heads;
  const nKV = c.num_key_value_heads;
  const hd = d / nH;
  const T = ids.length;
  const W = (name: string) => w.get(name)!.data;
  const linear = (name: string, x: number[]): number[] => {
    const [out, inp] = w.get(name)!.shape;
    const m = W(name);
    return Array.from({ length: out }, (_, o) => x.reduce((s, xi, i) => s + m[o * inp + i] * xi, 0));
  };
  const rms = (x: number[], name: string): number[] => {
    const r = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + c.rms_norm_eps);
    return x.map((v, i) => v * r * W(name)[i]);
  };
  const rope = (x: number[], pos: number): number[] => {
    const half = hd / 2;
    return x.map((v, i) => {
      const f = pos / Math.pow(c.rope_theta, (2 * (i % half)) / hd);
      const rotated = i < half ? -x[i + half] : x[i - half];
      return v * Math.cos(f) + rotated * Math.sin(f);
    });
  };
  let xs = ids.map((id) => Array.from(W('model.embed_tokens.weight').subarray(id * d, (id + 1) * d)));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const normed = xs.map((x) => rms(x, `${p}.input_layernorm.weight`));
    const q = normed.map((x) => linear(`${p}.self_attn.q_proj.weight`, x));
    const k = normed.map((x) => linear(`${p}.self_attn.k_proj.weight`, x));
    const v = normed.map((x) => linear(`${p}.self_attn.v_proj.weight`, x));
    const head = (vec: number[], h: number) => vec.slice(h * hd, (h + 1) * hd);
    const attn = xs.map((_, t) => {
      const out: number[] = [];
      for (let h = 0; h < nH; h++) {
        const kvh = Math.floor(h / (nH / nKV));
        const qh = rope(head(q[t], h), t);
        const scores = Array.from({ length: t + 1 }, (_, s) => {
          const ks = rope(head(k[s], kvh), s);
          return qh.reduce((acc, qi, i) => acc + qi * ks[i], 0) / Math.sqrt(hd);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let i = 0; i < hd; i++) out.push(e.reduce((acc, ei, s) => acc + (ei / z) * head(v[s], kvh)[i], 0));
      }
      return linear(`${p}.self_attn.o_proj.weight`, out);
    });
    xs = xs.map((x, t) => x.map((xi, i) => xi + attn[t][i]));
    xs = xs.map((x) => {
      const n = rms(x, `${p}.post_attention_layernorm.weight`);
      const g = linear(`${p}.mlp.gate_proj.weight`, n);
      const u = linear(`${p}.mlp.up_proj.weight`, n);
      const down = linear(`${p}.mlp.down_proj.weight`, g.map((gi, i) => (gi / (1 + Math.exp(-gi))) * u[i]));
      return x.map((xi, i) => xi + down[i]);
    });
  }
  const headName = c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  return xs.map((x) => linear(headName, rms(x, 'model.norm.weight')));
}

function logSoftmax(z: number[]): number[] {
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
  return z.map((v) => v - lse);
}

function maxAbsDiff(a: number[], b: number[]): number {
  return Math.max(...a.map((v, i) => Math.abs(v - b[i])));
}

function ids2d(rows: number[][]): tf.Tensor2D {
  return tf.tensor2d(rows, [rows.length, rows[0].length], 'int32');
}

async function logitsOf(m: LlamaModel, rows: number[][]): Promise<number[][][]> {
  const t = tf.tidy(() => m.logits(ids2d(rows)));
  const out = await t.array();
  t.dispose();
  return out;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('LlamaModel forward', () => {
  it('gives logits [B, T, V], log-probs and entropy [B, T-1], and variables in HF order', async () => {
    const c = tinyConfig();
    const m = LlamaModel.create(c, 1);
    const ids = ids2d([
      [1, 5, 6, 7, 8, 9],
      [1, 3, 4, 5, 6, 7],
    ]);
    const logits = m.logits(ids);
    expect(logits.shape).toEqual([2, 6, 20]);
    const { logp, entropy } = m.tokenLogProbs(ids, { withEntropy: true });
    expect(logp.shape).toEqual([2, 5]);
    expect(entropy!.shape).toEqual([2, 5]);
    expect([...m.variables().keys()]).toEqual([...llamaParamShapes(c).keys()]);
    const expected = [...llamaParamShapes(c).values()].reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
    expect(m.numParams()).toBe(expected);
    tf.dispose([ids, logits, logp, entropy!]);
    m.dispose();
  });

  it('matches a naive Hugging Face Llama reference (GQA, untied and tied)', async () => {
    for (const tie of [false, true]) {
      const c = tinyConfig({ tie_word_embeddings: tie });
      const m = LlamaModel.create(c, 2);
      const seq = [1, 7, 3, 19, 4, 4, 11];
      const ref = referenceLogits(c, await m.toHostTensors(), seq);
      const got = (await logitsOf(m, [seq]))[0];
      for (let t = 0; t < seq.length; t++) expect(maxAbsDiff(got[t], ref[t])).toBeLessThan(1e-4);
      m.dispose();
    }
  });

  it('is causal: changing a later token leaves earlier logits unchanged', async () => {
    const m = LlamaModel.create(tinyConfig(), 3);
    const [a, b] = await logitsOf(m, [
      [1, 4, 5, 6, 7, 8],
      [1, 4, 5, 6, 12, 13],
    ]);
    for (let t = 0; t < 4; t++) expect(maxAbsDiff(a[t], b[t])).toBeLessThan(1e-6);
    expect(maxAbsDiff(a[4], b[4])).toBeGreaterThan(1e-3);
    m.dispose();
  });

  it('grouped-query attention equals multi-head attention with repeated kv weights', async () => {
    const gqa = tinyConfig({ num_key_value_heads: 2 });
    const mha = tinyConfig({ num_key_value_heads: 4 });
    const g = LlamaModel.create(gqa, 4);
    const w = await g.toHostTensors();
    const hd = gqa.hidden_size / gqa.num_attention_heads;
    const d = gqa.hidden_size;
    for (let l = 0; l < gqa.num_hidden_layers; l++) {
      for (const proj of ['k_proj', 'v_proj']) {
        const name = `model.layers.${l}.self_attn.${proj}.weight`;
        const src = w.get(name)!.data;
        const data = new Float32Array(4 * hd * d);
        for (let h = 0; h < 4; h++) data.set(src.subarray(Math.floor(h / 2) * hd * d, (Math.floor(h / 2) + 1) * hd * d), h * hd * d);
        w.set(name, { shape: [4 * hd, d], data });
      }
    }
    const m = LlamaModel.fromHostTensors(mha, w);
    const seq = [[1, 9, 8, 7, 6, 5, 4]];
    const [a] = await logitsOf(g, seq);
    const [b] = await logitsOf(m, seq);
    for (let t = 0; t < a.length; t++) expect(maxAbsDiff(a[t], b[t])).toBeLessThan(1e-5);
    g.dispose();
    m.dispose();
  });

  it('names lm_head.weight only when embeddings are untied', async () => {
    const tied = LlamaModel.create(tinyConfig({ tie_word_embeddings: true }), 5);
    const untied = LlamaModel.create(tinyConfig({ tie_word_embeddings: false }), 5);
    expect(tied.variables().has('lm_head.weight')).toBe(false);
    expect((await tied.toHostTensors()).has('lm_head.weight')).toBe(false);
    expect(untied.variables().get('lm_head.weight')!.shape).toEqual([20, 32]);
    expect(untied.numParams() - tied.numParams()).toBe(20 * 32);
    tied.dispose();
    untied.dispose();
  });

  it('left padding with leftPad gives the unpadded logits at the real positions', async () => {
    const m = LlamaModel.create(tinyConfig(), 6);
    const short = [1, 8, 9, 10];
    const [alone] = await logitsOf(m, [short]);
    const padded = tf.tidy(() => m.logits(ids2d([[0, 0, ...short], [1, 2, 3, 4, 5, 6]]), { leftPad: [2, 0] }));
    const rows = await padded.array();
    padded.dispose();
    for (let t = 0; t < short.length; t++) expect(maxAbsDiff(rows[0][t + 2], alone[t])).toBeLessThan(1e-5);
    m.dispose();
  });
});

describe('LlamaModel.tokenLogProbs', () => {
  it('equals log_softmax(logits / temperature) gathered at the next token, and its entropy', async () => {
    const m = LlamaModel.create(tinyConfig(), 7);
    const rows = [
      [1, 4, 9, 16, 3, 5],
      [1, 2, 3, 5, 8, 13],
    ];
    const logits = await logitsOf(m, rows);
    for (const temperature of [1, 0.7]) {
      const out = tf.tidy(() => m.tokenLogProbs(ids2d(rows), { temperature, withEntropy: true }));
      const logp = await out.logp.array();
      const ent = await out.entropy!.array();
      tf.dispose([out.logp, out.entropy!]);
      for (let b = 0; b < 2; b++) {
        for (let t = 0; t < 5; t++) {
          const lsm = logSoftmax(logits[b][t].map((z) => z / temperature));
          expect(Math.abs(logp[b][t] - lsm[rows[b][t + 1]])).toBeLessThan(1e-5);
          const h = -lsm.reduce((s, l) => s + Math.exp(l) * l, 0);
          expect(Math.abs(ent[b][t] - h)).toBeLessThan(1e-5);
        }
      }
    }
    m.dispose();
  });
});

describe('LlamaModel training', () => {
  it("rmsNorm's hand-written gradient equals autodiff of the plain formula", async () => {
    const x = tf.randomNormal([6, 8], 0, 2, 'float32', 1) as tf.Tensor2D;
    const w = tf.randomNormal([8], 1, 0.5, 'float32', 2) as tf.Tensor1D;
    const dy = tf.randomNormal([6, 8], 0, 1, 'float32', 3) as tf.Tensor2D;
    const plain = (a: tf.Tensor2D, b: tf.Tensor1D) => a.div(a.square().mean(-1, true).add(1e-5).sqrt()).mul(b);
    const [gx, gw] = tf.grads((a, b) => rmsNorm(a as tf.Tensor2D, b as tf.Tensor1D, 1e-5).mul(dy).sum())([x, w]);
    const [ex, ew] = tf.grads((a, b) => plain(a as tf.Tensor2D, b as tf.Tensor1D).mul(dy).sum())([x, w]);
    const close = async (a: tf.Tensor, b: tf.Tensor) => maxAbsDiff([...(await a.data())], [...(await b.data())]);
    expect(await close(rmsNorm(x, w, 1e-5), plain(x, w))).toBeLessThan(1e-5);
    expect(await close(gx, ex)).toBeLessThan(1e-5);
    expect(await close(gw, ew)).toBeLessThan(1e-5);
    expect(await close(gx, tf.zerosLike(gx))).toBeGreaterThan(1e-2);
    tf.dispose([x, w, dy, gx, gw, ex, ew]);
  });

  it('passes finite, non-zero gradients to every variable', () => {
    const m = LlamaModel.create(tinyConfig(), 8);
    const ids = ids2d([
      [1, 5, 6, 7, 8, 9],
      [1, 3, 4, 5, 6, 7],
    ]);
    const { value, grads } = tf.variableGrads(() => m.tokenLogProbs(ids).logp.mean().neg() as tf.Scalar);
    expect(Object.keys(grads).length).toBe(m.variables().size);
    for (const [name, v] of m.variables()) {
      const g = grads[v.name];
      expect(g.shape, name).toEqual(v.shape);
      const data = g.dataSync();
      expect(data.every(Number.isFinite), name).toBe(true);
      expect(data.some((x) => x !== 0), name).toBe(true);
    }
    tf.dispose([ids, value, ...Object.values(grads)]);
    m.dispose();
  });

  it('keeps tf.memory().numTensors constant across train steps after warm-up', async () => {
    const m = LlamaModel.create(tinyConfig(), 9);
    const frozen = m.clone({ trainable: false });
    const opt = tf.train.adam(1e-3);
    const ids = ids2d([[1, 5, 6, 7, 8, 9, 10, 11]]);
    const step = async () => {
      const { value, grads } = tf.variableGrads(() => {
        const { logp } = m.tokenLogProbs(ids);
        const ref = frozen.tokenLogProbs(ids).logp;
        return logp.sub(ref).square().mean().sub(logp.mean()) as tf.Scalar;
      });
      opt.applyGradients(grads);
      const loss = (await value.data())[0];
      tf.dispose([value, ...Object.values(grads)]);
      return loss;
    };
    await step();
    const before = tf.memory().numTensors;
    const first = await step();
    let last = first;
    for (let i = 0; i < 3; i++) last = await step();
    expect(tf.memory().numTensors).toBe(before);
    expect(last).toBeLessThan(first); // the loss goes down, so the variables really moved
    opt.dispose();
    tf.dispose(ids);
    frozen.dispose();
    m.dispose();
  });
});

describe('LlamaModel weights', () => {
  it('creates HF-style initial weights reproducibly from a seed', async () => {
    const c = tinyConfig({ initializer_range: 0.02 });
    const hostOf = async (seed: number) => {
      const m = LlamaModel.create(c, seed);
      const w = await m.toHostTensors();
      m.dispose();
      return w;
    };
    const [a, b, other] = [await hostOf(11), await hostOf(11), await hostOf(12)];
    const q = a.get('model.layers.0.self_attn.q_proj.weight')!.data;
    expect(q).toEqual(b.get('model.layers.0.self_attn.q_proj.weight')!.data);
    expect(q).not.toEqual(other.get('model.layers.0.self_attn.q_proj.weight')!.data);
    const std = Math.sqrt(q.reduce((s, v) => s + v * v, 0) / q.length);
    expect(std).toBeGreaterThan(0.017);
    expect(std).toBeLessThan(0.023);
    expect(a.get('model.norm.weight')!.data.every((v) => v === 1)).toBe(true);
    const pad = a.get('model.embed_tokens.weight')!.data.subarray(0, 32); // pad id 0: zero row
    expect(pad.every((v) => v === 0)).toBe(true);
  });

  it('round-trips host tensors, copies on load, and sets weights in place', async () => {
    const c = tinyConfig();
    const src = LlamaModel.create(c, 13);
    const host = await src.toHostTensors();
    const loaded = LlamaModel.fromHostTensors(c, host);
    host.get('model.norm.weight')!.data.fill(5); // must not reach `loaded`
    const back = await loaded.toHostTensors();
    for (const [name, t] of await src.toHostTensors()) expect(back.get(name)!.data, name).toEqual(t.data);

    const target = LlamaModel.create(c, 14);
    const copy = target.clone();
    target.setWeights(await src.toHostTensors());
    const seq = [[1, 2, 3, 4, 5]];
    expect(await logitsOf(target, seq)).toEqual(await logitsOf(src, seq));
    expect(await logitsOf(copy, seq)).not.toEqual(await logitsOf(src, seq)); // the clone kept its own weights
    expect([...copy.variables().values()].every((v) => v.trainable)).toBe(true);
    for (const m of [src, loaded, target, copy]) m.dispose();
  });

  it('rejects mismatched checkpoints with GRPO_ERR_CHECKPOINT_MISMATCH', async () => {
    const c = tinyConfig();
    const m = LlamaModel.create(c, 15);
    const host = await m.toHostTensors();
    host.set('model.layers.1.mlp.up_proj.weight', { shape: [48, 31], data: new Float32Array(48 * 31) });
    expectCode(() => LlamaModel.fromHostTensors(c, host), 'GRPO_ERR_CHECKPOINT_MISMATCH');
    expectCode(() => m.setWeights(host), 'GRPO_ERR_CHECKPOINT_MISMATCH');
    m.dispose();
  });

  it('rejects bad configs, bad ids and over-long sequences with coded errors', () => {
    expectCode(() => LlamaModel.create({ ...tinyConfig(), num_key_value_heads: 3 }, 1), 'GRPO_ERR_MODEL_CONFIG');
    const m = LlamaModel.create(tinyConfig({ max_position_embeddings: 8 }), 16);
    expectCode(() => m.logits(tf.tensor2d([[1, 2]], [1, 2], 'float32') as tf.Tensor2D), 'GRPO_ERR_MODEL_INPUT');
    expectCode(() => m.tokenLogProbs(ids2d([[1]])), 'GRPO_ERR_MODEL_INPUT');
    expectCode(() => m.logits(ids2d([[1, 2, 3, 4, 5, 6, 7, 8, 9]])), 'GRPO_ERR_SEQUENCE_TOO_LONG');
    m.dispose();
    expectCode(() => m.variables(), 'GRPO_ERR_MODEL_DISPOSED');
  });
});
