/**
 * `grpo train` reuses a finished <out>/sft only when every SFT identity key matches: the list is
 * derived from SFT_KEYS, and SFT_KEYS must name every config key the SFT job reads.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SFT_IDENTITY_KEYS, SFT_KEYS, SFT_NON_IDENTITY_KEYS } from '../../src/commands/sft.js';
import { DEFAULT_CONFIG } from '../../src/shared/config.js';

describe('SFT config keys', () => {
  it('the identity keys are exactly the SFT keys less the declared non-identity ones', () => {
    expect(SFT_NON_IDENTITY_KEYS.filter((k) => !SFT_KEYS.includes(k))).toEqual([]); // no stale name
    expect([...SFT_IDENTITY_KEYS].sort()).toEqual(SFT_KEYS.filter((k) => !SFT_NON_IDENTITY_KEYS.includes(k)).sort());
    expect(SFT_IDENTITY_KEYS).toEqual(expect.arrayContaining(['task', 'task_options', 'seed', 'model_size', 'sft_steps', 'sft_lr', 'grad_clip']));
  });

  it('every config key the SFT job reads is an SFT key', () => {
    const source = readFileSync(new URL('../../src/offline/sft.ts', import.meta.url), 'utf8');
    const read = new Set([...source.matchAll(/\bconfig\.([a-z][a-z0-9_]*)\b/g)].map((m) => m[1]!).filter((k) => k in DEFAULT_CONFIG));
    expect(read.size).toBeGreaterThan(10); // the pattern finds the reads (the check itself works)
    expect([...read].filter((k) => !(SFT_KEYS as readonly string[]).includes(k))).toEqual([]);
  });
});
