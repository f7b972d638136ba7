/**
 * Sample completions logged during training (TRL's `log_completions`): every
 * `log_completions_steps` steps, the first LOG_COMPLETIONS_PROMPTS groups of the step batch, each
 * completion with its prompt, rewards and the advantage it was trained with, go to
 *
 *   - `<out>/completions.jsonl`, one JSON object per completion (appended synchronously, so a
 *     crash loses no line; a fresh run starts the file empty, a resumed one continues it):
 *       {"step":10,"policyVersion":10,"group":"g42","prompt":"3+4=","completion":"7","reward":1.5,
 *        "rewards":{"correct":1,"format":1},"advantage":0.87,"tokens":2,"finishReason":"stop"}
 *   - a table printed on the terminal (through the progress bar on a TTY), texts cut to fit;
 *   - one `completions_logged` log event naming the file.
 *
 * `step` is the step that trained on them; `policyVersion` the version after it. NaN (a reward
 * no function scored) is written as null.
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Tokenizer } from '../model/types.js';
import type { FinishReason, GroupRollout, ProtocolLogger } from '../shared/protocol.js';
import type { CompletionOutcomes, StepMetrics } from './step-metrics.js';

/** Groups of the step batch logged each time: a few prompts, every completion of each. */
export const LOG_COMPLETIONS_PROMPTS = 2;
/** Characters of prompt and completion shown per table row (the file keeps the whole texts). */
export const TABLE_TEXT_CHARS = 40;

export interface CompletionSample {
  step: number;
  policyVersion: number;
  group: string; // groupId
  prompt: string;
  completion: string;
  reward: number; // weighted total; NaN when no reward function scored it
  rewards: Record<string, number | null>; // per reward function, raw
  advantage: number; // the advantage it was trained with (0: its group was dropped)
  tokens: number; // completion tokens
  finishReason: FinishReason;
}

/**
 * The samples of one step: the first `prompts` of `groups` (the groups trained, in the order
 * given to the trainer, which `outcomes` follows), every completion of each.
 */
export function sampleCompletions(
  groups: readonly GroupRollout[],
  outcomes: CompletionOutcomes,
  tokenizer: Tokenizer,
  at: { step: number; policyVersion: number },
  prompts = LOG_COMPLETIONS_PROMPTS,
): CompletionSample[] {
  const out: CompletionSample[] = [];
  let row = 0;
  for (const [g, group] of groups.entries()) {
    if (g >= prompts) break;
    const prompt = tokenizer.decode(group.promptTokens);
    for (const c of group.completions) {
      out.push({
        ...at,
        group: group.groupId,
        prompt,
        completion: c.text,
        reward: outcomes.rewards[row] ?? NaN,
        rewards: { ...c.rewards },
        advantage: outcomes.advantages[row] ?? 0,
        tokens: c.tokens.length,
        finishReason: c.finishReason,
      });
      row += 1;
    }
  }
  return out;
}

/** `<out>/completions.jsonl`: one line per sample. */
export class CompletionsLog {
  constructor(
    readonly path: string,
    opts: { append: boolean },
  ) {
    mkdirSync(dirname(path), { recursive: true });
    if (!opts.append) writeFileSync(path, '');
  }

  write(samples: readonly CompletionSample[]): void {
    if (samples.length === 0) return;
    const json = (s: CompletionSample): string => JSON.stringify(s, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v));
    appendFileSync(this.path, samples.map((s) => `${json(s)}\n`).join(''));
  }
}

/** Escapes newlines and cuts `text` to `width` characters (an ellipsis marks a cut). */
function cell(text: string, width: number): string {
  const flat = text.replace(/\n/g, '\\n');
  return flat.length <= width ? flat : `${flat.slice(0, width - 1)}…`;
}

const num = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');

/** The samples as an aligned text table, one row per completion, under a title line. */
export function completionsTable(samples: readonly CompletionSample[], textChars = TABLE_TEXT_CHARS): string {
  if (samples.length === 0) return '';
  const head = ['prompt', 'completion', 'reward', 'advantage', 'tokens'];
  const rows = samples.map((s) => [cell(s.prompt, textChars), cell(s.completion, textChars), num(s.reward, 3), num(s.advantage, 3), `${s.tokens}${s.finishReason === 'length' ? '+' : ''}`]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i >= 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const { step, policyVersion } = samples[0]!;
  return [`completions at step ${step} (policy v${policyVersion}; tokens+ = cut at max_gen_len)`, line(head), ...rows.map(line)].join('\n');
}

/**
 * Logs the samples of one step (see the file comment): `groups` are the groups the step trained
 * on, `m` its metrics, `print` the terminal (the progress bar's) or null without a TTY.
 */
export function logStepCompletions(
  file: CompletionsLog,
  groups: readonly GroupRollout[],
  m: Pick<StepMetrics, 'policyVersion' | 'completions'>,
  x: { step: number; tokenizer: Tokenizer; print: ((text: string) => void) | null; log: ProtocolLogger },
): void {
  const samples = sampleCompletions(groups, m.completions, x.tokenizer, { step: x.step, policyVersion: m.policyVersion });
  file.write(samples);
  x.print?.(completionsTable(samples));
  x.log('info', 'completions_logged', { step: x.step, file: file.path, completions: samples.length });
}
