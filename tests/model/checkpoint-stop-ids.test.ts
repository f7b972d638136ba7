/**
 * The end ids of a chat model: config.json's eos_token_id (one id or a list) and the ones
 * generation_config.json adds (Qwen2.5-Instruct, Llama-3.1-Instruct, Gemma-2-it list their
 * end-of-turn token there) all stop sampling; they survive our own checkpoints; the worker gets
 * them through RunSpec, and an older RunSpec without them means [eosId].
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint.js';
import { stopTokenIds } from '../../src/model/checkpoint-config.js';
import { loadTokenizer } from '../../src/model/tokenizer.js';
import { validateMessage } from '../../src/shared/protocol-schema.js';
import { decodeCompletion } from '../../src/tasks/encoding.js';
import { expectCode } from '../helpers.js';
import { SAMPLES } from '../shared/protocol-samples.js';
import { Kind } from '../../src/shared/protocol.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/hf-tiny-qwen2', import.meta.url));
const DOT = 30; // "." in the fixture's vocabulary: stands in for an end-of-turn token
let root: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grpo-stop-ids-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function fixtureWith(name: string, generationConfig: unknown): Promise<string> {
  const dir = join(root, name);
  await cp(FIXTURE, dir, { recursive: true });
  if (generationConfig !== undefined) await writeFile(join(dir, 'generation_config.json'), JSON.stringify(generationConfig));
  return dir;
}

describe('stop ids of a checkpoint', () => {
  it('are config.json eos_token_id alone without a generation_config.json', async () => {
    const ckpt = await loadCheckpoint(await fixtureWith('plain', undefined));
    expect(ckpt.tokenizer.eosId).toBe(2);
    expect(ckpt.tokenizer.stopIds).toEqual([2]);
    expect(ckpt.config.eos_token_id).toBe(2);
  });

  it("add generation_config.json's eos ids, keep them through a save, and end completion text there", async () => {
    const dir = await fixtureWith('chat', { bos_token_id: 1, eos_token_id: [2, DOT] });
    const ckpt = await loadCheckpoint(dir);
    expect(ckpt.tokenizer.eosId).toBe(2);
    expect(ckpt.tokenizer.stopIds).toEqual([2, DOT]);
    expect(ckpt.config.eos_token_id).toEqual([2, DOT]);

    const saved = join(root, 'saved');
    await saveCheckpoint(saved, ckpt);
    expect(JSON.parse(await readFile(join(saved, 'config.json'), 'utf8')).eos_token_id).toEqual([2, DOT]);
    expect((await loadCheckpoint(saved)).tokenizer.stopIds).toEqual([2, DOT]);

    const ids = ckpt.tokenizer.encode('the cat. on');
    expect(ids).toContain(DOT);
    expect(decodeCompletion(ckpt.tokenizer, ids)).toBe(ckpt.tokenizer.decode(ids.slice(0, ids.indexOf(DOT))));
  });

  it('refuses a malformed generation_config.json eos_token_id, naming the file', async () => {
    const dir = await fixtureWith('bad', { eos_token_id: [2, 999] });
    await expectCode(loadCheckpoint(dir), 'GRPO_ERR_CHECKPOINT_CONFIG', /generation_config\.json.*eos_token_id/);
  });

  it('merges in order without repeats', () => {
    const config = { vocab_size: 64, eos_token_id: [5, 2] } as Parameters<typeof stopTokenIds>[0];
    expect(stopTokenIds(config, { eos_token_id: [2, 7] })).toEqual([5, 2, 7]);
    expect(stopTokenIds(config, { eos_token_id: 9 })).toEqual([5, 2, 9]);
    expect(stopTokenIds(config, null)).toEqual([5, 2]);
  });
});

describe('stop ids over the wire', () => {
  it("a worker's tokenizer takes RunSpec's stopIds, and [eosId] when an older learner sends none", async () => {
    const json = JSON.parse(await readFile(join(FIXTURE, 'tokenizer.json'), 'utf8'));
    const withStops = await loadTokenizer(json, { ids: { bosId: 1, eosId: 2, padId: 2, stopIds: [2, DOT] } });
    expect(withStops.stopIds).toEqual([2, DOT]);
    const older = await loadTokenizer(json, { ids: { bosId: 1, eosId: 2, padId: 2 } });
    expect(older.stopIds).toEqual([2]);
    await expectCode(loadTokenizer(json, { ids: { bosId: 1, eosId: 2, padId: 2, stopIds: [2, 64] } }), 'GRPO_ERR_TOKENIZER_CONFIG');
  });

  it('RunSpec validates with and without stopIds, and refuses an empty list', () => {
    const msg = SAMPLES[Kind.RunSpec];
    validateMessage(msg);
    validateMessage({ ...msg, spec: { ...msg.spec, specialTokens: { ...msg.spec.specialTokens, stopIds: [2, DOT] } } });
    expect(() => validateMessage({ ...msg, spec: { ...msg.spec, specialTokens: { ...msg.spec.specialTokens, stopIds: [] } } })).toThrow();
  });
});
