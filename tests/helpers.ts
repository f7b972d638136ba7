/**
 * Helpers every test folder may use: the coded-error assertion and the tiny Llama configs the
 * model, learner, worker and eval tests build their random models from.
 */
import { expect } from 'vitest';
import { presetConfig, type PresetTokens } from '../src/model/presets.js';
import type { LlamaConfig } from '../src/model/types.js';
import { isGrpoError, type ErrorCode } from '../src/shared/errors.js';

const NOTHING = Symbol('nothing thrown');

function checkThrown(thrown: unknown, code: ErrorCode, fragment?: string | RegExp): void {
  expect(thrown, `expected ${code}, nothing was thrown`).not.toBe(NOTHING);
  expect(isGrpoError(thrown), String(thrown)).toBe(true);
  expect((thrown as { code: string }).code, String(thrown)).toBe(code);
  if (typeof fragment === 'string') expect((thrown as Error).message).toContain(fragment);
  else if (fragment) expect((thrown as Error).message).toMatch(fragment);
}

/**
 * Asserts that `fn` throws (or `p` rejects, or the promise `fn` returns rejects) with a GrpoError
 * of `code` whose message contains the fragment (a string) or matches it (a RegExp). Await the
 * result for async code.
 */
export function expectCode(p: Promise<unknown> | (() => Promise<unknown>), code: ErrorCode, fragment?: string | RegExp): Promise<void>;
export function expectCode(fn: () => unknown, code: ErrorCode, fragment?: string | RegExp): void;
export function expectCode(x: Promise<unknown> | (() => unknown), code: ErrorCode, fragment?: string | RegExp): void | Promise<void> {
  const settle = (p: Promise<unknown>): Promise<void> =>
    p.then(
      () => checkThrown(NOTHING, code, fragment),
      (err: unknown) => checkThrown(err, code, fragment),
    );
  if (typeof x !== 'function') return settle(x);
  let thrown: unknown = NOTHING;
  try {
    const r = x();
    if (r instanceof Promise) return settle(r);
  } catch (err) {
    thrown = err;
  }
  checkThrown(thrown, code, fragment);
}

/**
 * The tiny Llama configs of the tests (hidden 32), as presetConfig('tiny') with a smaller body:
 *   'mlp'  one layer, SwiGLU width 64, 4 heads sharing 4 kv heads: the end-to-end and eval tests;
 *   'gqa'  two layers, SwiGLU width 48, 4 query heads sharing 2 kv heads: the model and learner
 *          tests that must exercise grouped-query attention and more than one layer.
 * `over` replaces any field (max_position_embeddings, initializer_range for peaked logits, ...).
 */
export function tinyLlamaConfig(tokens: PresetTokens, over: Partial<LlamaConfig> = {}, body: 'mlp' | 'gqa' = 'mlp'): LlamaConfig {
  const shape: Partial<LlamaConfig> =
    body === 'mlp'
      ? { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1 }
      : { hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 };
  return presetConfig('tiny', tokens, { ...shape, ...over });
}
