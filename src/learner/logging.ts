/**
 * What the learner reports per step: one flat record (StepRecord), written as
 *   - a structured log line (event `step`) through the run's logger (stderr),
 *   - one JSON line appended to `<out>/metrics.jsonl` (always),
 *   - one CSV row appended to `log_csv` when that key is set (header written with the first row),
 *   - one more entry in every array of `<out>/training_stats.json` (shared/metrics/files.ts),
 * and a progress bar on a TTY (the log lines then print through the bar).
 *
 * Units: seconds, tokens, rewards as the task scores them. NaN (e.g. kl with kl_coef 0) is
 * written as null in JSON and as an empty CSV cell.
 */
import { appendFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { guardWrite } from '../shared/write-error.js';
import { dirname } from 'node:path';
import { TrainingStatsWriter } from '../shared/metrics/files.js';
import { progressBar, type ProgressBar } from '../shared/progress-bar.js';
import type { ProtocolLogger } from '../shared/protocol.js';
import type { InboxCounts } from './groups-inbox.js';
import type { StepMetrics } from './step-metrics.js';

export interface StepRecord {
  step: number; // steps done, this one included
  version: number; // policy version after the step
  updated: boolean; // false: nothing to train on, weights unchanged
  lr: number;
  rewardMean: number; // weighted reward total, over the step's completions
  rewardStd: number;
  rewards: Record<string, number>; // per reward function, raw mean
  rewardStds: Record<string, number>; // per reward function, sample std of its raw scores
  accuracy: number; // share of the step's completions the task's isCorrect accepts
  loss: number;
  kl: number;
  entropy: number;
  clipLow: number;
  clipHigh: number;
  clipRegion: number;
  gradNorm: number;
  lengthMean: number; // completion tokens
  lengthMax: number;
  truncated: number; // share cut at max_gen_len
  advantageMean: number; // over the completions trained
  advantageStd: number;
  logprobMean: number; // mean log-probability of the sampled tokens (the workers'), nats/token
  stalenessMean: number; // versions between sampling and this update
  stalenessMax: number;
  groupsAdmitted: number; // cumulative
  groupsStale: number; // cumulative, re-queued
  groupsFailed: number; // cumulative, skipped
  stepSeconds: number; // trainer.step wall time
  waitSeconds: number; // time spent waiting for the step's groups
  tokensPerSecond: number; // trained completion tokens (x inner epochs) per second of step time
  sampleTokensPerSecond: number; // completion tokens admitted per wall second since the last step
  curriculumLevel: number | null; // curriculum level after this step; null without a curriculum
  successRate: number | null; // the curriculum's rolling success rate at that level (NaN right after a raise)
  replayed: number; // zero-variance groups swapped for replayed ones in this step (replay_buffer_size)
}

export function stepRecord(
  m: StepMetrics,
  x: {
    step: number;
    accuracy: number;
    counts: InboxCounts;
    waitSeconds: number;
    sampleTokensPerSecond: number;
    curriculum?: { level: number; successRate: number } | null;
    replayed?: number;
  },
): StepRecord {
  const b = m.batch;
  return {
    step: x.step,
    version: m.policyVersion,
    updated: m.updated,
    lr: m.lr,
    rewardMean: b.rewardMean,
    rewardStd: b.rewardStd,
    rewards: Object.fromEntries(Object.entries(b.rewardFunctions).map(([name, s]) => [name, s.mean])),
    rewardStds: Object.fromEntries(Object.entries(b.rewardFunctions).map(([name, s]) => [name, s.std])),
    accuracy: x.accuracy,
    loss: m.loss,
    kl: m.kl,
    entropy: m.entropy,
    clipLow: m.clipLow,
    clipHigh: m.clipHigh,
    clipRegion: m.clipRegion,
    gradNorm: m.gradNorm,
    lengthMean: b.lengthMean,
    lengthMax: b.lengthMax,
    truncated: b.truncatedShare,
    advantageMean: b.advantageMean,
    advantageStd: b.advantageStd,
    logprobMean: b.logprobMean,
    stalenessMean: m.stalenessMean,
    stalenessMax: m.stalenessMax,
    groupsAdmitted: x.counts.admitted,
    groupsStale: x.counts.droppedStale,
    groupsFailed: x.counts.failed,
    stepSeconds: m.seconds,
    waitSeconds: x.waitSeconds,
    tokensPerSecond: m.tokensPerSecond,
    sampleTokensPerSecond: x.sampleTokensPerSecond,
    curriculumLevel: x.curriculum?.level ?? null,
    successRate: x.curriculum?.successRate ?? null,
    replayed: x.replayed ?? 0,
  };
}

/** `{a: 1, rewards: {correct: 0.5}}` -> `{a: 1, 'rewards.correct': 0.5}`. */
export function flatten(record: object, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, flatten(v, `${prefix}${k}.`));
    else out[`${prefix}${k}`] = v;
  }
  return out;
}

function csvCell(v: unknown): string {
  if (v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v))) return '';
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * Appends step records to metrics.jsonl and, optionally, a CSV file (synchronously: a crash loses
 * no line), and rewrites training_stats.json when `statsPath` is given. A fresh run starts the
 * files empty; a resumed run (`append`) continues them.
 */
export class MetricsWriter {
  private columns: string[] | null = null;
  private readonly stats: TrainingStatsWriter | null;

  constructor(
    readonly jsonlPath: string,
    readonly csvPath: string | null,
    opts: { append: boolean; statsPath?: string | null },
  ) {
    for (const path of csvPath === null ? [jsonlPath] : [jsonlPath, csvPath]) {
      guardWrite(path, 'metrics file', () => {
        mkdirSync(dirname(path), { recursive: true });
        if (!opts.append) writeFileSync(path, '');
      });
    }
    this.stats = opts.statsPath ? new TrainingStatsWriter(opts.statsPath, { append: opts.append }) : null;
  }

  write(record: StepRecord): void {
    guardWrite(this.jsonlPath, 'metrics file', () => appendFileSync(this.jsonlPath, `${JSON.stringify(record)}\n`));
    this.stats?.write(record);
    const csv = this.csvPath;
    if (csv === null) return;
    const flat = flatten(record);
    guardWrite(csv, 'metrics CSV', () => {
      if (this.columns === null) {
        this.columns = Object.keys(flat);
        // a resumed run appends to the file it wrote before, whose header is already there
        if (!existsSync(csv) || statSync(csv).size === 0) appendFileSync(csv, `${this.columns.join(',')}\n`);
      }
      appendFileSync(csv, `${this.columns.map((c) => csvCell(flat[c])).join(',')}\n`);
    });
  }
}

/** The learner's progress bar (a TTY only); its `log` prints through the bar while it is drawn. */
export type LearnerProgress = ProgressBar<StepRecord>;

const fmt = (x: number, digits = 3): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');

/** The progress bar of the learner's steps on `stream` (a TTY). */
export function learnerProgressBar(stream: NodeJS.WriteStream, inner: ProtocolLogger): LearnerProgress {
  return progressBar<StepRecord>(stream, inner, {
    label: 'grpo',
    columns: 'v{version} | reward {reward} | acc {acc} | kl {kl} | {tps} tok/s',
    fields: {
      version: (r) => r.version,
      reward: (r) => fmt(r.rewardMean),
      acc: (r) => fmt(r.accuracy, 2),
      kl: (r) => fmt(r.kl, 4),
      tps: (r) => Math.round(r.tokensPerSecond),
    },
    value: (r) => r.step,
    etaBuffer: 10,
  });
}
