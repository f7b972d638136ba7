/**
 * docs/config.md and src/shared/config.ts cannot drift apart: every config key has a row in the
 * "Keys" tables with its flag and its current default rendered as JSON (so changing a default
 * fails here until the doc says the new one), the tables follow the schema's sections, the
 * name-mapping table points only at keys that exist, and the example file is a valid config.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { CONFIG_KEYS, DEFAULT_CONFIG, parseConfig, type ConfigKey } from '../../src/shared/config.js';
import { flagName } from '../../src/shared/config-flags.js';
import { ARITHMETIC_OPTION_KEYS, createArithmetic } from '../../src/tasks/arithmetic.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const markdown = readFileSync(join(ROOT, 'docs', 'config.md'), 'utf8');
const configSource = readFileSync(join(ROOT, 'src', 'shared', 'config.ts'), 'utf8');

/** The lines of the `## title` section, up to the next `## ` heading. */
function section(md: string, title: string): string[] {
  const lines = md.split('\n');
  const start = lines.findIndex((l) => l.trim() === `## ${title}`);
  if (start < 0) return [];
  const end = lines.findIndex((l, i) => i > start && /^## /.test(l));
  return lines.slice(start + 1, end < 0 ? lines.length : end);
}

/** Cells of a table row (`| a | b |` -> ['a', 'b']), or null for other lines and separators. */
function cells(line: string): string[] | null {
  if (!line.startsWith('|') || /^\|[\s|:-]+\|$/.test(line)) return null;
  return line.slice(1, line.endsWith('|') ? -1 : undefined).split('|').map((c) => c.trim());
}

/** The backticked spans of a cell: '`a` or `b: c`' -> ['a', 'b: c']. */
function spans(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
}

interface KeyRow {
  key: string;
  flag: string;
  defaults: string[]; // spans of the default cell
  group: number; // index of the ### table it sits in
}

/** The rows of the tables under "## Keys", each with the index of its `###` subsection. */
function keyRows(md: string): KeyRow[] {
  const rows: KeyRow[] = [];
  let group = -1;
  for (const line of section(md, 'Keys')) {
    if (/^### /.test(line)) group += 1;
    const c = cells(line);
    if (c === null || c[0] === 'Key') continue;
    rows.push({ key: spans(c[0])[0] ?? c[0], flag: c[1] ?? '', defaults: spans(c[2] ?? ''), group });
  }
  return rows;
}

/** The schema's sections: the keys under each `// --- name ---` comment of config.ts, in order. */
function schemaSections(source: string): string[][] {
  const groups: string[][] = [];
  for (const line of source.split('\n')) {
    if (/^\s*\/\/ --- .+ ---/.test(line)) groups.push([]);
    const key = /^\s+([a-z][a-z0-9_]*): [a-zA-Z]/.exec(line);
    if (key && groups.length > 0 && (CONFIG_KEYS as string[]).includes(key[1])) groups[groups.length - 1].push(key[1]);
  }
  return groups;
}

const rows = keyRows(markdown);
const byKey = new Map(rows.map((r) => [r.key, r]));

describe('docs/config.md keys', () => {
  it('finds the tables it checks (the parse is not vacuous)', () => {
    expect(CONFIG_KEYS.length).toBeGreaterThan(40);
    expect(rows.length).toBeGreaterThan(40);
  });

  it.each(CONFIG_KEYS.map((k) => [k]))('documents %s with its flag and its current default', (key: ConfigKey) => {
    const row = byKey.get(key);
    expect(row, `add a row for ${key} to the Keys tables of docs/config.md`).toBeDefined();
    expect(row!.flag).toBe(`\`${flagName(key)}\``);
    expect(row!.defaults[0], `the default of ${key} is now ${JSON.stringify(DEFAULT_CONFIG[key])}`).toBe(
      JSON.stringify(DEFAULT_CONFIG[key]),
    );
  });

  it('has no row for a key the schema does not have, and one row per key', () => {
    const keys = rows.map((r) => r.key);
    expect(keys.filter((k) => !(CONFIG_KEYS as string[]).includes(k))).toEqual([]);
    expect(keys.filter((k, i) => keys.indexOf(k) !== i)).toEqual([]);
  });

  it('has one table per section of config.ts, with the keys in schema order', () => {
    const sections = schemaSections(configSource);
    expect(sections.length, 'config.ts marks its sections with `// --- name ---` comments').toBeGreaterThan(5);
    expect(sections.flat(), 'every key of the schema sits in a marked section').toEqual(CONFIG_KEYS);
    const docGroups: string[][] = [];
    for (const r of rows) (docGroups[r.group] ??= []).push(r.key);
    expect(docGroups).toEqual(sections);
  });
});

describe('docs/config.md name mapping', () => {
  const mapping = section(markdown, 'Names from other trainers and the seed documents')
    .map(cells)
    .filter((c): c is string[] => c !== null && c[0] !== 'Their name');

  it('maps the names of the seed documents and TRL', () => {
    const theirs = new Set(mapping.flatMap((c) => spans(c[0])));
    const expected = [
      'group_size', 'num_completions_per_prompt', 'GRPO_GROUP_SIZE', 'kl_coef', 'kl_beta', 'beta', 'clip_ratio',
      'clip_range', 'num_iterations', 'temperature', 'generation_temperature', 'top_p', 'top_k', 'max_gen_len',
      'generation_max_length', 'lr', 'learning_rate', 'RL_LEARNING_RATE', 'grad_clip', 'save_interval',
      'eval_interval', 'batch_size', 'RL_BATCH_SIZE', 'steps', 'num_episodes', 'RL_MAX_STEPS', 'entropy_coef',
      'normalize_advantages', 'use_kl_penalty', 'max_digits', 'max_depth', 'modelsize', 'log_csv', 'checkpoint',
      'use_curriculum', 'epsilon', 'epsilon_high', 'num_generations', 'loss_type', 'importance_sampling_level',
      'scale_rewards', 'mask_truncated_completions', 'max_completion_length', 'per_device_train_batch_size',
      'gradient_accumulation_steps',
    ];
    expect(expected.filter((n) => !theirs.has(n))).toEqual([]);
  });

  it('points only at existing config keys and arithmetic task options', () => {
    const bad: string[] = [];
    for (const c of mapping) {
      const ours = spans(c[2] ?? '');
      if (ours.length === 0 && !/not yet supported/.test(c[2] ?? '')) bad.push(`${c[0]}: no key and not marked "not yet supported"`);
      for (const s of ours) {
        const [key, option] = /^([a-z][a-z0-9_]*)(?:\.([a-z0-9_]+))?/.exec(s)?.slice(1) ?? [s];
        if (!(CONFIG_KEYS as string[]).includes(key)) bad.push(`${c[0]} -> ${s}: ${key} is no config key`);
        if (option !== undefined && !(key === 'task_options' && (ARITHMETIC_OPTION_KEYS as string[]).includes(option))) {
          bad.push(`${c[0]} -> ${s}: ${option} is no arithmetic task option`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it('maps use_curriculum to the curriculum key', () => {
    const row = mapping.find((c) => spans(c[0]).includes('use_curriculum'));
    expect(spans(row?.[2] ?? '')).toEqual(['curriculum']);
  });
});

describe('docs/config.md example', () => {
  const block = /```yaml\n([\s\S]*?)```/.exec(markdown)?.[1];

  it('is a config the schema accepts, with task options the task accepts', () => {
    expect(block, 'docs/config.md needs a ```yaml example').toBeDefined();
    const config = parseConfig(parseYaml(block!), 'docs/config.md example');
    expect(config.task).toBe('arithmetic');
    expect(() => createArithmetic({ seed: config.seed, options: config.task_options })).not.toThrow();
  });

  it('states the precedence and where the resolved config is saved', () => {
    const text = section(markdown, 'How a configuration is resolved').join('\n');
    const order = ['the defaults', '--config FILE', 'flags on the command line', 'GRPO_TOKEN'].map((s) => text.indexOf(s));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(text).toMatch(/unknown key/i);
    expect(text).toContain('trainer_state.json');
  });
});
