/**
 * The progress bar of the training loops (`grpo sft`, the learner of `grpo train` and `grpo
 * learner`): a cli-progress bar on a TTY whose redraws interleave cleanly with log lines routed
 * through its `log`. Without a TTY no bar is made and the loops log plain lines instead.
 *
 *   const bar = progressBar(stream, log, { label: 'sft', columns: 'loss {loss}', etaBuffer: 20,
 *                                          value: (m) => m.step, fields: { loss: (m) => m.loss.toFixed(4) } });
 *   bar.start(total, from); bar.update(metrics); ... bar.stop();
 *
 * Lives in src/shared so both the offline jobs and the learner can draw one without importing
 * src/commands.
 */
import cliProgress from 'cli-progress';
import type { ProtocolLogger } from './protocol.js';

export interface ProgressBarSpec<T> {
  label: string; // first word of the line: 'sft', 'grpo'
  columns: string; // cli-progress format of the payload, between the count and the ETA: 'loss {loss} | lr {lr}'
  /** Each {name} of `columns` -> its text from the newest update ('-' before the first). */
  fields: Record<string, (m: T) => string | number>;
  value: (m: T) => number; // the bar's position: steps done
  etaBuffer: number; // updates the ETA averages over
}

export interface ProgressBar<T> {
  start(total: number, from: number): void;
  update(m: T): void;
  /** Idempotent. */
  stop(): void;
  /** A logger that prints through the bar while it is drawn, so lines do not tear it; drops debug. */
  log: ProtocolLogger;
  /** Prints free text (a table) above the bar while it is drawn, else straight to the stream. */
  print(text: string): void;
}

export function progressBar<T>(stream: NodeJS.WriteStream, inner: ProtocolLogger, spec: ProgressBarSpec<T>): ProgressBar<T> {
  const names = Object.keys(spec.fields);
  const multi = new cliProgress.MultiBar(
    {
      stream,
      format: `${spec.label} {bar} {value}/{total} | ${spec.columns} | eta {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: spec.etaBuffer,
    },
    cliProgress.Presets.shades_classic,
  );
  let bar: cliProgress.SingleBar | null = null;
  let stopped = false;
  const payload = (m?: T) => Object.fromEntries(names.map((n) => [n, m === undefined ? '-' : spec.fields[n]!(m)]));
  return {
    start(total, from) {
      bar = multi.create(total, from, payload());
    },
    update(m) {
      bar?.update(spec.value(m), payload(m));
    },
    stop() {
      if (stopped) return;
      stopped = true;
      // MultiBar.log only buffers until the next redraw, and stop() does not flush that buffer:
      // redraw once first, or the lines logged since the last redraw (up to 100 ms of them) are lost
      multi.update();
      multi.stop();
    },
    print(text) {
      const t = text.endsWith('\n') ? text : `${text}\n`;
      if (bar === null || stopped) stream.write(t);
      else multi.log(t);
    },
    log(level, event, fields) {
      if (level === 'debug') return;
      if (bar === null || stopped) inner(level, event, fields);
      else multi.log(`${JSON.stringify({ t: new Date().toISOString(), level, event, ...fields })}\n`);
    },
  };
}
