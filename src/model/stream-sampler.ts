/**
 * Continuous batching: a fixed pool of native KV-cache rows (NativeRows) through which jobs
 * stream. A job is one prompt sampled `n` times (a GRPO group); it is admitted when n rows are
 * free, its prompt is prefilled once into one row and the cache copied to the other n - 1, and
 * its rows decode beside whatever else is live. A row that finishes frees its cache row at once,
 * so the next job starts there instead of waiting for the longest completion of a batch.
 *
 * Each tick is ONE native call: the prefills of the jobs admitted since the last tick and one
 * decode step of every live row, side by side. A job's result does not depend on what it shared
 * the pool with: its rows draw from Rngs forked from the job's own seed, in row order, and pick
 * tokens with sample()'s rowStep, so a job equals sample(model, n copies of its prompt,
 * { ...opts, seed: job.seed, allowedTokens: job.allowedTokens }) (tests/model/stream-sampler.test.ts).
 */
import { GrpoError } from '../shared/errors.js';
import { Rng } from '../shared/rng.js';
import type { LlamaModel } from './llama.js';
import { NativeRows } from './native-decoder.js';
import { checkAllowed, checkOptions, rowStep, type RowRecord } from './sampling.js';
import type { SampleOptions, SampleResult } from './types.js';

export interface StreamJob<K> {
  key: K; // the caller's handle, returned with the result
  prompt: number[];
  n: number; // rows (completions) of this prompt
  seed: number;
  /** Grammar hook over the job's rows 0..n-1 (as sample()'s allowedTokens for n rows). */
  allowedTokens?: SampleOptions['allowedTokens'];
}

export type StreamOptions = Omit<SampleOptions, 'seed' | 'allowedTokens' | 'decoder'>;

interface Row {
  slot: number;
  index: number; // within its job
  rng: Rng;
  rec: RowRecord;
  logp: Float32Array | null; // next-token log-probs, null until the prefill ran
  done: boolean;
}

interface Live<K> {
  job: StreamJob<K>;
  rows: Row[];
  finish: SampleResult['finishReason'];
  prefilled: boolean;
}

export class StreamSampler<K> {
  private readonly free: number[];
  private readonly live: Live<K>[] = [];
  private readonly stop: Set<number>;

  private constructor(
    private readonly native: NativeRows,
    private readonly opts: StreamOptions,
    private readonly V: number,
  ) {
    this.free = Array.from({ length: native.rows }, (_, i) => native.rows - 1 - i); // pop() takes row 0 first
    this.stop = new Set(opts.stopTokens);
  }

  /** `rows` cache rows of `maxLength` positions (prompt + new tokens) on the model's current weights. */
  static async start<K>(model: LlamaModel, rows: number, maxLength: number, opts: StreamOptions): Promise<StreamSampler<K>> {
    checkOptions(model.config.vocab_size, [], { ...opts, seed: 0 });
    if (opts.maxNewTokens < 1) throw new GrpoError('GRPO_ERR_SAMPLE_OPTIONS', 'continuous batching needs maxNewTokens >= 1');
    const limit = model.config.max_position_embeddings;
    if (maxLength > limit) {
      throw new GrpoError('GRPO_ERR_SEQUENCE_TOO_LONG', `rows of ${maxLength} positions exceed max_position_embeddings ${limit}`);
    }
    const native = await NativeRows.open(model, rows, maxLength, opts.temperature);
    return new StreamSampler<K>(native, opts, model.config.vocab_size);
  }

  get freeRows(): number {
    return this.free.length;
  }

  /** Jobs admitted and not yet returned by tick(). */
  get liveJobs(): number {
    return this.live.length;
  }

  /** Whether the job could ever run here (rows and positions); admit() also needs freeRows >= n. */
  fits(job: StreamJob<K>): boolean {
    return job.n <= this.native.rows && job.prompt.length + this.opts.maxNewTokens <= this.native.maxLength;
  }

