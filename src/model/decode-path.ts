/**
 * Which decoder sample() runs: the native rollout decoder (native-decoder.ts: its own weights and
 * KV cache, one native call per token for all rows) when the addon is built and supports the
 * model, else the tfjs DecodeSession (kv-cache.ts), the reference that the native one must match.
 *
 * SampleOptions.decoder picks: 'auto' (default) native when possible (not when the tfjs backend
 * is a GPU one: the user put the model there), 'native' (a coded error
 * when impossible), 'reference'. The environment variable GRPO_DECODE=reference turns 'auto'
 * into 'reference' for a whole process (to compare, or to step around a suspected native bug).
 * The path taken is logged once per process and reason (stderr), so a run's log says which ran.
 */
import { tf } from '../engine/tf.js';
import { GrpoError } from '../shared/errors.js';
import type { DecodeSession } from './kv-cache.js';
import type { LlamaModel } from './llama.js';
import { loadDecodeAddon, NativeDecodeSession, nativeUnsupported } from './native-decoder.js';

export type DecoderChoice = 'auto' | 'native' | 'reference';

/** What sample() drives: the DecodeSession interface, which NativeDecodeSession shares. */
export type Decoding = Pick<DecodeSession, 'rows' | 'readLogProbs' | 'keep' | 'step' | 'dispose'>;

const GPU_BACKENDS = new Set(['webgpu', 'webgl']);

const logged = new Set<string>();

function logOnce(line: string): void {
  if (logged.has(line)) return;
  logged.add(line);
  console.error(`[decode] ${line}`);
}

/** Why native decoding is off for this model and choice, or null when it runs. */
export function nativeDecodeBlocker(model: LlamaModel, choice: DecoderChoice = 'auto'): string | null {
  if (choice === 'reference') return 'decoder reference requested';
  if (choice === 'auto' && process.env.GRPO_DECODE === 'reference') return 'GRPO_DECODE=reference';
  // a GPU backend was chosen to run the model there: 'auto' leaves decoding on it too
  if (choice === 'auto' && GPU_BACKENDS.has(tf.getBackend())) return `the model runs on the ${tf.getBackend()} backend`;
  const { addon, error } = loadDecodeAddon();
  if (!addon) return `addon ${error}`;
  const why = nativeUnsupported(model);
  return why === null ? null : `unsupported model: ${why}`;
}

/** Starts decoding `prompts` on the chosen path (see the file comment). The caller disposes it. */
export async function startDecoding(
  model: LlamaModel,
  prompts: number[][],
  maxLength: number,
  temperature: number,
  choice: DecoderChoice = 'auto',
): Promise<Decoding> {
  const blocker = nativeDecodeBlocker(model, choice);
  if (blocker !== null) {
    if (choice === 'native') throw new GrpoError('GRPO_ERR_NATIVE_DECODER', `native decoding was requested but is unavailable: ${blocker}`);
    logOnce(`reference tfjs decoder (${blocker})`);
    return model.startDecoding(prompts, maxLength, temperature);
  }
  const limit = model.config.max_position_embeddings;
  if (maxLength > limit) {
    throw new GrpoError(
      'GRPO_ERR_SEQUENCE_TOO_LONG',
      `sequence of ${maxLength} tokens exceeds max_position_embeddings ${limit}; shorten prompts or max new tokens`,
    );
  }
  logOnce('native decoder (grpo_decode.node)');
  return NativeDecodeSession.start(model, prompts, maxLength, temperature);
}
