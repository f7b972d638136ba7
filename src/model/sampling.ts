/**
 * Batched sampling with a KV cache. The model runs one step for all live rows on the device;
 * the step's log-probabilities come to the host in one read and each row picks its token there
 * with its own seeded Rng (so a row's draws do not depend on when other rows finish).
 *
 * Per row and step: grammar mask (allowedTokens) -> top-k -> top-p over the renormalised
 * remainder -> draw (or argmax at temperature 0). The log-probability returned with each token is
 * log_softmax(logits / temperature) renormalised over the grammar's allowed set (the full
 * vocabulary when no grammar constrains the step), before top-k/top-p; the allowed sets come back
 * with the result, so the learner's LlamaModel.tokenLogProbs (option `allowed`) recomputes the
 * same numbers (see SampleResult in types.ts).
 *
 * Why the masked (renormalised) log-probability: the policy that acts is the model under its
 * grammar, so that is the distribution whose ratio and KL GRPO should take. The model's raw
 * log-probability of a sampled token also moves when mass shifts between grammar-valid and
 * invalid tokens, which sampling never sees: trained on raw log-probabilities, a Countdown policy
 * drifted its mass onto tokens the grammar forbids, its KL estimate to the reference spiked to 7
 * and its held-out accuracy fell. The masked value is finite (0 for a forced token) and never
 * -Infinity. docs/objective.md ("Behaviour log-probabilities under a grammar mask") has the rest.
 */
import { GrpoError } from '../shared/errors.js';
import { Rng } from '../shared/rng.js';
import { startDecoding } from './decode-path.js';
import type { LlamaModel } from './llama.js';
import type { SampleOptions, SampleResult } from './types.js';

type FinishReason = SampleResult['finishReason'][number];

export async function sample(model: LlamaModel, prompts: number[][], opts: SampleOptions): Promise<SampleResult> {
  const V = model.config.vocab_size;
  checkOptions(V, prompts, opts);
  const B = prompts.length;
  const tokens: number[][] = prompts.map(() => []);
  const logprobs: number[][] = prompts.map(() => []);
  const allowedSets: (number[] | null)[][] | undefined = opts.allowedTokens ? prompts.map(() => []) : undefined;
  const finishReason: FinishReason[] = prompts.map(() => 'length');
  const result = (): SampleResult => (allowedSets ? { tokens, logprobs, allowed: allowedSets, finishReason } : { tokens, logprobs, finishReason });
  if (B === 0 || opts.maxNewTokens === 0) return result();

  const root = new Rng(opts.seed);
  const rngs = prompts.map(() => root.fork());
  const stop = new Set(opts.stopTokens);
  const maxLength = Math.max(...prompts.map((p) => p.length)) + opts.maxNewTokens;
  const session = await startDecoding(model, prompts, maxLength, opts.temperature, opts.decoder); // native or tfjs
  try {
    for (;;) {
      const rows = session.rows;
      const allowed = opts.allowedTokens
        ? checkAllowed(opts.allowedTokens(rows.map((r) => tokens[r].slice()), rows.slice()), rows.length, V)
        : null;
      const logp = await session.readLogProbs(); // [B_live * V]
      const keep: number[] = [];
      const next: number[] = [];
      for (let s = 0; s < rows.length; s++) {
        const r = rows[s];
        const tok = rowStep(logp.subarray(s * V, (s + 1) * V), allowed?.[s] ?? null, opts, rngs[r], {
          tokens: tokens[r],
          logprobs: logprobs[r],
          allowed: allowedSets?.[r],
        });
        if (tok === null) finishReason[r] = 'grammar';
        else if (stop.has(tok)) finishReason[r] = 'stop';
        else if (tokens[r].length >= opts.maxNewTokens) finishReason[r] = 'length';
        else {
          keep.push(s);
          next.push(tok);
        }
      }
      if (keep.length === 0) break;
      session.keep(keep);
      session.step(next);
    }
  } finally {
    session.dispose();
  }
  return result();
}

/** What one row has generated so far; rowStep appends to it. */
export interface RowRecord {
  tokens: number[];
  logprobs: number[];
  allowed?: (number[] | null)[]; // only when a grammar hook is given
}

/**
 * One row's step of the sampler: picks a token from the row's log-probs [V] under the grammar's
 * allowed set (null = any), appends it with its (masked) log-probability and allowed set to
 * `rec`, and returns it; null, appending nothing, when the grammar allows no token (the row ends
 * with finish reason 'grammar'). Shared by sample() and the continuous-batching StreamSampler.
 */
export function rowStep(
  row: Float32Array,
  allow: ArrayLike<number> | null,
  opts: Pick<SampleOptions, 'temperature' | 'topK' | 'topP'>,
  rng: Rng,
  rec: RowRecord,
): number | null {
  if (allow !== null && allow.length === 0) return null;
  const tok = chooseToken(row, allow, opts, rng);
  rec.tokens.push(tok);
  if (allow === null) {
    rec.logprobs.push(row[tok]);
    rec.allowed?.push(null);
  } else {
    const set = ascendingSet(allow, row.length);
    rec.logprobs.push(maskedLogProb(row, set, tok));
    rec.allowed!.push(set);
  }
  return tok;
}

/** The allowed ids deduplicated and ascending (the form the learner's batch layout takes). */
function ascendingSet(allowed: ArrayLike<number>, V: number): number[] {
  return Array.from(candidates(V, allowed));
}

