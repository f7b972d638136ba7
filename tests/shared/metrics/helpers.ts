/**
 * Test helpers for the metrics: a strict parser of the Prometheus text format (0.0.4) and
 * promtool, when it is installed (CI installs Debian's `prometheus` package, which ships it).
 */
import { spawnSync } from 'node:child_process';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
}

export interface Exposition {
  families: Map<string, Family>;
  samples: Sample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < text.length) {
    const m = LABEL.exec(text);
    if (m === null) throw new Error(`bad labels in line: ${line}`);
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  }
  return labels;
}

function parseValue(text: string, line: string): number {
  if (/^[+-]?Inf$/i.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
  if (/^NaN$/i.test(text)) return NaN;
  const v = Number(text);
  if (Number.isNaN(v)) throw new Error(`bad value in line: ${line}`);
  return v;
}

/** Parses exposition text; throws on any malformed line or a sample with no TYPE. */
export function parseExposition(text: string): Exposition {
  const families = new Map<string, Family>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const f = families.get(meta[2]) ?? { name: meta[2], type: '', help: '' };
      if (meta[1] === 'HELP') f.help = meta[3];
      else f.type = meta[3];
      families.set(meta[2], f);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (m === null) throw new Error(`bad sample line: ${line}`);
    samples.push({ name: m[1], labels: m[3] ? parseLabels(m[3], line) : {}, value: parseValue(m[4], line) });
  }
  for (const s of samples) {
    const family = familyOf(s.name, families);
    if (family === undefined) throw new Error(`sample ${s.name} has no # TYPE line`);
  }
  return { families, samples };
}

/** The family a sample belongs to (histogram samples carry _bucket/_sum/_count). */
export function familyOf(sample: string, families: Map<string, Family>): Family | undefined {
  if (families.has(sample)) return families.get(sample);
  const base = sample.replace(/_(bucket|sum|count)$/, '');
  const f = families.get(base);
  return f && (f.type === 'histogram' || f.type === 'summary') ? f : undefined;
}

/** Path of promtool, or null (with the reason logged once by the caller) when absent. */
export function promtool(): string | null {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? 'promtool' : null;
}

export const PROMTOOL_MISSING =
  'promtool is not installed (apt-get install prometheus ships it; CI installs it): skipping the promtool checks';

/** `promtool check metrics` on `text`: its problems (empty when it is clean). */
export function promtoolCheckMetrics(text: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}
