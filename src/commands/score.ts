/**
 * `grpo score`: the log-probability of each completion token under a checkpoint (temperature 1),
 * printed as one JSON object. For debugging rewards, and for cross-checking our model against
 * another implementation (e.g. `transformers` on the same checkpoint directory).
 *
 *   grpo score --checkpoint DIR --prompt "(4-2)/-6=" --completion "-1/3" [--eos]
 *   -> {"promptIds":[1,...],"completionIds":[...],"logprobs":[...],"total":-1.23}
 *
 * Token layout as everywhere (tasks/encoding.ts): [BOS] prompt | completion, plus EOS with --eos.
 */
import { Command } from 'commander';
import { coerceFlag } from '../shared/config-flags.js';
import { tf } from '../engine/tf.js';
import type { BackendChoice } from '../engine/backend.js';
import { GrpoError } from '../shared/errors.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { LlamaModel } from '../model/llama.js';
import type { Tokenizer } from '../model/types.js';
import { completionIds, promptIds } from '../tasks/encoding.js';
import { startEngine, type CommandIO } from './io.js';

export interface ScoreResult {
  promptIds: number[];
  completionIds: number[];
  logprobs: number[]; // one per completion token, natural log
  total: number; // sum of logprobs
}

/** Scores `completion` after `prompt` under `model` (one forward pass). */
export async function scoreText(
  model: LlamaModel,
  tokenizer: Tokenizer,
  prompt: string,
  completion: string,
  opts: { eos?: boolean } = {},
): Promise<ScoreResult> {
  const p = promptIds(tokenizer, prompt);
  const c = completionIds(tokenizer, completion, { eos: opts.eos ?? false });
  if (p.length === 0) {
    throw new GrpoError('GRPO_ERR_SCORE_INPUT', 'the prompt is empty and the tokenizer has no BOS token; give a prompt of at least one token');
  }
  const T = p.length + c.length;
  const maxT = model.config.max_position_embeddings;
  if (T > maxT) throw new GrpoError('GRPO_ERR_SCORE_INPUT', `prompt + completion are ${T} tokens; the model's window is ${maxT}`);
  let logprobs: number[] = [];
  if (c.length > 0) {
    const logp = tf.tidy(() => {
      const ids = tf.tensor2d([...p, ...c], [1, T], 'int32');
      // logp[0, t] scores token t + 1: the completion's tokens are t = |p| - 1 .. T - 2
      return model.tokenLogProbs(ids).logp.slice([0, p.length - 1], [1, c.length]);
    });
    try {
      logprobs = Array.from(await logp.data());
    } finally {
      logp.dispose();
    }
  }
  return { promptIds: p, completionIds: c, logprobs, total: logprobs.reduce((a, b) => a + b, 0) };
}

export interface ScoreCommandOptions {
  checkpoint: string;
  prompt: string;
  completion: string;
  eos?: boolean;
  backend?: string;
}

export async function scoreCommand(opts: ScoreCommandOptions, io: CommandIO): Promise<ScoreResult> {
  const backend = (opts.backend !== undefined ? coerceFlag('backend', opts.backend) : 'auto') as BackendChoice;
  await startEngine(backend, io);
  const ckpt = await loadCheckpoint(opts.checkpoint);
  const model = LlamaModel.fromHostTensors(ckpt.config, ckpt.weights, { trainable: false });
  try {
    const result = await scoreText(model, ckpt.tokenizer, opts.prompt, opts.completion, { eos: opts.eos });
    io.out(JSON.stringify(result));
    return result;
  } finally {
    model.dispose();
  }
}

export function registerScore(program: Command, io: () => CommandIO): void {
  program.addCommand(
    new Command('score')
      .description('log-probability of each completion token under a checkpoint, as JSON')
      .requiredOption('--checkpoint <dir>', 'checkpoint directory')
      .requiredOption('--prompt <text>', 'prompt text (BOS is prepended)')
      .requiredOption('--completion <text>', 'completion text to score')
      .option('--eos', 'append the EOS token to the completion (as generated completions end)')
      .option('--backend <auto|tensorflow|webgpu|native|wasm|cpu>', 'tensor engine', 'auto')
      .action(async (opts: ScoreCommandOptions) => {
        await scoreCommand(opts, io());
      }),
  );
}
