import { describe, expect, it } from 'vitest';
import { learnerState } from '../../src/learner/checkpointing.js';
import { Curriculum, LearnerCurriculum, type CurriculumConfig } from '../../src/learner/curriculum.js';
import type { AdmittedGroup } from '../../src/learner/groups-inbox.js';
import { parseConfig } from '../../src/shared/config.js';
import type { Completion } from '../../src/shared/protocol.js';
import type { ArithmeticMeta } from '../../src/tasks/arithmetic.js';

const CFG: CurriculumConfig = { levels: [{ max_digits: 1 }, { max_digits: 2 }, { max_digits: 3 }], threshold: 0.75, window: 8 };

const outcomes = (level: number, ...ok: number[]) => ({ level, outcomes: ok.map((x) => x === 1) });

describe('Curriculum', () => {
  it('raises the level only with a full window at the threshold, then starts the new level empty', () => {
    const c = new Curriculum(CFG, { max_depth: 1 });
    expect(c.optionsAt(1)).toEqual({ max_depth: 1, max_digits: 2 });
    // a lucky start does not count: 6 of 6 is below the window of 8
    expect(c.update([outcomes(0, 1, 1, 1, 1, 1, 1)], 1)).toEqual({ level: 0, successRate: 1, raised: false });
    const below = new Curriculum(CFG, {});
    expect(below.update([outcomes(0, 1, 1, 1, 1, 1, 0, 0, 0)], 1)).toEqual({ level: 0, successRate: 0.625, raised: false });
    // 6 of 8 reaches the threshold of 0.75 (inclusive)
    const up = c.update([outcomes(0, 0, 0)], 2);
    expect(up).toEqual({ level: 1, successRate: NaN, raised: true, raisedAtRate: 0.75 });
    expect(c.successRate).toBeNaN();
    expect(c.state()).toEqual({ version: 1, level: 1, recent: [], raisedAt: [2] });
  });

  it('keeps a rolling window and ignores groups sampled at another level', () => {
    const c = new Curriculum({ ...CFG, window: 4 }, {});
    c.update([outcomes(0, 0, 0, 0, 0)], 1);
    expect(c.successRate).toBe(0);
    c.update([outcomes(1, 1, 1, 1, 1), outcomes(0, 1, 1)], 2); // the level-1 group does not count
    expect(c.successRate).toBe(0.5); // window 0 0 1 1
    expect(c.level).toBe(0);
    c.update([outcomes(0, 1, 1)], 3);
    expect(c.level).toBe(1);
  });

  it('stays at the last level', () => {
    const c = new Curriculum({ ...CFG, window: 2 }, {});
    for (let s = 1; s <= 10; s++) c.update([outcomes(c.level, 1, 1)], s);
    expect(c.level).toBe(2);
    expect(c.state().raisedAt).toEqual([1, 2]);
    expect(c.successRate).toBe(1);
  });

  it('restores a saved state exactly, and rejects a state that does not fit', () => {
    const a = new Curriculum(CFG, {});
    a.update([outcomes(0, 1, 1, 1, 1, 1, 1, 1, 1)], 4);
    a.update([outcomes(1, 1, 0, 1)], 5);
    const b = new Curriculum(CFG, {}, JSON.parse(JSON.stringify(a.state())));
    expect(b.state()).toEqual(a.state());
    for (const c of [a, b]) c.update([outcomes(1, 1, 1, 1, 1, 1)], 6);
    expect(b.state()).toEqual(a.state());
    expect(b.level).toBe(2);
    // a smaller window keeps the newest outcomes
    const small = new Curriculum({ ...CFG, window: 2 }, {}, { version: 1, level: 1, recent: [0, 0, 1, 1], raisedAt: [3] });
    expect(small.successRate).toBe(1);
    for (const bad of [{ version: 2 }, { version: 1, level: 3, recent: [], raisedAt: [] }, { version: 1, level: 0, recent: [2], raisedAt: [] }, 'x']) {
      expect(() => new Curriculum(CFG, {}, bad), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'GRPO_ERR_RESUME' }));
    }
  });
});

