import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { progressBar } from '../../src/shared/progress-bar.js';

/** A stream cli-progress takes for a terminal, collecting what it draws. */
function fakeTTY(): { stream: NodeJS.WriteStream; text: () => string } {
  const chunks: string[] = [];
  const s = new PassThrough() as unknown as NodeJS.WriteStream & { isTTY: boolean; columns: number };
  s.isTTY = true;
  s.columns = 160;
  s.on('data', (c: Buffer) => chunks.push(c.toString()));
  return { stream: s, text: () => chunks.join('') };
}

describe('progressBar', () => {
  it('draws the label, the step and the payload columns, and logs through the bar while it is drawn', async () => {
    const tty = fakeTTY();
    const inner: string[] = [];
    const bar = progressBar<{ step: number; loss: number }>(tty.stream, (level, event) => inner.push(`${level} ${event}`), {
      label: 'sft',
      columns: 'loss {loss}',
      fields: { loss: (m) => m.loss.toFixed(4) },
      value: (m) => m.step,
      etaBuffer: 5,
    });
    bar.log('info', 'before_start'); // no bar yet: to the inner logger
    bar.start(10, 0);
    bar.update({ step: 3, loss: 0.5 });
    bar.log('info', 'mid_run', { x: 1 }); // buffered by cli-progress until a redraw: stop() must flush it
    bar.log('debug', 'dropped');
    bar.print('a table\nof two lines');
    bar.stop();
    bar.stop(); // idempotent
    bar.log('warn', 'after_stop');
    await new Promise((r) => setImmediate(r));
    const drawn = tty.text();
    expect(drawn).toContain('sft');
    expect(drawn).toContain('3/10');
    expect(drawn).toContain('loss 0.5000');
    expect(drawn).toMatch(/"event":"mid_run","x":1/);
    expect(drawn).not.toContain('dropped');
    expect(drawn).toContain('a table\nof two lines\n');
    expect(inner).toEqual(['info before_start', 'warn after_stop']);
  });

  it('prints straight to the stream when no bar is drawn', () => {
    const tty = fakeTTY();
    const bar = progressBar<number>(tty.stream, () => {}, { label: 'x', columns: 'n {n}', fields: { n: (m) => m }, value: (m) => m, etaBuffer: 1 });
    bar.print('before');
    expect(tty.text()).toBe('before\n');
  });
});
