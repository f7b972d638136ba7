/**
 * The task of a run as every role that draws problems sees it (the learner, `grpo sft`,
 * `grpo eval`): the named task, with its prompts formatted for the checkpoint (chat template,
 * system prompt) and, with a `dataset`, its problems read from files. Rollout workers never call
 * this: they get each prompt's final text in its GroupSpec and need only the task's rewards.
 */
import type { Config } from '../shared/config.js';
import { GrpoError } from '../shared/errors.js';
import { silentLogger, type ProtocolLogger } from '../shared/protocol.js';
import { HfTokenizer } from '../model/hf-tokenizer.js';
import type { Tokenizer } from '../model/types.js';
import { loadDatasetTask } from './dataset/dataset-task.js';
import { completionIds, promptIds } from './encoding.js';
import { loadTask } from './index.js';
import { PLAIN, promptFormatOf, withPromptFormat, type PromptFormat } from './prompt-format.js';
import type { Task } from './types.js';

export interface RunTaskOptions {
  /** The starting checkpoint's tokenizer (its tokenizer_config.json holds the chat template); null when training from scratch. */
  tokenizer: Tokenizer | null;
  /** The model's context (max_position_embeddings): dataset prompts longer than it minus max_gen_len are dropped. */
  contextTokens?: number;
  /** The rows must have completions (SFT). */
  needCompletion?: boolean;
  /** Where the tokenizer came from, for messages ("runs/sft"). */
  source?: string;
  log?: ProtocolLogger;
}

/** The prompt format for `task`: only tasks with a Hugging Face tokenizer (no character alphabet) are formatted. */
function formatFor(config: Config, task: Task, o: RunTaskOptions, log: ProtocolLogger): PromptFormat {
  if (task.alphabet !== null) return PLAIN; // character-level tasks: the model knows no template
  const tokenizerConfig = o.tokenizer instanceof HfTokenizer ? o.tokenizer.tokenizerConfig : null;
  const source = `${o.source ?? 'checkpoint'}/tokenizer_config.json`;
  const { format, templateMissing } = promptFormatOf(tokenizerConfig, {
    applyChatTemplate: config.apply_chat_template,
    systemPrompt: config.system_prompt,
    source,
  });
  if (templateMissing) log('warn', 'chat_template_missing', { source, prompts: 'plain text (system_prompt, a blank line, the prompt)' });
  return format;
}

export async function loadRunTask(config: Config, o: RunTaskOptions): Promise<Task> {
  const log = o.log ?? silentLogger;
  const base = await loadTask(config.task, { seed: config.seed, options: config.task_options });
  const format = formatFor(config, base, o, log);
  if (config.dataset === null) {
    if (config.test_dataset !== null) throw new GrpoError('GRPO_ERR_CONFIG', 'test_dataset needs dataset (the training file) too');
    return withPromptFormat(base, format);
  }
  if (config.curriculum !== null) {
    throw new GrpoError('GRPO_ERR_CONFIG', 'curriculum levels are task_options of a generated task; a dataset file has none: leave out curriculum or dataset');
  }
  const tokenizer = o.tokenizer;
  const byTokens = tokenizer !== null && o.contextTokens !== undefined;
  return loadDatasetTask(base, format, {
    file: config.dataset,
    testFile: config.test_dataset,
    testFraction: config.test_fraction,
    seed: config.seed,
    fields: { prompt: config.prompt_field, answer: config.answer_field, completion: config.completion_field, needCompletion: o.needCompletion ?? false },
    // the prompt and the longest generation must fit the model's context: max_gen_len when sampling
    // for GRPO, the task's completion bound when evaluating
    maxPromptLength: byTokens ? o.contextTokens! - Math.max(config.max_gen_len, base.maxCompletionTokens) : base.maxPromptChars,
    ...(byTokens ? { measure: (text: string) => promptIds(tokenizer!, text).length } : {}),
    // SFT trains on prompt + completion + EOS in one sequence: it must fit the context
    ...(byTokens && o.needCompletion ? { maxSequenceLength: o.contextTokens!, measureCompletion: (text: string) => completionIds(tokenizer!, text).length } : {}),
    log,
  });
}