describe('LearnerCurriculum', () => {
  const config = (curriculum: unknown) => parseConfig({ task: 'arithmetic', seed: 3, task_options: { max_depth: 1 }, curriculum });

  it('is off without a curriculum and fails at start on a level the task rejects', async () => {
    expect(await LearnerCurriculum.create(config(null))).toBeNull();
    await expect(LearnerCurriculum.create(config({ levels: [{ max_digits: 1 }, { max_digits: 99 }] }))).rejects.toMatchObject({
      code: 'GRPO_ERR_CONFIG',
      message: expect.stringMatching(/curriculum level 1/),
    });
    expect(() => config({ levels: [{ max_digits: 1 }] })).toThrow(expect.objectContaining({ code: 'GRPO_ERR_CONFIG' }));
    expect(() => config({ levels: [{}, {}], treshold: 0.5 })).toThrow(/curriculum\.treshold/);
  });

  it('tags problems with their level, counts task.isCorrect and logs a raise', async () => {
    const lc = (await LearnerCurriculum.create(config({ levels: [{ max_digits: 1 }, { max_digits: 3 }], threshold: 0.5, window: 4 })))!;
    const easy = lc.example(0);
    expect(easy).toMatchObject({ level: 0, taskOptions: { max_depth: 1, max_digits: 1 } });
    expect(easy.prompt).toMatch(/^-?\d[^\d]/); // one-digit literals
    const group = (spec: { prompt: string; meta: unknown; level: number }, texts: string[]): AdmittedGroup => ({
      spec: { groupId: 'g', promptIndex: 0, groupSize: texts.length, ...spec },
      rollout: {
        groupId: 'g',
        policyVersion: 0,
        promptTokens: [1],
        completions: texts.map((text): Completion => ({ tokens: [], logprobs: [], text, rewards: {}, finishReason: 'stop' })),
      },
      attempts: 0,
      worker: 'w',
    });
    const answer = (easy.meta as ArithmeticMeta).answer;
    const events: { event: string; fields: Record<string, unknown> }[] = [];
    const log = (_l: string, event: string, fields: Record<string, unknown> = {}) => void events.push({ event, fields });
    expect(lc.observe([group(easy, [answer, 'x', answer])], 1, log)).toMatchObject({ level: 0, raised: false });
    expect(lc.observe([group(easy, [answer])], 2, log)).toMatchObject({ level: 1, raised: true, raisedAtRate: 0.75 });
    expect(events).toEqual([{ event: 'curriculum_level', fields: expect.objectContaining({ step: 2, curriculumLevel: 1, options: { max_digits: 3 }, successRate: 0.75 }) }]);
    const hard = lc.example(0);
    expect(hard.level).toBe(1);
    expect(hard.prompt).not.toBe(easy.prompt);
    expect(lc.state()).toMatchObject({ level: 1, raisedAt: [2] });
  });

  it('resumes from trainer_state.json at the saved level (the path runLearner takes)', async () => {
    const cfg = config({ levels: [{ max_digits: 1 }, { max_digits: 3 }], threshold: 0.5, window: 4 });
    const saved = { version: 1, level: 1, recent: [1, 0], raisedAt: [7] };
    const raw = { phase: 'grpo', runId: 'r', step: 9, rng: [1, 2, 3, 4], config: cfg, curriculum: saved };
    const state = learnerState(JSON.parse(JSON.stringify(raw)), 'dir');
    expect(state.curriculum).toEqual(saved);
    const lc = (await LearnerCurriculum.create(cfg, state.curriculum))!;
    expect(lc.level).toBe(1);
    expect(lc.example(5)).toMatchObject({ level: 1, taskOptions: { max_digits: 3 } });
    expect(lc.state()).toEqual(saved);
    // a checkpoint from before curricula has none: the run starts at level 0
    expect(learnerState({ ...raw, curriculum: undefined } as never, 'dir').curriculum).toBeNull();
  });
});
