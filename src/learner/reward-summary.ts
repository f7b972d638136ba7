/**
 * How each reward moved over a run, for summary.json and the last lines `grpo train` prints: the
 * mean of the weighted total and of every reward function over the first and the last fifth of
 * the steps in <out>/metrics.jsonl (at least one step each; one step's mean alone is noisy).
 */
import { readFile } from 'node:fs/promises';

export interface RewardTrend {
  first: number | null; // mean over the first fifth of the steps; null when never measured
  last: number | null; // mean over the last fifth
}

/** `total` (the weighted reward GRPO optimises) first, then each reward function by name. */
export type RewardTrends = Record<string, RewardTrend>;

interface Row {
  rewardMean?: unknown;
  rewards?: Record<string, unknown>;
}

function meanOf(rows: readonly Row[], pick: (r: Row) => unknown): number | null {
  const values = rows.map(pick).filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}

/** Trends from parsed step records (metrics.jsonl lines), in step order. */
export function rewardTrends(rows: readonly Row[]): RewardTrends {
  if (rows.length === 0) return {};
  const w = Math.max(1, Math.floor(rows.length / 5));
  const head = rows.slice(0, w);
  const tail = rows.slice(-w);
  const names = new Set<string>();
  for (const r of rows) for (const name of Object.keys(r.rewards ?? {})) names.add(name);
  const out: RewardTrends = { total: { first: meanOf(head, (r) => r.rewardMean), last: meanOf(tail, (r) => r.rewardMean) } };
  for (const name of names) {
    out[name] = { first: meanOf(head, (r) => r.rewards?.[name]), last: meanOf(tail, (r) => r.rewards?.[name]) };
  }
  return out;
}

/** Trends of a metrics.jsonl file; {} when it is missing or empty. */
export async function rewardTrendsOfFile(jsonlPath: string): Promise<RewardTrends> {
  let text: string;
  try {
    text = await readFile(jsonlPath, 'utf8');
  } catch {
    return {}; // no step was logged (e.g. interrupted before the first step)
  }
  const rows = text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Row);
  return rewardTrends(rows);
}

/** "total 0.41 -> 0.63, keywords 0.50 -> 0.81, ..." for the summary lines. */
export function formatRewardTrends(t: RewardTrends): string {
  const f = (x: number | null): string => (x === null ? 'n/a' : x.toFixed(3));
  return Object.entries(t)
    .map(([name, { first, last }]) => `${name} ${f(first)} -> ${f(last)}`)
    .join(', ');
}
