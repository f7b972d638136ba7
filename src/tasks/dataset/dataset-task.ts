/**
 * A task whose problems come from dataset files: the base task (math-answer, or any task) keeps
 * its rewards, correctness and answer parsing; the file gives the prompts, reference answers and
 * SFT completions.
 *
 * Splits: with `test_dataset` the second file is the held-out set; otherwise a row belongs to the
 * test split when a hash of (seed, prompt text) falls below `test_fraction`, so the split does not
 * depend on row order and one prompt never lands in both splits.
 *
 * Order: train position p is row perm_e[p mod n] of epoch e = floor(p / n), perm_e a Fisher-Yates
 * shuffle seeded by (seed, e). It is a pure function of (seed, file contents, p), so the learner's
 * resume-safe data cursor (positions, src/learner/data-cursor.ts) works for files exactly as for
 * generated tasks: a resumed run maps its pending positions to the same rows. Test rows keep file
 * order.
 *
 * Every row is checked when the file is loaded, not when it is first drawn: its fields, its answer
 * (the base task's answerMeta), and its prompt rendered through the prompt format. Rows whose
 * prompt is longer than the limit (`prompt_too_long`), or for SFT whose prompt and completion do
 * not fit the context together (`sequence_too_long`), are dropped, counted and logged
 * (`dataset_rows_dropped`, one line per split and reason), never silently skipped.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { GrpoError, isGrpoError } from '../../shared/errors.js';
import { Rng } from '../../shared/rng.js';
import type { ProtocolLogger } from '../../shared/protocol.js';
import { formatPrompt, type PromptFormat } from '../prompt-format.js';
import { hashWords, isTestPrompt } from '../split.js';
import type { Split, Task, TaskExample } from '../types.js';
import { readDatasetFile } from './read.js';
import { resolveFields, toRow, type DatasetRow, type FieldSpec, type ResolvedFields } from './rows.js';

export interface DatasetSpec {
  file: string;
  testFile: string | null; // the held-out set; null = split `file` by testFraction
  testFraction: number; // in (0, 1)
  seed: number;
  fields: Omit<FieldSpec, 'needAnswer'>;
  /** Longest prompt kept, in whatever unit `measure` returns (tokens with a tokenizer, else characters). */
  maxPromptLength: number;
  measure?: (text: string) => number;
  /**
   * SFT: the longest prompt + completion kept, with the completion's length (EOS included) in the
   * same unit; rows over it are dropped as `sequence_too_long`. Unset: completions are not measured.
   */
  maxSequenceLength?: number;
  measureCompletion?: (text: string) => number;
  log?: ProtocolLogger;
}

interface Prepared {
  example: TaskExample;
  where: string;
}

export interface DatasetInfo {
  file: string;
  testFile: string | null;
  /** Hex SHA-256 of each file's bytes: the row order depends on them, so a resumed run can be checked against its log. */
  sha256: { file: string; testFile: string | null };
  fields: ResolvedFields;
  train: number; // rows kept
  test: number;
  dropped: { train: number; test: number }; // rows over the prompt (or, for SFT, prompt + completion) length limit
}