/**
 * log p(token) renormalised over `allowed`: logp[token] - log(sum over allowed of exp(logp)), in
 * float64 on the host; <= 0, and exactly 0 when `token` is the only allowed one.
 */
export function maskedLogProb(logp: Float32Array, allowed: readonly number[], token: number): number {
  let max = -Infinity;
  for (const t of allowed) max = Math.max(max, logp[t]);
  let sum = 0;
  for (const t of allowed) sum += Math.exp(logp[t] - max);
  return Math.min(0, logp[token] - (max + Math.log(sum)));
}

/**
 * Picks one token from a row of log-probs [V] (temperature already applied). `allowed` null means
 * every token. Sorting for top-k/top-p is O(V log V) per row; it is skipped when both are off.
 */
export function chooseToken(
  logp: Float32Array,
  allowed: ArrayLike<number> | null,
  opts: Pick<SampleOptions, 'temperature' | 'topK' | 'topP'>,
  rng: Rng,
): number {
  if (allowed === null && opts.temperature === 0) {
    // greedy over the whole vocabulary without building the candidate list (V may be 100k+)
    let best = 0;
    for (let t = 1; t < logp.length; t++) if (logp[t] > logp[best]) best = t;
    return best;
  }
  let cand = candidates(logp.length, allowed);
  if (opts.temperature === 0) {
    let best = cand[0];
    for (const t of cand) if (logp[t] > logp[best] || (logp[t] === logp[best] && t < best)) best = t;
    return best;
  }
  const topK = opts.topK > 0 && opts.topK < cand.length ? opts.topK : 0;
  if (topK > 0 || opts.topP < 1) {
    cand = cand.sort((a, b) => logp[b] - logp[a] || a - b);
    if (topK > 0) cand = cand.subarray(0, topK);
  }
  let max = -Infinity;
  for (const t of cand) max = Math.max(max, logp[t]);
  const w = new Float64Array(cand.length); // probabilities up to a common factor
  let total = 0;
  for (let i = 0; i < cand.length; i++) total += w[i] = Math.exp(logp[cand[i]] - max);
  let n = cand.length;
  if (opts.topP < 1) {
    // smallest prefix of the sorted candidates holding at least topP of the remaining mass
    let cum = 0;
    for (n = 0; n < cand.length; ) {
      cum += w[n++];
      if (cum >= opts.topP * total) break;
    }
    total = cum;
  }
  const u = rng.next() * total;
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc += w[i];
    if (u < acc) return cand[i];
  }
  return cand[n - 1]; // rounding left u at the very top
}

/** Candidate token ids: the allowed set (deduplicated, ascending) or 0..V-1. */
function candidates(V: number, allowed: ArrayLike<number> | null): Int32Array {
  if (allowed === null) {
    const all = new Int32Array(V);
    for (let i = 0; i < V; i++) all[i] = i;
    return all;
  }
  const seen = new Uint8Array(V);
  for (let i = 0; i < allowed.length; i++) seen[allowed[i]] = 1;
  const out = new Int32Array(seen.reduce((a, b) => a + b, 0));
  let n = 0;
  for (let t = 0; t < V; t++) if (seen[t]) out[n++] = t;
  return out;
}

export function checkOptions(V: number, prompts: number[][], o: SampleOptions): void {
  const fail = (msg: string): never => {
    throw new GrpoError('GRPO_ERR_SAMPLE_OPTIONS', msg);
  };
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) fail(`maxNewTokens is ${o.maxNewTokens}, it must be an integer >= 0`);
  if (!Number.isFinite(o.temperature) || o.temperature < 0) fail(`temperature is ${o.temperature}, it must be finite and >= 0 (0 = greedy)`);
  if (!Number.isInteger(o.topK) || o.topK < 0) fail(`topK is ${o.topK}, it must be an integer >= 0 (0 = off)`);
  if (!(o.topP > 0 && o.topP <= 1)) fail(`topP is ${o.topP}, it must be in (0, 1] (1 = off)`);
  if (!Number.isFinite(o.seed)) fail(`seed is ${o.seed}, it must be a finite number`);
  for (const t of o.stopTokens) if (!isTokenId(t, V)) fail(`stop token ${t} is not a token id in [0, ${V})`);
  prompts.forEach((p, i) => {
    if (p.length === 0) fail(`prompt ${i} is empty; give every row at least one token (e.g. BOS)`);
    for (const t of p) if (!isTokenId(t, V)) fail(`prompt ${i} holds ${t}, not a token id in [0, ${V})`);
  });
}

export function checkAllowed(
  allowed: (Int32Array | number[] | null)[],
  rows: number,
  V: number,
): (Int32Array | number[] | null)[] {
  if (!Array.isArray(allowed) || allowed.length !== rows) {
    throw new GrpoError('GRPO_ERR_SAMPLE_OPTIONS', `allowedTokens returned ${allowed?.length} entries for ${rows} live rows`);
  }
  for (const set of allowed) {
    if (set === null) continue;
    for (let i = 0; i < set.length; i++) {
      if (!isTokenId(set[i], V)) {
        throw new GrpoError('GRPO_ERR_SAMPLE_OPTIONS', `allowedTokens returned ${set[i]}, not a token id in [0, ${V})`);
      }
    }
  }
  return allowed;
}

function isTokenId(t: number, V: number): boolean {
  return Number.isInteger(t) && t >= 0 && t < V;
}
