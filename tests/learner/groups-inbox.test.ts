/** GroupsInbox: in-flight target, verdicts (ok, stale, failed, repeats, unknown ids), batches and the cursor. */
import { describe, expect, it } from 'vitest';
import { DataCursor } from '../../src/learner/data-cursor.js';
import { GroupsInbox, type InboxOptions } from '../../src/learner/groups-inbox.js';
import { GrpoError } from '../../src/shared/errors.js';
import { Kind, silentLogger, type GroupResultMsg, type GroupSpec, type Message, type VerdictMsg } from '../../src/shared/protocol.js';

function setup(over: Partial<InboxOptions> = {}) {
  const sent: Message[] = [];
  const cursor = new DataCursor();
  const inbox = new GroupsInbox({
    tag: 'r.t',
    groupSize: 2,
    promptsPerStep: 2,
    maxStaleness: 1,
    cursor,
    example: (i) => ({ prompt: `${i}+1=`, meta: { answer: i + 1 } }),
    send: (m) => {
      sent.push(m);
      return true;
    },
    log: silentLogger,
    policyVersion: 0,
    ...over,
  });
  const enqueued = (): GroupSpec[] => sent.flatMap((m) => (m.kind === Kind.Enqueue ? m.groups : []));
  const verdicts = (): VerdictMsg[] => sent.filter((m): m is VerdictMsg => m.kind === Kind.Verdict);
  return { inbox, cursor, sent, enqueued, verdicts };
}

function result(spec: Pick<GroupSpec, 'groupId'>, policyVersion: number, tokens = [3]): GroupResultMsg {
  const c = { tokens, logprobs: tokens.map(() => -1), text: 'x', rewards: { correct: 1 }, finishReason: 'stop' as const };
  return {
    kind: Kind.GroupResult,
    sessionId: 'w1',
    workerName: 'w',
    leaseId: 'L1',
    attempts: 0,
    group: { groupId: spec.groupId, policyVersion, promptTokens: [1], completions: [c, c] },
  };
}

