import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CompletionsLog, completionsTable, logStepCompletions, sampleCompletions } from '../../src/learner/completions-log.js';
import { CharTokenizer } from '../../src/model/char-tokenizer.js';
import type { Completion, GroupRollout } from '../../src/shared/protocol.js';

const tok = CharTokenizer.fromAlphabet('0123456789+=\n ');
const completion = (text: string, r: number | null, finishReason: Completion['finishReason'] = 'stop'): Completion => ({
  tokens: tok.encode(text),
  logprobs: tok.encode(text).map(() => -0.1),
  text,
  rewards: { correct: r },
  finishReason,
});
const group = (id: string, prompt: string, completions: Completion[]): GroupRollout => ({
  groupId: id,
  policyVersion: 0,
  promptTokens: tok.encode(prompt),
  completions,
});
const GROUPS = [
  group('g1', '1+1=', [completion('2', 1), completion('3', 0)]),
  group('g2', '2+2=', [completion('4', 1), completion('44444', null, 'length')]),
  group('g3', '3+3=', [completion('6', 1), completion('6', 1)]),
];
const OUTCOMES = { rewards: Float64Array.from([1, 0, 1, NaN, 1, 1]), advantages: Float32Array.from([0.7, -0.7, 0.5, -0.5, 0, 0]) };

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grpo-completions-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('sample completions log', () => {
  it('takes the first prompts, every completion of each, with its reward, scores and advantage', () => {
    const s = sampleCompletions(GROUPS, OUTCOMES, tok, { step: 4, policyVersion: 4 });
    expect(s.map((x) => [x.group, x.prompt, x.completion, x.advantage])).toEqual([
      ['g1', '1+1=', '2', expect.closeTo(0.7, 6)],
      ['g1', '1+1=', '3', expect.closeTo(-0.7, 6)],
      ['g2', '2+2=', '4', 0.5],
      ['g2', '2+2=', '44444', -0.5],
    ]);
    expect(s[3]).toMatchObject({ step: 4, policyVersion: 4, reward: NaN, rewards: { correct: null }, tokens: 5, finishReason: 'length' });
  });

  it('appends one JSON line per completion (NaN as null), prints a table and logs the file', async () => {
    const path = join(root, 'run', 'completions.jsonl');
    const file = new CompletionsLog(path, { append: false });
    const printed: string[] = [];
    const events: [string, Record<string, unknown> | undefined][] = [];
    const x = { tokenizer: tok, print: (t: string) => printed.push(t), log: (_l: string, e: string, f?: Record<string, unknown>) => events.push([e, f]) };
    logStepCompletions(file, GROUPS, { policyVersion: 2, completions: OUTCOMES }, { ...x, step: 2 });
    logStepCompletions(file, GROUPS, { policyVersion: 4, completions: OUTCOMES }, { ...x, step: 4 });
    const lines = (await readFile(path, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(8);
    expect(lines[3]).toMatchObject({ step: 2, group: 'g2', completion: '44444', reward: null, advantage: -0.5 });
    expect(lines[4]).toMatchObject({ step: 4, policyVersion: 4, completion: '2', reward: 1 });
    expect(events).toEqual([
      ['completions_logged', { step: 2, file: path, completions: 4 }],
      ['completions_logged', { step: 4, file: path, completions: 4 }],
    ]);
    expect(printed[0]!.split('\n')).toHaveLength(6); // title, header, 4 rows
    new CompletionsLog(path, { append: true }); // a resumed run continues the file
    expect((await readFile(path, 'utf8')).trim().split('\n')).toHaveLength(8);
    new CompletionsLog(path, { append: false });
    expect(await readFile(path, 'utf8')).toBe('');
  });

  it('aligns the table, cuts long texts and escapes newlines', () => {
    const s = sampleCompletions([group('g', '1+1=', [completion('2\n'.repeat(30), 1), completion('3', 0, 'length')])], OUTCOMES, tok, { step: 1, policyVersion: 1 });
    const rows = completionsTable(s, 12).split('\n');
    expect(rows[0]).toBe('completions at step 1 (policy v1; tokens+ = cut at max_gen_len)');
    expect(rows[1]).toMatch(/^prompt\s+completion\s+reward\s+advantage\s+tokens$/);
    expect(rows[2]!.startsWith('1+1=    2\\n2\\n2\\n2\\…  ')).toBe(true); // 12 characters, the cut marked
    const advEnd = rows[1]!.indexOf('advantage') + 'advantage'.length; // numbers are right-aligned under it
    expect(rows[2]!.slice(0, advEnd).endsWith(' 0.700')).toBe(true);
    expect(rows[3]!.slice(0, advEnd).endsWith('-0.700')).toBe(true);
    expect(rows[3]).toMatch(/ 1\+$/); // cut at max_gen_len
    expect(completionsTable([])).toBe('');
  });
});
