/**
 * Test helpers for the metrics: a strict parser of the Prometheus text format (0.0.4), scraping
 * a live endpoint, free loopback ports for the roles' `metrics_port`, and promtool, when it is
 * installed (CI installs Debian's `prometheus` package, which ships it).
 */
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';

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

/**
 * Path of promtool, or null (with the reason logged once by the caller) when absent; throws when
 * absent under GRPO_REQUIRE_TOOLS=1 (.ci/run), so CI cannot pass by skipping.
 */
export function promtool(): string | null {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (r.status === 0) return 'promtool';
  if (process.env.GRPO_REQUIRE_TOOLS === '1') throw new Error(`${PROMTOOL_MISSING.split(':')[0]}, and GRPO_REQUIRE_TOOLS=1`);
  return null;
}

export const PROMTOOL_MISSING =
  'promtool is not installed (apt-get install prometheus ships it; CI installs it): skipping the promtool checks';

/** `promtool check metrics` on `text`: its problems (empty when it is clean). */
export function promtoolCheckMetrics(text: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

/** GET `url` (a /metrics endpoint) and parse it; throws on a non-200 answer. */
export async function scrape(url: string): Promise<Exposition & { text: string }> {
  const res = await fetch(url);
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status} ${text}`);
  return { ...parseExposition(text), text };
}

/** The value of the first sample named `name` whose labels include `labels`, or undefined. */
export function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/**
 * A port free now on 127.0.0.1 with the `count - 1` ports after it free too (for a role's
 * metrics_port, where 0 means "off", not "any"). Another process could take it before the test
 * binds it; on a test machine that is rare enough.
 */
export async function freePorts(count = 1): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | null>((done) => {
      const s = createServer();
      s.once('error', () => done(null));
      s.listen(port, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => done(p));
      });
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = await tryListen(0);
    if (base === null || base + count > 65535) continue;
    let ok = true;
    for (let i = 1; i < count && ok; i++) ok = (await tryListen(base + i)) !== null;
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports on 127.0.0.1`);
}