describe('GroupsInbox', () => {
  it("answers a group of another resume epoch stale, whatever its version, and re-queues its prompt", () => {
    let epoch = 2;
    const { inbox, cursor, enqueued, verdicts } = setup({ epoch: () => epoch });
    inbox.fill();
    const [a, b, c] = enqueued();
    const older = result(a, 0); // epoch 0 (absent): weights of an earlier learner process
    inbox.onResult(older);
    inbox.onResult({ ...result(b, 0), group: { ...result(b, 0).group, epoch: 3 } }); // a later epoch than ours
    inbox.onResult({ ...result(c, 0), group: { ...result(c, 0).group, epoch: 2 } });
    expect(verdicts().map((v) => v.reason)).toEqual(['stale', 'stale', 'ok']);
    expect(inbox.counts).toMatchObject({ admitted: 1, droppedStale: 2 });
    expect(cursor.state().pending).toEqual(expect.arrayContaining([0, 1]));
    epoch = 3; // the learner was given a new epoch (close 4008): its earlier groups are stale now
    const d = enqueued()[3];
    inbox.onResult({ ...result(d, 0), group: { ...result(d, 0).group, epoch: 2 } });
    expect(verdicts().at(-1)!.reason).toBe('stale');
  });

  it('keeps prompts_per_step * (max_staleness + 1) groups in flight, with fresh ids', () => {
    const { inbox, enqueued } = setup();
    inbox.fill();
    expect(enqueued().map((g) => g.groupId)).toEqual(['r.t.p0.a0', 'r.t.p1.a0', 'r.t.p2.a0', 'r.t.p3.a0']);
    expect(enqueued()[1]).toMatchObject({ promptIndex: 1, prompt: '1+1=', meta: { answer: 2 }, groupSize: 2 });
    inbox.fill();
    expect(enqueued()).toHaveLength(4); // nothing missing
    inbox.resync();
    expect(enqueued()).toHaveLength(8); // the same four again, for a new connection
    expect(new Set(enqueued().map((g) => g.groupId)).size).toBe(4);
  });

  it('admits, trains in batches, and counts a training batch as in flight', async () => {
    const { inbox, cursor, enqueued, verdicts } = setup();
    inbox.fill();
    const [a, b, c] = enqueued();
    inbox.onResult(result(a, 0));
    const waiting = inbox.waitFor(2);
    inbox.onResult(result(b, 0));
    await waiting;
    expect(verdicts().map((v) => [v.groupId, v.reason, v.admitted])).toEqual([
      [a.groupId, 'ok', true],
      [b.groupId, 'ok', true],
    ]);
    const batch = inbox.take(2);
    expect(batch.map((g) => g.spec.promptIndex)).toEqual([0, 1]);
    inbox.fill();
    expect(enqueued()).toHaveLength(4); // the batch being trained still counts
    // a result arriving during the step is trained one version later: sampled at 0, trained at 1
    inbox.onResult(result(c, 0));
    expect(verdicts().at(-1)!.reason).toBe('ok');
    inbox.trained(batch);
    inbox.setVersion(1);
    expect(cursor.counts.admitted).toBe(2);
    inbox.fill();
    expect(enqueued().slice(4).map((g) => g.promptIndex)).toEqual([4, 5]);
    expect(inbox.counts).toMatchObject({ admitted: 3, trained: 2, droppedStale: 0 });
  });

  it('judges staleness at the version a group will be trained at, and re-queues stale prompts under new ids', () => {
    const { inbox, enqueued, verdicts } = setup({ maxStaleness: 0 });
    inbox.fill();
    const [a, b] = enqueued();
    inbox.setVersion(1); // the learner moved on: a group sampled at 0 is now one version old
    inbox.onResult(result(a, 0));
    expect(verdicts()[0]).toMatchObject({ groupId: a.groupId, reason: 'stale', admitted: false });
    expect(enqueued().at(-1)).toMatchObject({ promptIndex: a.promptIndex, groupId: 'r.t.p0.a1' });
    inbox.onResult(result(b, 1));
    expect(verdicts()[1].reason).toBe('ok');
    // a version from the future is not of this learner's lineage
    const again = enqueued().at(-1)!;
    inbox.onResult(result(again, 7));
    expect(verdicts()[2].reason).toBe('stale');
    expect(inbox.counts.droppedStale).toBe(2);
  });

  it('puts groups behind a full batch one version later', () => {
    const { inbox, enqueued, verdicts } = setup({ maxStaleness: 1, promptsPerStep: 1 });
    inbox.fill();
    const [a, b] = enqueued();
    inbox.setVersion(1);
    inbox.onResult(result(a, 0)); // trained at 1: staleness 1
    inbox.onResult(result(b, 0)); // behind a's batch, trained at 2: staleness 2
    expect(verdicts().map((v) => v.reason)).toEqual(['ok', 'stale']);
  });

  it('answers a repeated result with its first verdict and an unknown id with stale, changing nothing', () => {
    const { inbox, enqueued, verdicts } = setup();
    inbox.fill();
    const [a] = enqueued();
    inbox.onResult(result(a, 0));
    inbox.onResult(result(a, 0));
    inbox.onResult(result({ groupId: 'other-process.p9.a0' }, 0));
    expect(verdicts().map((v) => [v.groupId, v.reason])).toEqual([
      [a.groupId, 'ok'],
      [a.groupId, 'ok'],
      ['other-process.p9.a0', 'stale'],
    ]);
    expect(inbox.buffered).toBe(1);
    expect(inbox.counts).toMatchObject({ admitted: 1, duplicates: 1, unknown: 1, droppedStale: 0 });
  });

  it('gives up with GRPO_ERR_GROUPS_FAILING after max_failed_groups_in_row failures with no admission between', () => {
    const stuck: GrpoError[] = [];
    const { inbox, enqueued } = setup({ maxFailedInRow: 3, onStuck: (e) => stuck.push(e) });
    const exhaust = (spec: GroupSpec) =>
      inbox.onExhausted({
        kind: Kind.GroupExhausted,
        groupId: spec.groupId,
        promptIndex: spec.promptIndex,
        failures: 3,
        redispatches: 0,
        code: 'GRPO_ERR_REWARD_FAILED',
        message: 'reward correct threw TypeError: boom',
      });
    inbox.fill();
    const [a, b, c, d] = enqueued();
    exhaust(a);
    exhaust(b);
    inbox.onResult(result(c, 0)); // an admission resets the count
    exhaust(d);
    const [e, f] = enqueued().slice(4);
    exhaust(e);
    expect(stuck).toEqual([]);
    const enqueuedBefore = enqueued().length;
    exhaust(f);
    expect(stuck).toHaveLength(1);
    expect(enqueued()).toHaveLength(enqueuedBefore); // no new prompts for a run that is stopping
    expect(stuck[0].code).toBe('GRPO_ERR_GROUPS_FAILING');
    expect(stuck[0].message).toMatch(/last 3 groups all failed .*GRPO_ERR_REWARD_FAILED: reward correct threw TypeError: boom/);
    expect(inbox.counts.failed).toBe(5);
  });

  it('skips the prompt of an exhausted or malformed group with a failed verdict', () => {
    const { inbox, cursor, enqueued, verdicts } = setup({
      validate: (g) => {
        if (g.completions[0].tokens[0] === 99) throw new GrpoError('GRPO_ERR_BAD_ROLLOUT', 'token 99 is out of the vocabulary');
      },
    });
    inbox.fill();
    const [a, b] = enqueued();
    inbox.onExhausted({
      kind: Kind.GroupExhausted,
      groupId: a.groupId,
      promptIndex: a.promptIndex,
      failures: 3,
      redispatches: 0,
      code: 'GRPO_ERR_TOO_MANY_ATTEMPTS',
      message: 'reward kept failing',
    });
    inbox.onResult(result(b, 0, [99]));
    expect(verdicts().map((v) => [v.groupId, v.reason, v.admitted])).toEqual([
      [a.groupId, 'failed', false],
      [b.groupId, 'failed', false],
    ]);
    expect(inbox.counts.failed).toBe(2);
    expect(cursor.isInFlight(a.promptIndex)).toBe(false);
    expect(cursor.state().pending).not.toContain(a.promptIndex); // consumed, never handed out again
    expect(enqueued().slice(4).map((g) => g.promptIndex)).toEqual([4, 5]); // replaced by new prompts
  });

  it('checkpoints buffered groups as pending prompts', () => {
    const { inbox, cursor, enqueued } = setup();
    inbox.fill();
    const [a] = enqueued();
    inbox.onResult(result(a, 0));
    expect(cursor.state()).toEqual({ version: 1, next: 4, pending: [0, 1, 2, 3] });
  });

  it('sends nothing once closed, leaving late results to the coordinator', () => {
    const { inbox, sent, enqueued } = setup();
    inbox.fill();
    const [a] = enqueued();
    inbox.close();
    const before = sent.length;
    inbox.onResult(result(a, 0));
    inbox.onExhausted({ kind: Kind.GroupExhausted, groupId: a.groupId, promptIndex: 0, failures: 3, redispatches: 0, code: 'GRPO_ERR_TOO_MANY_ATTEMPTS', message: 'x' });
    inbox.fill();
    expect(sent.length).toBe(before);
    expect(inbox.counts.admitted).toBe(0);
  });

  it('stops waiting when the signal aborts', async () => {
    const { inbox } = setup();
    const abort = new AbortController();
    const waiting = inbox.waitFor(2, abort.signal);
    abort.abort();
    await waiting;
    expect(inbox.buffered).toBe(0);
  });

  it('answers a refused result with Verdict failed carrying the code, again on a repeat, and counts it', () => {
    const refused: string[] = [];
    const { inbox, enqueued, verdicts, cursor } = setup({
      validate: (g, spec) => {
        if (g.promptTokens[0] !== 1) throw new GrpoError('GRPO_ERR_PROMPT_TOKENS', `group ${g.groupId}: prompt ${spec.prompt} lacks BOS`);
      },
      onRefused: (code) => refused.push(code),
    });
    inbox.fill();
    const [a] = enqueued();
    const bad = result(a, 0);
    bad.group.promptTokens = [5];
    inbox.onResult(bad);
    inbox.onResult(bad); // redelivered after a reconnect
    const [first, again] = verdicts();
    expect(first).toEqual({ kind: Kind.Verdict, groupId: a.groupId, admitted: false, reason: 'failed', code: 'GRPO_ERR_PROMPT_TOKENS', message: `group ${a.groupId}: prompt 0+1= lacks BOS` });
    expect(again).toEqual(first);
    expect(refused).toEqual(['GRPO_ERR_PROMPT_TOKENS']);
    expect(inbox.counts).toMatchObject({ failed: 1, refused: 1, duplicates: 1, admitted: 0 });
    expect(cursor.counts.admitted).toBe(1); // the prompt is skipped, as for any failed group
  });
});
