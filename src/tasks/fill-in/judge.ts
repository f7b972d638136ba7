/**
 * The frozen judge of the fill-in task: a small Llama language model of the clean corpus, trained
 * by `grpo judge-train` (./train.ts), that scores a text by how plausible it finds it:
 *
 *   score(text) = exp(mean over the tokens of text + EOS of log p(token | BOS, preceding text))
 *
 * the geometric-mean probability per character, in (0, 1]. A wrong letter costs twice: its own
 * probability is low, and the letters after it become surprising (a noun where a verb belongs), so
 * a correct fill scores above a wrong one of the same masked text. Only differences within a group
 * (one masked text) matter to GRPO; scores of different texts are not comparable in absolute terms.
 *
 * The judge is never trained further: its weights are created with trainable false and nothing
 * here updates them. sharedJudge() loads a checkpoint once per thread (the reward threads of a
 * rollout worker each hold one copy) and keeps it for the thread's life.
 */
import { resolve } from 'node:path';
import { engineInfo, initEngine } from '../../engine/backend.js';
import { tf } from '../../engine/tf.js';
import { GrpoError, toGrpoError } from '../../shared/errors.js';
import { loadCheckpoint, type TrainerState } from '../../model/checkpoint.js';
import { LlamaModel } from '../../model/llama.js';
import type { Tokenizer } from '../../model/types.js';
import { LETTERS } from './corpus.js';
import { checkJudgeCheckpoint, judgeError } from './judge-check.js';

export { checkJudgeCheckpoint };

/** trainer_state.json of a judge checkpoint (written by trainJudge). */
export interface JudgeTrainerState extends TrainerState {
  phase: 'judge';
  /** What the judge learned: the fill-in task's corpus under this seed (the grammar is fixed). */
  corpus: { task: 'fill-in'; seed: number };
  loss: number; // last step's mean NLL per token, nats
  eval?: JudgeEval;
}

/** Held-out check of a judge: clean texts against copies with one masked letter wrong. */
export interface JudgeEval {
  pairs: number;
  pairwiseAccuracy: number; // share of pairs where the clean text scores higher, in [0, 1]
  meanClean: number; // mean score of the clean texts
  meanCorrupted: number; // mean score of the corrupted copies
  nll: number; // mean NLL per token of the clean held-out texts, nats
}

/** Characters a judge must encode: the corpus's letters, space and period. */
const CORPUS_CHARS = `${LETTERS} .`;
const CACHE_ENTRIES = 8192; // scored texts kept per judge; a group often repeats a completion



export class Judge {
  private readonly cache = new Map<string, number>();

  private constructor(
    readonly dir: string,
    private readonly model: LlamaModel,
    readonly tokenizer: Tokenizer,
  ) {}

  /** Loads and checks a judge checkpoint; GRPO_ERR_JUDGE_CHECKPOINT when it is missing or not a judge. */
  static async load(dir: string): Promise<Judge> {
    checkJudgeCheckpoint(dir);
    let ckpt;
    try {
      ckpt = await loadCheckpoint(dir);
    } catch (err) {
      const e = toGrpoError(err, 'GRPO_ERR_CHECKPOINT_READ');
      throw judgeError(dir, `${e.code}: ${e.message}`);
    }
    try {
      if (ckpt.tokenizer.encode(CORPUS_CHARS).length !== CORPUS_CHARS.length) throw new Error('not one token per character');
    } catch (err) {
      throw judgeError(dir, `its tokenizer cannot encode the corpus characters one by one (${(err as Error).message})`);
    }
    if (ckpt.tokenizer.bosId === null) throw judgeError(dir, 'its tokenizer has no BOS token');
    const model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
    return new Judge(dir, model, ckpt.tokenizer);
  }

  /**
   * A judge over a model in memory (the one judge-train just trained), scored exactly as a loaded
   * one. The caller keeps ownership of `model`: it disposes the model, and never calls dispose()
   * on this judge.
   */
  static fromModel(dir: string, model: LlamaModel, tokenizer: Tokenizer): Judge {
    return new Judge(dir, model, tokenizer);
  }

  /** Scores texts (see the file comment), batched; every result in (0, 1]. */
  async score(texts: readonly string[], batchSize = 64): Promise<number[]> {
    const out = new Array<number>(texts.length);
    const todo: number[] = [];
    texts.forEach((t, i) => {
      const hit = this.cache.get(t);
      if (hit === undefined) todo.push(i);
      else out[i] = hit;
    });
    for (let s = 0; s < todo.length; s += batchSize) {
      const idx = todo.slice(s, s + batchSize);
      const nll = await this.meanNll(idx.map((i) => texts[i]));
      idx.forEach((i, j) => {
        out[i] = Math.exp(-nll[j]);
        this.remember(texts[i], out[i]);
      });
    }
    return out;
  }

  /** Mean negative log-likelihood per token (text + EOS) of each text, nats; one host read. */
  async meanNll(texts: readonly string[]): Promise<number[]> {
    if (texts.length === 0) return [];
    const tok = this.tokenizer;
    const rows = texts.map((t) => [tok.bosId!, ...tok.encode(t), tok.eosId]);
    const T = Math.max(...rows.map((r) => r.length));
    const window = this.model.config.max_position_embeddings;
    if (T > window) throw new GrpoError('GRPO_ERR_JUDGE_INPUT', `a text of ${T - 2} characters does not fit the judge's window of ${window} tokens`);
    const B = rows.length;
    const ids = new Int32Array(B * T).fill(tok.padId); // right padding never changes earlier positions (causal)
    const mask = new Float32Array(B * (T - 1)); // 1 where position t + 1 is a real token
    rows.forEach((r, b) => {
      ids.set(r, b * T);
      mask.fill(1, b * (T - 1), b * (T - 1) + r.length - 1);
    });
    const nll = tf.tidy(() => {
      const { logp } = this.model.tokenLogProbs(tf.tensor2d(ids, [B, T], 'int32')); // [B, T-1]
      const m = tf.tensor2d(mask, [B, T - 1]);
      return logp.mul(m).sum(1).div(m.sum(1)).neg(); // [B]
    });
    try {
      return Array.from(await nll.data());
    } finally {
      nll.dispose();
    }
  }

  dispose(): void {
    this.model.dispose();
    this.cache.clear();
  }

  private remember(text: string, score: number): void {
    if (this.cache.size >= CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!); // oldest first
    this.cache.set(text, score);
  }
}

const loaded = new Map<string, Promise<Judge>>();

/**
 * The judge of `dir`, loaded on first use and then shared by every caller in this thread. Starts
 * the tensor engine (auto) when this thread has none yet: a reward thread starts without one, and
 * an engine already chosen (the main thread of a command) is kept. A failed load is not cached,
 * so a judge written later is picked up by the next call.
 */
export function sharedJudge(dir: string): Promise<Judge> {
  const key = resolve(dir);
  let p = loaded.get(key);
  if (p === undefined) {
    p = (async () => {
      if (engineInfo() === null) await initEngine({ backend: 'auto', log: () => {} });
      return Judge.load(dir);
    })();
    loaded.set(key, p);
    p.catch(() => loaded.delete(key));
  }
  return p;
}
