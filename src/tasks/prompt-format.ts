/**
 * How a task's prompt becomes the text the model is fed: through the checkpoint's chat template
 * (`apply_chat_template`, default true) with the config's `system_prompt` as a system message, or
 * as plain text (`system_prompt`, a blank line, the prompt) when the template is off or the
 * checkpoint has none. Conversations (a dataset's `messages`) need a template.
 */
import { ChatTemplate, type ChatMessage } from '../model/chat-template.js';
import { GrpoError } from '../shared/errors.js';
import type { Task, TaskExample } from './types.js';

export interface PromptFormat {
  template: ChatTemplate | null; // null = plain text
  systemPrompt: string | null;
}

export const PLAIN: PromptFormat = Object.freeze({ template: null, systemPrompt: null });

/** The messages of a prompt: the system prompt first unless the conversation has its own. */
export function promptMessages(prompt: string | readonly ChatMessage[], systemPrompt: string | null): ChatMessage[] {
  const msgs = typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : [...prompt];
  if (systemPrompt !== null && msgs[0]?.role !== 'system') msgs.unshift({ role: 'system', content: systemPrompt });
  return msgs;
}

/** The model's input text for `prompt`. Throws GRPO_ERR_CHAT_TEMPLATE (render failures, conversations without a template). */
export function formatPrompt(fmt: PromptFormat, prompt: string | readonly ChatMessage[], where = 'prompt'): string {
  if (fmt.template !== null) return fmt.template.render(promptMessages(prompt, fmt.systemPrompt), { addGenerationPrompt: true });
  if (typeof prompt !== 'string') {
    throw new GrpoError(
      'GRPO_ERR_CHAT_TEMPLATE',
      `${where} is a conversation (a list of messages), but there is no chat template to render it: use a checkpoint whose tokenizer_config.json has chat_template, and apply_chat_template: true`,
    );
  }
  return fmt.systemPrompt === null ? prompt : `${fmt.systemPrompt}\n\n${prompt}`;
}

/** The prompt format of a run from the checkpoint's tokenizer_config.json and the config keys. */
export function promptFormatOf(
  tokenizerConfig: Readonly<Record<string, unknown>> | null,
  opts: { applyChatTemplate: boolean; systemPrompt: string | null; source: string },
): { format: PromptFormat; templateMissing: boolean } {
  const template = opts.applyChatTemplate && tokenizerConfig !== null ? ChatTemplate.fromTokenizerConfig({ ...tokenizerConfig }, opts.source) : null;
  return { format: { template, systemPrompt: opts.systemPrompt }, templateMissing: opts.applyChatTemplate && template === null };
}

/** `task` with every example's prompt formatted (for generated tasks; dataset tasks format on load). */
export function withPromptFormat(task: Task, fmt: PromptFormat): Task {
  if (fmt.template === null && fmt.systemPrompt === null) return task;
  const cache = new Map<string, string>(); // prompt -> text: rendering is far dearer than a lookup
  const format = (ex: TaskExample): TaskExample => {
    let text = cache.get(ex.prompt);
    if (text === undefined) {
      text = formatPrompt(fmt, ex.prompt);
      if (cache.size >= 10_000) cache.clear();
      cache.set(ex.prompt, text);
    }
    return { ...ex, prompt: text };
  };
  const wrapped: Task = {
    ...task,
    example: (split, index) => format(task.example(split, index)),
    maxPromptChars: task.maxPromptChars + formatOverheadChars(fmt),
  };
  return Object.freeze(wrapped);
}

/** Characters the format adds around a prompt (measured on an empty one). */
function formatOverheadChars(fmt: PromptFormat): number {
  return formatPrompt(fmt, '').length;
}
