/**
 * In-process protocol clients of the cluster benchmark (src/shared/ws-client.ts):
 *
 *   StandInLearner  a learner that trains nothing: it keeps `ahead` groups enqueued, admits every
 *                   result at once (Verdict ok) and enqueues a new group for it, so the
 *                   coordinator and workers run flat out; it counts results.
 *   TrivialWorker   answers every Lease at once with made-up groups of the right size: no model,
 *                   no reward. Measures the coordinator's own ceiling.
 *   WeightsReceiver a worker that only assembles weights versions and records when each arrived.
 */
import { Kind } from '../src/shared/protocol.js';
import type { GroupRollout, GroupSpec, RunSpec } from '../src/shared/protocol.js';
import { ProtocolClient } from '../src/shared/ws-client.js';

export class StandInLearner {
  readonly client: ProtocolClient;
  results = 0; // first GroupResult of each group
  exhausted = 0;
  private seq = 0;
  private readonly outstanding = new Map<string, GroupSpec>();
  private toEnqueue: GroupSpec[] = [];
  private flushQueued = false;

  constructor(
    url: string,
    token: string,
    private readonly makeGroup: (groupId: string, index: number) => GroupSpec,
    private readonly ahead: number, // groups kept enqueued and not yet answered
    private readonly spec: RunSpec | null = null,
  ) {
    this.client = new ProtocolClient({ url, role: 'learner', name: 'bench-learner', token });
    this.client.onEvent('welcome', () => {
      if (this.spec) this.client.send({ kind: Kind.RunSpec, spec: this.spec });
      if (this.outstanding.size > 0) this.client.send({ kind: Kind.Enqueue, groups: [...this.outstanding.values()] });
    });
    this.client.on(Kind.GroupResult, (m) => {
      if (!this.outstanding.delete(m.group.groupId)) return; // a redelivery: judged already
      this.results += 1;
      this.client.send({ kind: Kind.Verdict, groupId: m.group.groupId, admitted: true, reason: 'ok' });
      this.refill();
    });
    this.client.on(Kind.GroupExhausted, (m) => {
      if (!this.outstanding.delete(m.groupId)) return;
      this.exhausted += 1;
      this.client.send({ kind: Kind.Verdict, groupId: m.groupId, admitted: false, reason: 'failed' });
      this.refill();
    });
  }

  async start(): Promise<void> {
    await this.client.start();
    this.refill();
  }

  private refill(): void {
    while (this.outstanding.size < this.ahead) {
      const id = `g${this.seq}`;
      const g = this.makeGroup(id, this.seq++);
      this.outstanding.set(id, g);
      this.toEnqueue.push(g);
    }
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => {
      // one Enqueue per turn of the event loop, however many results arrived in it
      this.flushQueued = false;
      if (this.toEnqueue.length === 0) return;
      this.client.send({ kind: Kind.Enqueue, groups: this.toEnqueue });
      this.toEnqueue = [];
    });
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

/** A GroupRollout of `spec.groupSize` two-token completions: valid, and as cheap as it gets. */
function madeUpRollout(spec: GroupSpec): GroupRollout {
  return {
    groupId: spec.groupId,
    policyVersion: 0,
    promptTokens: [1, 2, 3],
    completions: Array.from({ length: spec.groupSize }, (_, i) => ({
      tokens: [4 + i, 2],
      logprobs: [-0.7, -0.1],
      text: String(i),
      rewards: { correct: i % 2 },
      finishReason: 'stop' as const,
    })),
  };
}

export class TrivialWorker {
  readonly client: ProtocolClient;
  groups = 0;

  constructor(url: string, token: string, name: string, capacity: number) {
    this.client = new ProtocolClient({ url, role: 'worker', name, capacity, token });
    this.client.on(Kind.Lease, (lease) => {
      this.groups += lease.groups.length;
      this.client.send({ kind: Kind.Groups, leaseId: lease.leaseId, results: lease.groups.map(madeUpRollout) });
    });
  }

  async start(): Promise<void> {
    await this.client.start();
    this.client.send({ kind: Kind.Ready, policyVersion: 0 }); // leases go only to workers that said Ready
  }

  close(): Promise<void> {
    return this.client.close();
  }
}

export class WeightsReceiver {
  readonly client: ProtocolClient;
  readonly arrived = new Map<number, number>(); // version -> performance.now() when verified

  constructor(url: string, token: string, name: string) {
    this.client = new ProtocolClient({ url, role: 'worker', name, token });
    this.client.onEvent('weights', (w) => this.arrived.set(w.version, performance.now()));
  }

  async start(): Promise<void> {
    await this.client.start();
  }

  close(): Promise<void> {
    return this.client.close();
  }
}
