/**
 * Where task grammars meet the rest of the trainer:
 *
 *   batchGrammar        one sampler hook for a batch whose rows may come from different tasks
 *                       (a worker's call can mix curriculum levels; eval batches have one task)
 *   grammarViolation    whether a token sequence is a word the task's grammar allows after a
 *                       prompt (the same hook the sampler uses, so the check is exactly the mask)
 *   checkSftTargets     SFT must teach words of the grammar: its targets are checked up front
 *
 * Tasks without a grammar pass through all three: their rows are unconstrained.
 */
import { GrpoError, isGrpoError } from '../shared/errors.js';
import type { Tokenizer } from '../model/types.js';
import { completionIds } from './encoding.js';
import type { GrammarHook, Task } from './types.js';

export interface GrammarRow {
  task: Task;
  prompt: string; // the prompt text this sampler row continues
}

/**
 * The sampler hook of a batch whose row r continues `rows[r].prompt` under `rows[r].task`.
 * Rows of the same Task object share one hook built from their prompts; rows of tasks without
 * a grammar get null (any token). Undefined when no row has a grammar, so the sampler does no
 * masking work at all.
 */
export function batchGrammar(tokenizer: Tokenizer, rows: readonly GrammarRow[]): GrammarHook | undefined {
  const byTask = new Map<Task, number[]>(); // task -> batch rows, ascending
  rows.forEach((r, i) => {
    if (r.task.grammar === undefined) return;
    const list = byTask.get(r.task);
    if (list === undefined) byTask.set(r.task, [i]);
    else list.push(i);
  });
  if (byTask.size === 0) return undefined;
  // each part numbers its rows 0.. in batch order, as a hook built for those prompts expects
  const partOf = new Map<number, { hook: GrammarHook; local: number }>();
  for (const [task, ids] of byTask) {
    const hook = task.grammar!(tokenizer, ids.map((i) => rows[i].prompt));
    ids.forEach((row, local) => partOf.set(row, { hook, local }));
  }
  return (generated, rowIds) => {
    const out: (Int32Array | number[] | null)[] = rowIds.map(() => null);
    const calls = new Map<GrammarHook, { at: number[]; generated: number[][]; rows: number[] }>();
    rowIds.forEach((row, s) => {
      const part = partOf.get(row);
      if (part === undefined) return;
      let call = calls.get(part.hook);
      if (call === undefined) calls.set(part.hook, (call = { at: [], generated: [], rows: [] }));
      call.at.push(s);
      call.generated.push(generated[s]);
      call.rows.push(part.local);
    });
    for (const [hook, call] of calls) {
      const allowed = hook(call.generated, call.rows);
      if (!Array.isArray(allowed) || allowed.length !== call.rows.length) {
        throw new GrpoError('GRPO_ERR_GRAMMAR_INPUT', `a task's grammar hook returned ${allowed?.length} entries for ${call.rows.length} rows`);
      }
      call.at.forEach((s, j) => (out[s] = allowed[j]));
    }
    return out;
  };
}

function allows(set: Int32Array | number[], token: number): boolean {
  for (let i = 0; i < set.length; i++) if (set[i] === token) return true;
  return false;
}

/**
 * Null when `ids` (completion tokens; EOS, if present, must come last) follows the task's
 * grammar after `prompt`, else why not. Completeness is checked only through EOS: pass the
 * completion with its EOS to require a whole word. Always null for a task without a grammar.
 */
export function grammarViolation(task: Task, tokenizer: Tokenizer, prompt: string, ids: readonly number[]): string | null {
  if (task.grammar === undefined) return null;
  const hook = task.grammar(tokenizer, [prompt]);
  for (let t = 0; t < ids.length; t++) {
    let allowed: Int32Array | number[] | null;
    try {
      allowed = hook([ids.slice(0, t)], [0])[0];
    } catch (err) {
      if (isGrpoError(err)) return err.message;
      throw err;
    }
    if (allowed !== null && !allows(allowed, ids[t])) {
      const text = ids[t] === tokenizer.eosId ? 'EOS' : JSON.stringify(tokenizer.decode([ids[t]]));
      return `token ${ids[t]} (${text}) at completion position ${t} is not allowed there`;
    }
    if (ids[t] === tokenizer.eosId && t !== ids.length - 1) return `EOS at position ${t} is followed by more tokens`;
  }
  return null;
}

/**
 * Checks that the SFT targets of train examples 0..count-1 are whole words of the task's grammar
 * (target tokens then EOS), so the warm start never teaches what sampling forbids. Throws
 * GRPO_ERR_GRAMMAR_TARGET naming the first bad example. A no-op without a grammar.
 */
export function checkSftTargets(task: Task, tokenizer: Tokenizer, count: number): void {
  if (task.grammar === undefined) return;
  for (let i = 0; i < count; i++) {
    const ex = task.example('train', i);
    if (ex.target === undefined) continue;
    const why = grammarViolation(task, tokenizer, ex.prompt, completionIds(tokenizer, ex.target));
    if (why !== null) {
      throw new GrpoError(
        'GRPO_ERR_GRAMMAR_TARGET',
        `task ${task.name}: the SFT target ${JSON.stringify(ex.target)} of train example ${i} (prompt ${JSON.stringify(ex.prompt)}) breaks the task's grammar: ${why}; the task's targets and grammar must agree`,
      );
    }
  }
}
