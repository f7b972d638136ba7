import { describe, expect, it } from 'vitest';
import { commandAction, runUntilSignal, SHUTDOWN_SIGNALS } from '../../src/commands/action.js';
import { GrpoError } from '../../src/shared/errors.js';
import { captureIO } from './helpers.js';

const counts = () => SHUTDOWN_SIGNALS.map((s) => process.listenerCount(s));

describe('commandAction and runUntilSignal', () => {
  it('the first SIGTERM or SIGINT aborts the signal, logs it once and removes the handlers', async () => {
    for (const sig of SHUTDOWN_SIGNALS) {
      const before = counts();
      const cap = captureIO();
      let seen: AbortSignal | null = null;
      const action = commandAction(() => cap.io, async (opts: { n: number }, io, signal) => {
        expect(opts.n).toBe(1);
        expect(io).toBe(cap.io);
        seen = signal;
        expect(counts()).toEqual(before.map((c) => c + 1));
        process.emit(sig, sig);
        expect(signal.aborted).toBe(true);
        expect(counts()).toEqual(before); // a second signal gets Node's default: exit at once
      });
      await action({ n: 1 });
      expect(seen!.aborted).toBe(true);
      expect(cap.events.filter((e) => e.event === 'shutdown_requested')).toEqual([{ level: 'info', event: 'shutdown_requested', fields: { signal: sig } }]);
    }
  });

  it('removes the handlers when the command returns or throws, and passes the error on', async () => {
    const before = counts();
    const cap = captureIO();
    await expect(runUntilSignal(cap.io.log, async (signal) => (signal.aborted ? 'aborted' : 'done'))).resolves.toBe('done');
    expect(counts()).toEqual(before);
    const failing = commandAction(() => cap.io, async () => {
      throw new GrpoError('GRPO_ERR_CONFIG', 'bad');
    });
    await expect(failing({})).rejects.toMatchObject({ code: 'GRPO_ERR_CONFIG' });
    expect(counts()).toEqual(before);
    expect(cap.events).toEqual([]);
  });
});