/** The task with problems from files. Throws GRPO_ERR_DATASET* with the file, line and field. */
export async function loadDatasetTask(base: Task, fmt: PromptFormat, spec: DatasetSpec): Promise<Task & { dataset: DatasetInfo }> {
  const needAnswer = base.answerMeta !== undefined;
  const records = await readDatasetFile(spec.file);
  if (records.length === 0) throw new GrpoError('GRPO_ERR_DATASET', `dataset ${spec.file} holds no records`);
  const fieldSpec: FieldSpec = { ...spec.fields, needAnswer };
  const fields = resolveFields(fieldSpec, records[0], spec.file);
  let trainRows = records.map((r) => toRow(r, spec.file, fields, fieldSpec));
  let testRows: DatasetRow[];
  if (spec.testFile !== null) {
    const testRecords = await readDatasetFile(spec.testFile);
    if (testRecords.length === 0) throw new GrpoError('GRPO_ERR_DATASET', `test dataset ${spec.testFile} holds no records`);
    testRows = testRecords.map((r) => toRow(r, spec.testFile!, fields, { needCompletion: false }));
  } else {
    const key = (row: DatasetRow): string => (typeof row.prompt === 'string' ? row.prompt : JSON.stringify(row.prompt));
    testRows = trainRows.filter((r) => isTestPrompt(spec.seed, key(r), spec.testFraction));
    trainRows = trainRows.filter((r) => !isTestPrompt(spec.seed, key(r), spec.testFraction));
  }
  const train = prepare(base, fmt, trainRows, 'train', spec);
  const test = prepare(base, fmt, testRows, 'test', spec);
  for (const [split, p] of [['train', train], ['test', test]] as const) {
    if (p.kept.length === 0) {
      const why = p.dropped > 0 ? `all ${p.dropped} rows are too long for the model's context (see dataset_rows_dropped)` : 'no row fell in it';
      throw new GrpoError(
        'GRPO_ERR_DATASET',
        `dataset ${spec.file}: the ${split} split is empty (${why}); ${split === 'test' ? 'raise test_fraction or give test_dataset' : 'give more rows or a larger model context'}`,
      );
    }
  }
  const info: DatasetInfo = {
    file: spec.file,
    testFile: spec.testFile,
    sha256: { file: await sha256Of(spec.file), testFile: spec.testFile === null ? null : await sha256Of(spec.testFile) },
    fields,
    train: train.kept.length,
    test: test.kept.length,
    dropped: { train: train.dropped, test: test.dropped },
  };
  spec.log?.('info', 'dataset_loaded', { ...info, fields: { ...fields } });
  const order = new EpochOrder(train.kept.length, spec.seed);
  const rows: Record<Split, Prepared[]> = { train: train.kept, test: test.kept };
  const example = (split: Split, index: number): TaskExample => {
    if (split !== 'train' && split !== 'test') throw new GrpoError('GRPO_ERR_TASK_SPLIT', `split is ${JSON.stringify(split)}; use "train" or "test"`);
    if (!Number.isSafeInteger(index) || index < 0) throw new GrpoError('GRPO_ERR_TASK_INDEX', `example index is ${index}; it must be a non-negative safe integer`);
    const list = rows[split];
    return list[split === 'train' ? order.row(index) : index % list.length].example;
  };
  const maxChars = Math.max(...[...train.kept, ...test.kept].map((p) => p.example.prompt.length));
  return Object.freeze({
    ...base,
    example,
    maxPromptChars: maxChars,
    size: { train: train.kept.length, test: test.kept.length },
    dataset: info,
  });
}

/** Rows to examples: answer meta, SFT target, formatted prompt; drops (and counts) over-long rows. */
function prepare(base: Task, fmt: PromptFormat, rows: DatasetRow[], split: Split, spec: DatasetSpec): { kept: Prepared[]; dropped: number } {
  const kept: Prepared[] = [];
  const measure = spec.measure ?? ((t: string) => t.length);
  // per reason: how many, the limit, and the first such row (for the log line)
  const drops = new Map<string, { count: number; limit: number; first: string; firstLength: number }>();
  const drop = (reason: string, limit: number, where: string, length: number): void => {
    const d = drops.get(reason);
    if (d) d.count++;
    else drops.set(reason, { count: 1, limit, first: where, firstLength: length });
  };
  for (const row of rows) {
    const prompt = formatPrompt(fmt, row.prompt, row.where);
    const length = measure(prompt);
    if (length > spec.maxPromptLength) {
      drop('prompt_too_long', spec.maxPromptLength, row.where, length);
      continue;
    }
    if (spec.maxSequenceLength !== undefined && spec.measureCompletion && row.completion !== null && split === 'train') {
      const total = length + spec.measureCompletion(row.completion);
      if (total > spec.maxSequenceLength) {
        drop('sequence_too_long', spec.maxSequenceLength, row.where, total);
        continue;
      }
    }
    let meta: unknown = row.answer === null ? {} : { answer: row.answer };
    if (row.answer !== null && base.answerMeta) {
      try {
        meta = base.answerMeta(row.answer);
      } catch (err) {
        const code = isGrpoError(err) ? err.code : 'GRPO_ERR_TASK_META';
        throw new GrpoError(code, `${row.where}: field answer: ${(err as Error).message}`, { cause: err });
      }
    }
    const example: TaskExample = { prompt, meta, ...(row.completion === null ? {} : { target: row.completion }) };
    kept.push({ example, where: row.where });
  }
  let dropped = 0;
  for (const [reason, d] of drops) {
    dropped += d.count;
    spec.log?.('warn', 'dataset_rows_dropped', {
      split,
      reason,
      dropped: d.count,
      kept: kept.length,
      limit: d.limit,
      first: d.first,
      firstLength: d.firstLength,
    });
  }
  return { kept, dropped };
}

async function sha256Of(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/** Position -> row under a per-epoch shuffle; keeps the current epoch's permutation. */
export class EpochOrder {
  private epoch = -1;
  private perm: Uint32Array = new Uint32Array(0);

  constructor(
    private readonly n: number,
    private readonly seed: number,
  ) {}

  row(position: number): number {
    const epoch = Math.floor(position / this.n);
    if (epoch !== this.epoch) {
      this.perm = shuffled(this.n, hashWords(this.seed, 0x64617461, epoch % 4294967296)); // 'data'
      this.epoch = epoch;
    }
    return this.perm[position % this.n];
  }
}

function shuffled(n: number, seed: number): Uint32Array {
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const rng = new Rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return perm;
}
