/** Test helpers shared by the task tests that sample from a random model under a task's grammar. */
import type { LlamaModel } from '../../src/model/llama.js';
import { sample } from '../../src/model/sampling.js';
import type { LlamaConfig, Tokenizer } from '../../src/model/types.js';
import { decodeCompletion, promptIds } from '../../src/tasks/encoding.js';
import type { Task } from '../../src/tasks/types.js';
import { tinyLlamaConfig } from '../helpers.js';

/** A small random model with peaked logits (initializer_range 0.5): the grammar has to fight it. */
export function peakedModelConfig(tokenizer: Tokenizer, maxPositions: number): LlamaConfig {
  return tinyLlamaConfig(tokenizer, { max_position_embeddings: maxPositions, initializer_range: 0.5 }, 'gqa');
}

/** One completion per prompt, sampled under the task's grammar (freely when it has none). */
export async function sampleTask(
  model: LlamaModel,
  tokenizer: Tokenizer,
  task: Task,
  prompts: string[],
  opts: { seed: number; temperature: number },
): Promise<{ text: string; finishReason: string }[]> {
  const r = await sample(
    model,
    prompts.map((p) => promptIds(tokenizer, p)),
    {
      maxNewTokens: task.maxCompletionTokens,
      temperature: opts.temperature,
      topK: 0,
      topP: 1,
      stopTokens: [tokenizer.eosId],
      seed: opts.seed,
      allowedTokens: task.grammar?.(tokenizer, prompts),
    },
  );
  return r.tokens.map((ids, i) => ({ text: decodeCompletion(tokenizer, ids), finishReason: r.finishReason[i] }));
}
