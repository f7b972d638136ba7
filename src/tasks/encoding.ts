/**
 * The one place that turns task text into model tokens and back, so SFT, rollout workers, the
 * learner, `grpo eval` and `grpo score` agree on the layout:
 *
 *   [BOS] encode(prompt) | encode(completion) [EOS]
 *
 * BOS is left out for tokenizers without one or whose post-processor adds none (Qwen2), and not
 * repeated when the prompt text starts with it (a chat template that writes bos_token). A generated completion is read up to (not
 * including) its first EOS.
 */
import { GrpoError } from '../shared/errors.js';
import { CharTokenizer } from '../model/char-tokenizer.js';
import type { Tokenizer } from '../model/types.js';
import type { Task } from './types.js';

export function promptIds(tokenizer: Tokenizer, prompt: string): number[] {
  const ids = tokenizer.encode(prompt);
  // a prompt rendered by a chat template may start with BOS already (Llama-3's "<|begin_of_text|>")
  if (tokenizer.bosId === null || tokenizer.addsBos === false || ids[0] === tokenizer.bosId) return ids;
  return [tokenizer.bosId, ...ids];
}

/** The completion's tokens, with EOS appended when `eos` (the default) is true. */
export function completionIds(tokenizer: Tokenizer, completion: string, opts: { eos?: boolean } = {}): number[] {
  const ids = tokenizer.encode(completion);
  return opts.eos === false ? ids : [...ids, tokenizer.eosId];
}

/**
 * Generated ids to completion text: everything before the first stop token (EOS or another of
 * `tokenizer.stopIds`), specials dropped. Ids past
 * the tokenizer's vocabulary decode to nothing, as in transformers: pretrained models pad their
 * embedding matrix (Qwen2.5's 151,936 rows for 151,665 tokens), and a sampled padding row is
 * still the policy's action, just not text.
 */
export function decodeCompletion(tokenizer: Tokenizer, ids: readonly number[]): string {
  const end = ids.findIndex((id) => tokenizer.stopIds.includes(id));
  const kept = (end < 0 ? ids : ids.slice(0, end)).filter((id) => id < tokenizer.vocabSize);
  return tokenizer.decode(kept);
}

/** The character tokenizer of a task with an alphabet: <pad>=0, <bos>=1, <eos>=2, then the characters. */
export function tokenizerForTask(task: Task): CharTokenizer {
  if (task.alphabet === null) {
    throw new GrpoError(
      'GRPO_ERR_TOKENIZER_CONFIG',
      `task ${task.name} has no character alphabet; start from a checkpoint that carries its tokenizer.json`,
    );
  }
  return CharTokenizer.fromAlphabet(task.alphabet);
}
