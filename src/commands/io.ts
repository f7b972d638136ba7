/**
 * What a command talks to, passed in so commands run in-process under tests: `out` for results
 * (stdout: the JSON of `--json`, tables, final summaries), `log` for structured events (stderr,
 * one JSON line each), and the stream and TTY flag for progress bars.
 */
import { initEngine, type BackendChoice, type EngineInfo } from '../engine/backend.js';
import { stderrLogger, type ProtocolLogger } from '../shared/protocol.js';

export interface CommandIO {
  out: (text: string) => void;
  log: ProtocolLogger;
  /** Where progress bars draw; bars are used only when this is a TTY. */
  progressStream: NodeJS.WriteStream | null;
}

export function processIO(): CommandIO {
  return {
    out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
    log: stderrLogger,
    progressStream: process.stderr.isTTY ? process.stderr : null,
  };
}

/** Starts the tensor engine and logs its choice (and any slowdown warning) as one event each. */
export async function startEngine(backend: BackendChoice, io: CommandIO, device: number | null = null): Promise<EngineInfo> {
  const info = await initEngine({ backend, device, log: () => {} });
  io.log('info', 'engine', {
    requested: info.requested,
    backend: info.backend,
    provider: info.provider,
    native: info.native,
    ...(info.threads !== undefined ? { threads: info.threads } : {}),
    ...(info.blasCore ? { blas: info.blasCore } : {}),
    kernels: info.kernels.length,
    ...(info.adapter ? { adapter: info.adapter } : {}),
  });
  if (info.notice) io.log('info', 'engine_fallback', { notice: info.notice });
  if (info.warning) io.log('warn', 'engine_degraded', { warning: info.warning });
  return info;
}
