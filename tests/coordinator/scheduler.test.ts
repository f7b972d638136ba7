import { describe, expect, it } from 'vitest';
import { Ledger } from '../../src/coordinator/ledger.js';
import { planLeases, Scheduler } from '../../src/coordinator/scheduler.js';
import { spec } from './helpers.js';

describe('planLeases', () => {
  it('spreads groups over the workers with the most free slots', () => {
    const w = [
      { id: 'a', capacity: 4, load: 0 },
      { id: 'b', capacity: 4, load: 2 },
      { id: 'c', capacity: 1, load: 0 },
    ];
    expect(planLeases(w, 1)).toEqual(new Map([['a', 1]]));
    // free slots a 4, b 2, c 1: a takes two, then a and b tie at 2 (first listed wins), then b
    expect(planLeases(w, 3)).toEqual(new Map([['a', 3]]));
    expect(planLeases(w, 4)).toEqual(new Map([['a', 3], ['b', 1]]));
    expect(planLeases(w, 6)).toEqual(new Map([['a', 4], ['b', 2]])); // then a, b, c tie at 1: a, then b
    expect(planLeases(w, 100)).toEqual(new Map([['a', 4], ['b', 2], ['c', 1]])); // never past capacity
    expect(planLeases([{ id: 'x', capacity: 2, load: 3 }], 5)).toEqual(new Map());
  });
});

describe('Scheduler', () => {
  it('rotates ties between equal workers and respects maxHeldResults', () => {
    const ledger = new Ledger({ leaseMs: 1000, maxGroupAttempts: 3, maxRedispatches: 3 });
    ledger.enqueue(['g1', 'g2', 'g3', 'g4', 'g5'].map((id) => spec(id)));
    const s = new Scheduler(ledger, { leaseMs: 1000, maxHeldResults: 3 });
    const workers = [
      { id: 'w1', capacity: 1 },
      { id: 'w2', capacity: 1 },
    ];
    const first = s.run(workers, 5, 0);
    expect([...first.keys()].sort()).toEqual(['w1', 'w2']);
    expect(first.get('w1')).toMatchObject({ policyVersion: 5, ttlMs: 1000, deadline: 1000 });
    expect(s.run(workers, 5, 0).size).toBe(0); // both busy
    const more = s.run([...workers, { id: 'w3', capacity: 4 }], 5, 0);
    expect(more.get('w3')?.groups).toHaveLength(1); // held bound 3: only one more group
    expect(ledger.inFlight).toBe(3);
  });
});