  /** Takes n free rows for the job; its prompt is prefilled by the next tick(). */
  admit(job: StreamJob<K>): void {
    checkOptions(this.V, [job.prompt], { ...this.opts, seed: job.seed });
    if (!this.fits(job) || job.n > this.free.length || job.n < 1) {
      throw new GrpoError('GRPO_ERR_SAMPLE_OPTIONS', `job of ${job.n} rows and a ${job.prompt.length}-token prompt does not fit (${this.free.length} rows free)`);
    }
    const root = new Rng(job.seed);
    const rows = Array.from({ length: job.n }, (_, index): Row => ({
      slot: this.free.pop()!,
      index,
      rng: root.fork(),
      rec: job.allowedTokens ? { tokens: [], logprobs: [], allowed: [] } : { tokens: [], logprobs: [] },
      logp: null,
      done: false,
    }));
    this.live.push({ job, rows, finish: rows.map(() => 'length'), prefilled: false });
  }

  /**
   * One step: every live row with log-probs picks its token (rows that end free their cache row),
   * then one native call prefills the new jobs and feeds the continuing rows. Returns the jobs
   * whose rows have all ended, with sample()'s result for them.
   */
  tick(): { key: K; result: SampleResult }[] {
    const slots: number[] = [];
    const counts: number[] = [];
    const tokens: number[] = [];
    const fed: Row[][] = []; // per entry: the rows that take its log-probs
    const finished: { key: K; result: SampleResult }[] = [];
    for (const l of [...this.live]) {
      if (!l.prefilled) {
        l.prefilled = true;
        slots.push(l.rows[0].slot);
        counts.push(l.job.prompt.length);
        tokens.push(...l.job.prompt);
        fed.push(l.rows);
        continue;
      }
      const active = l.rows.filter((r) => !r.done);
      const allowed = l.job.allowedTokens
        ? checkAllowed(l.job.allowedTokens(active.map((r) => r.rec.tokens.slice()), active.map((r) => r.index)), active.length, this.V)
        : null;
      active.forEach((r, s) => {
        const tok = rowStep(r.logp!, allowed?.[s] ?? null, this.opts, r.rng, r.rec);
        let end: SampleResult['finishReason'][number] | null = null;
        if (tok === null) end = 'grammar';
        else if (this.stop.has(tok)) end = 'stop';
        else if (r.rec.tokens.length >= this.opts.maxNewTokens) end = 'length';
        if (end === null) {
          slots.push(r.slot);
          counts.push(1);
          tokens.push(tok!);
          fed.push([r]);
          return;
        }
        l.finish[r.index] = end;
        r.done = true;
        r.logp = null;
        this.native.resetRow(r.slot);
        this.free.push(r.slot);
      });
      if (l.rows.every((r) => r.done)) {
        this.live.splice(this.live.indexOf(l), 1);
        finished.push({ key: l.job.key, result: resultOf(l) });
      }
    }
    if (slots.length > 0) {
      const out = this.native.forward(Int32Array.from(slots), Int32Array.from(counts), Int32Array.from(tokens));
      const V = this.V;
      fed.forEach((rows, e) => {
        const logp = out.subarray(e * V, (e + 1) * V);
        // a prefill went into the job's first row: the others take a copy of its cache
        for (const r of rows) {
          if (r !== rows[0]) this.native.copyRow(rows[0].slot, r.slot);
          r.logp = logp;
        }
      });
    }
    return finished;
  }

  dispose(): void {
    this.native.dispose();
  }
}

function resultOf<K>(l: Live<K>): SampleResult {
  const tokens = l.rows.map((r) => r.rec.tokens);
  const logprobs = l.rows.map((r) => r.rec.logprobs);
  if (!l.job.allowedTokens) return { tokens, logprobs, finishReason: l.finish };
  return { tokens, logprobs, allowed: l.rows.map((r) => r.rec.allowed!), finishReason: l.finish };
}
