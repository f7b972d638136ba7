/**
 * Chat templates: the Jinja template a Hugging Face checkpoint keeps in tokenizer_config.json
 * (`chat_template`), rendered with `@huggingface/jinja`, the implementation transformers.js uses,
 * so prompts are wrapped exactly as `tokenizer.apply_chat_template(messages, tokenize=False,
 * add_generation_prompt=True)` wraps them in Python. We never re-implement a template by hand.
 *
 * The variables a template sees are those transformers passes: `messages`, `add_generation_prompt`,
 * `bos_token`, `eos_token` (and the other special tokens tokenizer_config.json names, as text),
 * plus `raise_exception` from the Jinja package. Rendered text holds special tokens as text
 * ("<|im_start|>"); the tokenizer maps them to their ids when it encodes the prompt.
 *
 * Failures are GRPO_ERR_CHAT_TEMPLATE and quote Jinja's own message: a template that does not
 * parse fails when the checkpoint is opened, one that raises (e.g. "Conversation roles must
 * alternate") fails on the first prompt it cannot render.
 */
import { Template } from '@huggingface/jinja';
import { GrpoError } from '../shared/errors.js';

export interface ChatMessage {
  role: string; // "system" | "user" | "assistant" | ... as the template knows them
  content: string;
}

export interface RenderOptions {
  /** Append the assistant header so the model continues as the assistant (true for prompts). */
  addGenerationPrompt?: boolean;
}

/** Special-token keys of tokenizer_config.json passed to the template as text. */
const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token'] as const;

/** tokenizer_config.json writes a special token as "text" or {"content": "text", ...}. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

/**
 * The template text of tokenizer_config.json: a string, or (newer checkpoints) a list of
 * { name, template } of which "default" is the chat template. null when there is none.
 */
function templateText(config: Record<string, unknown>, source: string): string | null {
  const raw = config.chat_template;
  if (raw === undefined || raw === null) return null;
  if (typeof raw === 'string') return raw;
  if (Array.isArray(raw)) {
    const named = raw.find((t) => t && typeof t === 'object' && (t as { name?: unknown }).name === 'default');
    const text = (named as { template?: unknown } | undefined)?.template;
    if (typeof text === 'string') return text;
  }
  throw new GrpoError(
    'GRPO_ERR_CHAT_TEMPLATE',
    `${source}: chat_template must be a string or a list holding { "name": "default", "template": "..." }`,
  );
}

export class ChatTemplate {
  private constructor(
    private readonly template: Template,
    readonly source: string, // where it came from, for messages
    private readonly specials: Readonly<Record<string, string>>,
  ) {}

  /** Parses `text`; `specials` are the special tokens' texts by key (bos_token, ...). */
  static parse(text: string, source: string, specials: Readonly<Record<string, string>> = {}): ChatTemplate {
    let template: Template;
    try {
      template = new Template(text);
    } catch (err) {
      throw new GrpoError('GRPO_ERR_CHAT_TEMPLATE', `${source}: the chat template does not parse: ${(err as Error).message}`, { cause: err });
    }
    return new ChatTemplate(template, source, Object.freeze({ ...specials }));
  }

  /**
   * The template of a tokenizer_config.json's contents, with its special tokens; null when it
   * has no `chat_template`.
   */
  static fromTokenizerConfig(config: Record<string, unknown>, source = 'tokenizer_config.json'): ChatTemplate | null {
    const text = templateText(config, source);
    if (text === null) return null;
    const specials: Record<string, string> = {};
    for (const key of SPECIAL_KEYS) {
      const t = tokenText(config[key]);
      if (t !== null) specials[key] = t;
    }
    return ChatTemplate.parse(text, source, specials);
  }

  /** The prompt text for `messages`. Throws GRPO_ERR_CHAT_TEMPLATE with Jinja's message. */
  render(messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
    try {
      return this.template.render({
        ...this.specials,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: opts.addGenerationPrompt ?? true,
      });
    } catch (err) {
      throw new GrpoError(
        'GRPO_ERR_CHAT_TEMPLATE',
        `${this.source}: the chat template failed to render ${messages.length} message(s) (roles ${messages.map((m) => m.role).join(', ')}): ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
}
