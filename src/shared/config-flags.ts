/**
 * Every config key is also a command-line flag: `group_size` <-> `--group-size <value>`.
 * The flag's type comes from the schema (integer, number, string, enum, boolean, mapping, list), so a
 * new key in ConfigSchema is a new flag everywhere without touching the CLI.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { CONFIG_KEYS, ConfigSchema, type ConfigKey, type RawConfig } from './config.js';
import { GrpoError } from './errors.js';

type Kind = 'integer' | 'number' | 'string' | 'boolean' | 'object' | 'array';

interface KeyInfo {
  kind: Kind;
  nullable: boolean;
  choices?: string[];
  literals: string[]; // string constants a list key also takes whole, e.g. lora_target_modules: all-linear
  default: unknown;
}

const KEY_INFO: Map<ConfigKey, KeyInfo> = buildKeyInfo();

function buildKeyInfo(): Map<ConfigKey, KeyInfo> {
  const props = (z.toJSONSchema(ConfigSchema, { io: 'input' }) as { properties: Record<string, JsonProp> }).properties;
  const info = new Map<ConfigKey, KeyInfo>();
  for (const key of CONFIG_KEYS) {
    const p = props[key];
    const variants = p.anyOf ?? [p];
    const types = variants.flatMap((v) => (Array.isArray(v.type) ? v.type : [v.type]));
    const kind = types.includes('array') ? 'array' : (types.find((t): t is Kind => t !== 'null' && t !== undefined) ?? 'string');
    const choices = variants.find((v) => v.enum)?.enum;
    const literals = variants.flatMap((v) => (typeof v.const === 'string' ? [v.const] : []));
    info.set(key, { kind, nullable: types.includes('null'), choices, literals, default: p.default });
  }
  return info;
}

interface JsonProp {
  type?: string | string[];
  anyOf?: JsonProp[];
  enum?: string[];
  const?: unknown;
  default?: unknown;
}

export function flagName(key: ConfigKey): string {
  return `--${key.replace(/_/g, '-')}`;
}

/** The camelCase property commander uses for a key's flag. */
function optionProp(key: ConfigKey): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Adds `--config FILE` and one flag per config key (all, or the `keys` given) to a command. */
export function addConfigOptions(cmd: Command, keys: readonly ConfigKey[] = CONFIG_KEYS): Command {
  cmd.option('--config <file>', 'YAML or JSON config file (flags override it)');
  for (const key of keys) {
    const info = KEY_INFO.get(key)!;
    const shown = info.choices
      ? info.choices.join('|')
      : info.kind === 'object'
        ? 'json|k=v,...'
        : info.kind === 'array'
          ? [...info.literals, 'a,b,...'].join('|')
          : 'value';
    const help = `config key ${key} (default ${JSON.stringify(info.default)})`;
    if (info.kind === 'boolean') cmd.option(`${flagName(key)} [bool]`, help);
    else cmd.option(`${flagName(key)} <${shown}>`, help);
  }
  return cmd;
}

/** Converts commander's parsed options back into raw config keys, only for flags given. */
export function flagsToRawConfig(opts: Record<string, unknown>, keys: readonly ConfigKey[] = CONFIG_KEYS): RawConfig {
  const raw: RawConfig = {};
  for (const key of keys) {
    const value = opts[optionProp(key)];
    if (value === undefined) continue;
    raw[key] = coerceFlag(key, value);
  }
  return raw;
}

export function coerceFlag(key: ConfigKey, value: unknown): unknown {
  const info = KEY_INFO.get(key);
  if (!info) throw new GrpoError('GRPO_ERR_CONFIG', `unknown flag ${flagName(key as ConfigKey)}`);
  if (value === true && info.kind === 'boolean') return true;
  const text = String(value);
  if (info.nullable && (text === 'null' || text === 'none')) return null;
  switch (info.kind) {
    case 'integer':
    case 'number': {
      const n = Number(text.replace(/_/g, ''));
      if (text.trim() === '' || !Number.isFinite(n)) {
        throw new GrpoError('GRPO_ERR_CONFIG', `${flagName(key)} expects a number, got "${text}"`);
      }
      return n;
    }
    case 'boolean':
      if (/^(true|1|yes|on)$/i.test(text)) return true;
      if (/^(false|0|no|off)$/i.test(text)) return false;
      throw new GrpoError('GRPO_ERR_CONFIG', `${flagName(key)} expects true or false, got "${text}"`);
    case 'object':
      return parseMapping(key, text);
    case 'array':
      return parseList(key, text, info.literals);
    case 'string':
      return text;
  }
}

/** `["a","b"]` (JSON), `a,b` (comma-separated), or one of the key's string constants whole. */
function parseList(key: ConfigKey, text: string, literals: string[]): unknown {
  if (literals.includes(text)) return text;
  if (text.trim().startsWith('[')) {
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new GrpoError('GRPO_ERR_CONFIG', `${flagName(key)}: invalid JSON: ${(err as Error).message}`);
    }
  }
  return text.split(',').map((p) => p.trim()).filter((p) => p !== '');
}

/** `{"a": 1}` (JSON) or `a=1,b=x` (values that look like numbers or booleans become them). */
function parseMapping(key: ConfigKey, text: string): Record<string, unknown> {
  if (text.trim().startsWith('{')) {
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new GrpoError('GRPO_ERR_CONFIG', `${flagName(key)}: invalid JSON: ${(err as Error).message}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const part of text.split(',').filter((p) => p.trim() !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new GrpoError('GRPO_ERR_CONFIG', `${flagName(key)}: expected k=v pairs, got "${part}"`);
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    out[k] = v === 'true' ? true : v === 'false' ? false : v !== '' && Number.isFinite(Number(v)) ? Number(v) : v;
  }
  return out;
}
