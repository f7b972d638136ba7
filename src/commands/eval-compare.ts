/**
 * `grpo eval --compare A B`: two checkpoints on the same held-out problems, side by side, like the
 * "Baseline vs GRPO" table of seed 003.
 *
 *   grpo eval --compare runs/fill-in/sft runs/fill-in/checkpoint --names baseline,grpo --k 4 --out cmp.json
 *
 *   fill-in {"mask_rate":0.15,...} seed 1234: 200 held-out problems, k=4 (n=4, temperature 1)
 *   metric                  baseline  grpo    delta
 *   accuracy (greedy)       37.0%     52.5%   +15.5
 *   pass@4                  ...
 *
 * The task (name, options, seed) comes from A's saved run unless flags give it, and B is scored
 * on the very same task; the sampling seed is the task seed for both, so the only difference
 * between the columns is the weights. Checkpoints saved from runs of two different tasks are an
 * error unless --task picks one. Deltas are B - A, in percentage points for rates.
 */
import { writeFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { coerceFlag } from '../shared/config-flags.js';
import type { BackendChoice } from '../engine/backend.js';
import { GrpoError } from '../shared/errors.js';
import { loadCheckpoint } from '../model/checkpoint.js';
import { evalOptions, evalTask, evaluateCheckpoint, savedConfig, type EvalCommandOptions, type EvalReport } from './eval-checkpoint.js';
import { startEngine, type CommandIO } from './io.js';

export interface CompareRow {
  metric: string;
  unit: 'rate' | 'tokens'; // rate: a share in [0, 1], shown as %; tokens: a mean count
  a: number | null; // null: not measured (k = n = 1 has no sampled metrics)
  b: number | null;
  delta: number | null; // b - a
}

export interface CompareReport {
  names: [string, string];
  checkpoints: [string, string];
  task: string;
  taskOptions: Record<string, unknown>;
  seed: number;
  samples: number;
  k: number;
  n: number;
  temperature: number;
  backend: string;
  rows: CompareRow[];
  reports: [EvalReport, EvalReport];
}

function names(opts: EvalCommandOptions, dirs: [string, string]): [string, string] {
  if (opts.names === undefined) {
    const [a, b] = dirs.map((d) => basename(resolve(d)));
    return a === b ? ['A', 'B'] : [a, b];
  }
  const parts = opts.names.split(',').map((x) => x.trim());
  if (parts.length !== 2 || parts.some((x) => x === '')) {
    throw new GrpoError('GRPO_ERR_EVAL_OPTIONS', `--names is "${opts.names}"; give two names separated by a comma, e.g. baseline,grpo`);
  }
  return [parts[0], parts[1]];
}

/** The table's rows from two reports of the same evaluation. */
export function compareRows(a: EvalReport, b: EvalReport): CompareRow[] {
  const row = (metric: string, unit: CompareRow['unit'], x: number | null, y: number | null): CompareRow => ({
    metric,
    unit,
    a: x,
    b: y,
    delta: x === null || y === null ? null : y - x,
  });
  return [
    row('accuracy (greedy)', 'rate', a.accuracy, b.accuracy),
    row(`pass@${a.k}`, 'rate', a.passAtK, b.passAtK),
    row(`mean@${a.k}`, 'rate', a.meanAtK, b.meanAtK),
    row(`majority@${a.k}`, 'rate', a.majAtK, b.majAtK),
    row('mean completion tokens', 'tokens', a.meanCompletionTokens, b.meanCompletionTokens),
    row('truncated', 'rate', a.truncatedFraction, b.truncatedFraction),
  ];
}

export async function compareCommand(opts: EvalCommandOptions, io: CommandIO): Promise<CompareReport> {
  const dirs = opts.compare ?? [];
  if (dirs.length !== 2) {
    throw new GrpoError('GRPO_ERR_EVAL_OPTIONS', `--compare takes two checkpoint directories (A B), got ${dirs.length}`);
  }
  if (opts.checkpoint !== undefined) throw new GrpoError('GRPO_ERR_EVAL_OPTIONS', '--checkpoint and --compare both given; use one');
  const pair: [string, string] = [dirs[0], dirs[1]];
  const label = names(opts, pair);
  const backend = (opts.backend !== undefined ? coerceFlag('backend', opts.backend) : 'auto') as BackendChoice;
  const engine = await startEngine(backend, io);

  const ckptA = await loadCheckpoint(pair[0]);
  const ckptB = await loadCheckpoint(pair[1]);
  const savedA = savedConfig(ckptA.trainerState, pair[0]);
  const savedB = savedConfig(ckptB.trainerState, pair[1]);
  if (opts.task === undefined && savedA.task !== savedB.task) {
    throw new GrpoError(
      'GRPO_ERR_EVAL_OPTIONS',
      `${pair[0]} was trained on task ${savedA.task} and ${pair[1]} on ${savedB.task}; pick the task to compare them on with --task`,
    );
  }
  const { task, seed } = await evalTask(opts, savedA, ckptA);
  const o = evalOptions(opts, savedA, seed);
  const a = await evaluateCheckpoint(pair[0], ckptA, task, o, seed, engine.backend);
  const b = await evaluateCheckpoint(pair[1], ckptB, task, o, seed, engine.backend);
  const report: CompareReport = {
    names: label,
    checkpoints: pair,
    task: task.name,
    taskOptions: { ...task.options },
    seed,
    samples: a.samples,
    k: a.k,
    n: a.n,
    temperature: a.temperature,
    backend: engine.backend,
    rows: compareRows(a, b),
    reports: [a, b],
  };
  if (opts.out !== undefined) {
    await writeFile(opts.out, `${JSON.stringify(report, null, 2)}\n`);
    io.log('info', 'compare_written', { out: resolve(opts.out) });
  }
  io.out(opts.json ? JSON.stringify(report) : formatCompare(report));
  return report;
}

function cell(unit: CompareRow['unit'], x: number | null): string {
  if (x === null) return 'n/a';
  return unit === 'rate' ? `${(100 * x).toFixed(1)}%` : x.toFixed(2);
}

function deltaCell(unit: CompareRow['unit'], d: number | null): string {
  if (d === null) return 'n/a';
  const v = unit === 'rate' ? 100 * d : d;
  const text = v.toFixed(unit === 'rate' ? 1 : 2);
  return v > 0 ? `+${text}` : text.replace(/^-(0\.0+)$/, '$1'); // "-0.0" reads as a change; it is none
}

/** The side-by-side table (see the file comment). */
export function formatCompare(r: CompareReport): string {
  const sampled = r.n > 1 ? `k=${r.k} (n=${r.n}, temperature ${r.temperature})` : 'greedy only (use --k or --n > 1 for pass@k, mean@k, majority@k)';
  const header = ['metric', r.names[0], r.names[1], 'delta'];
  const body = r.rows.map((x) => [x.metric, cell(x.unit, x.a), cell(x.unit, x.b), deltaCell(x.unit, x.delta)]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [
    `${r.task} ${JSON.stringify(r.taskOptions)} seed ${r.seed}: ${r.samples} held-out problems, ${sampled}`,
    `A = ${r.checkpoints[0]}, B = ${r.checkpoints[1]}; delta = B - A (points for rates)`,
    line(header),
    ...body.map(line),
  ].join('\n');
}
