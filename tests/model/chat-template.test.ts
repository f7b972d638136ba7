import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ChatTemplate, type ChatMessage } from '../../src/model/chat-template.js';

const DIR = fileURLToPath(new URL('../fixtures/chat-templates/', import.meta.url));
const config = (name: string) => JSON.parse(readFileSync(`${DIR}${name}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;

interface Case {
  name: string;
  template: string;
  add_generation_prompt: boolean;
  messages: ChatMessage[];
  expected: string;
}
const cases = JSON.parse(readFileSync(`${DIR}cases.json`, 'utf8')) as Case[];

describe('ChatTemplate: published templates against their known outputs', () => {
  it('has cases for Qwen2.5 and Llama-3', () => {
    expect(new Set(cases.map((c) => c.template))).toEqual(new Set(['qwen2.5', 'llama-3']));
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const t = ChatTemplate.fromTokenizerConfig(config(c.template), c.template)!;
    expect(t.render(c.messages, { addGenerationPrompt: c.add_generation_prompt })).toBe(c.expected);
  });
});

describe('ChatTemplate: tokenizer_config.json forms and failures', () => {
  it('is null for a config without chat_template', () => {
    expect(ChatTemplate.fromTokenizerConfig({ eos_token: '</s>' })).toBeNull();
  });

  it('reads the "default" entry of a list of named templates and special tokens given as objects', () => {
    const t = ChatTemplate.fromTokenizerConfig({
      bos_token: { content: '<s>', lstrip: false },
      chat_template: [
        { name: 'tool_use', template: 'TOOLS' },
        { name: 'default', template: '{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}' },
      ],
    })!;
    expect(t.render([{ role: 'user', content: 'hi' }])).toBe('<s>[user]hi');
  });

  it('refuses a chat_template of another type', () => {
    expect(() => ChatTemplate.fromTokenizerConfig({ chat_template: 42 }, 'ckpt/tokenizer_config.json')).toThrow(
      expect.objectContaining({ code: 'GRPO_ERR_CHAT_TEMPLATE', message: expect.stringContaining('ckpt/tokenizer_config.json') }),
    );
  });

  it('quotes Jinja when a template does not parse', () => {
    let err: unknown;
    try {
      ChatTemplate.parse('{% for m in messages %}{{ m.content }}', 'bad.json');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'GRPO_ERR_CHAT_TEMPLATE' });
    expect((err as Error).message).toMatch(/^bad\.json: the chat template does not parse: .+/);
    expect((err as Error).message).toContain((err as Error & { cause: Error }).cause.message);
  });

  it("quotes the template's own raise_exception message when rendering fails", () => {
    const t = ChatTemplate.parse(
      "{% for m in messages %}{% if (m.role == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{{ m.content }}{% endfor %}",
      'llama-2',
    );
    expect(t.render([{ role: 'user', content: 'a' }])).toBe('a');
    expect(() => t.render([{ role: 'assistant', content: 'a' }])).toThrow(
      expect.objectContaining({ code: 'GRPO_ERR_CHAT_TEMPLATE', message: expect.stringContaining('Conversation roles must alternate') }),
    );
  });
});
