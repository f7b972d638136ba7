/**
 * Progress of a training loop: a cli-progress bar on a TTY, whose redraws interleave cleanly with
 * log lines routed through it; without a TTY the loop logs plain lines instead (see trainSft).
 */
import cliProgress from 'cli-progress';
import type { ProtocolLogger } from '../shared/protocol.js';
import type { SftProgress, SftStepMetrics } from '../offline/sft.js';

export interface BarProgress extends SftProgress {
  /** A logger that prints through the bar while it is drawn, so lines do not tear it. */
  log: ProtocolLogger;
}

export function sftProgressBar(stream: NodeJS.WriteStream, inner: ProtocolLogger): BarProgress {
  const multi = new cliProgress.MultiBar(
    {
      stream,
      format: 'sft {bar} {value}/{total} | loss {loss} | lr {lr} | {tps} tok/s | eta {eta_formatted}',
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let bar: cliProgress.SingleBar | null = null;
  let stopped = false;
  const payload = (m?: SftStepMetrics) => ({
    loss: m ? m.loss.toFixed(4) : '-',
    lr: m ? m.lr.toExponential(2) : '-',
    tps: m ? Math.round(m.tokensPerSecond) : '-',
  });
  return {
    start(total, from) {
      bar = multi.create(total, from, payload());
    },
    update(m) {
      bar?.update(m.step, payload(m));
    },
    stop() {
      if (stopped) return;
      stopped = true;
      multi.stop();
    },
    log(level, event, fields) {
      if (level === 'debug') return;
      if (bar === null || stopped) inner(level, event, fields);
      else multi.log(`${JSON.stringify({ t: new Date().toISOString(), level, event, ...fields })}\n`);
    },
  };
}
