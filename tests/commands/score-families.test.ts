/**
 * `grpo score` on a checkpoint of each supported family: the per-token log-probabilities it
 * prints equal log_softmax of the float64 PyTorch reference logits of the fixture
 * (tools/fixtures/make_hf_tiny_models.py), for the fixture's first case, "the cat sat.".
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scoreCommand } from '../../src/commands/score.js';
import { captureIO } from './helpers.js';

const FIXTURES = join(import.meta.dirname, '../fixtures');

function logSoftmax(row: number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((s, z) => s + Math.exp(z - m), 0));
  return row.map((z) => z - lse);
}

describe.each(['llama3', 'qwen2', 'qwen3', 'gemma2'])('grpo score on the tiny %s checkpoint', (family) => {
  it('prints the log-probs of the PyTorch reference', async () => {
    const dir = join(FIXTURES, `hf-tiny-${family}`);
    const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { logits: { ids: number[]; logits: number[][] }[] };
    const r = await scoreCommand({ checkpoint: dir, prompt: 'the cat', completion: 'sat.', backend: 'cpu' }, captureIO().io);
    const { ids, logits } = expected.logits[0];
    expect([...r.promptIds, ...r.completionIds]).toEqual(ids);
    const want = r.completionIds.map((id, i) => logSoftmax(logits[r.promptIds.length - 1 + i])[id]);
    r.logprobs.forEach((x, i) => expect(Math.abs(x - want[i])).toBeLessThan(1e-4));
  });
});
