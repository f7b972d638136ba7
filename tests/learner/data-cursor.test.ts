import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DataCursor, type DataCursorState } from '../../src/learner/data-cursor.js';
import { expectCode } from '../helpers.js';

describe('DataCursor', () => {
  it('hands out positions in order and re-queued ones first, oldest first', () => {
    const c = new DataCursor();
    expect(c.next(4)).toEqual([0, 1, 2, 3]);
    c.requeue(2);
    c.requeue(0);
    c.admit(1);
    expect(c.next(3)).toEqual([2, 0, 4]);
    expect(c.counts).toEqual({ next: 5, inFlight: 4, queued: 0, admitted: 1, requeued: 2 });
  });

  it('resumes after stale drops without skipping or repeating (the pinned-cursor bug)', () => {
    const c = new DataCursor();
    c.next(8);
    c.requeue(3); // its group came back stale
    for (const p of [0, 1, 2, 4, 5, 6]) c.admit(p);
    // 7 is still in flight at the checkpoint
    const saved = JSON.parse(JSON.stringify(c.state())) as DataCursorState;
    expect(saved).toEqual({ version: 1, next: 8, pending: [3, 7] });
    const resumed = DataCursor.fromState(saved);
    expect(resumed.next(4)).toEqual([3, 7, 8, 9]);
    expect(resumed.counts.admitted).toBe(6);
  });

  it('stores admitted-but-untrained positions as pending', () => {
    const c = new DataCursor();
    c.next(3);
    c.admit(0);
    c.admit(1);
    const s = c.state({ untrained: [1] });
    expect(s.pending).toEqual([2, 1]);
    expect(DataCursor.fromState(s).next(3)).toEqual([2, 1, 3]);
    expectCode(() => c.state({ untrained: [5] }), 'GRPO_ERR_DATA_CURSOR');
  });

  it('refuses admitting or re-queueing a position that is not in flight', () => {
    const c = new DataCursor();
    c.next(2);
    c.admit(0);
    expectCode(() => c.admit(0), 'GRPO_ERR_DATA_CURSOR'); // twice
    expectCode(() => c.requeue(0), 'GRPO_ERR_DATA_CURSOR');
    expectCode(() => c.admit(7), 'GRPO_ERR_DATA_CURSOR'); // never handed out
    c.requeue(1);
    expectCode(() => c.admit(1), 'GRPO_ERR_DATA_CURSOR'); // queued, not in flight
    expectCode(() => c.next(-1), 'GRPO_ERR_DATA_CURSOR');
  });

  it('rejects malformed states', () => {
    for (const s of [
      null,
      [],
      { version: 2, next: 1, pending: [] },
      { version: 1, next: -1, pending: [] },
      { version: 1, next: 2, pending: [2] },
      { version: 1, next: 2, pending: [1, 1] },
      { version: 1, next: 2, pending: 'x' },
    ]) {
      expectCode(() => DataCursor.fromState(s), 'GRPO_ERR_DATA_CURSOR');
    }
  });

  it('property: across checkpoints and restores no prompt is trained twice and none is skipped', () => {
    type Op =
      | { op: 'next'; n: number }
      | { op: 'admit'; pick: number }
      | { op: 'requeue'; pick: number }
      | { op: 'checkpoint'; untrained: number }
      | { op: 'restore' };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ op: fc.constant('next' as const), n: fc.integer({ min: 0, max: 4 }) }),
      fc.record({ op: fc.constant('admit' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('admit' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('requeue' as const), pick: fc.nat() }),
      fc.record({ op: fc.constant('checkpoint' as const), untrained: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ op: fc.constant('restore' as const) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        let cursor = new DataCursor();
        // the model's view: what the (checkpointed) weights have learned from
        let trained = new Set<number>();
        let flying: number[] = [];
        let lastAdmitted: number[] = []; // admitted since the last step boundary, newest last
        let saved: { state: DataCursorState; trained: Set<number> } = { state: cursor.state(), trained: new Set() };
        const invariant = (): void => {
          const { next, inFlight, queued, admitted } = cursor.counts;
          expect(inFlight + queued + admitted).toBe(next);
          expect(inFlight).toBe(flying.length);
          expect(admitted).toBe(trained.size);
          for (const p of trained) expect(p).toBeLessThan(next);
        };
        for (const o of ops) {
          if (o.op === 'next') {
            const got = cursor.next(o.n);
            expect(got).toHaveLength(o.n);
            for (const p of got) {
              expect(trained.has(p)).toBe(false);
              expect(flying.includes(p)).toBe(false);
            }
            flying.push(...got);
          } else if ((o.op === 'admit' || o.op === 'requeue') && flying.length > 0) {
            const p = flying.splice(o.pick % flying.length, 1)[0];
            if (o.op === 'admit') {
              expect(trained.has(p)).toBe(false); // admitted at most once
              cursor.admit(p);
              trained.add(p);
              lastAdmitted.push(p);
            } else cursor.requeue(p);
          } else if (o.op === 'checkpoint') {
            // the last few admitted groups wait in a buffer: the weights have not learned them
            const untrained = lastAdmitted.slice(lastAdmitted.length - Math.min(o.untrained, lastAdmitted.length));
            const state = JSON.parse(JSON.stringify(cursor.state({ untrained }))) as DataCursorState;
            const learned = new Set([...trained].filter((p) => !untrained.includes(p)));
            saved = { state, trained: learned };
            lastAdmitted = [];
          } else if (o.op === 'restore') {
            // a crash: weights and cursor come back from the last checkpoint
            cursor = DataCursor.fromState(saved.state);
            trained = new Set(saved.trained);
            flying = [];
            lastAdmitted = [];
          }
          invariant();
        }
        // drain: everything below next is eventually trained exactly once, nothing skipped
        const limit = cursor.counts.next;
        cursor.next(cursor.counts.queued).forEach((p) => flying.push(p));
        for (const p of flying) {
          expect(trained.has(p)).toBe(false);
          cursor.admit(p);
          trained.add(p);
        }
        expect([...trained].sort((a, b) => a - b)).toEqual(Array.from({ length: limit }, (_, i) => i));
      }),
      { numRuns: 300 },
    );
  });
});
