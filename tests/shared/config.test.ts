import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { CONFIG_KEYS, DEFAULT_CONFIG, parseConfig, resolveConfig } from '../../src/shared/config.js';
import { addConfigOptions, flagsToRawConfig } from '../../src/shared/config-flags.js';
import { isGrpoError } from '../../src/shared/errors.js';

function tmpFile(name: string, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'grpo-config-'));
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function parseFlags(argv: string[]) {
  const cmd = addConfigOptions(new Command('x').exitOverride());
  cmd.parse(argv, { from: 'user' });
  return { raw: flagsToRawConfig(cmd.opts()), file: cmd.opts().config as string | undefined };
}

describe('config', () => {
  it('has defaults for every key and is frozen', () => {
    expect(Object.keys(DEFAULT_CONFIG).sort()).toEqual([...CONFIG_KEYS].sort());
    expect(Object.isFrozen(DEFAULT_CONFIG)).toBe(true);
    expect(DEFAULT_CONFIG.group_size).toBe(4);
  });

  it('rejects unknown keys naming them', () => {
    expect(() => parseConfig({ group_sise: 4 })).toThrowError(/unknown key\(s\) group_sise/);
    try {
      parseConfig({ nope: 1 });
    } catch (err) {
      expect(isGrpoError(err, 'GRPO_ERR_CONFIG')).toBe(true);
    }
  });

  it('rejects bad values with the key path', () => {
    expect(() => parseConfig({ group_size: 1 })).toThrowError(/group_size/);
    expect(() => parseConfig({ loss_type: 'ppo' })).toThrowError(/loss_type/);
    expect(() => parseConfig({ lr: -1 })).toThrowError(/lr/);
  });

  it('merges defaults < YAML file < flags, and reads GRPO_TOKEN', () => {
    const file = tmpFile('c.yaml', 'group_size: 4\nkl_coef: 0.1\ntask_options:\n  max_digits: 3\n');
    const { raw } = parseFlags(['--kl-coef', '0.05', '--mask-truncated', '--task-options', 'max_depth=2']);
    const cfg = resolveConfig({ file, flags: raw, env: { GRPO_TOKEN: 's3cret' } });
    expect(cfg.group_size).toBe(4);
    expect(cfg.kl_coef).toBe(0.05);
    expect(cfg.mask_truncated).toBe(true);
    expect(cfg.task_options).toEqual({ max_depth: 2 });
    expect(cfg.token).toBe('s3cret');
  });

  it('reads JSON files and names the file in errors', () => {
    const ok = tmpFile('c.json', JSON.stringify({ temperature: 0.7, clip_ratio_high: 0.28 }));
    expect(resolveConfig({ file: ok, env: {} }).clip_ratio_high).toBe(0.28);
    const bad = tmpFile('bad.yaml', 'group_size: 4\nbogus: 1\n');
    expect(() => resolveConfig({ file: bad, env: {} })).toThrowError(/bad\.yaml.*bogus/);
    const broken = tmpFile('broken.yaml', 'a: [1, 2\n');
    expect(() => resolveConfig({ file: broken, env: {} })).toThrowError(/not valid YAML/);
  });

  it('coerces flags by schema type and rejects malformed ones', () => {
    expect(parseFlags(['--checkpoint', 'null']).raw.checkpoint).toBe(null);
    expect(parseFlags(['--steps', '1_000']).raw.steps).toBe(1000);
    expect(() => parseFlags(['--steps', 'ten'])).toThrowError(/--steps expects a number/);
    expect(() => parseFlags(['--dynamic-sampling', 'maybe'])).toThrowError(/true or false/);
    expect(parseFlags(['--task-options', '{"max_digits":1}']).raw.task_options).toEqual({ max_digits: 1 });
  });
});
