/**
 * `training_stats.json`: the learner's per-step metrics as one JSON object of arrays, one array
 * per metric over the steps, rewritten after every step (the file of the seed trainer that
 * users load with `pandas.DataFrame(json.load(f))` or plot directly):
 *
 *   { "step": [1, 2, 3], "rewardMean": [0.1, 0.3, 0.2], "rewards.correct": [0.5, 0.6, 0.7], ... }
 *
 * Per-step JSONL (`metrics.jsonl`) and CSV (`--log-csv`) are written by the learner itself
 * (src/learner/logging.ts); this module only adds the arrays-per-metric file.
 *
 * Rules: nested objects are flattened with dots (`rewards.correct`); numbers that are not finite
 * (NaN: not measured) are written as null; a metric that first appears at a later step is null
 * before it; every array has one entry per step. Each write goes to a temporary file renamed
 * over the old one, so a reader or a crash never sees half a file. On resume (`append`), the
 * existing file is continued; a record whose step is not after the last one kept (a run resumed
 * from an earlier checkpoint) first drops the entries from that step on, so each step appears
 * once. Cost: the whole file is rewritten each step, O(steps x metrics) bytes; for 10k steps of
 * 40 metrics that is about 4 MB per step, negligible beside a GRPO step.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { GrpoError } from '../errors.js';
import { guardWrite } from '../write-error.js';

export type StatValue = number | string | boolean | null;

/** `{a: 1, rewards: {correct: 0.5}}` -> `{a: 1, 'rewards.correct': 0.5}`; arrays are kept whole as JSON text. */
export function flattenRecord(record: object, prefix = ''): Record<string, StatValue> {
  const out: Record<string, StatValue> = {};
  for (const [k, v] of Object.entries(record)) {
    const key = `${prefix}${k}`;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, flattenRecord(v, `${key}.`));
    else out[key] = statValue(v);
  }
  return out;
}

function statValue(v: unknown): StatValue {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (v === null || v === undefined) return null;
  return JSON.stringify(v);
}

export class TrainingStatsWriter {
  private columns = new Map<string, StatValue[]>();
  private rows = 0;

  /** `append`: continue an existing file (a resumed run); otherwise start empty. */
  constructor(
    readonly path: string,
    opts: { append: boolean },
  ) {
    mkdirSync(dirname(path), { recursive: true });
    if (opts.append && existsSync(path)) this.load();
  }

  /** Number of steps held. */
  get length(): number {
    return this.rows;
  }

  /** The arrays as written (a copy). */
  snapshot(): Record<string, StatValue[]> {
    return Object.fromEntries([...this.columns].map(([k, v]) => [k, [...v]]));
  }

  /** Adds one step's record (it must have a numeric `step`) and rewrites the file. */
  write(record: object): void {
    const flat = flattenRecord(record);
    const step = flat.step;
    if (typeof step !== 'number') {
      throw new GrpoError('GRPO_ERR_INTERNAL', `training_stats.json record has step ${JSON.stringify(step)}; every record needs a numeric step`);
    }
    this.dropFrom(step);
    if (!this.columns.has('step')) this.columns.set('step', new Array<StatValue>(this.rows).fill(null));
    for (const key of Object.keys(flat)) {
      if (!this.columns.has(key)) this.columns.set(key, new Array<StatValue>(this.rows).fill(null));
    }
    for (const [key, values] of this.columns) values.push(key in flat ? flat[key] : null);
    this.rows += 1;
    const tmp = `${this.path}.tmp`;
    guardWrite(this.path, 'training stats', () => {
      writeFileSync(tmp, `${JSON.stringify(Object.fromEntries(this.columns))}\n`);
      renameSync(tmp, this.path);
    });
  }

  /** Drops the kept entries whose step is `step` or later. */
  private dropFrom(step: number): void {
    const steps = this.columns.get('step');
    if (steps === undefined) return;
    let keep = steps.length;
    while (keep > 0 && typeof steps[keep - 1] === 'number' && (steps[keep - 1] as number) >= step) keep -= 1;
    if (keep === this.rows) return;
    for (const values of this.columns.values()) values.length = keep;
    this.rows = keep;
  }

  private load(): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(this.path, 'utf8'));
    } catch (err) {
      throw new GrpoError('GRPO_ERR_RESUME', `cannot continue ${this.path}: ${(err as Error).message}; move it away to start a new one`, { cause: err });
    }
    const bad = (why: string): never => {
      throw new GrpoError('GRPO_ERR_RESUME', `cannot continue ${this.path}: ${why}; move it away to start a new one`);
    };
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) bad('it is not a JSON object of arrays');
    const entries = Object.entries(parsed as Record<string, unknown>);
    const steps = (parsed as Record<string, unknown>).step;
    if (!Array.isArray(steps)) bad('it has no "step" array');
    const n = (steps as unknown[]).length;
    for (const [key, values] of entries) {
      if (!Array.isArray(values) || values.length !== n) bad(`"${key}" is not an array of ${n} entries like "step"`);
      this.columns.set(key, (values as unknown[]).map(statValue));
    }
    this.rows = n;
  }
}
